"""Reward model: train a LoRA reward head on preference pairs, and score answers with it.

    python -m training.ml.reward --base var/models/smollm2 --data prefs.jsonl --out var/rm/4

Training uses TRL's RewardTrainer (Bradley-Terry loss, -log sigmoid(r_chosen - r_rejected - margin))
on a sequence-classification view of the base model with a peft LoRA adapter; the `score` head
is trained in full and saved with the adapter (peft modules_to_save), so the output folder is
self-contained next to the base model.

Batches (`max_batch_tokens`, default 2048; docs/benchmarks.md has the measurements): each pair is
packed into one row, shared prompt + chosen + rejected, with a 4D attention mask that keeps the
two answers apart, so the prompt is computed once and the rewards equal those of the two
sequences apart; rows are sorted by length and cut into batches under the token budget, which
bounds memory (about 2 MB per token for SmolLM2-135M in float32). `max_batch_tokens=None` gives
TRL's RewardTrainer as it is (fixed batch_size, random order, padded pairs).

The data is tokenized here, not by TRL, by `encode_for_reward`, and `RewardScorer` uses the same
function: the text is `render_prompt(prompt) + answer + eos` and the reward is read at that eos
(`<|im_end|>` for ChatML), the token where the policy ends its turn. Two reasons to do it here:
TRL drops pairs longer than `max_length` where we cut prompts from the left and count the cuts,
and the reward must be read at the same token in training and in scoring (reading it one token
off, at the newline after the end-of-turn token, halved the chosen/rejected separation in a
measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.ml.data import (
    PreferencePair,
    Prompt,
    add_config_arguments,
    config_from_arguments,
    load_preferences,
    prompt_key,
    split_by_prompt,
)
from training.ml.errors import DataError
from training.ml.loading import LoraSettings, check_adapter_path, check_model_path

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

OnMetrics = Callable[[dict[str, Any]], None]

REWARD_INFO_FILE = "hone_reward.json"
HELDOUT_FILE = "heldout.jsonl"
FORMAT = "hone-reward-v1"  # render_prompt + answer + eos, reward read at the eos


@dataclass
class RewardTrainConfig:
    base_model: str = field(metadata={"help": "base model folder (or cached hub id)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (update scaled by alpha/r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": 'layers with adapters: "all-linear" or "q_proj,v_proj"'},
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training pairs"})
    batch_size: int = field(
        default=4, metadata={"help": "most pairs per step (fewer when max_batch_tokens is hit)"}
    )
    max_batch_tokens: int | None = field(
        default=2048,
        metadata={
            "help": "token budget per step: pairs x longest packed pair in the batch, padding "
            "included (a pair is packed as shared prompt + chosen + rejected, the prompt "
            "computed once); pairs are sorted by length and grouped under it (none: TRL's "
            "RewardTrainer as it is: fixed batch_size, random order, padded pairs). Memory follows it: SmolLM2-135M in float32 with LoRA "
            "keeps about 2 MB of activations per token (2048: ~5 GB in all)"
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "steps whose gradients are summed before an update"}
    )
    max_length: int = field(
        default=512, metadata={"help": "longest prompt+answer in tokens; prompts cut from the left"}
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "share of pairs held out (whole prompts) for accuracy"}
    )
    seed: int = field(default=0, metadata={"help": "seed for the split, the head and the order"})
    logging_steps: int = field(default=5, metadata={"help": "report metrics every this many steps"})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "trade compute for memory (slower; off by default)"}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 autocast; default on for CUDA with bf16, off on CPU"}
    )
    load_in_4bit: bool = field(
        default=False, metadata={"help": "QLoRA: 4-bit base via bitsandbytes (CUDA only)"}
    )

    def validate(self) -> None:
        self.lora_settings().validate()
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("batch_size and gradient_accumulation_steps must be at least 1")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 2 * self.max_length:
            raise ValueError(
                f"max_batch_tokens must hold one pair of max_length tokens "
                f"(>= {2 * self.max_length}), got {self.max_batch_tokens}"
            )
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {self.max_length}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.logging_steps < 1:
            raise ValueError(f"logging_steps must be at least 1, got {self.logging_steps}")

    def lora_settings(self) -> LoraSettings:
        return LoraSettings(
            r=self.lora_r,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=self.lora_target_modules,
        )


# ---- the one formatting function: training and scoring both go through it ----


@dataclass(frozen=True)
class RewardInput:
    input_ids: list[int]  # render_prompt(prompt) + answer + eos, at most max_length tokens
    prompt_cut: int  # prompt tokens dropped from the left to fit max_length
    response_cut: (
        int  # answer tokens dropped from the right (only when the answer alone is too long)
    )


def encode_for_reward(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, response: str, max_length: int
) -> RewardInput:
    """Token ids the reward model reads for (prompt, response); the reward is read at the last.

    Prompt and answer are tokenized apart, as the policy sees them (prompt, then sampled
    tokens), and the end-of-turn token closes the answer. Over `max_length`, the prompt loses
    tokens from the left (the question's end matters most); an answer that alone is too long
    loses its tail, and the eos is always kept.
    """
    from training.ml.loading import encode_prompt, encode_response

    prompt_ids = encode_prompt(tokenizer, prompt)
    response_ids = encode_response(tokenizer, response)
    end = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]

    response_room = max_length - len(end)
    response_cut = max(0, len(response_ids) - response_room)
    response_ids = response_ids[: len(response_ids) - response_cut]
    prompt_room = max_length - len(end) - len(response_ids)
    prompt_cut = max(0, len(prompt_ids) - prompt_room)
    prompt_ids = prompt_ids[prompt_cut:]
    return RewardInput(prompt_ids + response_ids + end, prompt_cut, response_cut)


# ---- batching: similar lengths together, under a token budget ----


def token_budget_batches(
    lengths: Sequence[int],
    *,
    max_pairs: int,
    max_tokens: int,
    seed: int,
    epoch: int,
) -> list[list[int]]:
    """Batches of pair indices: every pair once, each batch within `max_tokens` when padded.

    `lengths[i]` is the length of pair i's packed row (`pack_pair`). A batch of n rows is padded
    to its longest, so it costs `n * max(lengths)` tokens; that, not the pair count, sets memory
    and time. Pairs are shuffled (seed, epoch), sorted by length (a stable sort: equal
    lengths keep the shuffled order), cut greedily into batches of at most `max_pairs` pairs under
    the budget, and the batches are shuffled so that one step is not always the long one. A pair
    longer than the budget alone gets a batch of its own.
    """
    import random

    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in order:  # ascending: the newest pair is the batch's longest
        if batch and (len(batch) >= max_pairs or (len(batch) + 1) * lengths[i] > max_tokens):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    rng.shuffle(batches)
    return batches


class TokenBudgetBatchSampler:
    """A torch batch sampler over `token_budget_batches`; a new order on each pass (epoch)."""

    def __init__(self, lengths: Sequence[int], *, max_pairs: int, max_tokens: int, seed: int):
        self.lengths = list(lengths)
        self.max_pairs = max_pairs
        self.max_tokens = max_tokens
        self.seed = seed
        self.epoch = 0

    def batches(self, epoch: int) -> list[list[int]]:
        return token_budget_batches(
            self.lengths,
            max_pairs=self.max_pairs,
            max_tokens=self.max_tokens,
            seed=self.seed,
            epoch=epoch,
        )

    def __iter__(self):  # noqa: ANN204
        batches = self.batches(self.epoch)
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        return len(self.batches(self.epoch))  # the count is the same in every epoch


# ---- packed pairs: the prefix both answers share is computed once ----


@dataclass(frozen=True)
class PackedPair:
    """One pair as one row: shared prefix, chosen's rest, rejected's rest.

    The rejected tokens see the shared prefix and themselves, never the chosen tokens, and take
    the positions they have in their own sequence: the model computes exactly what it computes
    on the two sequences apart, with the prefix (most often the whole prompt) computed once.
    """

    input_ids: list[int]
    position_ids: list[int]
    shared: int  # tokens of the shared prefix
    chosen_end: int  # index of chosen's last token (the reward token) in the row
    rejected_end: int  # index of rejected's last token in the row


def pack_pair(chosen_ids: Sequence[int], rejected_ids: Sequence[int]) -> PackedPair:
    shared = 0
    for a, b in zip(chosen_ids, rejected_ids, strict=False):
        if a != b:
            break
        shared += 1
    # each answer keeps at least its reward token out of the shared part
    shared = min(shared, len(chosen_ids) - 1, len(rejected_ids) - 1)
    rest = list(rejected_ids[shared:])
    return PackedPair(
        input_ids=list(chosen_ids) + rest,
        position_ids=list(range(len(chosen_ids))) + list(range(shared, len(rejected_ids))),
        shared=shared,
        chosen_end=len(chosen_ids) - 1,
        rejected_end=len(chosen_ids) + len(rest) - 1,
    )


def collate_packed_pairs(
    packed: Sequence[PackedPair],
    *,
    pad_token_id: int,
    margins: Sequence[float] | None = None,
    bool_mask: bool = True,
) -> dict[str, Any]:
    """A batch of packed rows, right-padded, with the 4D attention mask that keeps answers apart.

    The mask is (B, 1, T, T): True (or 0.0 as an additive float mask, for eager attention)
    where a token may attend. Padding attends to itself only, so no row is all masked.
    """
    import torch

    width = max(len(p.input_ids) for p in packed)
    batch = len(packed)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((batch, width), dtype=torch.long)
    allowed = torch.zeros((batch, 1, width, width), dtype=torch.bool)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    for row, p in enumerate(packed):
        n, c = len(p.input_ids), p.chosen_end + 1
        input_ids[row, :n] = torch.tensor(p.input_ids)
        position_ids[row, :n] = torch.tensor(p.position_ids)
        allowed[row, 0, :n, :n] = causal[:n, :n]
        allowed[row, 0, c:n, p.shared : c] = False  # rejected never sees chosen's own tokens
        pad = torch.arange(n, width)
        allowed[row, 0, pad, pad] = True
        position_ids[row, n:] = torch.arange(width - n)
    mask: Any = allowed
    if not bool_mask:
        mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(
            ~allowed, torch.finfo(torch.float32).min
        )
    out = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "position_ids": position_ids,
        "chosen_end": torch.tensor([p.chosen_end for p in packed]),
        "rejected_end": torch.tensor([p.rejected_end for p in packed]),
        "real_tokens": torch.tensor(sum(len(p.input_ids) for p in packed)),
    }
    if margins is not None:
        out["margin"] = torch.tensor(list(margins), dtype=torch.float)
    return out


def score_module(model: Any) -> Any:
    """The `score` head of a (peft-wrapped) sequence classifier: the outermost module so named."""
    names = [n for n, _ in model.named_modules() if n.split(".")[-1] == "score"]
    if not names:
        raise ValueError("the reward model has no `score` head")
    return model.get_submodule(min(names, key=len))


def packed_pair_rewards(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """(chosen rewards, rejected rewards), each (B,), read at each answer's last token."""
    import torch

    captured: list[Any] = []
    handle = score_module(model).register_forward_hook(lambda m, a, out: captured.append(out))
    try:
        model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            use_cache=False,
        )
    finally:
        handle.remove()
    scores = captured[-1].squeeze(-1)  # (B, T): the head on every token
    rows = torch.arange(scores.shape[0], device=scores.device)
    return scores[rows, batch["chosen_end"]], scores[rows, batch["rejected_end"]]


# ---- scoring ----


class RewardScorer:
    """Scores (prompt, answer) pairs with a trained reward model. Higher is better."""

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def load(
        cls, base_model: str, reward_dir: str | Path, *, device: str | None = None
    ) -> RewardScorer:
        """The base model as a sequence classifier, plus the saved LoRA adapter and score head."""
        from peft import PeftModel

        from training.ml.loading import load_sequence_classifier

        check_model_path(base_model)
        check_adapter_path(reward_dir)
        info = read_reward_info(reward_dir)
        # float32 on every device: scores are compared across runs and must not drift with dtype
        model, tokenizer = load_sequence_classifier(base_model, device=device, dtype="float32")
        model = PeftModel.from_pretrained(model, str(reward_dir))
        model.eval()
        return cls(model, tokenizer, max_length=info["max_length"])

    def score(
        self, prompts: Sequence[Prompt], responses: Sequence[str], *, batch_size: int = 8
    ) -> list[float]:
        """One reward per (prompt, response), in input order."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        encoded = [
            encode_for_reward(self.tokenizer, p, r, self.max_length).input_ids
            for p, r in zip(prompts, responses, strict=True)
        ]
        return self.score_ids(encoded, batch_size=batch_size)

    def score_ids(self, sequences: Sequence[list[int]], *, batch_size: int = 8) -> list[float]:
        """Rewards for sequences already built by `encode_for_reward`."""
        import torch

        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        pad_id = self.tokenizer.pad_token_id
        # Similar lengths together: less padding. Right padding as in TRL's collator; the
        # classifier reads the last token that is not pad (config.pad_token_id).
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        scores = [0.0] * len(sequences)
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                width = max(len(sequences[i]) for i in batch)
                ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
                    mask[row, : len(sequences[i])] = 1
                logits = self.model(
                    input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
                ).logits  # (B, 1)
                for row, i in enumerate(batch):
                    scores[i] = float(logits[row, 0])
        self.model.train(was_training)
        return scores


def read_reward_info(reward_dir: str | Path) -> dict[str, Any]:
    path = Path(reward_dir) / REWARD_INFO_FILE
    if not path.is_file():
        raise DataError(path, "not a Hone reward model folder (hone_reward.json missing)")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("format") != FORMAT:
        raise DataError(path, f"unknown reward format {info.get('format')!r}, expected {FORMAT}")
    return info


# ---- training ----


def train_reward(
    config: RewardTrainConfig,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    on_metrics: OnMetrics | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train a reward adapter on the preference JSONL at `data_path` and save it to `out_dir`.

    Everything is checked before any work: the config, the base model path, the whole data
    file (DataError naming file and line), and that `out_dir` does not already hold files.
    The folder is built aside and renamed into place at the end, so a failure leaves nothing.
    Returns counts, truncation counts and held-out accuracy (overall, and split by whether the
    chosen answer is the shorter or the longer one, in tokens).
    """
    # ---- check everything first ----
    config.validate()
    check_model_path(config.base_model)
    pairs = load_preferences(data_path)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"output folder is not empty: {out}")
    train_pairs, heldout_pairs = split_by_prompt(
        pairs, eval_fraction=config.eval_fraction, seed=config.seed
    )
    if not train_pairs:
        raise DataError(data_path, "no pairs left for training after the held-out split")
    started = time.monotonic()

    import datasets
    import torch
    from transformers import PrinterCallback, set_seed
    from trl import RewardConfig, RewardTrainer

    from training.ml.loading import load_sequence_classifier, load_tokenizer

    # ---- tokenize: prompts cut from the left, cuts counted ----
    tokenizer = load_tokenizer(config.base_model)
    cuts = {"prompts_truncated": 0, "responses_truncated": 0}

    def encode(pair: PreferencePair) -> tuple[list[int], list[int]]:
        chosen = encode_for_reward(tokenizer, pair.prompt, pair.chosen, config.max_length)
        rejected = encode_for_reward(tokenizer, pair.prompt, pair.rejected, config.max_length)
        cuts["prompts_truncated"] += bool(chosen.prompt_cut or rejected.prompt_cut)
        cuts["responses_truncated"] += bool(chosen.response_cut or rejected.response_cut)
        return chosen.input_ids, rejected.input_ids

    train_rows = [encode(p) for p in train_pairs]
    heldout_rows = [encode(p) for p in heldout_pairs]
    train_columns: dict[str, list[Any]] = {
        "chosen_ids": [c for c, _ in train_rows],
        "rejected_ids": [r for _, r in train_rows],
    }
    if any(p.margin is not None for p in train_pairs):
        # TRL's collator uses a margin when the first row has one: give every row one.
        train_columns["margin"] = [p.margin or 0.0 for p in train_pairs]
    train_dataset = datasets.Dataset.from_dict(train_columns)

    # ---- model: base as a 1-label classifier; the seed fixes the new score head ----
    set_seed(config.seed)
    model, tokenizer = load_sequence_classifier(
        config.base_model,
        dtype="float32",  # float32 master weights; bf16 comes from autocast on CUDA
        load_in_4bit=config.load_in_4bit,
    )
    use_bf16 = config.bf16
    if use_bf16 is None:
        use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        args = RewardConfig(
            output_dir=str(work / "trainer"),
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            # TRL defaults gradient_checkpointing to True; transformers 5 renamed the field to
            # activation_checkpointing (the old name still works, with a FutureWarning).
            activation_checkpointing=config.gradient_checkpointing,
            bf16=use_bf16,  # TRL defaults to True, which fails or crawls on a CPU
            max_length=None,  # TRL would drop longer pairs; encode_for_reward already cut them
            logging_steps=config.logging_steps,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            seed=config.seed,
            data_seed=config.seed,
            disable_tqdm=not progress_bar,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer_class = RewardTrainer
        if config.max_batch_tokens is not None:
            packed = [pack_pair(c, r) for c, r in train_rows]
            trainer_class = _packed_pair_trainer(
                RewardTrainer,
                TokenBudgetBatchSampler(
                    [len(p.input_ids) for p in packed],
                    max_pairs=config.batch_size,
                    max_tokens=config.max_batch_tokens,
                    seed=config.seed,
                ),
                packed,
                train_columns.get("margin"),
                tokenizer.pad_token_id,
            )
        trainer = trainer_class(
            model=model,
            args=args,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=config.lora_settings().peft_config("SEQ_CLS"),
            callbacks=[_metrics_callback(on_metrics)] if on_metrics else None,
        )
        if not progress_bar:
            trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
        train_output = trainer.train()

        # ---- held-out accuracy, scored exactly as RewardScorer will ----
        scorer = RewardScorer(trainer.model, tokenizer, max_length=config.max_length)
        heldout = _heldout_report(scorer, heldout_pairs, heldout_rows, config.batch_size)

        # ---- save adapter (with score head), tokenizer, description ----
        final = work / "reward"
        trainer.model.save_pretrained(str(final))
        tokenizer.save_pretrained(str(final))
        with (final / HELDOUT_FILE).open("w", encoding="utf-8") as f:
            for row in heldout.pop("rows"):
                f.write(json.dumps(row) + "\n")
        result: dict[str, Any] = {
            "pairs": len(pairs),
            "train_pairs": len(train_pairs),
            "train_prompts": len({prompt_key(p.prompt) for p in train_pairs}),
            "heldout_prompts": len({prompt_key(p.prompt) for p in heldout_pairs}),
            **cuts,
            **heldout,
            "train_loss": train_output.training_loss,
            "steps": train_output.global_step,
            "seconds": round(time.monotonic() - started, 2),
        }
        info = {
            "format": FORMAT,
            "base_model": config.base_model,
            "max_length": config.max_length,
            "reward_token": "eos after the answer (tokenizer.eos_token)",
            "eos_token": tokenizer.eos_token,
            "pad_token": tokenizer.pad_token,
            "config": asdict(config),
            "result": result,
        }
        (final / REWARD_INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
        if on_metrics is not None:
            on_metrics({"step": train_output.global_step, **heldout})

        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(final, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["out_dir"] = str(out)
    return result


def _heldout_report(
    scorer: RewardScorer,
    pairs: Sequence[PreferencePair],
    rows: Sequence[tuple[list[int], list[int]]],
    batch_size: int,
) -> dict[str, Any]:
    """Accuracy on held-out pairs, overall and by whether the chosen answer is shorter.

    A reward model trained on few pairs leans on length (docs/benchmarks.md, "Reward model on
    the demo data"): if it is right only when the chosen answer is the shorter one, the split
    shows it. Length = reward-input tokens, so
    for one prompt it compares the answers.
    """
    chosen = scorer.score_ids([c for c, _ in rows], batch_size=batch_size)
    rejected = scorer.score_ids([r for _, r in rows], batch_size=batch_size)
    report_rows = []
    buckets: dict[str, list[bool]] = {"chosen_shorter": [], "chosen_longer": [], "same_length": []}
    for pair, (c_ids, r_ids), c, r in zip(pairs, rows, chosen, rejected, strict=True):
        correct = c > r
        bucket = (
            "chosen_shorter"
            if len(c_ids) < len(r_ids)
            else "chosen_longer"
            if len(c_ids) > len(r_ids)
            else "same_length"
        )
        buckets[bucket].append(correct)
        report_rows.append(
            {"line": pair.line, "chosen_score": c, "rejected_score": r, "correct": correct}
        )

    def accuracy(values: list[bool]) -> float | None:
        return sum(values) / len(values) if values else None

    every = [x for values in buckets.values() for x in values]
    return {
        "heldout_pairs": len(every),
        "heldout_accuracy": accuracy(every),
        "heldout_margin": (
            sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(every)
            if every
            else None
        ),
        **{f"heldout_accuracy_{k}": accuracy(v) for k, v in buckets.items()},
        **{f"heldout_pairs_{k}": len(v) for k, v in buckets.items()},
        "rows": report_rows,
    }


def _packed_pair_trainer(
    trainer_class: type,
    batch_sampler: TokenBudgetBatchSampler,
    packed: Sequence[PackedPair],
    margins: Sequence[float] | None,
    pad_token_id: int,
) -> type:
    """`trainer_class` (TRL's RewardTrainer) fed packed pairs from `batch_sampler`.

    The loss is RewardTrainer's, -log sigmoid(r_chosen - r_rejected - margin) averaged over the
    batch, with the same logged metrics; only the batches and the forward pass differ.
    """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    class PackedPairTrainer(trainer_class):  # type: ignore[misc, valid-type]
        def get_train_dataloader(self) -> DataLoader:
            eager = getattr(self.model.config, "_attn_implementation", "sdpa") == "eager"

            def collate(indices: list[int]) -> dict[str, Any]:
                return collate_packed_pairs(
                    [packed[i] for i in indices],
                    pad_token_id=pad_token_id,
                    margins=None if margins is None else [margins[i] for i in indices],
                    bool_mask=not eager,
                )

            loader = DataLoader(range(len(packed)), batch_sampler=batch_sampler, collate_fn=collate)
            return self.accelerator.prepare(loader)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[override]  # noqa: ANN001, ANN201
            chosen, rejected = packed_pair_rewards(model, inputs)
            diff = chosen - rejected
            if "margin" in inputs:
                diff = diff - inputs["margin"]
            loss = -nn.functional.logsigmoid(diff).mean()
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean(
                    (chosen + rejected) ** 2
                )
            metrics = self._metrics["train"]
            self._total_train_tokens += int(inputs["real_tokens"])
            metrics["num_tokens"] = [self._total_train_tokens]
            with torch.no_grad():
                both = torch.cat([chosen, rejected])
                metrics["min_reward"].append(both.min().item())
                metrics["mean_reward"].append(both.mean().item())
                metrics["max_reward"].append(both.max().item())
                metrics["accuracy"].append((chosen > rejected).float().mean().item())
                metrics["margin"].append((chosen - rejected).mean().item())
            return (loss, {"chosen": chosen, "rejected": rejected}) if return_outputs else loss

    return PackedPairTrainer


def _metrics_callback(on_metrics: OnMetrics) -> Any:
    """A TrainerCallback forwarding the Trainer's logs (loss, accuracy, margin, rewards, lr)."""
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]
            if logs:
                on_metrics({"step": state.global_step, **_finite(logs)})

    return MetricsCallback()


def _finite(logs: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN/inf: report them as None
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in logs.items()
    }


# ---- command line ----


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a LoRA reward model on preference pairs.")
    add_config_arguments(parser, RewardTrainConfig, renames={"base_model": "base"})
    parser.add_argument("--data", required=True, help="preference JSONL (prompt/chosen/rejected)")
    parser.add_argument("--out", required=True, help="folder to write the reward adapter into")
    parser.add_argument("--metrics", help="write metrics JSON lines here instead of stdout")
    args = parser.parse_args(argv)
    config = config_from_arguments(RewardTrainConfig, args)

    # stdout carries JSON lines only: the Trainer's progress bar and its own log prints
    # (tqdm.write goes to stdout) are sent to stderr.
    stdout = sys.stdout
    sink = open(args.metrics, "w", encoding="utf-8") if args.metrics else stdout  # noqa: SIM115
    try:

        def on_metrics(metrics: dict[str, Any]) -> None:
            sink.write(json.dumps(metrics) + "\n")
            sink.flush()

        with contextlib.redirect_stdout(sys.stderr):
            result = train_reward(
                config, args.data, args.out, on_metrics=on_metrics, progress_bar=True
            )
    finally:
        if sink is not stdout:
            sink.close()
    print(json.dumps({"result": result}))


if __name__ == "__main__":
    main()
