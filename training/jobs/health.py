"""Reward-model health on a GPU worker: a reward model scores the human labels that arrived
after it was trained (training/health.py says which; docs/judgement.md says why), and PPO
refuses a reward model that people have stopped agreeing with."""

from __future__ import annotations

import gc
import logging

from django.core.exceptions import ValidationError

from feedback.models import Choice, Project
from training import services
from training.health import fresh_labels_to_score, reward_model_health, reward_models_to_score
from training.jobs.runner import connection_release, reward_model_of
from training.models import RewardModelVersion

logger = logging.getLogger(__name__)

# Labels per call of the scorer (two answers each) and per write: a redelivered task loses at
# most one batch of work.
SCORE_BATCH = 32


def reward_health_score(*, project: Project) -> dict[int, int]:
    """Score the fresh labels not yet scored by each reward model worth watching (the latest
    policy and judge reward models, those of a running iteration); each model is loaded once,
    and not at all when it has nothing new. Returns {reward model number: labels scored}. A
    model that fails is logged and the others go on."""
    scored: dict[int, int] = {}
    for reward_model in reward_models_to_score(project=project):
        try:
            scored[reward_model.number] = fresh_labels_score(reward_model=reward_model)
        except Exception:
            logger.exception(
                "Scoring fresh labels with RM%s of %s failed", reward_model.number, project
            )
    return scored


def fresh_labels_score(*, reward_model: RewardModelVersion) -> int:
    """Score the reward model's decisive fresh labels that it has not scored yet: its reward
    for the answer the label prefers minus its reward for the other. Returns how many."""
    labels = fresh_labels_to_score(reward_model=reward_model)
    if not labels:
        return 0
    from training.ml.reward import RewardScorer

    scorer = RewardScorer.load(reward_model.project.base_model, reward_model_of(reward_model))
    scored = 0
    try:
        for start in range(0, len(labels), SCORE_BATCH):
            batch = labels[start : start + SCORE_BATCH]
            prompts = [label.comparison.prompt.messages for label in batch]
            answers_a = [label.comparison.completion_a.text for label in batch]
            answers_b = [label.comparison.completion_b.text for label in batch]
            rewards = scorer.score(prompts + prompts, answers_a + answers_b)
            margins = {}
            for i, label in enumerate(batch):
                a_over_b = rewards[i] - rewards[len(batch) + i]
                margins[label.pk] = a_over_b if label.choice == Choice.A else -a_over_b
            scored += services.fresh_label_scores_record(reward_model=reward_model, margins=margins)
            connection_release()
    finally:
        del scorer
        gc.collect()  # the next reward model loads into the memory this one held
    logger.info("RM%s scored %s fresh labels", reward_model.number, scored)
    return scored


def fresh_agreement_check(*, reward_model: RewardModelVersion) -> None:
    """PPO's precondition when the project sets `ppo_min_fresh_agreement`: score what is
    pending, then refuse (ValidationError naming the figures) a reward model whose agreement
    with fresh labels, on at least `ppo_fresh_min_labels` of them, is below the threshold."""
    project = reward_model.project
    threshold = project.ppo_min_fresh_agreement
    if threshold is None:
        return
    fresh_labels_score(reward_model=reward_model)
    [health] = reward_model_health(project=project, reward_models=[reward_model])
    if health.labels < project.ppo_fresh_min_labels or health.agreement >= threshold:
        return
    heldout = f"{health.heldout_accuracy:.3f}" if health.heldout_accuracy is not None else "unknown"
    raise ValidationError(
        f"PPO refused: RM{reward_model.number} agrees with {health.agreed} of the "
        f"{health.labels} labels that arrived after it was trained ({health.agreement:.3f}, "
        f"95% interval {health.low:.3f}-{health.high:.3f}; held-out accuracy {heldout}), "
        f"below ppo_min_fresh_agreement {threshold}. PPO would climb a reward model that "
        "people no longer agree with: start a new iteration to train one on the new labels, "
        "or lower the setting."
    )
