"""Reward-model health: the scores a reward model gives the labels that arrived after it was
trained (training/health.py reads them; training/jobs/health.py computes them)."""

from __future__ import annotations

import math

from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.models import PreferenceLabel
from training.health import DECISIVE
from training.models import FreshLabelScore, RewardModelVersion


def fresh_label_scores_record(
    *, reward_model: RewardModelVersion, margins: dict[int, float]
) -> int:
    """Record the reward model's margin on each label: {label id: reward of the answer the
    label prefers minus the other's}. It agrees when the margin is positive.

    Every label must be a decisive, regular label of the reward model's project, created
    after its snapshot and not in it; otherwise nothing is written. A label withdrawn or
    rejected meanwhile is recorded all the same (the reads leave it out). A label already
    scored by this model keeps its first score, so a redelivered task writes nothing twice.
    Returns how many rows were new.
    """
    bad = sorted(pk for pk, margin in margins.items() if not math.isfinite(margin))
    if bad:
        raise ValidationError(f"Margins must be finite numbers; labels {bad} have none.")
    snapshot = reward_model.snapshot
    fresh = set(
        PreferenceLabel.objects.filter(
            pk__in=list(margins),
            comparison__project_id=reward_model.project_id,
            created_at__gt=snapshot.created_at,
            is_repeat=False,
            choice__in=DECISIVE,
        )
        .exclude(comparison__kind="arena")
        .values_list("pk", flat=True)
    ) - set(snapshot.label_ids)
    refused = sorted(set(margins) - fresh)
    if refused:
        raise ValidationError(
            f"Labels {refused} are not fresh evidence for RM{reward_model.number}: each must "
            f"be a decisive (A or B), regular label of its project, newer than its snapshot "
            f"{snapshot.pk} and not in it."
        )
    with transaction.atomic():
        before = FreshLabelScore.objects.filter(reward_model=reward_model).count()
        FreshLabelScore.objects.bulk_create(
            [
                FreshLabelScore(
                    reward_model=reward_model, label_id=pk, margin=margin, agrees=margin > 0
                )
                for pk, margin in margins.items()
            ],
            ignore_conflicts=True,
        )
        return FreshLabelScore.objects.filter(reward_model=reward_model).count() - before
