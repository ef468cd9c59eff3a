"""Labels saved by choosing comparisons by uncertainty: reward-model accuracy against labels,
the `fifo` order against the `uncertainty` rule, with a simulated annotator (`make bench-labels`).

    python bench/label_efficiency.py --prompts brief --samples 5 --model top --budget 256
    python bench/label_efficiency.py --prompts brief --samples 5 --model lora   # the product's
    python bench/label_efficiency.py --model top --learning-rate 1e-3 ...       # a faster learner
    python bench/label_efficiency.py --report bench/out/label_efficiency-lora.jsonl  # tables

1. **Pool**: real answers of the base model, cached as JSONL under var/bench-pool/ (one line per
   answer). Built once, from the first source that exists: `--pool FILE` if it exists; the base
   policy's completions in the SQLite database of a `bench/loop.py` work folder
   (`--from-work DIR`, or the /tmp/hone-bench-loop-* folder holding the most of them), which
   costs no generation; or, with `--generate`, `training.ml.generate` on the loop's prompts at
   two temperatures, as the product's uncertainty pool draws them (`--samples` answers at the
   project temperature, one at half of it). `--prompts brief` (always generated, cached apart)
   takes the loop's prompts that ask for a sentence: their answers are below the length limit,
   so their lengths differ and the concise taste can be learnt from them.
2. **Pairs**: every two different answers of one prompt, judged by the simulated annotator
   (`feedback.preferences.judge`, `--taste`, "concise" by default). A tie costs a label and
   teaches nothing (it never reaches the reward model, as in the product's default).
3. **Held-out**: whole prompts (the product's `split_by_prompt`, a fixed seed), the same pairs
   for every run; the rest is the candidate pool.
4. **Runs**: per seed, both strategies start from the same first labels (the first
   `--seed-labels` pairs of the seed's random order) and the same first reward model, then add
   `--batch` labels per round up to `--budget`:
   - `fifo`: the pairs in the seed's random order (the product's order: oldest first, and the
     pairs arrive in no order of content);
   - `uncertainty`: the product's rule (`training.ml.uncertainty`): the latest reward model
     scores every unlabelled candidate, each prompt offers its most uncertain pair, the most
     uncertain of those are taken. The product's committee is the policy's reward model plus
     the independent judge when the project has one; here there is no judge, so the committee
     is the latest reward model alone, which is what the rule reduces to.
   After each round a reward model is trained from scratch on all labels so far, the seed fixed,
   and scored on the held-out pairs: `--model lora` (default) is the product's reward stage
   as it is (`training.ml.reward.train_reward`, LoRA on every linear layer, 2 epochs, batches
   of 8), minutes per model on a CPU; `--model top` is the same recipe with adapters on the top
   `--top-layers` layers only, the layers below computed once per answer (seconds per model).
   `--learning-rate` and `--epochs` change the recipe (1e-4 and 2 in the product).
5. **Output**: one JSON line per round in bench/out/label_efficiency-<model>.jsonl (as it goes,
   so a cut run still gives curves) and, at the end or with `--report`, markdown tables: held-out
   accuracy against labels per strategy and seed, and the labels each strategy needs to reach
   the accuracy `fifo` reaches with the whole budget (per seed, and on the mean curves), and
   on the mean curves at every level of 0.05 between `fifo`'s first and last accuracy.
6. **Best-of-n**: the same tables for the win rate against the base of the policy each reward
   model would steer without any training, best-of-n: on each held-out prompt, the answer the
   reward model scores highest, against each other answer of that prompt (the base's draws),
   as the annotator judged them. It stands in for a loop's final win rate at a cost of nothing:
   the held-out answers are scored for the accuracy anyway.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedback.preferences import PREFERENCES, judge  # noqa: E402  (plain Python, no Django)
from training.ml.data import PreferencePair, prompt_key, split_by_prompt  # noqa: E402
from training.ml.uncertainty import (  # noqa: E402
    most_uncertain,
    pair_uncertainty,
    preference_probability,
)

POOL = ROOT / "var" / "bench-pool" / "smollm2-base.jsonl"


def brief_pool(samples: int) -> Path:
    """The cached brief pool of `samples` answers per prompt at the project temperature and one
    at half of it: one file per size, so that another --samples never reads a cache of another
    size."""
    return ROOT / "var" / "bench-pool" / f"smollm2-brief-{samples + 1}.jsonl"


OUT = ROOT / "bench" / "out"
WORK_GLOB = "/tmp/hone-bench-loop-*/bench.sqlite3"
MIN_POOL_ANSWERS = 64  # fewer base answers than this in a work folder: not a pool yet
HELDOUT_FRACTION = 0.3  # share of the pairs held out, whole prompts
HELDOUT_SEED = 0  # fixed: the same held-out pairs for every run and seed
STRATEGIES = ("fifo", "uncertainty")
# The product's reward recipe (RewardTrainConfig as bench/loop.py's project sets it).
EPOCHS = 2
BATCH_PAIRS = 8
LEARNING_RATE = 1e-4
# --generate: the product's uncertainty pool draws two answers at the project's temperature and
# one at half of it (training/jobs/generation.py); Project.temperature defaults to 0.8.
GENERATE_DRAWS = ((2, 0.8), (1, 0.4))


@dataclass(frozen=True)
class Answer:
    prompt: list[dict[str, str]]  # chat messages
    text: str
    temperature: float | None
    source: str


@dataclass(frozen=True)
class Pair:
    """Two answers (indices into the pool) of one prompt, and the simulated annotator's call."""

    prompt: str  # prompt_key of the prompt
    a: int
    b: int
    choice: str  # "a", "b" or "tie"


# ---- the pool of answers ----


def pool_from_work(database: Path) -> list[Answer]:
    """The base policy's (version 0) completions in a loop's SQLite database, read-only."""
    uri = f"file:{database}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute(
            "SELECT p.messages, c.text, c.sampling, c.id FROM feedback_completion c "
            "JOIN training_policyversion v ON v.id = c.policy_version_id "
            "JOIN feedback_prompt p ON p.id = c.prompt_id "
            "WHERE v.number = 0 ORDER BY c.id"
        ).fetchall()
    return [
        Answer(
            prompt=json.loads(messages),
            text=text,
            temperature=json.loads(sampling or "{}").get("temperature"),
            source=f"{database}#completion-{pk}",
        )
        for messages, text, sampling, pk in rows
    ]


def base_answers_in(database: str) -> int:
    """How many base answers a loop's database holds (0 when it cannot be read yet)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            return db.execute(
                "SELECT count(*) FROM feedback_completion c JOIN training_policyversion v "
                "ON v.id = c.policy_version_id WHERE v.number = 0"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def pool_generate(
    base: str, seed: int, prompt_set: str, draws: Sequence[tuple[int, float]]
) -> list[Answer]:
    """Answers of the base model to bench/loop.py's prompts (`demo`: the demo's and the
    templated ones; `brief`: the ones that ask for a sentence), `draws` (samples, temperature)."""
    from bench.loop import BRIEF_TEMPLATES, extra_prompts
    from training.ml.data import load_prompts
    from training.ml.generate import GenerateConfig, generate

    if prompt_set == "brief":
        prompts = [record["prompt"] for record in extra_prompts(BRIEF_TEMPLATES)]
    else:
        prompts = load_prompts(ROOT / "training/fixtures/demo_prompts.jsonl")
        prompts += [record["prompt"] for record in extra_prompts()]
    answers = []
    for n, (num_samples, temperature) in enumerate(draws):
        config = GenerateConfig(
            base_model=base,
            num_samples=num_samples,
            max_new_tokens=64,
            temperature=temperature,
            batch_size=16,
            seed=seed + n,
        )
        print(f"generating {num_samples} x {len(prompts)} answers at T={temperature}", flush=True)
        for prompt, samples in zip(prompts, generate(config, prompts), strict=True):
            answers += [
                Answer(prompt, s.text, temperature, f"generate:seed{seed + n}") for s in samples
            ]
    return answers


def write_pool(path: Path, answers: Sequence[Answer]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(asdict(a), ensure_ascii=False) + "\n" for a in answers)
    os.replace(tmp, path)


def read_pool(path: Path) -> list[Answer]:
    answers = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            try:
                answers.append(Answer(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                raise SystemExit(f"{path}, line {number}: not a pool answer ({exc})") from None
    return answers


def distinct(answers: Sequence[Answer]) -> list[Answer]:
    """One answer per (prompt, text): a pair of two equal answers teaches nothing."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for answer in answers:
        key = (prompt_key(answer.prompt), answer.text)
        if key not in seen:
            seen.add(key)
            kept.append(answer)
    return kept


# ---- pairs, split, choices: pure logic (tests/bench/test_label_efficiency.py) ----


def all_pairs(answers: Sequence[Answer], taste: str) -> list[Pair]:
    """Every two different answers of one prompt, judged with `taste`."""
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for i, answer in enumerate(answers):
        by_prompt[prompt_key(answer.prompt)].append(i)
    pairs = []
    for key, indices in by_prompt.items():
        for n, i in enumerate(indices):
            for j in indices[n + 1 :]:
                if answers[i].text != answers[j].text:
                    choice, _ = judge(taste, answers[i].text, answers[j].text)
                    pairs.append(Pair(key, i, j, choice))
    return pairs


def heldout_split(pairs: Sequence[Pair]) -> tuple[list[int], list[int]]:
    """(candidate, held-out) pair indices: whole prompts held out by the product's own split
    (`training.ml.data.split_by_prompt`) with a fixed seed, so every run sees the same ones."""
    keyed = [
        PreferencePair(prompt=p.prompt, chosen=str(p.a), rejected=str(p.b), margin=None, line=n)
        for n, p in enumerate(pairs)
    ]
    train, heldout = split_by_prompt(keyed, eval_fraction=HELDOUT_FRACTION, seed=HELDOUT_SEED)
    return [p.line for p in train], [p.line for p in heldout]


def fifo_order(candidates: Sequence[int], seed: int) -> list[int]:
    """The candidates in the order a `fifo` project labels them: the order they arrive in,
    which knows nothing of their content, i.e. a seeded random order."""
    order = list(candidates)
    random.Random(seed).shuffle(order)
    return order


def pick_fifo(order: Sequence[int], labelled: set[int], k: int) -> list[int]:
    """The next k unlabelled pairs of the order."""
    return [i for i in order if i not in labelled][:k]


def pick_uncertain(
    groups: Sequence[Sequence[tuple[int, float]]], labelled: set[int], k: int
) -> list[int]:
    """Up to k unlabelled pairs by the product's rule (`most_uncertain`): each group (a prompt,
    groups in the caller's rank) offers its most uncertain pair, and the most uncertain of those
    are taken. When fewer groups than k still have a candidate, the rule is applied again to
    what is left, so that the batch is full while the pool lasts."""
    picked: list[int] = []
    taken = set(labelled)
    while len(picked) < k:
        open_groups = [[(i, u) for i, u in group if i not in taken] for group in groups]
        chosen = most_uncertain([[u for _, u in g] for g in open_groups], k - len(picked))
        if not chosen:
            break
        for g, c in chosen:
            picked.append(open_groups[g][c][0])
            taken.add(open_groups[g][c][0])
    return picked


def heldout_accuracy(pairs: Sequence[Pair], rewards: dict[int, float]) -> tuple[int, int, float]:
    """(right, judged, mean margin): a pair is right when the answer the annotator chose gets
    the higher reward; ties are not judged."""
    right, margins = 0, []
    for pair in pairs:
        if pair.choice == "tie":
            continue
        chosen, rejected = (pair.a, pair.b) if pair.choice == "a" else (pair.b, pair.a)
        margin = rewards[chosen] - rewards[rejected]
        right += margin > 0
        margins.append(margin)
    return right, len(margins), statistics.fmean(margins) if margins else math.nan


def best_of_n_win_rate(pairs: Sequence[Pair], rewards: dict[int, float]) -> float:
    """The win rate of a best-of-n policy that the reward model steers: per prompt, the answer
    it scores highest against each other answer of that prompt, as the annotator judged them
    (a tie is half a win), averaged per prompt, then over the prompts. The other answers are
    draws of the base, so this is the win rate against the base of a policy that samples the
    prompt's answers and keeps the one the reward model likes best (the lowest index of equal
    rewards)."""
    answers: dict[str, set[int]] = defaultdict(set)
    for pair in pairs:
        answers[pair.prompt].update((pair.a, pair.b))
    best = {
        prompt: max(sorted(indices), key=lambda i: rewards[i])
        for prompt, indices in answers.items()
    }
    games: dict[str, list[float]] = defaultdict(list)
    for pair in pairs:
        pick = best[pair.prompt]
        if pick in (pair.a, pair.b):
            won = pair.choice == ("a" if pick == pair.a else "b")
            games[pair.prompt].append(0.5 if pair.choice == "tie" else float(won))
    return statistics.fmean(statistics.fmean(g) for g in games.values())


def annotator_wins(pairs: Sequence[Pair]) -> dict[int, float]:
    """Each answer's wins over the other answers of its prompt, as the annotator judged (a tie
    is half a win): as a reward, the annotator's own best-of-n pick, the ceiling of
    `best_of_n_win_rate` (every two answers of a prompt are a pair)."""
    wins: dict[int, float] = defaultdict(float)
    for pair in pairs:
        wins[pair.a] += 1.0 if pair.choice == "a" else 0.5 if pair.choice == "tie" else 0.0
        wins[pair.b] += 1.0 if pair.choice == "b" else 0.5 if pair.choice == "tie" else 0.0
    return dict(wins)


def labels_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """Labels at which a curve of (labels, accuracy) first reaches `target`, interpolated
    linearly between the two measured points around the crossing; None if it never does."""
    points = sorted(curve)
    for n, (labels, accuracy) in enumerate(points):
        if accuracy >= target:
            if n == 0:
                return labels
            labels0, accuracy0 = points[n - 1]
            return labels0 + (target - accuracy0) / (accuracy - accuracy0) * (labels - labels0)
    return None


def isotonic(curve: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-decreasing curve closest to `curve` (least squares: pool adjacent violators).
    Expected accuracy grows with labels; a measured curve also dips and spikes with the noise
    of a small held-out set, and "first reaches X" on the raw curve would measure that noise."""
    blocks: list[list[float]] = []  # [sum, count] of merged neighbours
    for _, accuracy in sorted(curve):
        blocks.append([accuracy, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    fitted = [total / count for total, count in blocks for _ in range(int(count))]
    return [(labels, value) for (labels, _), value in zip(sorted(curve), fitted, strict=True)]


def mean_curve(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The mean accuracy at the label counts every curve has."""
    common = (
        set.intersection(*(set(labels for labels, _ in c) for c in curves)) if curves else set()
    )
    return [
        (labels, statistics.fmean(dict(c)[labels] for c in curves)) for labels in sorted(common)
    ]


def savings(
    fifo: Sequence[tuple[float, float]],
    uncertainty: Sequence[tuple[float, float]],
    target: float | None = None,
) -> dict[str, Any]:
    """The labels each strategy needs to first reach `target` (by default the accuracy fifo
    reaches with its whole budget), and the share uncertainty saves (negative: it needs more;
    None: it does not reach the target within its budget)."""
    if target is None:
        target = max(fifo)[1]  # the point with the most labels (non-decreasing curve: the top)
    need_fifo = labels_to_reach(fifo, target)
    need_uncertainty = labels_to_reach(uncertainty, target)
    assert need_fifo is not None, f"fifo never reaches {target}"
    return {
        "target": target,
        "labels_fifo": need_fifo,
        "labels_uncertainty": need_uncertainty,
        "saved": None if need_uncertainty is None else 1 - need_uncertainty / need_fifo,
    }


# ---- the reward models ----


def labelled_rows(
    answers: Sequence[Answer], pairs: Sequence[Pair], labelled: Sequence[int]
) -> list[tuple[int, int]]:
    """(chosen, rejected) answer indices of the labelled pairs; ties teach nothing."""
    rows = []
    for i in labelled:
        pair = pairs[i]
        if pair.choice != "tie":
            rows.append((pair.a, pair.b) if pair.choice == "a" else (pair.b, pair.a))
    return rows


class LoraRewardModel:
    """The product's reward stage as it is: `train_reward` (LoRA, its own score head, a fixed
    seed) on the labels so far, then `RewardScorer.load` scores answers, as the generation job
    does. `target_modules` chooses the layers with adapters (the product's default:
    all-linear)."""

    def __init__(
        self, *, base: str, max_length: int, target_modules: str, epochs: int, learning_rate: float
    ) -> None:
        self.base, self.max_length, self.target_modules = base, max_length, target_modules
        self.epochs, self.learning_rate = epochs, learning_rate
        self.work = Path(tempfile.mkdtemp(prefix="hone-bench-labels-"))

    def fit_and_score(
        self,
        *,
        answers: Sequence[Answer],
        rows: Sequence[tuple[int, int]],
        to_score: Sequence[int],
        seed: int,
    ) -> tuple[dict[int, float], dict[str, Any]]:
        from training.ml.reward import RewardScorer, RewardTrainConfig, train_reward

        config = RewardTrainConfig(
            base_model=self.base,
            lora_target_modules=self.target_modules,
            epochs=float(self.epochs),
            batch_size=BATCH_PAIRS,
            learning_rate=self.learning_rate,
            max_length=self.max_length,
            eval_fraction=0.0,  # the held-out pairs are the bench's own, fixed
            seed=seed,
            logging_steps=1000,
        )
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        data = self.work / "pairs.jsonl"
        data.write_text(
            "".join(
                json.dumps(
                    {
                        "prompt": answers[c].prompt,
                        "chosen": answers[c].text,
                        "rejected": answers[r].text,
                    },
                    ensure_ascii=False,
                )
                + "\n"
                for c, r in rows
            )
        )
        started, cpu = time.monotonic(), time.process_time()
        result = train_reward(config, data, self.work / "rm")
        trained, cpu_trained = time.monotonic(), time.process_time()
        scorer = RewardScorer.load(self.base, self.work / "rm")
        rewards = scorer.score(
            [answers[i].prompt for i in to_score],
            [answers[i].text for i in to_score],
            batch_size=16,
        )
        del scorer
        shutil.rmtree(self.work, ignore_errors=True)
        return dict(zip(to_score, rewards, strict=True)), {
            "train_loss": round(result["train_loss"], 4),
            "steps": result["steps"],
            "train_s": round(trained - started, 1),
            "train_cpu_s": round(cpu_trained - cpu, 1),
            "score_s": round(time.monotonic() - trained, 1),
            "score_cpu_s": round(time.process_time() - cpu_trained, 1),
            "scored_answers": len(to_score),
        }

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


class TopLayersRewardModel:
    """The product's reward model and recipe with its LoRA adapters on the top `layers` decoder
    layers only, trained fast. The product's reward stage puts adapters on every linear layer
    of the body and trains a new score head (`train_reward`): Bradley-Terry loss, AdamW at
    1e-4 decaying linearly to 0, gradients clipped at 1, dropout off, 2 epochs of batches of 8
    pairs, the seed fixing the head, the adapters and the order. Here the same, with adapters
    on the top layers only: the layers below never change, so their output (the input of the
    first adapted layer, at every position of the reward sequence `encode_for_reward` builds)
    is computed once per answer and kept, and each step runs only the top layers. A reward
    model then costs seconds instead of minutes, which is what lets several seeds and rounds
    fit on a CPU; the price is capacity (fewer layers adapt), so `LoraRewardModel`, the product
    as it is, checks the result where time allows. `__init__` checks that the top layers on
    the kept inputs give the full model's hidden state at the reward token."""

    def __init__(
        self,
        *,
        base: str,
        max_length: int,
        answers: Sequence[Answer],
        layers: int,
        epochs: int,
        learning_rate: float,
    ) -> None:
        import torch

        from training.ml.loading import load_sequence_classifier
        from training.ml.reward import encode_for_reward

        started, cpu = time.monotonic(), time.process_time()
        model, tokenizer = load_sequence_classifier(base, device="cpu", dtype="float32")
        model.eval()
        body = model.base_model  # the decoder without the score head
        depth = len(body.layers)
        if not 0 < layers <= depth:
            raise SystemExit(f"--top-layers must be in 1..{depth}, got {layers}")
        sequences = [
            encode_for_reward(tokenizer, a.prompt, a.text, max_length).input_ids for a in answers
        ]
        self.inputs: list[Any] = [None] * len(answers)  # (T, H) each: input of the top layers
        final: list[Any] = [None] * len(answers)  # (H,) each: the full model at the reward token
        order = sorted(range(len(answers)), key=lambda i: len(sequences[i]))
        with torch.no_grad():
            for start in range(0, len(order), 16):
                batch = order[start : start + 16]
                ids, mask = pad([torch.tensor(sequences[i]) for i in batch], tokenizer.pad_token_id)
                out = body(
                    input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False
                )
                for row, i in enumerate(batch):
                    n = len(sequences[i])
                    self.inputs[i] = out.hidden_states[depth - layers][row, :n].clone()
                    final[i] = out.last_hidden_state[row, n - 1].clone()
                print(f"  lower layers {min(start + 16, len(order))}/{len(order)}", flush=True)
        # the top layers alone; the token embedding is never used again (inputs_embeds)
        body.layers = body.layers[depth - layers :]
        body.config.num_hidden_layers = layers
        body.embed_tokens = torch.nn.Embedding(1, body.config.hidden_size)
        self.model, self.epochs, self.learning_rate = model, epochs, learning_rate
        self.feature_s = round(time.monotonic() - started, 1)
        self.feature_cpu_s = round(time.process_time() - cpu, 1)
        check = order[:: max(1, len(order) // 16)]
        with torch.no_grad():
            hidden = self._hidden(model, check)
        error = max(float((h - final[i]).abs().max()) for h, i in zip(hidden, check, strict=True))
        if error > 1e-3:
            raise RuntimeError(f"top layers on the kept inputs differ from the full model: {error}")
        print(
            f"lower layers of {len(answers)} answers: {self.feature_s} s "
            f"({self.feature_cpu_s} CPU s); top {layers} layers match the full model "
            f"(max |difference| {error:.1e})",
            flush=True,
        )

    def _hidden(self, model: Any, indices: Sequence[int]) -> Any:
        """(B, H) last hidden state at each answer's reward token, from the kept inputs."""
        import torch

        x, mask = pad([self.inputs[i] for i in indices], 0.0)
        hidden = model.base_model(inputs_embeds=x, attention_mask=mask, use_cache=False)
        lengths = mask.sum(1)
        return hidden.last_hidden_state[torch.arange(len(indices)), lengths - 1]

    def fit_and_score(
        self,
        *,
        answers: Sequence[Answer],
        rows: Sequence[tuple[int, int]],
        to_score: Sequence[int],
        seed: int,
    ) -> tuple[dict[int, float], dict[str, Any]]:
        import copy

        import torch
        from transformers import set_seed

        from training.ml.loading import LoraSettings, attach_lora

        started, cpu = time.monotonic(), time.process_time()
        set_seed(seed)
        model = copy.deepcopy(self.model)
        # a new head, drawn as from_pretrained draws the product's (normal, initializer_range)
        torch.nn.init.normal_(model.score.weight, std=model.config.initializer_range)
        set_seed(seed)
        model = attach_lora(model, LoraSettings(), task_type="SEQ_CLS")
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        classifier = model.get_base_model()  # the adapters are inside it
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.learning_rate, weight_decay=0.0)
        batches = []
        rng = random.Random(seed)
        for _ in range(self.epochs):
            shuffled = list(rows)
            rng.shuffle(shuffled)
            batches += [shuffled[n : n + BATCH_PAIRS] for n in range(0, len(shuffled), BATCH_PAIRS)]
        model.train()
        losses = []
        for step, batch in enumerate(batches):
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate * (1 - step / len(batches))  # linear decay to 0
            rewards = classifier.score(
                self._hidden(classifier, [c for c, _ in batch] + [r for _, r in batch])
            ).squeeze(-1)  # (2B,): chosen then rejected
            chosen, rejected = rewards[: len(batch)], rewards[len(batch) :]
            loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()  # Bradley-Terry
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        trained, cpu_trained = time.monotonic(), time.process_time()
        model.eval()
        scores: list[float] = []
        with torch.no_grad():
            for n in range(0, len(to_score), 32):
                chunk = list(to_score[n : n + 32])
                scores += classifier.score(self._hidden(classifier, chunk)).squeeze(-1).tolist()
        return dict(zip(to_score, scores, strict=True)), {
            "train_loss": round(statistics.fmean(losses), 4) if losses else None,
            "steps": len(batches),
            "train_s": round(trained - started, 1),
            "train_cpu_s": round(cpu_trained - cpu, 1),
            "score_s": round(time.monotonic() - trained, 1),
            "score_cpu_s": round(time.process_time() - cpu_trained, 1),
            "scored_answers": len(to_score),
        }

    def close(self) -> None:
        pass


def pad(rows: Sequence[Any], value: float | int) -> tuple[Any, Any]:
    """Right-padded batch of 1-d (token ids) or 2-d (T, H) tensors, and its attention mask."""
    import torch

    width = max(len(r) for r in rows)
    batch = torch.full((len(rows), width, *rows[0].shape[1:]), value, dtype=rows[0].dtype)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, r in enumerate(rows):
        batch[n, : len(r)] = r
        mask[n, : len(r)] = 1
    return batch, mask


# ---- the runs ----


def run(args: argparse.Namespace, answers: list[Answer]) -> Path:
    import torch

    torch.set_num_threads(args.threads)
    pairs = all_pairs(answers, args.taste)
    candidates, heldout = heldout_split(pairs)
    heldout_pairs = [pairs[i] for i in heldout]
    heldout_answers = sorted({x for p in heldout_pairs for x in (p.a, p.b)})
    candidate_answers = sorted({x for i in candidates for x in (pairs[i].a, pairs[i].b)})
    if args.budget > len(candidates):
        raise SystemExit(
            f"--budget {args.budget} is more than the {len(candidates)} candidate pairs"
        )
    setup = {
        "kind": "setup",
        "model": args.model,
        "lora_target_modules": args.lora_target_modules if args.model == "lora" else None,
        "top_layers": args.top_layers if args.model == "top" else None,
        "pool": str(args.pool),
        "answers": len(answers),
        "prompts": len({prompt_key(a.prompt) for a in answers}),
        "pairs": len(pairs),
        "ties": sum(p.choice == "tie" for p in pairs),
        "candidate_pairs": len(candidates),
        "candidate_prompts": len({pairs[i].prompt for i in candidates}),
        "heldout_pairs": sum(p.choice != "tie" for p in heldout_pairs),
        "heldout_prompts": len({p.prompt for p in heldout_pairs}),
        "heldout_best_of_n_ceiling": round(
            best_of_n_win_rate(heldout_pairs, annotator_wins(heldout_pairs)), 4
        ),
        "taste": args.taste,
        "seeds": args.seeds,
        "seed_labels": args.seed_labels,
        "batch": args.batch,
        "budget": args.budget,
        "max_length": args.max_length,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "threads": args.threads,
        "load_1m": round(os.getloadavg()[0], 2),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = OUT / (args.out or f"label_efficiency-{args.model}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    rounds = 1 + 2 * math.ceil((args.budget - args.seed_labels) / args.batch)
    print(f"{rounds} reward models per seed, {rounds * len(args.seeds)} in all", flush=True)
    started, cpu = time.monotonic(), time.process_time()
    if args.model == "top":
        model: Any = TopLayersRewardModel(
            base=args.base,
            max_length=args.max_length,
            answers=answers,
            layers=args.top_layers,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
        )
        setup.update(lower_layers_s=model.feature_s, lower_layers_cpu_s=model.feature_cpu_s)
    else:
        model = LoraRewardModel(
            base=args.base,
            max_length=args.max_length,
            target_modules=args.lora_target_modules,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
        )
    sink = out.open("w", encoding="utf-8")

    def write(record: dict[str, Any]) -> None:
        sink.write(json.dumps(record) + "\n")
        sink.flush()

    write(setup)
    print(json.dumps(setup), flush=True)
    try:
        for seed in args.seeds:
            order = fifo_order(candidates, seed)
            # prompts ranked as fifo meets them: pairs of equal uncertainty follow that order
            rank = {key: n for n, key in enumerate(prompts_in_order(order, pairs))}
            first = order[: args.seed_labels]
            first_rewards, first_info = model.fit_and_score(
                answers=answers,
                rows=labelled_rows(answers, pairs, first),
                to_score=sorted(set(heldout_answers) | set(candidate_answers)),
                seed=seed,
            )
            for strategy in STRATEGIES:
                labelled, rewards, info, picked = list(first), first_rewards, first_info, first
                picked_uncertainty: float | None = None
                while True:
                    right, judged, margin = heldout_accuracy(heldout_pairs, rewards)
                    best_of_n = best_of_n_win_rate(heldout_pairs, rewards)
                    gaps = [
                        abs(len(answers[pairs[i].a].text) - len(answers[pairs[i].b].text))
                        for i in picked
                    ]
                    write(
                        {
                            "kind": "round",
                            "seed": seed,
                            "strategy": strategy,
                            "labels": len(labelled),
                            "ties_labelled": sum(pairs[i].choice == "tie" for i in labelled),
                            "heldout_right": right,
                            "heldout_pairs": judged,
                            "heldout_accuracy": round(right / judged, 4),
                            "heldout_margin": round(margin, 4),
                            "heldout_best_of_n": round(best_of_n, 4),
                            "shared": len(labelled) == args.seed_labels,
                            "picked_char_gap": round(statistics.fmean(gaps), 1),
                            "picked_uncertainty": picked_uncertainty,
                            **info,
                            "load_1m": round(os.getloadavg()[0], 2),
                        }
                    )
                    print(
                        f"seed {seed} {strategy:<11} {len(labelled):>4} labels: held-out "
                        f"accuracy {right}/{judged} = {right / judged:.3f}, best-of-n win "
                        f"rate {best_of_n:.3f} (train "
                        f"{info['train_s']} s, score {info['score_s']} s, load "
                        f"{os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
                    if len(labelled) >= args.budget:
                        break
                    k = min(args.batch, args.budget - len(labelled))
                    uncertainty = {
                        i: pair_uncertainty(
                            [preference_probability(rewards[pairs[i].a], rewards[pairs[i].b])]
                        )
                        for i in candidates
                        if pairs[i].a in rewards and pairs[i].b in rewards
                    }
                    if strategy == "fifo":
                        picked = pick_fifo(order, set(labelled), k)
                    else:
                        groups: list[list[tuple[int, float]]] = [[] for _ in rank]
                        for i in candidates:
                            groups[rank[pairs[i].prompt]].append((i, uncertainty[i]))
                        picked = pick_uncertain(groups, set(labelled), k)
                    known = [uncertainty[i] for i in picked if i in uncertainty]
                    picked_uncertainty = round(statistics.fmean(known), 4) if known else None
                    labelled += picked
                    # the last round needs the held-out answers only; fifo never needs more
                    last = len(labelled) >= args.budget
                    to_score = heldout_answers if strategy == "fifo" or last else candidate_answers
                    rewards, info = model.fit_and_score(
                        answers=answers,
                        rows=labelled_rows(answers, pairs, labelled),
                        to_score=sorted(set(heldout_answers) | set(to_score)),
                        seed=seed,
                    )
        write(
            {
                "kind": "done",
                "seconds": round(time.monotonic() - started, 1),
                "cpu_seconds": round(time.process_time() - cpu, 1),
                "load_1m": round(os.getloadavg()[0], 2),
            }
        )
    finally:
        sink.close()
        model.close()
    return out


def prompts_in_order(order: Sequence[int], pairs: Sequence[Pair]) -> list[str]:
    """The prompts in the order their first pair comes in `order`."""
    return list(dict.fromkeys(pairs[i].prompt for i in order))


# ---- the report ----


Curves = dict[tuple[str, int], list[tuple[float, float]]]


METRICS = {
    "heldout_accuracy": "held-out accuracy",
    "heldout_best_of_n": "best-of-n win rate against the base",
}


def read_run(
    path: Path, metric: str = "heldout_accuracy"
) -> tuple[dict[str, Any], list[dict[str, Any]], Curves, list[int]]:
    """A run's setup line, all its JSON lines, its curves of (labels, `metric`) per
    (strategy, seed), and the seeds that reached the budget with both strategies."""
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    setup = next(r for r in lines if r["kind"] == "setup")
    return (setup, lines, *curves_of(lines, setup["budget"], metric))


def curves_of(
    lines: Sequence[dict[str, Any]], budget: int, metric: str
) -> tuple[Curves, list[int]]:
    """The curves of (labels, `metric`) per (strategy, seed) in a run's lines, and the seeds
    that reached the budget with both strategies."""
    curves: Curves = defaultdict(list)
    for r in lines:
        if r["kind"] == "round" and metric in r:
            curves[(r["strategy"], r["seed"])].append((r["labels"], r[metric]))
    complete = [
        s
        for s in sorted({seed for _, seed in curves})
        if all(curves.get((st, s)) and max(curves[(st, s)])[0] >= budget for st in STRATEGIES)
    ]
    return curves, complete


def report(path: Path) -> str:
    """Markdown tables from a run's JSON lines (whole or cut short): held-out accuracy, then the
    best-of-n win rate where the run recorded it."""
    setup, lines, curves, complete = read_run(path)
    budget = setup["budget"]
    out = [
        f"Pool: {setup['answers']} answers to {setup['prompts']} prompts, {setup['pairs']} pairs "
        f"({setup['ties']} ties); candidates {setup['candidate_pairs']} pairs on "
        f"{setup['candidate_prompts']} prompts; held out {setup['heldout_pairs']} judged pairs "
        f"on {setup['heldout_prompts']} prompts. Taste {setup['taste']}; first labels "
        f"{setup['seed_labels']}, {setup['batch']} per round, budget {budget}; reward model "
        f"{setup['model']}, {setup.get('epochs', EPOCHS)} epochs, learning rate "
        f"{setup.get('learning_rate', LEARNING_RATE):g}.",
        "",
        *metric_tables(curves, complete, METRICS["heldout_accuracy"]),
    ]
    best_of_n, complete_best = curves_of(lines, budget, "heldout_best_of_n")
    if best_of_n:
        ceiling = setup.get("heldout_best_of_n_ceiling")
        out += [
            "",
            "Best-of-n: per held-out prompt, the answer the reward model scores highest against "
            "each other answer of the prompt (the base's draws), as the annotator judged; a "
            "random pick wins 0.5"
            + (f", the annotator's own pick {ceiling:.3f}" if ceiling is not None else "")
            + ".",
            "",
            *metric_tables(best_of_n, complete_best, METRICS["heldout_best_of_n"]),
        ]
    done = next((r for r in lines if r["kind"] == "done"), None)
    if done:
        out += [
            "",
            f"Run: {done['seconds']:.0f} s, {done['cpu_seconds']:.0f} CPU s, load "
            f"{setup['load_1m']} at the start, {done['load_1m']} at the end.",
        ]
    return "\n".join(out)


def metric_tables(curves: Curves, complete: Sequence[int], name: str) -> list[str]:
    """The tables of one measure: its value against labels per strategy and seed (and the mean
    of the complete seeds), the labels each strategy needs to reach fifo's last value per seed
    and on the mean curves, and on the mean curves at every level of 0.05 in between."""
    seeds = sorted({seed for _, seed in curves})
    out = [f"{name[0].upper()}{name[1:]} against labels:", ""]
    levels = sorted({labels for c in curves.values() for labels, _ in c})
    out += [
        "| strategy | seed | " + " | ".join(str(n) for n in levels) + " |",
        "|---|---|" + "---:|" * len(levels),
    ]
    for strategy in STRATEGIES:
        for s in seeds:
            points = dict(curves.get((strategy, s), []))
            cells = [f"{points[n]:.3f}" if n in points else "-" for n in levels]
            out.append(f"| {strategy} | {s} | " + " | ".join(cells) + " |")
    means = {st: mean_curve([curves[(st, s)] for s in complete]) for st in STRATEGIES}
    # the mean over the seeds that reached the budget with both strategies
    for strategy in STRATEGIES if len(complete) > 1 else ():
        spread = {
            n: statistics.stdev(dict(curves[(strategy, s)])[n] for s in complete)
            for n, _ in means[strategy]
        }
        cells = [
            f"{dict(means[strategy])[n]:.3f} ± {spread[n]:.3f}"
            if n in dict(means[strategy])
            else "-"
            for n in levels
        ]
        out.append(f"| **{strategy}** | mean ± s.d. | " + " | ".join(cells) + " |")
    if not complete:
        return [*out, "", "No seed has both strategies up to the budget yet."]
    out += [
        "",
        f"Labels needed to reach the {name} fifo reaches with the whole budget, on each curve "
        "made non-decreasing (isotonic fit), first crossing interpolated between rounds:",
        "",
        "| seed | target | fifo labels | uncertainty labels | saved |",
        "|---|---:|---:|---:|---:|",
    ]
    saved: list[float | None] = []
    for s in complete:
        row = savings(isotonic(curves[("fifo", s)]), isotonic(curves[("uncertainty", s)]))
        saved.append(row["saved"])
        out.append(format_savings(f"{s}", row))
    mean_row = savings(isotonic(means["fifo"]), isotonic(means["uncertainty"]))
    out.append(format_savings("mean curves", mean_row))
    fifo_mean, uncertainty_mean = isotonic(means["fifo"]), isotonic(means["uncertainty"])
    out += [
        "",
        f"The same on the mean curves at every level of 0.05 between fifo's first and last {name}:",
        "",
        "| target | fifo labels | uncertainty labels | saved |",
        "|---:|---:|---:|---:|",
    ]
    for level in levels_between(min(fifo_mean)[1], max(fifo_mean)[1]):
        out.append(format_savings(None, savings(fifo_mean, uncertainty_mean, level)))
    known = [x for x in saved if x is not None]
    # a seed where uncertainty never reaches the target saved least (-inf in the median)
    median = statistics.median(-math.inf if x is None else x for x in saved)
    summary = (
        f"Saved per seed ({len(saved)} seeds): median "
        f"{'not reached' if median == -math.inf else f'{100 * median:.0f}%'}"
    )
    if len(known) > 1:
        summary += (
            f"; over the {len(known)} seeds where uncertainty reaches the target: mean "
            f"{100 * statistics.fmean(known):.0f}%, s.d. {100 * statistics.stdev(known):.0f}%, "
            f"min {100 * min(known):.0f}%, max {100 * max(known):.0f}%"
        )
    return [*out, "", summary + "."]


COLOURS = {"fifo": "#7a7a7a", "uncertainty": "#1f6fb4"}


def svg_curves(path: Path, width: int = 640, height: int = 360) -> str:
    """The curves of a run as an SVG chart: held-out accuracy against labels, each seed a thin
    line, the mean over the complete seeds a thick one, per strategy."""
    setup, _, curves, complete = read_run(path)
    left, right, top, bottom = 56, 16, 28, 44
    points = [p for c in curves.values() for p in c]
    if not points:
        raise SystemExit(f"{path}: no rounds to draw")
    x_max = max(setup["budget"], max(n for n, _ in points))
    y_low = math.floor(min(a for _, a in points) * 20) / 20  # a multiple of 0.05 below all
    y_high = math.ceil(max(a for _, a in points) * 20) / 20

    def x(labels: float) -> float:
        return left + labels / x_max * (width - left - right)

    def y(accuracy: float) -> float:
        return top + (y_high - accuracy) / (y_high - y_low) * (height - top - bottom)

    def polyline(curve: Sequence[tuple[float, float]], colour: str, stroke: float) -> str:
        coords = " ".join(f"{x(n):.1f},{y(a):.1f}" for n, a in sorted(curve))
        opacity = 1 if stroke > 1 else 0.45  # the seeds' thin lines behind the means
        return (
            f'<polyline fill="none" stroke="{colour}" stroke-width="{stroke}" '
            f'opacity="{opacity}" points="{coords}"/>'
        )

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-size="12">Held-out reward-model accuracy against labels '
        f"({setup['answers']} answers, taste {setup['taste']}, learning rate "
        f"{setup.get('learning_rate', LEARNING_RATE):g})"
        "</text>",
    ]
    for n in range(round(y_low * 20), round(y_high * 20) + 1):
        level = n / 20
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
            'stroke="#e4e4e4"/>'
            f'<text x="{left - 6}" y="{y(level) + 4:.1f}" text-anchor="end">{level:.2f}</text>'
        )
    step = 32 if x_max <= 320 else 64
    for labels in range(0, x_max + 1, step):
        out.append(
            f'<text x="{x(labels):.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{labels}</text>'
        )
    out.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">'
        "labels</text>"
    )
    for strategy in STRATEGIES:
        colour = COLOURS[strategy]
        for (name, _), curve in sorted(curves.items()):
            if name == strategy:
                out.append(polyline(curve, colour, 0.8))
        if complete:
            mean = mean_curve([curves[(strategy, s)] for s in complete])
            out.append(polyline(mean, colour, 2.5))
    seeds = f"{len(complete)} seed{'s' if len(complete) != 1 else ''}"
    for n, strategy in enumerate(STRATEGIES):  # bottom right: the curves rise away from it
        row = height - bottom - 12 - 16 * (len(STRATEGIES) - 1 - n)
        out.append(
            f'<line x1="{width - right - 200}" x2="{width - right - 176}" y1="{row}" y2="{row}" '
            f'stroke="{COLOURS[strategy]}" stroke-width="2.5"/>'
            f'<text x="{width - right - 170}" y="{row + 4}">{strategy} (mean of {seeds})</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def levels_between(low: float, high: float, step: float = 0.05) -> list[float]:
    """The multiples of `step` above `low` and at most `high`: accuracy levels at which to
    compare the strategies, every one of them, so that no level is chosen after the fact."""
    first = math.floor(round(low / step, 9)) + 1
    last = math.floor(round(high / step, 9))
    return [round(n * step, 4) for n in range(first, last + 1)]


def format_savings(name: str | None, row: dict[str, Any]) -> str:
    """A table row; without a name, the row starts at the target."""
    need = row["labels_uncertainty"]
    saved = row["saved"]
    return (
        ("" if name is None else f"| {name} ")
        + f"| {row['target']:.3f} | {row['labels_fifo']:.0f} | "
        f"{'not reached' if need is None else f'{need:.0f}'} | "
        f"{'-' if saved is None else f'{100 * saved:.0f}%'} |"
    )


# ---- command line ----


def load_or_build_pool(args: argparse.Namespace) -> list[Answer]:
    if args.pool.is_file() and not args.from_work:
        return read_pool(args.pool)
    if args.generate or args.prompts == "brief":
        draws = ((args.samples, GENERATE_DRAWS[0][1]), *GENERATE_DRAWS[1:])
        answers = pool_generate(args.base, seed=0, prompt_set=args.prompts, draws=draws)
    else:
        if args.from_work:
            database = Path(args.from_work) / "bench.sqlite3"
            if not database.is_file():
                raise SystemExit(f"{database}: no loop database in that folder")
        else:
            found = sorted(glob.glob(WORK_GLOB), key=base_answers_in)
            if not found or base_answers_in(found[-1]) < MIN_POOL_ANSWERS:
                raise SystemExit(
                    f"no pool: {args.pool} does not exist, no {WORK_GLOB} holds "
                    f"{MIN_POOL_ANSWERS} base answers yet; run bench/loop.py, pass "
                    "--from-work DIR, or --generate"
                )
            database = Path(found[-1])
        answers = pool_from_work(database)
        if len(answers) < MIN_POOL_ANSWERS:
            raise SystemExit(
                f"{database}: {len(answers)} base answers, fewer than {MIN_POOL_ANSWERS}"
            )
    answers = distinct(answers)
    write_pool(args.pool, answers)
    print(f"pool: {len(answers)} answers written to {args.pool}", flush=True)
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=str(ROOT / "var/models/smollm2-135m-instruct"))
    parser.add_argument(
        "--pool",
        type=Path,
        help=f"the pool's JSONL (cache; default {POOL.relative_to(ROOT)}, with --prompts brief "
        "var/bench-pool/smollm2-brief-N.jsonl, N answers per prompt)",
    )
    parser.add_argument(
        "--from-work", metavar="DIR", help="(re)build the pool from this loop folder"
    )
    parser.add_argument("--generate", action="store_true", help="build the pool by sampling")
    parser.add_argument(
        "--prompts",
        choices=["demo", "brief"],
        default="demo",
        help="the prompts of a generated pool: bench/loop.py's demo set, or its brief set (112 "
        "prompts asking for a sentence, answers below the length limit; always generated)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=GENERATE_DRAWS[0][0],
        help="answers per prompt at the project temperature in a generated pool (one more at "
        "half of it): 2 as the product's uncertainty pool draws, more for more pairs",
    )
    parser.add_argument("--taste", default="concise", choices=sorted(PREFERENCES))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated")
    parser.add_argument("--seed-labels", type=int, default=16, help="labels of the first round")
    parser.add_argument("--batch", type=int, default=16, help="labels added per round")
    parser.add_argument("--budget", type=int, default=80, help="labels of the last round")
    parser.add_argument(
        "--model",
        choices=["lora", "top"],
        default="lora",
        help="lora: the product's train_reward as it is; top: the same recipe with adapters on "
        "the top layers only, the lower layers computed once (seconds per model)",
    )
    parser.add_argument("--top-layers", type=int, default=2, help="with --model top")
    parser.add_argument(
        "--lora-target-modules",
        default="all-linear",
        help="with --model lora: the layers with adapters (RewardTrainConfig.lora_target_modules)",
    )
    parser.add_argument("--max-length", type=int, default=112, help="reward model max_length")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=LEARNING_RATE,
        help="of each reward model (the product's recipe: 1e-4); higher, to see the strategies "
        "with a model that learns the taste within the budget",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=EPOCHS,
        help="epochs of each reward model (the product's recipe: 2); more, to see the strategies "
        "when a model is not short of steps",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--out", help="file under bench/out (default: label_efficiency-<model>.jsonl)"
    )
    parser.add_argument("--report", type=Path, metavar="JSONL", help="only print the tables")
    parser.add_argument(
        "--svg", type=Path, metavar="FILE", help="with --report: also draw the curves in FILE"
    )
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        if args.svg:
            args.svg.write_text(svg_curves(args.report), encoding="utf-8")
            print(f"curves: {args.svg}")
        return
    if args.svg:
        raise SystemExit("--svg goes with --report")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if args.pool is None:
        args.pool = brief_pool(args.samples) if args.prompts == "brief" else POOL
    if not args.learning_rate > 0:
        raise SystemExit(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.epochs < 1:
        raise SystemExit(f"--epochs must be at least 1, got {args.epochs}")
    if args.samples < 1:
        raise SystemExit(f"--samples must be at least 1, got {args.samples}")
    if not 0 < args.seed_labels <= args.budget or args.batch < 1:
        raise SystemExit("need 0 < --seed-labels <= --budget and --batch >= 1")
    answers = load_or_build_pool(args)
    path = run(args, answers)
    print(report(path))


if __name__ == "__main__":
    main()
