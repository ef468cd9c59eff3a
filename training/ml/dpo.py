"""Direct Preference Optimization (DPO) with LoRA: a policy trained on preference pairs directly.

    python -m training.ml.dpo --base var/models/smollm2 --data prefs.jsonl --out var/policy/5
    python -m training.ml.dpo ... --init-adapter var/sft/1 --reference-adapter var/sft/1
    python -m training.ml.dpo ... --init-adapter var/policy/4   # continue, held to the base

DPO (Rafailov et al., 2023, https://arxiv.org/abs/2305.18290) reads the preference JSONL that
reward training reads (docs/ml-contract.md) and needs no reward model. The implicit reward of an
answer is beta * (log pi(answer) - log pi_ref(answer)), log-probs summed over the answer's
tokens; "sigmoid" is DPO's loss, -log sigmoid(r_chosen - r_rejected), and "ipo" the squared loss
of IPO (Azar et al., 2023, https://arxiv.org/abs/2310.12036), per answer token as TRL computes it.

TRL's DPOTrainer trains through its public API, dropout off (its default):

- without `init_adapter`: a new LoRA adapter (`peft_config`); the reference is the base model
  with the adapter off, and the policy starts exactly at it;
- with `init_adapter` and `reference_adapter` the same folder (an SFT adapter,
  `training.ml.sft`): training continues that adapter and TRL keeps a frozen copy of it as the
  reference, so DPO moves away from the SFT policy, from where it starts;
- with `init_adapter` and another reference (a policy adapter continued, held to the root of
  its line as PPO is: the base model, or its SFT adapter): the reference is a second, frozen
  copy of the base model (TRL's `ref_model`), with the SFT adapter merged into it when there is
  one. The policy then starts away from its reference: the implicit rewards of the pairs it
  learned before start with their margins, measured from the root the evaluation's KL is
  measured from. It costs a second copy of the base weights. It does not bound the drift: DPO
  has no KL term, and the loop benchmark's third DPO candidate ended as far from the base held
  to it as held to the version it continued (docs/benchmarks.md, "DPO against PPO").

TRL tokenizes the pairs in its conversational format (a string prompt becomes one user
message): the prompt tokens are `render_prompt(prompt)`'s, as in every stage, and an answer is
its text, `<|im_end|>`, and the newline the chat template writes after it. Through the template
a literal special token in an answer would act as that token, so such a pair is refused
(DataError naming the line). Over `max_length` TRL cuts the end of the answers, and drops a
pair whose prompt alone fills it; both are counted.

Held-out pairs (whole prompts, `split_by_prompt`) are scored under the reference and under the
trained policy, by `trl_stage.answer_logprobs`: implicit rewards, accuracy, margins. The output
folder has ppo.py's layout (kind "dpo") plus `heldout.jsonl`; `generate` and `evaluate` load it
as a policy adapter.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.ml.data import PreferencePair, load_preferences, prompt_key, split_by_prompt
from training.ml.errors import DataError
from training.ml.loading import (
    check_adapter_path,
    check_global_batch,
    check_model_path,
    check_reference_adapter,
    process_count,
)
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

LOSS_TYPES = ("sigmoid", "ipo")
HELDOUT_FILE = "heldout.jsonl"


@dataclass
class DPOTrainConfig(StageConfig):
    """`StageConfig`'s fields (base model, LoRA, optimizer, batches, split), then DPO's own."""

    lora_dropout: float = field(
        default=0.05,
        metadata={"help": "dropout of a new adapter, saved with it; off while DPO trains"},
    )
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate"})
    batch_size: int = field(default=8, metadata={"help": "pairs per batch"})
    max_length: int = field(
        default=1024,
        metadata={
            "help": "longest prompt + answer in tokens: TRL cuts a longer answer's end and drops "
            "a pair whose prompt alone fills it (both counted)"
        },
    )
    init_adapter: str | None = field(
        default=None,
        metadata={
            "help": "LoRA adapter folder to continue training (an SFT or a policy adapter); the "
            "reference stays the base unless reference_adapter is set; none: a new adapter"
        },
    )
    reference_adapter: str | None = field(
        default=None,
        metadata={
            "help": "SFT adapter folder of the reference: init_adapter's folder holds DPO to "
            "where it starts; unset: the base model"
        },
    )
    beta: float = field(
        default=0.1,
        metadata={"help": "pull toward the reference: higher stays closer (IPO's tau)"},
    )
    loss_type: str = field(default="sigmoid", metadata={"help": "'sigmoid' (DPO) or 'ipo'"})

    def validate(self) -> None:
        check_reference_adapter("DPOTrainConfig", self.init_adapter, self.reference_adapter)
        if self.separate_reference() and self.reference_adapter and self.load_in_4bit:
            raise ValueError(
                "DPOTrainConfig.reference_adapter with load_in_4bit must be init_adapter's folder: "
                "an SFT reference beside a continued adapter is merged into a copy of the base, "
                "which a 4-bit base cannot take"
            )
        super().validate()
        if not self.beta > 0:
            raise ValueError(f"DPOTrainConfig.beta must be > 0, got {self.beta}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"DPOTrainConfig.loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}"
            )

    def separate_reference(self) -> bool:
        """Whether the reference is a second model: a continued adapter held elsewhere than
        where it starts (the base, or an SFT adapter other than `init_adapter`)."""
        if self.init_adapter is None:
            return False
        if self.reference_adapter is None:
            return True
        return Path(self.reference_adapter).resolve() != Path(self.init_adapter).resolve()


def train_dpo(
    config: DPOTrainConfig,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    on_metrics: OnMetrics | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train a LoRA policy with DPO on the preference JSONL at `data_path`; save it to `out_dir`.

    Everything is checked before a model is loaded: the config, the model and adapter paths,
    every line of the data (DataError naming file and line), and that `out_dir` is absent or
    empty. The folder is built aside and renamed into place at the end. Returns counts, the
    held-out implicit-reward accuracy and margins, the last logged training accuracy and
    margin, the training loss, steps and seconds.
    """
    # ---- 0. check everything first ----
    config.validate()
    check_model_path(config.base_model)
    for adapter in (config.init_adapter, config.reference_adapter):
        if adapter is not None:
            check_adapter_path(adapter)
    pairs = load_preferences(data_path)
    out = check_out_dir(out_dir)
    train_pairs, heldout_pairs = split_by_prompt(
        pairs, eval_fraction=config.eval_fraction, seed=config.seed
    )
    if not train_pairs:
        raise DataError(data_path, "no pairs left for training after the held-out split")
    processes = process_count()  # this process alone, or one of `accelerate launch`'s
    check_global_batch(config.batch_size, processes)
    started = time.monotonic()

    from training.ml.loading import load_tokenizer

    tokenizer = load_tokenizer(config.base_model)
    check_special_tokens(tokenizer, pairs, data_path)

    # ---- 1. the trainer; the held-out pairs under the reference ----
    log = MetricsLog(on_metrics)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_dpo_trainer(
            config,
            tokenizer,
            train_pairs,
            heldout_pairs,
            output_dir=scratch,
            callbacks=[log.callback()],
            progress_bar=progress_bar,
        )
        if not len(trainer.train_dataset):
            raise DataError(
                data_path, f"every training pair's prompt fills max_length ({config.max_length})"
            )
        check_last_batch(len(trainer.train_dataset), config.batch_size, processes)
        # held-out pairs: every process scores every one (the same numbers in each)
        heldout = [] if trainer.eval_dataset is None else trainer.eval_dataset
        # a new adapter, or one held to where it starts, is its own reference before training
        held_to = trainer.ref_model or trainer.model
        reference = pair_logprobs(trainer, held_to, heldout, config.batch_size)

        # ---- 2. train, then the held-out pairs under the trained policy ----
        output = trainer.train()
        policy = pair_logprobs(trainer, trainer.model, heldout, config.batch_size)

    # ---- 3. report: held-out implicit rewards, what TRL cut or dropped, the last train log ----
    scores = heldout_scores(heldout, reference, policy, config.beta)
    kept = [trainer.train_dataset, heldout]
    train_log = [m for m in trainer.state.log_history if "rewards/accuracies" in m]
    result: dict[str, Any] = {
        "pairs": len(pairs),
        "train_pairs": len(train_pairs),
        "heldout_pairs": len(heldout_pairs),
        "train_prompts": len({prompt_key(p.prompt) for p in train_pairs}),
        "heldout_prompts": len({prompt_key(p.prompt) for p in heldout_pairs}),
        "pairs_cut": sum(cut(rows, config.max_length) for rows in kept),
        "pairs_dropped": len(pairs) - sum(len(rows) for rows in kept),
        **summarize(scores),
        "train_accuracy": train_log[-1]["rewards/accuracies"] if train_log else None,
        "train_reward_margin": train_log[-1]["rewards/margins"] if train_log else None,
        "train_loss": output.training_loss,
        "steps": output.global_step,
        "seconds": round(time.monotonic() - started, 2),
    }

    # ---- 4. save (one process): the layout of ppo.py's policy folder, plus heldout.jsonl ----
    if trainer.accelerator.is_main_process:
        if scores:
            log({"step": output.global_step, **summarize(scores)})
        record = {
            "kind": "dpo",
            "base_model": config.base_model,
            "init_adapter": config.init_adapter,
            "reference_adapter": config.reference_adapter,
            "config": asdict(config),
            "summary": result,
        }
        extra = {HELDOUT_FILE: scores}
        save_policy(out, trainer.model, tokenizer, record, log.history, extra)
    trainer.accelerator.wait_for_everyone()
    result["out_dir"] = str(out)
    return result


def check_special_tokens(tokenizer: Any, pairs: Sequence[PreferencePair], path: str | Path) -> None:
    """Refuse an answer whose text holds a special token (module docstring), naming the line."""
    specials = [t for t in tokenizer.all_special_tokens if t]
    for pair in pairs:
        for name, text in (("chosen", pair.chosen), ("rejected", pair.rejected)):
            found = next((t for t in specials if t in text), None)
            if found is not None:
                raise DataError(
                    path,
                    f"field {name!r} contains the special token {found!r}, which DPO would read "
                    "as that token (answers go through the chat template)",
                    line=pair.line,
                )


def build_dpo_trainer(
    config: DPOTrainConfig,
    tokenizer: Any,
    train_pairs: Sequence[PreferencePair],
    heldout_pairs: Sequence[PreferencePair] = (),
    *,
    output_dir: str | Path,
    callbacks: Sequence[Any] = (),
    progress_bar: bool = False,
) -> Any:
    """TRL's DPOTrainer: the base with a new LoRA (reference: adapter off), or the base with
    `config.init_adapter` trainable, its reference TRL's frozen copy of it or a second model
    (`reference_model`; module docstring). Held-out pairs are tokenized as
    `trainer.eval_dataset`. `output_dir` is the trainer's scratch folder."""
    from trl import DPOConfig, DPOTrainer

    from training.ml.loading import load_causal_lm

    model, _ = load_causal_lm(
        config.base_model,
        adapter=config.init_adapter,
        trainable=True,
        device=trainer_device(),
        dtype="float32",  # float32 master weights; bf16 comes from autocast on CUDA
        load_in_4bit=config.load_in_4bit,
    )
    args = DPOConfig(
        **trainer_arguments(config, output_dir, progress_bar),
        beta=config.beta,
        loss_type=[config.loss_type],
        max_length=config.max_length,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=reference_model(config) if config.separate_reference() else None,
        args=args,
        train_dataset=conversational(train_pairs),
        eval_dataset=conversational(heldout_pairs) if heldout_pairs else None,
        processing_class=tokenizer,
        peft_config=None if config.init_adapter else config.lora_settings().peft_config(),
        callbacks=list(callbacks),
    )
    return quiet(trainer, progress_bar)


def reference_model(config: DPOTrainConfig) -> Any:
    """The frozen reference of a continued adapter: the base model, with `reference_adapter`
    merged into it when set (a plain model, as TRL's `ref_model` must be)."""
    from training.ml.loading import load_causal_lm, merge_adapter

    model, _ = load_causal_lm(
        config.base_model,
        adapter=config.reference_adapter,
        device=trainer_device(),
        dtype="float32",
        load_in_4bit=config.load_in_4bit,
    )
    if config.reference_adapter is not None:
        model = merge_adapter(model)
    return model.requires_grad_(False).eval()


def cut(rows: Any, max_length: int) -> int:
    """How many tokenized pairs TRL's collator cuts at `max_length` (the end of an answer)."""
    if not len(rows):
        return 0
    lengths = zip(rows["prompt_ids"], rows["chosen_ids"], rows["rejected_ids"], strict=True)
    return sum(len(p) + max(len(c), len(r)) > max_length for p, c, r in lengths)


def conversational(pairs: Sequence[PreferencePair]) -> Any:
    """Pairs in TRL's conversational explicit-prompt format, with their source line."""
    import datasets

    return datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": p.prompt}]
                if isinstance(p.prompt, str)
                else p.prompt,
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
                "line": p.line,
            }
            for p in pairs
        ]
    )


def pair_logprobs(
    trainer: Any, model: Any, rows: Any, batch_size: int
) -> list[tuple[float, float]]:
    """(log pi(chosen), log pi(rejected)) of each tokenized row, batched by the trainer's
    collator (so cut at max_length as in training), under `model` as it is now."""
    logprobs: list[tuple[float, float]] = []
    for start in range(0, len(rows), batch_size):
        batch = trainer.data_collator(
            [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        )
        logps, _ = answer_logprobs(
            model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        )
        chosen, rejected = logps.chunk(2)  # the collator puts the chosen rows first
        logprobs += zip(chosen.tolist(), rejected.tolist(), strict=True)
    return logprobs


def heldout_scores(
    rows: Any,
    reference: Sequence[tuple[float, float]],
    policy: Sequence[tuple[float, float]],
    beta: float,
) -> list[dict[str, Any]]:
    """Per held-out pair: source line, log-probs, implicit rewards, and whether chosen wins."""
    scores = []
    for row, (ref_c, ref_r), (c, r) in zip(rows, reference, policy, strict=True):
        reward_c, reward_r = beta * (c - ref_c), beta * (r - ref_r)
        scores.append(
            {
                "line": row["line"],
                "chosen_logp": c,
                "rejected_logp": r,
                "reference_chosen_logp": ref_c,
                "reference_rejected_logp": ref_r,
                "chosen_reward": reward_c,
                "rejected_reward": reward_r,
                "correct": reward_c > reward_r,
            }
        )
    return scores


def summarize(scores: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Held-out means (None without held-out pairs). Log-prob margins are chosen minus rejected,
    under the reference (`_before`) and the trained policy."""

    def mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    return {
        "heldout_accuracy": mean([float(s["correct"]) for s in scores]),
        "heldout_reward_margin": mean([s["chosen_reward"] - s["rejected_reward"] for s in scores]),
        "heldout_chosen_reward": mean([s["chosen_reward"] for s in scores]),
        "heldout_rejected_reward": mean([s["rejected_reward"] for s in scores]),
        "heldout_logp_margin_before": mean(
            [s["reference_chosen_logp"] - s["reference_rejected_logp"] for s in scores]
        ),
        "heldout_logp_margin": mean([s["chosen_logp"] - s["rejected_logp"] for s in scores]),
    }


def main(argv: list[str] | None = None) -> None:
    run_command(
        argv,
        prog="python -m training.ml.dpo",
        description="DPO with LoRA on preference pairs (JSONL).",
        config_cls=DPOTrainConfig,
        train=train_dpo,
    )


if __name__ == "__main__":
    main()
