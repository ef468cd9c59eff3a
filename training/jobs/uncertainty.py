"""Comparisons where labels teach most: the project's latest reward models (the committee)
score candidate pairs, and their uncertainty becomes the comparisons' priority
(docs/uncertainty.md; the rule itself is training/ml/uncertainty.py).

Priorities stay in [0, UNCERTAINTY_PRIORITY_MAX], below the human gate's comparisons
(HUMAN_GATE_PRIORITY): the loop waits on those. Gold items and consistency repeats are drawn
at their own rates before the queue is read (feedback/labeling.py), so no priority delays them.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from typing import Any

from feedback.models import Project
from training.jobs.runner import HUMAN_GATE_PRIORITY, Heartbeat, reward_model_of
from training.models import RewardModelVersion
from training.selectors import comparisons_to_rescore

# The most uncertain pair's priority, and the priority of comparisons of two versions in a
# project that chooses by uncertainty: they keep their place ahead of the pairs made with them,
# as they have under fifo by being older.
UNCERTAINTY_PRIORITY_MAX = 0.5
assert UNCERTAINTY_PRIORITY_MAX < HUMAN_GATE_PRIORITY

# Candidate prompts sampled per comparison kept.
POOL_FACTOR = 2

# Answers a reward model scores between two checks for a cancel.
SCORE_CHUNK = 64

# One candidate pair: the prompt's chat messages, answer A, answer B.
Pair = tuple[list[dict[str, str]], str, str]


def committee_priorities(
    *,
    project: Project,
    committee: Sequence[RewardModelVersion],
    pairs: Sequence[Pair],
    heartbeat: Heartbeat,
) -> list[float]:
    """Each pair's priority: UNCERTAINTY_PRIORITY_MAX times the committee's uncertainty about
    it. Every distinct answer is scored once by each reward model, loaded one at a time."""
    from training.ml.reward import RewardScorer
    from training.ml.uncertainty import pair_uncertainty, preference_probability

    answers = sorted({(json.dumps(p), text) for p, a, b in pairs for text in (a, b)})
    index = {answer: i for i, answer in enumerate(answers)}
    probabilities: list[list[float]] = [[] for _ in pairs]
    for model in committee:
        heartbeat.check()
        scorer = RewardScorer.load(project.base_model, reward_model_of(model))
        rewards: list[float] = []
        for start in range(0, len(answers), SCORE_CHUNK):
            heartbeat.check()
            chunk = answers[start : start + SCORE_CHUNK]
            rewards += scorer.score([json.loads(p) for p, _ in chunk], [t for _, t in chunk])
        del scorer
        gc.collect()  # one reward model in memory at a time
        for n, (prompt, a, b) in enumerate(pairs):
            key = json.dumps(prompt)
            probabilities[n].append(
                preference_probability(rewards[index[(key, a)]], rewards[index[(key, b)]])
            )
    return [UNCERTAINTY_PRIORITY_MAX * pair_uncertainty(p) for p in probabilities]


def candidate_pairs(answers: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """Every pair of two different answers (indices), in order."""
    return [
        (i, j)
        for i in range(len(answers))
        for j in range(i + 1, len(answers))
        if answers[i]["text"] != answers[j]["text"]
    ]


def open_pairs(*, project: Project) -> tuple[list[int], list[Pair]]:
    """The open comparisons whose priority follows the committee (ids), and their pairs."""
    rows = list(comparisons_to_rescore(project=project))
    return (
        [c.pk for c in rows],
        [(c.prompt.messages, c.completion_a.text, c.completion_b.text) for c in rows],
    )


def committee_names(committee: Sequence[RewardModelVersion]) -> list[str]:
    return [f"RM{model.number} ({model.role})" for model in committee]
