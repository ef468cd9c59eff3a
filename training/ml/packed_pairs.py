"""Packed preference pairs: one row per pair, batches cut under a token budget.

Reward training reads two rewards per pair, one at the end of each answer. Both answers share
their prompt, so a pair is packed into one row, shared prefix + chosen's rest + rejected's rest,
with a 4D attention mask that keeps the two answers apart: the prompt is computed once and the
rewards equal those of the two sequences scored apart (tested to 1e-5). Rows are sorted by
length and cut into batches whose padded size stays under a token budget, which bounds memory
(about 2 MB of activations per token for SmolLM2-135M with LoRA in float32) and wastes little
on padding. docs/benchmarks.md has the measurements against TRL's fixed-size padded batches.

Pure helpers, checked by hand in tests/training/ml/test_reward.py; `training.ml.reward` runs
the training loop over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
