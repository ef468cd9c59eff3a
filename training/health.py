"""Reward-model health on fresh labels: reads, and the figures made of them.

A label that arrives after a reward model was trained, and is not in its dataset snapshot,
is a free test of it: does the model prefer the answer the person preferred? The worker
scores such labels (training/jobs/health.py) and records one `FreshLabelScore` each
(training/services/health.py); this module turns the rows into agreement with its Wilson
interval, calibration by margin, agreement by day, and the alarm (docs/judgement.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

from django.db.models import Case, Count, F, FloatField, Q, QuerySet, Value, When
from django.db.models.functions import Abs, TruncDate
from django.utils import timezone

from feedback.models import Choice, PreferenceLabel, Project
from training.models import (
    ITERATION_RUNNING_STATUSES,
    FreshLabelScore,
    LoopIteration,
    RewardModelVersion,
)

# Labels that prefer one answer; ties and both-bad say nothing a reward margin can agree with.
DECISIVE = (Choice.A, Choice.B)
# |margin| buckets of the calibration table: lower bounds; the last one is open.
MARGIN_BUCKETS = (0.0, 0.5, 1.0, 2.0)
Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval
# Reward models shown on the loop page and in the API, newest first.
SHOWN_REWARD_MODELS = 10


def wilson_interval(agreed: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927): unlike the normal approximation it
    stays inside [0, 1] and keeps a useful width at 0 or n successes out of few."""
    if total == 0:
        return 0.0, 1.0
    p = agreed / total
    denominator = 1 + z * z / total
    center = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def fresh_labels(*, reward_model: RewardModelVersion) -> QuerySet[PreferenceLabel]:
    """Labels of the reward model's project created after its dataset snapshot: standing
    (not withdrawn), regular (a consistency repeat measures the annotator, not the answers),
    not rejected by a reviewer, not arena votes (cast while the answers may still have been
    streaming). Every choice: the caller keeps the decisive ones. A label in the snapshot is
    older than it; `snapshot_label_ids` also names them, for the worker to check."""
    return (
        PreferenceLabel.objects.filter(
            comparison__project_id=reward_model.project_id,
            created_at__gt=reward_model.snapshot.created_at,
            is_repeat=False,
            withdrawn_at__isnull=True,
        )
        .exclude(review_status=PreferenceLabel.ReviewStatus.REJECTED)
        .exclude(comparison__kind="arena")
    )


def fresh_labels_to_score(*, reward_model: RewardModelVersion) -> list[PreferenceLabel]:
    """The decisive fresh labels the reward model has not scored yet, oldest first, with the
    texts the worker needs."""
    in_snapshot = set(reward_model.snapshot.label_ids)
    labels = _unscored(reward_model).select_related(
        "comparison__prompt", "comparison__completion_a", "comparison__completion_b"
    )
    return [label for label in labels if label.pk not in in_snapshot]


def _unscored(reward_model: RewardModelVersion) -> QuerySet[PreferenceLabel]:
    """Decisive fresh labels without a score of the reward model, oldest first. The snapshot's
    label ids are left to the caller: a label in it is older than the snapshot unless the
    clocks of the web server and the worker disagree, and the list can be long."""
    return (
        fresh_labels(reward_model=reward_model)
        .filter(choice__in=DECISIVE)
        .exclude(pk__in=FreshLabelScore.objects.filter(reward_model=reward_model).values("label"))
        .order_by("id")
    )


def fresh_labels_of_newest(*, project_id: int) -> int:
    """Decisive fresh labels of the project's newest reward model (0 without one): the cheap
    count that tells a label it is time to queue the scoring."""
    newest = (
        RewardModelVersion.objects.filter(project_id=project_id)
        .select_related("snapshot")
        .order_by("-snapshot__created_at", "-number")
        .first()
    )
    if newest is None:
        return 0
    return fresh_labels(reward_model=newest).filter(choice__in=DECISIVE).count()


def reward_models_to_score(*, project: Project) -> list[RewardModelVersion]:
    """The reward models whose fresh labels the worker scores: the latest of each role (the
    one PPO climbs next, and the judge), and those of a running iteration."""
    models = RewardModelVersion.objects.filter(project=project).select_related(
        "snapshot", "project"
    )
    chosen = {}
    for role in RewardModelVersion.Role.values:
        latest = models.filter(role=role).order_by("-number").first()
        if latest is not None:
            chosen[latest.pk] = latest
    running = (
        LoopIteration.objects.filter(project=project, status__in=ITERATION_RUNNING_STATUSES)
        .values_list("reward_model", "judge")
        .first()
    )
    extra = [pk for pk in running or () if pk is not None and pk not in chosen]
    chosen.update({rm.pk: rm for rm in models.filter(pk__in=extra)})
    return sorted(chosen.values(), key=lambda rm: rm.number)


# --- What training measured on its held-out pairs --------------------------------------------


@dataclass
class HeldoutSlice:
    """Held-out accuracy on one slice of the pairs a reward model was not trained on."""

    pairs: int
    accuracy: float | None  # None: no pair in the slice


@dataclass
class LengthControl:
    """How length entered a reward model's training (training.ml.reward, `length_control`)."""

    enabled: bool  # the pairs won by the longer and by the shorter answer weighed the same
    train_pairs: int | None
    effective_pairs: float | None  # what the weighted pairs were worth (Kish), when enabled
    train_labels_pick_shorter: float | None  # of the training pairs of different lengths


@dataclass
class HeldoutReport:
    """A reward model's held-out accuracy, split by whether the chosen answer is the shorter
    or the longer one, and how often the model prefers the shorter answer against how often
    the labels do (training.ml.reward's `_heldout_report`). A model right mostly where the
    chosen answer is the longer one, or that picks the shorter answer far less often than
    the labels do, has learned length rather than what people prefer (docs/judgement.md)."""

    accuracy: float | None
    pairs: int
    chosen_shorter: HeldoutSlice
    chosen_longer: HeldoutSlice
    same_length: HeldoutSlice
    picks_shorter: float | None  # the model, over held-out pairs of different lengths
    labels_pick_shorter: float | None  # the labels, over the same pairs
    length_control: LengthControl


def heldout_report(metrics: dict) -> HeldoutReport:
    """The report of a reward model's metrics (or of its reward run's summary). Reward models
    trained before a figure existed show it as None."""

    def piece(name: str) -> HeldoutSlice:
        return HeldoutSlice(
            pairs=metrics.get(f"heldout_pairs_{name}") or 0,
            accuracy=metrics.get(f"heldout_accuracy_{name}"),
        )

    return HeldoutReport(
        accuracy=metrics.get("heldout_accuracy"),
        pairs=metrics.get("heldout_pairs") or 0,
        chosen_shorter=piece("chosen_shorter"),
        chosen_longer=piece("chosen_longer"),
        same_length=piece("same_length"),
        picks_shorter=metrics.get("heldout_picks_shorter"),
        labels_pick_shorter=metrics.get("heldout_labels_pick_shorter"),
        length_control=LengthControl(
            enabled=bool(metrics.get("length_control")),
            train_pairs=metrics.get("train_pairs"),
            effective_pairs=metrics.get("length_effective_pairs"),
            train_labels_pick_shorter=metrics.get("train_labels_pick_shorter"),
        ),
    )


# --- The report ----------------------------------------------------------------------------


@dataclass
class Agreement:
    """How often the reward model preferred the answer people preferred, in one slice."""

    labels: int
    agreed: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.labels if self.labels else None


@dataclass
class MarginBucket(Agreement):
    low: float = 0.0
    high: float | None = None  # None: no upper end


@dataclass
class DayAgreement(Agreement):
    date: date | None = None
    day: int = 0  # days after the reward model's snapshot


@dataclass
class RewardHealth:
    """One reward-model version against the labels that arrived after it was trained."""

    reward_model: RewardModelVersion
    heldout_accuracy: float | None
    heldout: HeldoutReport
    labels: int  # decisive fresh labels scored (withdrawn and rejected ones left out)
    agreed: int
    low: float | None  # Wilson 95% interval of the agreement
    high: float | None
    not_scorable: int  # fresh ties and both-bad: no preference to agree with
    waiting: int  # decisive fresh labels not scored yet
    calibration: list[MarginBucket] = field(default_factory=list)
    by_day: list[DayAgreement] = field(default_factory=list)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.labels if self.labels else None

    @property
    def alarm(self) -> bool:
        """Fresh agreement falls below held-out accuracy beyond its 95% interval: people
        now disagree with the model more than its held-out pairs said they would."""
        return (
            self.labels > 0
            and self.heldout_accuracy is not None
            and self.high is not None
            and self.high < self.heldout_accuracy
        )


def reward_model_health(
    *, project: Project, reward_models: list[RewardModelVersion] | None = None
) -> list[RewardHealth]:
    """Health of the project's latest reward models (or of `reward_models`), newest first.

    Scores of labels withdrawn or rejected since they were scored are left out here, so an
    undo or a review counts at once, without waiting for the worker.
    """
    if reward_models is None:
        reward_models = list(
            RewardModelVersion.objects.filter(project=project)
            .select_related("snapshot")
            .order_by("-number")[:SHOWN_REWARD_MODELS]
        )
    size = Abs(F("margin"))
    bucket = Case(
        *[When(size__gte=low, then=Value(low)) for low in reversed(MARGIN_BUCKETS)],
        default=Value(0.0),
        output_field=FloatField(),
    )
    groups = (
        FreshLabelScore.objects.filter(
            reward_model__in=reward_models, label__withdrawn_at__isnull=True
        )
        .exclude(label__review_status=PreferenceLabel.ReviewStatus.REJECTED)
        .annotate(size=size)
        .values("reward_model_id", bucket=bucket, day=TruncDate("label__created_at"))
        .annotate(labels=Count("id"), agreed=Count("id", filter=Q(agrees=True)))
        .order_by()
    )
    by_model: dict[int, list[dict]] = {rm.pk: [] for rm in reward_models}
    for group in groups:
        by_model[group["reward_model_id"]].append(group)
    return [_health(rm, by_model[rm.pk]) for rm in reward_models]


def _health(reward_model: RewardModelVersion, groups: list[dict]) -> RewardHealth:
    not_scorable = fresh_labels(reward_model=reward_model).exclude(choice__in=DECISIVE).count()
    waiting = set(_unscored(reward_model).values_list("pk", flat=True))
    waiting -= set(reward_model.snapshot.label_ids)
    labels = sum(g["labels"] for g in groups)
    agreed = sum(g["agreed"] for g in groups)
    low, high = wilson_interval(agreed, labels) if labels else (None, None)
    bounds = [*MARGIN_BUCKETS[1:], None]
    calibration = [
        MarginBucket(
            labels=sum(g["labels"] for g in groups if g["bucket"] == lower),
            agreed=sum(g["agreed"] for g in groups if g["bucket"] == lower),
            low=lower,
            high=upper,
        )
        for lower, upper in zip(MARGIN_BUCKETS, bounds, strict=True)
    ]
    trained = timezone.localdate(reward_model.snapshot.created_at)  # TruncDate's time zone
    days = sorted({g["day"] for g in groups})
    by_day = [
        DayAgreement(
            labels=sum(g["labels"] for g in groups if g["day"] == day),
            agreed=sum(g["agreed"] for g in groups if g["day"] == day),
            date=day,
            day=(day - trained).days,
        )
        for day in days
    ]
    return RewardHealth(
        reward_model=reward_model,
        heldout_accuracy=reward_model.heldout_accuracy,
        heldout=heldout_report(reward_model.metrics or {}),
        labels=labels,
        agreed=agreed,
        low=low,
        high=high,
        not_scorable=not_scorable,
        waiting=len(waiting),
        calibration=calibration,
        by_day=by_day,
    )


def agreement_series(healths: list[RewardHealth]) -> list[dict]:
    """Rows for the loop page's charts, one per day on which some model scored labels:
    {"day": days after training, "RM<n> fresh agreement by day after training": that day's
    agreement, ...}."""
    rows: dict[int, dict] = {}
    for health in healths:
        name = f"RM{health.reward_model.number} fresh agreement by day after training"
        for day in health.by_day:
            rows.setdefault(day.day, {"day": day.day})[name] = day.rate
    return [rows[day] for day in sorted(rows)]
