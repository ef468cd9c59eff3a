"""Reward model: train a LoRA reward head on preference pairs, and score answers with it.

    python -m training.ml.reward --base var/models/smollm2 --data prefs.jsonl --out var/rm/4
    accelerate launch -m training.ml.reward ...   # several GPUs: each takes a share of a batch

The model is a sequence-classification view of the base model with a peft LoRA adapter; the
`score` head is trained in full and saved with the adapter (peft modules_to_save), so the output
folder is self-contained next to the base model. The loss is Bradley-Terry's, as in TRL's
RewardTrainer: -log sigmoid(r_chosen - r_rejected - margin).

The training loop is our own (`_train_packed`), because TRL cannot batch the way long pairs
need: each pair is one packed row, shared prompt + chosen + rejected, and rows are sorted by
length and cut into batches under `max_batch_tokens` (default 2048), which bounds memory;
`training.ml.packed_pairs` holds the helpers and docs/benchmarks.md the measurements (faster
per pair and a third of the memory of TRL's defaults on long dialogues). `max_batch_tokens=None`
gives TRL's RewardTrainer as it is, through its public API (fixed batch_size, random order,
padded pairs): the baseline of those measurements.

The data is tokenized here, not by TRL, by `encode_for_reward`, and `RewardScorer` uses the same
function: the text is `render_prompt(prompt) + answer + eos` and the reward is read at that eos
(`<|im_end|>` for ChatML), the token where the policy ends its turn. Two reasons to do it here:
TRL drops pairs longer than `max_length` where we cut prompts from the left and count the cuts,
and the reward must be read at the same token in training and in scoring (reading it one token
off, at the newline after the end-of-turn token, halved the chosen/rejected separation in a
measurement).

Length control (`length_control`, off by default): each pair's loss is weighted so that the
pairs won by the longer answer and those won by the shorter weigh the same in all
(`length_weights`). Labels whose taste goes with length (what people like is usually longer)
then no longer reward "longer is better", and the model has to learn the taste itself; the
held-out report splits accuracy by length to show it (docs/judgement.md, "Length").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.ml.data import (
    PreferencePair,
    PromptInput,
    add_config_arguments,
    config_from_arguments,
    load_preferences,
    prompt_key,
    split_by_prompt,
)
from training.ml.errors import DataError
from training.ml.loading import (
    LoraSettings,
    check_adapter_path,
    check_global_batch,
    check_load_in_4bit,
    check_model_path,
)
from training.ml.packed_pairs import (
    TokenBudgetBatchSampler,
    collate_packed_pairs,
    pack_pair,
    packed_pair_rewards,
)

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
    lora_dropout: float = field(
        default=0.05,
        metadata={
            "help": "dropout on the LoRA input, saved with the adapter; off while the reward "
            "model trains, as in TRL's RewardTrainer (it would blur the reward difference)"
        },
    )
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": 'layers with adapters: "all-linear" or "q_proj,v_proj"'},
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training pairs"})
    batch_size: int = field(
        default=4,
        metadata={
            "help": "most pairs per batch (fewer when max_batch_tokens is hit), over all "
            "processes: N data-parallel processes share each batch and train as one does "
            "(with max_batch_tokens=None, a multiple of N; packed batches are shared however "
            "many pairs they hold, best with at least N)"
        },
    )
    max_batch_tokens: int | None = field(
        default=2048,
        metadata={
            "help": "token budget per batch (over all processes, like batch_size): pairs x "
            "longest packed pair in the batch, padding "
            "included (a pair is packed as shared prompt + chosen + rejected, the prompt "
            "computed once); pairs are sorted by length and grouped under it (none: TRL's "
            "RewardTrainer as it is: fixed batch_size, random order, padded pairs). Memory "
            "follows it: SmolLM2-135M in float32 with LoRA keeps about 2 MB of activations per "
            "token (2048: ~5 GB in all)"
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "batches whose gradients are summed into one update"}
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
        default=False,
        metadata={"help": "QLoRA: the base model in 4-bit NF4 (CUDA and bitsandbytes only)"},
    )
    length_control: bool = field(
        default=False,
        metadata={
            "help": "length-balanced loss weights: the pairs whose chosen answer is the longer "
            "and those whose chosen answer is the shorter (in answer tokens) weigh the same in "
            "all, so length alone no longer predicts the labels and the reward model must learn "
            "what else they prefer; costs effective pairs when the labels lean one way "
            "(reported as length_effective_pairs; needs max_batch_tokens; docs/judgement.md)"
        },
    )

    def validate(self) -> None:
        self.lora_settings().validate()
        check_load_in_4bit(self.load_in_4bit)
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
        if self.length_control and self.max_batch_tokens is None:
            raise ValueError(
                "length_control needs Hone's packed training loop: set max_batch_tokens "
                "(TRL's RewardTrainer, max_batch_tokens=None, has no per-pair weights)"
            )

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
    answer_tokens: int  # the answer's tokens kept, its eos included: its length, for the report


def encode_for_reward(
    tokenizer: PreTrainedTokenizerBase, prompt: PromptInput, response: str, max_length: int
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
    return RewardInput(
        prompt_ids + response_ids + end, prompt_cut, response_cut, len(response_ids) + len(end)
    )


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
        self, prompts: Sequence[PromptInput], responses: Sequence[str], *, batch_size: int = 8
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


# ---- length control: the pairs won by the longer and by the shorter answer weigh the same ----


def length_weights(lengths: Sequence[tuple[int, int]]) -> list[float]:
    """A loss weight per pair, from its (chosen, rejected) answer lengths, such that the pairs
    whose chosen answer is the longer and those whose chosen answer is the shorter weigh the
    same in all, and all pairs together as much as unweighted.

    n_differ / (2 * n_longer) for a pair won by the longer answer, n_differ / (2 * n_shorter)
    for one won by the shorter, 1 for answers of equal length. Weighted so, "prefer the longer
    answer" is right exactly as often as wrong: a reward model gains nothing by learning it,
    and what the labels prefer besides length is all there is to learn. When no pair is won by
    one of the lengths, the pairs won by the other weigh 0 too: labels that only ever prefer
    one length tell length and what it goes with apart nowhere.
    """
    longer = sum(c > r for c, r in lengths)
    shorter = sum(c < r for c, r in lengths)
    both = longer and shorter
    w_longer = (longer + shorter) / (2 * longer) if both else 0.0
    w_shorter = (longer + shorter) / (2 * shorter) if both else 0.0
    return [w_longer if c > r else w_shorter if c < r else 1.0 for c, r in lengths]


def effective_pairs(weights: Sequence[float]) -> float:
    """Kish's effective sample size, (sum w)^2 / sum w^2: how many unweighted pairs the
    weighted ones are worth (all of them when every weight is equal)."""
    squares = sum(w * w for w in weights)
    return sum(weights) ** 2 / squares if squares else 0.0


def shorter_share(lengths: Sequence[tuple[int, int]]) -> float | None:
    """Share of the pairs of different lengths whose chosen answer is the shorter."""
    differ = [c < r for c, r in lengths if c != r]
    return sum(differ) / len(differ) if differ else None


# ---- training ----

MAX_GRAD_NORM = 1.0  # gradient clipping, the transformers Trainer's default


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
    # ---- 0. check everything first ----
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

    import torch
    from accelerate import PartialState
    from transformers import set_seed

    # this process: alone, or one of `accelerate launch`'s (gloo between CPU processes)
    state = PartialState(cpu=not torch.cuda.is_available())
    if config.max_batch_tokens is None:  # TRL splits each batch in equal shares
        check_global_batch(config.batch_size, state.num_processes)

    from training.ml.loading import load_sequence_classifier, load_tokenizer

    # ---- 1. tokenize: prompts cut from the left, cuts counted ----
    tokenizer = load_tokenizer(config.base_model)
    cuts = {"prompts_truncated": 0, "responses_truncated": 0}

    def encode(pair: PreferencePair) -> tuple[RewardInput, RewardInput]:
        chosen = encode_for_reward(tokenizer, pair.prompt, pair.chosen, config.max_length)
        rejected = encode_for_reward(tokenizer, pair.prompt, pair.rejected, config.max_length)
        cuts["prompts_truncated"] += bool(chosen.prompt_cut or rejected.prompt_cut)
        cuts["responses_truncated"] += bool(chosen.response_cut or rejected.response_cut)
        return chosen, rejected

    train_encoded = [encode(p) for p in train_pairs]
    heldout_encoded = [encode(p) for p in heldout_pairs]
    train_rows = [(c.input_ids, r.input_ids) for c, r in train_encoded]
    heldout_rows = [(c.input_ids, r.input_ids) for c, r in heldout_encoded]
    # answer lengths in tokens (chosen, rejected): length control's weights, the report
    train_lengths = [(c.answer_tokens, r.answer_tokens) for c, r in train_encoded]
    heldout_lengths = [(c.answer_tokens, r.answer_tokens) for c, r in heldout_encoded]
    margins = None  # a pair without a margin counts as 0 when others have one
    if any(p.margin is not None for p in train_pairs):
        margins = [p.margin or 0.0 for p in train_pairs]
    length: dict[str, Any] = {
        "length_control": config.length_control,
        "train_labels_pick_shorter": shorter_share(train_lengths),
    }
    weights = None
    if config.length_control:
        weights = length_weights(train_lengths)
        if not any(weights):
            side = "shorter" if length["train_labels_pick_shorter"] == 1 else "longer"
            raise DataError(
                data_path,
                f"length control leaves no pair to learn from: the chosen answer is the {side} "
                "one in every training pair, and no pair has answers of equal length; label "
                "pairs where the other length wins, or train without length control",
            )
        length["length_effective_pairs"] = round(effective_pairs(weights), 1)

    # ---- 2. model: base as a 1-label classifier; the seed fixes the new score head ----
    set_seed(config.seed)
    model, tokenizer = load_sequence_classifier(
        config.base_model,
        device=str(state.device),
        dtype="float32",  # float32 master weights; bf16 comes from autocast on CUDA
        load_in_4bit=config.load_in_4bit,
    )

    # ---- 3. train: packed pairs under the token budget, or TRL's RewardTrainer as it is ----
    if config.max_batch_tokens is None:
        model, train_loss, steps = _train_with_trl(
            config, model, tokenizer, train_rows, margins, on_metrics, progress_bar
        )
    else:
        model, train_loss, steps = _train_packed(
            config, model, tokenizer, train_rows, margins, weights, on_metrics, progress_bar
        )

    # ---- 4. held-out accuracy, scored exactly as RewardScorer will (by every process, on
    # every held-out pair: the same report from any of them) ----
    scorer = RewardScorer(model, tokenizer, max_length=config.max_length)
    heldout = _heldout_report(
        scorer, heldout_pairs, heldout_rows, heldout_lengths, config.batch_size
    )
    heldout_lines = heldout.pop("rows")
    result: dict[str, Any] = {
        "pairs": len(pairs),
        "train_pairs": len(train_pairs),
        "train_prompts": len({prompt_key(p.prompt) for p in train_pairs}),
        "heldout_prompts": len({prompt_key(p.prompt) for p in heldout_pairs}),
        **cuts,
        **heldout,
        **length,
        "train_loss": train_loss,
        "steps": steps,
        "seconds": round(time.monotonic() - started, 2),
    }

    # ---- 5. save (one process): adapter with score head, tokenizer, description ----
    if state.is_main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            model.save_pretrained(str(work))
            tokenizer.save_pretrained(str(work))
            with (work / HELDOUT_FILE).open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(row) + "\n" for row in heldout_lines)
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
            (work / REWARD_INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
            if on_metrics is not None:
                on_metrics({"step": steps, **heldout})
            if out.exists():
                out.rmdir()  # empty, checked above
            os.replace(work, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    result["out_dir"] = str(out)
    return result


def _train_packed(
    config: RewardTrainConfig,
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[tuple[list[int], list[int]]],
    margins: Sequence[float] | None,
    weights: Sequence[float] | None,
    on_metrics: OnMetrics | None,
    progress_bar: bool,
) -> tuple[Any, float, int]:
    """Hone's loop: packed pairs in length-sorted batches under `config.max_batch_tokens`.

    The rest is TRL RewardTrainer's defaults: its loss, -log sigmoid(r_chosen - r_rejected -
    margin) averaged over the batch (Bradley-Terry), AdamW without weight decay, the learning
    rate decaying linearly to 0, gradients clipped at norm 1, dropout off, the same metric names
    every `logging_steps` steps. With `weights` (length_control: `length_weights`) each
    pair's loss is multiplied by its weight before the batch mean; the metrics stay those of
    the unweighted pairs, comparable with and without. Returns (the trained peft model, mean
    loss, optimizer steps).

    Data parallel (N processes): every process cuts the same global batches and takes its
    share of each (`process_share`); each pair's loss is scaled by N / (pairs in the global
    batch), so that DDP's mean of the processes' gradients is the gradient of the global
    batch's mean loss, and the metrics are those of the global batches: N processes train
    as one does, on the same batches.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed
    from tqdm.auto import tqdm

    from training.ml.loading import attach_lora

    # gradient accumulation is counted here, per epoch (see 4.), not by accelerate
    accelerator = Accelerator(mixed_precision="bf16" if _use_bf16(config) else "no")
    rank, processes = accelerator.process_index, accelerator.num_processes
    accumulate = config.gradient_accumulation_steps

    # ---- 1. LoRA on the body, the score head trained in full, dropout off ----
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    set_seed(config.seed)  # the LoRA weights start as in TRL's RewardTrainer (it seeds here)
    model = attach_lora(model, config.lora_settings(), task_type="SEQ_CLS")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # it would add noise to one reward of a pair and not the other

    # ---- 2. batches: packed pairs, sorted by length, cut under the token budget ----
    assert config.max_batch_tokens is not None  # None goes to _train_with_trl
    packed = [pack_pair(c, r) for c, r in rows]
    sampler = TokenBudgetBatchSampler(  # the global batches: the same in every process
        [len(p.input_ids) for p in packed],
        max_pairs=config.batch_size,
        max_tokens=config.max_batch_tokens,
        seed=config.seed,
    )
    # eager attention adds the mask to the scores (0 / -inf); sdpa and the others take booleans
    eager = getattr(model.config, "_attn_implementation", "sdpa") == "eager"

    def collate(global_batch: list[int]) -> dict[str, Any]:
        """This process's share of a global batch, on its device, with each pair's loss weight.
        An empty share computes one pair of the batch at weight 0: every process takes part
        in each gradient sync."""
        share = process_share(global_batch, rank, processes)
        pairs = share or global_batch[:1]
        batch = collate_packed_pairs(
            [packed[i] for i in pairs],
            pad_token_id=tokenizer.pad_token_id,
            margins=None if margins is None else [margins[i] for i in pairs],
            bool_mask=not eager,
        )
        weight = torch.tensor([1.0 if weights is None else weights[i] for i in pairs])
        batch["weight"] = weight * (processes / len(global_batch)) * bool(share)
        batch["counted"] = torch.full((len(pairs),), bool(share))  # the pairs of the metrics
        return {k: v.to(accelerator.device) for k, v in batch.items()}

    # ---- 3. optimizer over the LoRA weights and the head; the steps of the whole run ----
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    steps_per_epoch = math.ceil(len(sampler) / accumulate)
    total_steps = math.ceil(config.epochs * steps_per_epoch)

    # ---- 4. the loop: one optimizer step every `accumulate` batches and at an epoch's end ----
    model.train()
    step, tokens, grad_norm = 0, 0, float("nan")
    window: list[dict[str, float]] = []  # this process's sums per batch since the last log
    every: list[dict[str, float]] = []  # and over the run, for its mean loss
    bar = tqdm(
        total=total_steps, unit="step", disable=not (progress_bar and accelerator.is_main_process)
    )
    started = time.monotonic()
    while step < total_steps:
        epoch = list(sampler)  # a new order on each pass
        for i, global_batch in enumerate(epoch):
            lr = config.learning_rate * (1 - step / total_steps)  # linear decay to 0
            for group in optimizer.param_groups:
                group["lr"] = lr
            sync = (i + 1) % accumulate == 0 or i + 1 == len(epoch)
            batch = collate(global_batch)
            # the gradients are summed between processes on the last batch of a step only
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                chosen, rejected = packed_pair_rewards(model, batch)  # (B,), (B,)
                diff = chosen.float() - rejected.float()
                if "margin" in batch:
                    diff = diff - batch["margin"]
                pair_losses = -torch.nn.functional.logsigmoid(diff)  # Bradley-Terry, (B,)
                # (sum of weighted losses) x N / pairs of the global batch: DDP's mean over
                # the N processes makes it the global batch's mean
                accelerator.backward((pair_losses * batch["weight"]).sum() / accumulate)
            counted = batch["counted"]
            window.append(
                pair_sums(
                    chosen[counted].detach(),
                    rejected[counted].detach(),
                    pair_losses[counted].detach(),
                )
            )
            every.append(window[-1])
            tokens += int(batch["real_tokens"]) if counted.any() else 0
            if not sync:
                continue
            grad_norm = accelerator.clip_grad_norm_(trainable, MAX_GRAD_NORM).item()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            bar.update()

            # ---- 5. metrics: the mean over the global batches since the last log ----
            if step % config.logging_steps == 0:
                batches = global_batches(gather_object(window), processes)
                metrics = {
                    "step": step,
                    **{k: statistics.fmean(b[k] for b in batches) for k in batches[0]},
                    "grad_norm": grad_norm,
                    "learning_rate": lr,
                    "num_tokens": sum(gather_object([tokens])),
                    "epoch": round(step / steps_per_epoch, 4),
                }
                window = []
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.2f}")
                if on_metrics is not None and accelerator.is_main_process:
                    on_metrics(_finite(metrics))
            if step == total_steps:
                break
    bar.close()
    train_loss = statistics.fmean(
        b["loss"] for b in global_batches(gather_object(every), processes)
    )
    if on_metrics is not None and accelerator.is_main_process:
        runtime = round(time.monotonic() - started, 2)
        on_metrics(_finite({"step": step, "train_runtime": runtime, "train_loss": train_loss}))
    return accelerator.unwrap_model(model, keep_fp32_wrapper=False), train_loss, step


def process_share(batch: Sequence[int], rank: int, processes: int) -> list[int]:
    """Process `rank`'s contiguous share of a global batch: the shares of the `processes`
    differ by one pair at most, and a batch of fewer pairs than processes leaves some empty."""
    size, extra = divmod(len(batch), processes)
    start = rank * size + min(rank, extra)
    return list(batch[start : start + size + (rank < extra)])


def pair_sums(chosen: Any, rejected: Any, losses: Any) -> dict[str, float]:
    """What one process's share of a batch adds to the batch's metrics (`pair_metrics`);
    each argument is (B,), B >= 0."""
    import torch

    both = torch.cat([chosen, rejected]).float()
    return {
        "pairs": len(chosen),
        "loss": losses.float().sum().item(),
        "correct": (chosen > rejected).sum().item(),
        "margin": (chosen - rejected).float().sum().item(),
        "reward": both.sum().item(),
        "min_reward": both.min().item() if len(chosen) else math.inf,
        "max_reward": both.max().item() if len(chosen) else -math.inf,
    }


def pair_metrics(shares: Sequence[dict[str, float]]) -> dict[str, float]:
    """Metrics of one batch of pairs from its shares' `pair_sums`, named and averaged as TRL's
    RewardTrainer logs them (then averaged over the batches since the last log)."""
    pairs = sum(s["pairs"] for s in shares)
    return {
        "loss": sum(s["loss"] for s in shares) / pairs,
        "accuracy": sum(s["correct"] for s in shares) / pairs,
        "margin": sum(s["margin"] for s in shares) / pairs,
        "min_reward": min(s["min_reward"] for s in shares),
        "mean_reward": sum(s["reward"] for s in shares) / (2 * pairs),
        "max_reward": max(s["max_reward"] for s in shares),
    }


def global_batches(gathered: Sequence[dict[str, float]], processes: int) -> list[dict[str, float]]:
    """`pair_metrics` of each global batch, from the processes' `pair_sums` lists gathered end
    to end (every process has one entry per batch, in the same order)."""
    per_process = len(gathered) // processes
    return [
        pair_metrics([gathered[p * per_process + j] for p in range(processes)])
        for j in range(per_process)
    ]


def _train_with_trl(
    config: RewardTrainConfig,
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[tuple[list[int], list[int]]],
    margins: Sequence[float] | None,
    on_metrics: OnMetrics | None,
    progress_bar: bool,
) -> tuple[Any, float, int]:
    """`max_batch_tokens=None`: TRL's RewardTrainer as it is, through its public API (a fixed
    batch_size of random pairs, the two answers padded as two sequences), the baseline that
    bench/ml.py measures Hone's batching against. Returns what `_train_packed` returns."""
    import datasets
    import torch
    from transformers import PrinterCallback, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from training.ml.trl_stage import check_last_batch

    columns: dict[str, list[Any]] = {
        "chosen_ids": [c for c, _ in rows],
        "rejected_ids": [r for _, r in rows],
    }
    if margins is not None:
        columns["margin"] = list(margins)

    class MetricsCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]  # noqa: ANN001, ANN201
            if logs and on_metrics is not None and state.is_world_process_zero:
                on_metrics({"step": state.global_step, **_finite(logs)})

    with tempfile.TemporaryDirectory() as output_dir:
        args = RewardConfig(
            output_dir=output_dir,
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            # the global batch, each process taking its share of it (`split_batches`)
            per_device_train_batch_size=config.batch_size,
            accelerator_config={"split_batches": True},
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            # TRL defaults gradient_checkpointing to True; transformers 5 renamed the field to
            # activation_checkpointing (the old name still works, with a FutureWarning).
            activation_checkpointing=config.gradient_checkpointing,
            bf16=_use_bf16(config),  # TRL defaults to True, which fails or crawls on a CPU
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
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=datasets.Dataset.from_dict(columns),
            processing_class=tokenizer,
            peft_config=config.lora_settings().peft_config("SEQ_CLS"),
            callbacks=[MetricsCallback()],
        )
        if not progress_bar:
            trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
        check_last_batch(len(rows), config.batch_size, trainer.accelerator.num_processes)
        output = trainer.train()
    return trainer.model, output.training_loss, output.global_step


def _use_bf16(config: RewardTrainConfig) -> bool:
    """bf16 autocast as asked, else on a CUDA device that supports it (never by default on CPU)."""
    import torch

    if config.bf16 is not None:
        return config.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _heldout_report(
    scorer: RewardScorer,
    pairs: Sequence[PreferencePair],
    rows: Sequence[tuple[list[int], list[int]]],
    lengths: Sequence[tuple[int, int]],
    batch_size: int,
) -> dict[str, Any]:
    """Accuracy on held-out pairs, overall and by whether the chosen answer is shorter, and how
    often the model prefers the shorter answer.

    A reward model can lean on length instead of what people prefer (docs/judgement.md,
    "Length"): if it is right only when the chosen answer is the longer one, the split shows
    it, and `heldout_picks_shorter` (the model) next to `heldout_labels_pick_shorter` (the
    labels) shows which way it leans. Length = the answer's tokens (`RewardInput.answer_tokens`);
    the two shares count the pairs whose answers differ in length.
    """
    chosen = scorer.score_ids([c for c, _ in rows], batch_size=batch_size)
    rejected = scorer.score_ids([r for _, r in rows], batch_size=batch_size)
    report_rows = []
    buckets: dict[str, list[bool]] = {"chosen_shorter": [], "chosen_longer": [], "same_length": []}
    picks_shorter: list[bool] = []
    for pair, (c_len, r_len), c, r in zip(pairs, lengths, chosen, rejected, strict=True):
        correct = c > r
        bucket = (
            "chosen_shorter"
            if c_len < r_len
            else "chosen_longer"
            if c_len > r_len
            else "same_length"
        )
        buckets[bucket].append(correct)
        if c_len != r_len:
            picks_shorter.append((c > r) if c_len < r_len else (r > c))
        report_rows.append(
            {"line": pair.line, "chosen_score": c, "rejected_score": r, "correct": correct}
        )

    def share(values: list[bool]) -> float | None:
        return sum(values) / len(values) if values else None

    every = [x for values in buckets.values() for x in values]
    return {
        "heldout_pairs": len(every),
        "heldout_accuracy": share(every),
        "heldout_margin": (
            sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(every)
            if every
            else None
        ),
        **{f"heldout_accuracy_{k}": share(v) for k, v in buckets.items()},
        **{f"heldout_pairs_{k}": len(v) for k, v in buckets.items()},
        "heldout_picks_shorter": share(picks_shorter),
        "heldout_labels_pick_shorter": shorter_share(lengths),
        "rows": report_rows,
    }


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

    # stdout carries JSON lines only: progress bars and the prints of TRL's Trainer (the
    # `max_batch_tokens=None` path; tqdm.write goes to stdout) are sent to stderr.
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
    from accelerate import PartialState

    if PartialState().is_main_process:  # under `accelerate launch`, once
        print(json.dumps({"result": result}))


if __name__ == "__main__":
    main()
