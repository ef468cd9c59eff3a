"""Reads of the training app."""

from __future__ import annotations

from django.db.models import F, Max, QuerySet

from feedback.models import Comparison, PreferenceLabel, Project
from training.models import (
    LoopIteration,
    PolicyVersion,
    RewardModelVersion,
    RunMetric,
    TrainingRun,
)


def policy_active(*, project: Project) -> PolicyVersion:
    return PolicyVersion.objects.get(project=project, status=PolicyVersion.Status.ACTIVE)


def labels_for_training(*, project: Project) -> QuerySet[PreferenceLabel]:
    """Labels that may train a reward model: every standing, regular label a reviewer has not
    rejected.

    Withdrawn labels (undone by their annotator), consistency repeats (they measure the
    annotator and never vote) and arena votes (cast on answers that may still have been
    streaming; they rank versions, see the leaderboard) are left out.
    """
    return (
        PreferenceLabel.objects.filter(
            comparison__project=project, is_repeat=False, withdrawn_at__isnull=True
        )
        .exclude(review_status=PreferenceLabel.ReviewStatus.REJECTED)
        .exclude(comparison__kind="arena")
        .select_related(
            "comparison__prompt", "comparison__completion_a", "comparison__completion_b"
        )
        .order_by("comparison_id", "id")
    )


def labels_since_last_iteration(*, project: Project) -> int:
    """Labels created after the start of the project's latest iteration."""
    labels = PreferenceLabel.objects.filter(
        comparison__project=project, is_repeat=False, withdrawn_at__isnull=True
    ).exclude(comparison__kind="arena")
    last = LoopIteration.objects.filter(project=project).order_by("-number").first()
    if last is not None:
        labels = labels.filter(created_at__gt=last.created_at)
    return labels.count()


def versus_generated(
    *, iteration: LoopIteration, policy: PolicyVersion, versus: PolicyVersion
) -> bool:
    """Whether this iteration already sampled `policy` against `versus` (a succeeded
    generation run in versus mode): the human gate's comparisons, or a finished step."""
    return TrainingRun.objects.filter(
        iteration=iteration,
        kind=TrainingRun.Kind.GENERATE,
        status=TrainingRun.Status.SUCCEEDED,
        config__policy=policy.number,
        config__versus=versus.number,
    ).exists()


def versus_comparisons(*, policy: PolicyVersion, versus: PolicyVersion) -> QuerySet[Comparison]:
    """Comparisons of an answer of `policy` (side A, as generation makes them) against one of
    `versus` (side B)."""
    return Comparison.objects.filter(
        project_id=policy.project_id,
        completion_a__policy_version=policy,
        completion_b__policy_version=versus,
    )


def reward_models_latest(*, project: Project) -> list[RewardModelVersion]:
    """The project's newest reward model of each role (policy, then judge) that it has: the
    committee whose uncertainty chooses new comparisons (training/jobs/uncertainty.py)."""
    latest = (
        RewardModelVersion.objects.filter(project=project, role=role).order_by("-number").first()
        for role in RewardModelVersion.Role.values
    )
    return [model for model in latest if model is not None]


def comparisons_to_rescore(*, project: Project) -> QuerySet[Comparison]:
    """Open regular comparisons of two answers of one policy version: the ones whose priority
    is the reward models' uncertainty. Comparisons of two versions (after a promotion, and the
    human gate's) keep theirs: they measure versions against each other, and a sample chosen by
    the models would bias that measure."""
    return (
        Comparison.objects.filter(
            project=project, kind=Comparison.Kind.REGULAR, status=Comparison.Status.OPEN
        )
        .filter(completion_a__policy_version=F("completion_b__policy_version"))
        .select_related("prompt", "completion_a", "completion_b")
        .order_by("id")
    )


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


def iteration_series(*, project: Project) -> dict[str, list]:
    """Per-iteration numbers to plot: reward-model accuracy, candidate KL and win rates."""
    from training.leaderboard import version_games

    games = version_games(project=project)
    series: dict[str, list] = {
        "iteration": [],
        "rm_accuracy": [],
        "kl": [],
        "rm_win_rate": [],
        "human_win_rate": [],
    }
    for it in (
        LoopIteration.objects.filter(project=project)
        .select_related("reward_model", "policy")
        .order_by("number")
    ):
        evaluation = it.evaluation or {}
        human = None
        if it.policy_id and it.policy.parent_id:
            new, old = it.policy.number, it.policy.parent.number
            scores = [
                g.score if g.first == new else 1 - g.score
                for g in games
                if {g.first, g.second} == {new, old}
            ]
            human = sum(scores) / len(scores) if scores else None
        series["iteration"].append(it.number)
        series["rm_accuracy"].append(
            it.reward_model.heldout_accuracy if it.reward_model_id else None
        )
        series["kl"].append(evaluation.get("kl_to_base_mean"))
        series["rm_win_rate"].append(evaluation.get("win_rate"))
        series["human_win_rate"].append(human)
    return series


def next_number(model: type, project: Project) -> int:
    """The next per-project number of a version or an iteration (the unique constraint on
    (project, number) turns a race into an IntegrityError)."""
    return (model.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
