"""Reads of the training app."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import F, Max, Prefetch, QuerySet
from django.utils import timezone

from feedback.models import Comparison, Demonstration, PreferenceLabel, Project, Prompt
from training.models import (
    LoopIteration,
    PolicyVersion,
    RewardModelVersion,
    RunMetric,
    SFTVersion,
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


def demonstrations_for_sft(*, project: Project) -> QuerySet[Demonstration]:
    """The demonstrations SFT trains on: accepted by a reviewer (or corrected: accepted in the
    reviewer's words), not withdrawn, on train prompts (the eval prompts judge candidates and
    stay unseen by what the policy trains on), oldest first. Unreviewed ones wait: an export
    holds them, the loop does not train on them."""
    return (
        Demonstration.objects.filter(
            project=project,
            withdrawn_at__isnull=True,
            review_status__in=(
                Demonstration.ReviewStatus.ACCEPTED,
                Demonstration.ReviewStatus.CORRECTED,
            ),
            prompt__split=Prompt.Split.TRAIN,
        )
        .select_related("prompt")
        .order_by("id")
    )


def sft_latest(*, project: Project) -> SFTVersion | None:
    return (
        SFTVersion.objects.filter(project=project)
        .select_related("snapshot")
        .order_by("-number")
        .first()
    )


def demonstrations_new_to_sft(*, project: Project) -> int:
    """Accepted demonstrations (demonstrations_for_sft) the latest SFT version did not train
    on: all of them before the first SFT version. A demonstration corrected after it was
    trained on counts as seen."""
    latest = sft_latest(project=project)
    seen = set(latest.snapshot.demonstration_ids) if latest is not None else set()
    ids = demonstrations_for_sft(project=project).values_list("id", flat=True)
    return sum(1 for pk in ids if pk not in seen)


def labels_since_last_iteration(*, project: Project) -> int:
    """Labels created after the start of the project's latest iteration."""
    labels = PreferenceLabel.objects.filter(
        comparison__project=project, is_repeat=False, withdrawn_at__isnull=True
    ).exclude(comparison__kind="arena")
    last = LoopIteration.objects.filter(project=project).order_by("-number").first()
    if last is not None:
        labels = labels.filter(created_at__gt=last.created_at)
    return labels.count()


def comparisons_open(*, project: Project) -> QuerySet[Comparison]:
    """The project's regular comparisons still taking labels."""
    return Comparison.objects.filter(
        project=project, kind=Comparison.Kind.REGULAR, status=Comparison.Status.OPEN
    )


def comparisons_wanted(*, project: Project) -> int:
    """How many more open comparisons of the active policy annotators should have: up to
    comparisons_per_iteration (or one per train prompt, if the project has fewer), less
    those open now (an answer of the active policy on side A, as generation makes them)."""
    active = policy_active(project=project)
    target = min(
        project.comparisons_per_iteration,
        Prompt.objects.filter(project=project, split=Prompt.Split.TRAIN).count(),
    )
    return max(
        0,
        target
        - comparisons_open(project=project).filter(completion_a__policy_version=active).count(),
    )


def generation_pending(*, project: Project) -> TrainingRun | None:
    """The project's generation run outside any iteration that is queued or running, if any
    (generation_queue keeps one queued at most)."""
    return (
        TrainingRun.objects.filter(
            project=project,
            kind=TrainingRun.Kind.GENERATE,
            iteration__isnull=True,
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING],
        )
        .order_by("-status", "id")  # running before queued
        .first()
    )


def loop_schedule(*, project: Project) -> str:
    """The project's cron schedule ("0 3 * * *"), or "" without one."""
    from django_celery_beat.models import PeriodicTask

    task = (
        PeriodicTask.objects.filter(name=f"hone-loop-{project.slug}", enabled=True)
        .select_related("crontab")
        .first()
    )
    return str(task.crontab).split(" (")[0] if task and task.crontab else ""


@dataclass(frozen=True)
class LoopWait:
    """What the loop is waiting for: a code for programs, a phrase for people ("The loop is
    waiting for <message>.")."""

    code: str
    message: str


# The codes loop_waiting_for answers, and what each means.
LOOP_WAIT_CODES = {
    "approval": "an admin to approve or reject the candidate of the running iteration",
    "human_labels": "human labels on the running iteration's candidate (the human gate)",
    "worker": "a worker to carry on the running iteration",
    "generation_queued": "a worker to take the queued generation run",
    "generation_running": "the running generation run to finish",
    "labels": "new labels: the label trigger starts the next iteration",
    "comparisons": "comparisons to label: none is open, and no generation run waits or runs",
    "schedule": "the schedule (or an admin) to start the next iteration",
    "admin": "an admin to start an iteration: the project has no trigger",
}


def loop_waiting_for(*, project: Project) -> LoopWait:
    """What the project's loop waits for now: the running iteration's next move, else new
    comparisons, else what starts the next iteration."""
    iteration = (
        LoopIteration.objects.filter(project=project, status__in=LoopIteration.ACTIVE_STATUSES)
        .select_related("policy")
        .first()
    )
    if iteration is not None:
        return _iteration_waits_for(iteration)
    to_label = comparisons_open(project=project).exists()
    run = generation_pending(project=project)
    if run is not None and run.status == TrainingRun.Status.QUEUED:
        until = "" if to_label else " (nothing to label until it has run)"
        return LoopWait("generation_queued", f"a worker to take generation run {run.pk}{until}")
    if run is not None:
        until = "" if to_label else " (nothing to label until then)"
        return LoopWait(
            "generation_running", f"generation run {run.pk} to finish on {run.worker}{until}"
        )
    if project.trigger_new_labels:
        left = project.trigger_new_labels - labels_since_last_iteration(project=project)
        before = (
            f"{left} more label{'s' if left != 1 else ''} before the next iteration"
            if left > 0
            else "the next label, which starts an iteration"
        )
        if not to_label:
            return LoopWait(
                "comparisons", f"an admin to generate comparisons: none is open ({before})"
            )
        return LoopWait("labels", before)
    schedule = loop_schedule(project=project)
    if schedule:
        return LoopWait("schedule", f"the schedule ({schedule}) or an admin to start an iteration")
    return LoopWait("admin", "an admin to start an iteration (no trigger set)")


def _iteration_waits_for(iteration: LoopIteration) -> LoopWait:
    number = iteration.number
    if iteration.status == LoopIteration.Status.AWAITING_APPROVAL:
        return LoopWait("approval", f"an admin's approval of iteration {number}")
    gate = (iteration.evaluation or {}).get("human_gate")
    if iteration.status == LoopIteration.Status.AWAITING_HUMANS and gate:
        return LoopWait(
            "human_labels",
            f"human labels for iteration {number} ({gate['labels']} of {gate['labels_needed']})",
        )
    step = iteration.get_status_display()
    step = step if step.isupper() else step.lower()  # "PPO", "training the reward model"
    run = iteration.runs.filter(status=TrainingRun.Status.RUNNING).order_by("-id").first()
    if run is not None:
        return LoopWait(
            "worker",
            f"iteration {number} ({step}): {run.kind} run {run.pk} to finish on {run.worker}",
        )
    return LoopWait("worker", f"a worker to carry on iteration {number} ({step})")


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
        .select_related("policy", "reward_model", "judge", "snapshot", "sft")
        .order_by("-number")
    )


def sft_versions_for_project(*, project: Project) -> QuerySet[SFTVersion]:
    """The lineage of each SFT version: the demonstrations that made it (its snapshot), its
    run, and the policy versions whose line it roots."""
    return (
        SFTVersion.objects.filter(project=project)
        .select_related("snapshot", "training_run")
        .prefetch_related(Prefetch("policies", queryset=PolicyVersion.objects.order_by("number")))
        .order_by("-number")
    )


def runs_for_project(*, project: Project) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(project=project).order_by("-queued_at")


def run_live(*, iteration: LoopIteration, beat_within_seconds: float = 60.0) -> TrainingRun | None:
    """A run of the iteration that is running on a worker heard from lately (heartbeats come
    every 15 s): while there is one, the iteration's step is in that worker's hands."""
    return (
        TrainingRun.objects.filter(
            iteration=iteration,
            status=TrainingRun.Status.RUNNING,
            heartbeat_at__gte=timezone.now() - timedelta(seconds=beat_within_seconds),
        )
        .order_by("-pk")
        .first()
    )


def run_metrics(*, run: TrainingRun) -> QuerySet[RunMetric]:
    return RunMetric.objects.filter(run=run).order_by("step", "id")


def iteration_series(*, project: Project) -> dict[str, list]:
    """Per-iteration numbers to plot: reward-model accuracy (overall, and where the chosen
    answer is the shorter and where it is the longer), candidate KL, win rates by the training
    reward model, the independent judge and people, and the over-optimization gap."""
    from training.leaderboard import version_games

    games = version_games(project=project)
    series: dict[str, list] = {
        "iteration": [],
        "rm_accuracy": [],
        "rm_accuracy_chosen_shorter": [],
        "rm_accuracy_chosen_longer": [],
        "kl": [],
        "rm_win_rate": [],
        "judge_win_rate": [],
        "overoptimization_gap": [],
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
        rm_metrics = it.reward_model.metrics if it.reward_model_id else {}
        for side in ("chosen_shorter", "chosen_longer"):
            series[f"rm_accuracy_{side}"].append(rm_metrics.get(f"heldout_accuracy_{side}"))
        series["kl"].append(evaluation.get("kl_to_base_mean"))
        series["rm_win_rate"].append(evaluation.get("win_rate"))
        series["judge_win_rate"].append((evaluation.get("judge") or {}).get("win_rate"))
        series["overoptimization_gap"].append(evaluation.get("overoptimization_gap"))
        series["human_win_rate"].append(human)
    return series


def next_number(model: type, project: Project) -> int:
    """The next per-project number of a version or an iteration (the unique constraint on
    (project, number) turns a race into an IntegrityError)."""
    return (model.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
