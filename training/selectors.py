"""Reads of the training app."""

from __future__ import annotations

from django.db.models import QuerySet

from feedback.models import PreferenceLabel, Project
from training.models import LoopIteration, PolicyVersion, RunMetric, TrainingRun


def policy_active(*, project: Project) -> PolicyVersion:
    return PolicyVersion.objects.get(project=project, status=PolicyVersion.Status.ACTIVE)


def labels_for_training(*, project: Project) -> QuerySet[PreferenceLabel]:
    """Labels that may train a reward model: every label a reviewer has not rejected."""
    return (
        PreferenceLabel.objects.filter(comparison__project=project)
        .exclude(review_status=PreferenceLabel.ReviewStatus.REJECTED)
        .select_related(
            "comparison__prompt", "comparison__completion_a", "comparison__completion_b"
        )
        .order_by("comparison_id", "id")
    )


def labels_since_last_iteration(*, project: Project) -> int:
    """Labels created after the start of the project's latest iteration."""
    labels = PreferenceLabel.objects.filter(comparison__project=project)
    last = LoopIteration.objects.filter(project=project).order_by("-number").first()
    if last is not None:
        labels = labels.filter(created_at__gt=last.created_at)
    return labels.count()


def iterations_for_project(*, project: Project) -> QuerySet[LoopIteration]:
    return (
        LoopIteration.objects.filter(project=project)
        .select_related("policy", "reward_model", "snapshot")
        .order_by("-number")
    )


def runs_for_project(*, project: Project) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(project=project).order_by("-queued_at")


def run_metrics(*, run: TrainingRun) -> QuerySet[RunMetric]:
    return RunMetric.objects.filter(run=run).order_by("step", "id")


def policy_human_wins(*, project: Project) -> list[dict]:
    """Per policy version, human votes on comparisons between two different versions.

    Labels a reviewer rejected are left out. A tie counts half a win in `win_rate`; a
    both-bad vote counts as a vote without a winner. (Bradley-Terry ratings with confidence
    intervals build on the same counts.)
    """
    from collections import Counter

    counts: dict[int, Counter] = {}
    labels = (
        PreferenceLabel.objects.filter(comparison__project=project)
        .exclude(review_status=PreferenceLabel.ReviewStatus.REJECTED)
        .values_list(
            "choice",
            "comparison__completion_a__policy_version_id",
            "comparison__completion_b__policy_version_id",
        )
    )
    for choice, version_a, version_b in labels:
        if version_a == version_b:
            continue
        a, b = counts.setdefault(version_a, Counter()), counts.setdefault(version_b, Counter())
        a["votes"] += 1
        b["votes"] += 1
        if choice == PreferenceLabel.Choice.A:
            a["wins"] += 1
            b["losses"] += 1
        elif choice == PreferenceLabel.Choice.B:
            b["wins"] += 1
            a["losses"] += 1
        elif choice == PreferenceLabel.Choice.TIE:
            a["ties"] += 1
            b["ties"] += 1
        else:
            a["both_bad"] += 1
            b["both_bad"] += 1
    rows = []
    for policy in PolicyVersion.objects.filter(project=project).order_by("number"):
        c = counts.get(policy.pk, Counter())
        votes = c["votes"]
        rows.append(
            {
                "version": policy.number,
                "status": policy.status,
                "votes": votes,
                "wins": c["wins"],
                "losses": c["losses"],
                "ties": c["ties"],
                "both_bad": c["both_bad"],
                "win_rate": (c["wins"] + 0.5 * c["ties"]) / votes if votes else None,
            }
        )
    return rows
