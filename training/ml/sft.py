"""Supervised fine-tuning (SFT) with LoRA on demonstrations: phase 2 of RLHF, before reward/PPO.

    python -m training.ml.sft --base var/models/smollm2 --data demos.jsonl --out var/policy/1

Demonstrations are JSONL in TRL's SFT formats, one a line:

- `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`: the last message
  is the answer and must be the assistant's; the messages before it are the prompt (earlier
  assistant turns are context, not trained);
- `{"prompt": <prompt>, "completion": <answer>}`: `<prompt>` and `<answer>` as in the preference
  data of docs/ml-contract.md (a string, or chat messages and `[{"role": "assistant", ...}]`).

Each demonstration is tokenized here, by the functions every stage uses: `render_prompt(prompt) +
answer + eos`, exactly what the policy reads and writes when `generate` samples it (a literal
`<|im_end|>` in an answer stays plain text). The loss is on the answer tokens and the eos only.
TRL's SFTTrainer trains on these token rows through its public API (`completion_only_loss` over
our completion mask, `peft_config`), with length-grouped batches; a `TrainerCallback` streams its
logs to `on_metrics`. Whole prompts are held out (`data.split_by_prompt`) and their loss per
answer token and perplexity are measured before and after training.

The output folder has ppo.py's layout (adapter, tokenizer, `metrics.jsonl`, `hone_policy.json`,
kind "sft"): `generate`/`evaluate` load it as a policy adapter and PPO/DPO continue from it with
`init_adapter`.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.ml.data import (
    PromptInput,
    _check_answer,
    _check_prompt,
    iter_jsonl,
    prompt_key,
    split_by_prompt,
)
from training.ml.errors import DataError
from training.ml.loading import check_global_batch, check_model_path, process_count
from training.ml.trl_stage import (
    MetricsLog,
    OnMetrics,
    StageConfig,
    answer_logprobs,
    check_last_batch,
    check_out_dir,
    quiet,
    run_command,
    save_policy,
    trainer_arguments,
    trainer_device,
)


@dataclass
class SFTTrainConfig(StageConfig):
    """`StageConfig`'s fields (base model, LoRA, optimizer, batches, split), SFT's defaults."""

    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW learning rate"})
    batch_size: int = field(
        default=8, metadata={"help": "demonstrations per batch, grouped by length (less padding)"}
    )
    max_length: int = field(
        default=1024,
        metadata={
            "help": "longest demonstration in tokens (prompt + answer + eos); longer: refused"
        },
    )


# ---- demonstrations: validated whole before any work ----


@dataclass(frozen=True)
class Demonstration:
    prompt: PromptInput
    answer: str
    line: int  # 1-based line in the source file


def load_demonstrations(path: str | Path) -> list[Demonstration]:
    """Read and validate a whole demonstrations file (module docstring); DataError names the line."""
    demonstrations = []
    for line, obj in iter_jsonl(path):
        if "messages" in obj:
            prompt, answer = _split_conversation(obj["messages"], path, line)
        elif "prompt" in obj and "completion" in obj:
            prompt = _check_prompt(obj["prompt"], path, line)
            answer = _check_answer(obj["completion"], "completion", path, line)
        else:
            raise DataError(path, "expected 'messages', or 'prompt' and 'completion'", line=line)
        if not answer.strip():
            raise DataError(path, "the answer is empty", line=line)
        demonstrations.append(Demonstration(prompt=prompt, answer=answer, line=line))
    if not demonstrations:
        raise DataError(path, "no demonstrations (the file is empty)")
    return demonstrations


def _split_conversation(value: Any, path: str | Path, line: int) -> tuple[PromptInput, str]:
    """`messages` -> (the messages before the last, the last one's content)."""
    if not isinstance(value, list) or not value:
        raise DataError(path, "field 'messages' must be a non-empty list of messages", line=line)
    messages = _check_prompt(value, path, line, field="messages")  # roles and contents
    answer = messages[-1]
    if answer["role"] != "assistant":
        raise DataError(
            path,
            "no assistant answer: the last message is the answer and must have role "
            f"'assistant', not {answer['role']!r}",
            line=line,
        )
    if len(messages) == 1:
        raise DataError(path, "no prompt before the assistant's answer", line=line)
    return messages[:-1], answer["content"]


def encode_demonstration(tokenizer: Any, demonstration: Demonstration) -> tuple[list[int], int]:
    """(token ids of render_prompt(prompt) + answer + eos, number of prompt tokens)."""
    from training.ml.loading import encode_prompt, encode_response

    prompt_ids = encode_prompt(tokenizer, demonstration.prompt)
    answer_ids = encode_response(tokenizer, demonstration.answer) + [tokenizer.eos_token_id]
    return prompt_ids + answer_ids, len(prompt_ids)


# ---- training ----


def train_sft(
    config: SFTTrainConfig,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    on_metrics: OnMetrics | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train a LoRA policy adapter on the demonstrations at `data_path`; save it to `out_dir`.

    Everything is checked before a model is loaded: the config, the base model path, every
    line of the data (DataError naming file and line, lengths included), and that `out_dir` is
    absent or empty. The folder is built aside and renamed into place at the end. Returns
    counts, held-out loss and perplexity before and after (None without held-out data), the
    training loss, steps and seconds.
    """
    # ---- 0. check everything first ----
    config.validate()
    check_model_path(config.base_model)
    demonstrations = load_demonstrations(data_path)
    out = check_out_dir(out_dir)
    train, heldout = split_by_prompt(  # reads only `.prompt`, which demonstrations have too
        demonstrations, eval_fraction=config.eval_fraction, seed=config.seed
    )
    if not train:
        raise DataError(data_path, "no demonstrations left for training after the held-out split")
    processes = process_count()  # this process alone, or one of `accelerate launch`'s
    check_global_batch(config.batch_size, processes)
    started = time.monotonic()

    from training.ml.loading import load_tokenizer

    # ---- 1. tokenize; a demonstration over max_length is refused, naming its line ----
    tokenizer = load_tokenizer(config.base_model)
    rows = {d.line: encode_demonstration(tokenizer, d) for d in demonstrations}
    for d in demonstrations:
        if len(rows[d.line][0]) > config.max_length:
            raise DataError(
                data_path,
                f"the demonstration is {len(rows[d.line][0])} tokens (prompt + answer + eos), "
                f"more than max_length ({config.max_length})",
                line=d.line,
            )
    train_rows = [rows[d.line] for d in train]
    heldout_rows = [rows[d.line] for d in heldout]

    # ---- 2. the trainer: base + new LoRA; held-out loss before training ----
    log = MetricsLog(on_metrics)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_sft_trainer(
            config,
            tokenizer,
            train_rows,
            output_dir=scratch,
            callbacks=[log.callback()],
            progress_bar=progress_bar,
        )
        check_last_batch(len(train_rows), config.batch_size, processes)
        is_main = trainer.accelerator.is_main_process
        pad_id = tokenizer.pad_token_id
        # held-out loss: every process on every held-out row (the same numbers in each)
        before = heldout_loss(trainer.model, heldout_rows, pad_id, config.batch_size)
        if is_main and before is not None:
            log({"step": 0, **heldout_metrics(before)})

        # ---- 3. train; held-out loss after ----
        output = trainer.train()
        after = heldout_loss(trainer.model, heldout_rows, pad_id, config.batch_size)
        if is_main and after is not None:
            log({"step": output.global_step, **heldout_metrics(after)})

    result: dict[str, Any] = {
        "demonstrations": len(demonstrations),
        "train_demonstrations": len(train),
        "heldout_demonstrations": len(heldout),
        "train_prompts": len({prompt_key(d.prompt) for d in train}),
        "heldout_prompts": len({prompt_key(d.prompt) for d in heldout}),
        "train_answer_tokens": sum(len(ids) - n for ids, n in train_rows),
        **{f"{k}_before": v for k, v in heldout_metrics(before).items()},
        **heldout_metrics(after),
        "train_loss": output.training_loss,
        "steps": output.global_step,
        "seconds": round(time.monotonic() - started, 2),
    }

    # ---- 4. save (one process): the layout of ppo.py's policy folder ----
    if is_main:
        record = {
            "kind": "sft",
            "base_model": config.base_model,
            "init_adapter": None,
            "config": asdict(config),
            "summary": result,
        }
        save_policy(out, trainer.model, tokenizer, record, log.history)
    trainer.accelerator.wait_for_everyone()
    result["out_dir"] = str(out)
    return result


def build_sft_trainer(
    config: SFTTrainConfig,
    tokenizer: Any,
    rows: Sequence[tuple[list[int], int]],
    *,
    output_dir: str | Path,
    callbacks: Sequence[Any] = (),
    progress_bar: bool = False,
) -> Any:
    """TRL's SFTTrainer on token rows `(ids, prompt_tokens)`: a new LoRA on the base model, the
    loss on the answer tokens only (TRL sets the prompt's labels to -100 from our completion
    mask), batches grouped by length. `output_dir` is the trainer's scratch folder."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    from training.ml.loading import load_causal_lm

    dataset = datasets.Dataset.from_dict(
        {
            "input_ids": [ids for ids, _ in rows],
            "completion_mask": [[0] * n + [1] * (len(ids) - n) for ids, n in rows],
        }
    )
    model, _ = load_causal_lm(
        config.base_model,
        device=trainer_device(),
        dtype="float32",  # float32 master weights; bf16 comes from autocast on CUDA
        load_in_4bit=config.load_in_4bit,
    )
    args = SFTConfig(
        **trainer_arguments(config, output_dir, progress_bar),
        max_length=config.max_length,  # checked: no demonstration is cut
        completion_only_loss=True,  # labels -100 where completion_mask is 0
        train_sampling_strategy="group_by_length",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=config.lora_settings().peft_config("CAUSAL_LM"),
        callbacks=list(callbacks),
    )
    return quiet(trainer, progress_bar)


def heldout_loss(
    model: Any, rows: Sequence[tuple[list[int], int]], pad_id: int, batch_size: int
) -> float | None:
    """Mean negative log-likelihood per answer token over `rows` (None when there are none)."""
    import torch

    if not rows:
        return None
    total, count = 0.0, 0.0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        answer_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (token_ids, prompt_tokens) in enumerate(batch):
            ids[row, : len(token_ids)] = torch.tensor(token_ids)
            attention_mask[row, : len(token_ids)] = 1
            answer_mask[row, prompt_tokens : len(token_ids)] = 1
        logps, n = answer_logprobs(model, ids, attention_mask, answer_mask)
        total -= logps.sum().item()
        count += n.sum().item()
    return total / count


def heldout_metrics(loss: float | None) -> dict[str, float | None]:
    """Held-out loss per answer token and its perplexity, exp(loss)."""
    return {"heldout_loss": loss, "heldout_perplexity": None if loss is None else math.exp(loss)}


def main(argv: list[str] | None = None) -> None:
    run_command(
        argv,
        prog="python -m training.ml.sft",
        description="Supervised fine-tuning with LoRA on demonstrations (JSONL).",
        config_cls=SFTTrainConfig,
        train=train_sft,
    )


if __name__ == "__main__":
    main()
