"""Sample answers from a policy (base model plus optional LoRA adapter), in batches.

    python -m training.ml.generate --base var/models/smollm2 --adapter var/policies/3 \
        --prompts prompts.jsonl --out samples.jsonl --num-samples 2

A decode step costs little more at batch 16 than at batch 1 on a CPU (docs/benchmarks.md,
"Generation": 22 tokens/s at batch 1, 100 at batch 16), so all prompt x sample sequences are
batched, shortest prompts together to waste little padding, with left padding so every
sequence's next token sits in the last column.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.ml.data import PromptInput, add_config_arguments, config_from_arguments, load_prompts

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

OnToken = Callable[[int, str], None]  # (sequence index, new text)
OnProgress = Callable[[int, int], None]  # (sequences done, sequences in all)


@dataclass
class GenerateConfig:
    base_model: str = field(metadata={"help": "base model folder (or cached hub id)"})
    adapter: str | None = field(
        default=None, metadata={"help": "LoRA adapter folder of the policy; none = the base model"}
    )
    num_samples: int = field(default=2, metadata={"help": "answers sampled per prompt"})
    max_new_tokens: int = field(default=64, metadata={"help": "longest answer, in tokens"})
    temperature: float = field(
        default=0.8, metadata={"help": "sampling temperature; 0 = greedy decoding"}
    )
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling: keep this much mass"})
    batch_size: int = field(default=8, metadata={"help": "sequences decoded together"})
    seed: int = field(default=0, metadata={"help": "random seed: same seed, same answers"})
    device: str | None = field(
        default=None, metadata={"help": "torch device; default CUDA when available, else CPU"}
    )

    def validate(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {self.num_samples}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class Sample:
    """One sampled answer."""

    text: str  # the answer, special tokens removed
    token_count: int  # tokens in the answer, not counting the stop token
    finish_reason: str  # "stop" (the model ended its turn) or "length" (max_new_tokens hit)
    token_ids: tuple[int, ...] = field(default=(), repr=False)  # the answer's tokens, as sampled


def generate(
    config: GenerateConfig,
    prompts: Sequence[PromptInput],
    *,
    on_token: OnToken | None = None,
    on_progress: OnProgress | None = None,
) -> list[list[Sample]]:
    """Sample `config.num_samples` answers for each prompt; one list of Samples per prompt.

    `on_token(index, text)` streams new text of sequence `index = prompt_index * num_samples +
    sample_index`; the pieces of one sequence concatenate to its Sample.text. `on_progress(done,
    total)` counts finished sequences.
    """
    from training.ml.loading import load_causal_lm, merge_adapter

    config.validate()
    model, tokenizer = load_causal_lm(
        config.base_model, adapter=config.adapter, device=config.device
    )
    if config.adapter is not None:
        model = merge_adapter(model)  # plain weights decode faster than base + LoRA
    flat = sample_with_model(
        model,
        tokenizer,
        prompts,
        num_samples=config.num_samples,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        batch_size=config.batch_size,
        seed=config.seed,
        on_token=on_token,
        on_progress=on_progress,
    )
    n = config.num_samples
    return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]


def sample_with_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[PromptInput],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_p: float = 0.95,
    batch_size: int = 8,
    seed: int = 0,
    on_token: OnToken | None = None,
    on_progress: OnProgress | None = None,
) -> list[Sample]:
    """Sample with an already loaded model (evaluate and PPO reuse one model for several calls).

    Returns a flat list: sequence `i * num_samples + j` is sample j of prompt i.
    """
    import torch

    from training.ml.loading import encode_prompt

    # ---- one entry per (prompt, sample), batched by prompt length ----
    prompt_ids = [encode_prompt(tokenizer, p) for p in prompts]
    sequences = [i for i in range(len(prompts)) for _ in range(num_samples)]  # prompt of each
    order = sorted(range(len(sequences)), key=lambda s: len(prompt_ids[sequences[s]]))
    stop_ids = stop_token_ids(model, tokenizer)
    device = next(model.parameters()).device
    results: list[Sample | None] = [None] * len(sequences)
    if on_progress is not None:
        on_progress(0, len(sequences))

    for batch_number, start in enumerate(range(0, len(order), batch_size)):
        batch = order[start : start + batch_size]
        input_ids, attention_mask = _left_pad(
            [prompt_ids[sequences[s]] for s in batch], tokenizer.pad_token_id, device
        )  # (B, T)
        streamer = _TextStreamer(tokenizer, batch, stop_ids, on_token) if on_token else None

        # Seed per batch: the same config and prompts give the same answers, run after run.
        torch.manual_seed(seed * 1_000_003 + batch_number)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
            if temperature > 0
            else {"do_sample": False}
        )
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max_new_tokens,
                eos_token_id=sorted(stop_ids),
                pad_token_id=tokenizer.pad_token_id,
                streamer=streamer,
                **sampling,
            )  # (B, T + new)
        new_tokens = output[:, input_ids.shape[1] :].tolist()

        # ---- cut each answer at its stop token ----
        for s, tokens in zip(batch, new_tokens, strict=True):
            stop_at = next((k for k, t in enumerate(tokens) if t in stop_ids), None)
            answer = tokens if stop_at is None else tokens[:stop_at]
            results[s] = Sample(
                text=decode(tokenizer, answer),
                token_count=len(answer),
                finish_reason="length" if stop_at is None else "stop",
                token_ids=tuple(answer),
            )
        if streamer is not None:
            streamer.flush({s: results[s].text for s in batch})
        if on_progress is not None:
            on_progress(min(start + batch_size, len(order)), len(sequences))
    return results  # type: ignore[return-value]


def decode(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int]) -> str:
    """Answer text from answer tokens, the same way everywhere (streaming included)."""
    return tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """End-of-turn tokens: the tokenizer's eos and whatever the generation config adds."""
    stop = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        stop.add(configured)
    elif configured:
        stop.update(configured)
    stop.discard(None)
    stop.discard(tokenizer.pad_token_id)  # finished rows are filled with pad, never a stop
    return stop


_stop_token_ids = stop_token_ids  # old name, still imported by ppo.py


def _left_pad(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


class _TextStreamer:
    """Receives each step's new tokens from `model.generate` (a transformers streamer: put/end)
    and hands new text per sequence to `on_token`.

    Text is re-decoded from the sequence's tokens each step and only the new suffix is sent,
    held back while it ends in an incomplete UTF-8 character, so pieces concatenate to the
    final text exactly; `flush` sends whatever is left.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        indices: list[int],
        stop_ids: set[int],
        on_token: OnToken,
    ) -> None:
        self.tokenizer = tokenizer
        self.indices = indices
        self.stop_ids = stop_ids
        self.on_token = on_token
        self.tokens: list[list[int]] = [[] for _ in indices]
        self.done = [False] * len(indices)
        self.sent = [""] * len(indices)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate's first call passes the prompts
            self.prompt_seen = True
            return
        for row, token in enumerate(value.view(-1).tolist()):  # (B,)
            if self.done[row]:
                continue
            if token in self.stop_ids:
                self.done[row] = True
                continue
            self.tokens[row].append(token)
            text = decode(self.tokenizer, self.tokens[row])
            if text.endswith("\ufffd"):
                continue
            self._send(row, text)

    def end(self) -> None:
        pass

    def flush(self, final_texts: dict[int, str]) -> None:
        for row, index in enumerate(self.indices):
            self._send(row, final_texts[index])

    def _send(self, row: int, text: str) -> None:
        piece = text[len(self.sent[row]) :]
        if piece:
            self.sent[row] = text
            self.on_token(self.indices[row], piece)


# ---- command line ----


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description="Sample answers for a prompts file.")
    add_config_arguments(parser, GenerateConfig, renames={"base_model": "base"})
    parser.add_argument("--prompts", required=True, help='JSONL file, {"prompt": ...} per line')
    parser.add_argument("--out", required=True, help="JSONL file to write, one line per prompt")
    args = parser.parse_args(argv)
    config = config_from_arguments(GenerateConfig, args)
    config.validate()
    prompts = load_prompts(args.prompts)

    bar = tqdm(total=len(prompts) * config.num_samples, unit="seq", file=sys.stderr)

    def on_progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    results = generate(config, prompts, on_progress=on_progress)
    bar.close()

    # Write to a temporary file and rename, so a crash leaves no half-written output.
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for prompt, samples in zip(prompts, results, strict=True):
            row = {
                "prompt": prompt,
                "samples": [
                    {"text": s.text, "token_count": s.token_count, "finish_reason": s.finish_reason}
                    for s in samples
                ],
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
