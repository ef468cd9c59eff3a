"""Every write of the training app: policies, reward models, snapshots, iterations, runs."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from feedback.events import event_publish
from feedback.models import (
    Comparison,
    Completion,
    PreferenceLabel,
    Project,
    Prompt,
    TieHandling,
)
from feedback.services import comparisons_create, storable_text
from training.models import (
    DatasetSnapshot,
    LoopIteration,
    PolicyVersion,
    RewardModelVersion,
    RunMetric,
    TrainingRun,
)
from training.selectors import labels_for_training, versus_comparisons, versus_generated

LOG_TAIL_CHARS = 20_000


def _next_number(model: type, project: Project) -> int:
    """The next per-project number of a version or an iteration (the unique constraint on
    (project, number) turns a race into an IntegrityError)."""
    return (model.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1


def artifact_path(relative: str) -> Path:
    return Path(settings.ARTIFACT_ROOT) / relative


# --- Policies -----------------------------------------------------------------------------


def policy_create_base(*, project: Project) -> PolicyVersion:
    """Version 0: the base model without an adapter, active from the start."""
    return PolicyVersion.objects.create(
        project=project, number=0, status=PolicyVersion.Status.ACTIVE, promoted_at=timezone.now()
    )


def policy_register(
    *,
    project: Project,
    parent: PolicyVersion,
    run: TrainingRun,
    reward_model: RewardModelVersion | None,
    adapter_path: str,
    metrics: dict[str, Any],
) -> PolicyVersion:
    """A trained adapter becomes a candidate version. The adapter must already be on disk."""
    if not (artifact_path(adapter_path) / "adapter_config.json").exists():
        raise ValidationError({"adapter_path": f"No adapter at {adapter_path}."})
    with transaction.atomic():
        return PolicyVersion.objects.create(
            project=project,
            number=_next_number(PolicyVersion, project),
            parent=parent,
            adapter_path=adapter_path,
            status=PolicyVersion.Status.CANDIDATE,
            reward_model=reward_model,
            training_run=run,
            metrics=metrics,
        )


def _policy_activate(
    *, policy: PolicyVersion, versions: list[PolicyVersion], replaced: str, rollback: bool
) -> PolicyVersion:
    """Make `policy` active and give the version it replaces the status `replaced`.

    Call inside a transaction holding the project's versions with SELECT FOR UPDATE.
    """
    for old in versions:
        if old.status == PolicyVersion.Status.ACTIVE:
            old.status = replaced
            old.save(update_fields=["status"])
    policy.status = PolicyVersion.Status.ACTIVE
    policy.promoted_at = timezone.now()
    policy.save(update_fields=["status", "promoted_at"])
    data = {"version": policy.number, "policy_id": policy.pk}
    event_publish(
        project_id=policy.project_id,
        event="policy_live",
        data={**data, "rollback": True} if rollback else data,
    )
    return policy


def policy_promote(*, policy: PolicyVersion) -> PolicyVersion:
    """Make `policy` the project's active version; the previous one retires. All or nothing."""
    with transaction.atomic():
        versions = list(
            PolicyVersion.objects.select_for_update().filter(project_id=policy.project_id)
        )
        if any(v.pk == policy.pk and v.status == PolicyVersion.Status.ACTIVE for v in versions):
            return policy
        return _policy_activate(
            policy=policy,
            versions=versions,
            replaced=PolicyVersion.Status.RETIRED,
            rollback=False,
        )


def policy_rollback(*, policy: PolicyVersion) -> PolicyVersion:
    """Make an earlier version active again; the one it replaces is marked rolled back.

    Nothing is deleted: every version, its adapter and its history stay.
    """
    with transaction.atomic():
        versions = list(
            PolicyVersion.objects.select_for_update().filter(project_id=policy.project_id)
        )
        target = next(v for v in versions if v.pk == policy.pk)
        if target.status == PolicyVersion.Status.ACTIVE:
            raise ValidationError({"policy": f"v{target.number} is already active."})
        if target.status not in (PolicyVersion.Status.RETIRED, PolicyVersion.Status.ROLLED_BACK):
            raise ValidationError(
                {
                    "policy": f"v{target.number} is {target.status}; only a version that was "
                    "active before can be rolled back to."
                }
            )
        return _policy_activate(
            policy=target,
            versions=versions,
            replaced=PolicyVersion.Status.ROLLED_BACK,
            rollback=True,
        )


# --- Dataset snapshots ------------------------------------------------------------------


def _majority(labels: list[PreferenceLabel], *, tie_handling: str) -> tuple[str, float] | None:
    """Strength-weighted vote between A and B: (winner, margin) or None for no preference.

    Each A label adds its strength (1 slight .. 3 strong) to A's side, each B label to B's.
    The margin is the winner's weighted lead per voting label, on the strength scale. Tie and
    both-bad labels follow the project's `tie_handling`: "abstain" leaves them out of the
    vote; "count" makes them votes for no preference, which dilute the margin and, when they
    are at least half of the labels, leave the comparison without a preference.
    """
    score = 0
    decisive = 0
    for label in labels:
        if label.choice == PreferenceLabel.Choice.A:
            score += label.strength
            decisive += 1
        elif label.choice == PreferenceLabel.Choice.B:
            score -= label.strength
            decisive += 1
    if score == 0:
        return None
    voters = decisive
    if tie_handling == TieHandling.COUNT:
        if 2 * (len(labels) - decisive) >= len(labels):
            return None
        voters = len(labels)
    return ("a" if score > 0 else "b"), abs(score) / voters


def _override(comparison: Comparison, labels: list[PreferenceLabel]) -> tuple[str, float] | None:
    """The reviewer's final preference, else a gold item's known answer, as (winner, margin);
    margin: the mean strength of the labels that agree with it (1, slight, when none does).
    ("", 0) when the decision is tie or both-bad: no pair. None when nothing overrides."""
    decided = comparison.final_choice or comparison.gold_choice
    if not decided:
        return None
    if decided not in (PreferenceLabel.Choice.A, PreferenceLabel.Choice.B):
        return "", 0.0
    agreeing = [label.strength for label in labels if label.choice == decided]
    return decided, (sum(agreeing) / len(agreeing) if agreeing else 1.0)


@dataclass(frozen=True)
class PreferencePair:
    """One comparison's verdict: the answer people preferred, and by how much."""

    comparison: Comparison
    labels: list[PreferenceLabel]
    winner: str  # "a" or "b"
    margin: float
    overridden: bool  # decided by a reviewer's final preference or a gold answer

    @property
    def chosen(self) -> str:
        a, b = self.comparison.completion_a.text, self.comparison.completion_b.text
        return a if self.winner == "a" else b

    @property
    def rejected(self) -> str:
        a, b = self.comparison.completion_a.text, self.comparison.completion_b.text
        return b if self.winner == "a" else a


def preference_pairs(
    *, project: Project, split: str | None = None
) -> tuple[list[PreferencePair], int]:
    """One pair per comparison with a preference, and the count of those without one.

    A reviewer's final preference (or a gold item's answer) overrides the strength-weighted
    majority vote of its labels; rejected labels and consistency repeats are left out
    (labels_for_training); ties and both-bad follow the project's setting. With `split`, only
    comparisons on prompts of that split. Shared by snapshots (training) and exports
    (training/exports.py), so both agree on every pair.
    """
    by_comparison: dict[int, list[PreferenceLabel]] = defaultdict(list)
    for label in labels_for_training(project=project):
        by_comparison[label.comparison_id].append(label)
    decided = (
        Comparison.objects.filter(project=project)
        .exclude(final_choice="", gold_choice="")
        .exclude(pk__in=list(by_comparison))
        .select_related("prompt", "completion_a", "completion_b")
    )
    comparisons = {
        label.comparison_id: label.comparison
        for labels in by_comparison.values()
        for label in labels
    }
    comparisons.update({c.pk: c for c in decided})
    if split is not None:
        comparisons = {k: c for k, c in comparisons.items() if c.prompt.split == split}

    pairs: list[PreferencePair] = []
    no_preference = 0
    for comparison_id in sorted(comparisons):
        comparison = comparisons[comparison_id]
        labels = by_comparison.get(comparison_id, [])
        vote = _override(comparison, labels)
        overridden = vote is not None
        if vote is None:
            vote = _majority(labels, tie_handling=project.tie_handling)
        if vote is None or not vote[0]:
            no_preference += 1
            continue
        pairs.append(
            PreferencePair(
                comparison=comparison,
                labels=labels,
                winner=vote[0],
                margin=vote[1],
                overridden=overridden,
            )
        )
    return pairs, no_preference


def snapshot_create(*, project: Project, name: str) -> DatasetSnapshot:
    """Write the project's preference data as TRL explicit-prompt JSONL and record it.

    Only comparisons on train prompts: the eval prompts judge candidates (the reward-model
    gates, the versus comparisons of the human gate), so the reward model never sees them.
    """
    pairs, no_preference = preference_pairs(project=project, split=Prompt.Split.TRAIN)
    rows: list[dict[str, Any]] = [
        {
            "prompt": pair.comparison.prompt.messages,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
            "margin": pair.margin,
        }
        for pair in pairs
    ]
    used: list[int] = [label.pk for pair in pairs for label in pair.labels]
    if not rows:
        raise ValidationError(
            f"Project {project.slug} has no comparison with a preference on its train prompts "
            f"yet ({no_preference} without one): label some comparisons first."
        )

    relative = f"projects/{project.pk}/snapshots/{name}.jsonl"
    path = artifact_path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)
    return DatasetSnapshot.objects.create(
        project=project,
        path=relative,
        sha256=hashlib.sha256(payload).hexdigest(),
        pair_count=len(rows),
        label_ids=used,
        counts={
            "pairs": len(rows),
            "labels": len(used),
            "comparisons_without_preference": no_preference,
            "decided_by_reviewer_or_gold": sum(pair.overridden for pair in pairs),
            "tie_handling": project.tie_handling,
        },
    )


# --- Loop iterations ---------------------------------------------------------------------


def iteration_start(*, project: Project, trigger: str) -> LoopIteration | None:
    """Start an iteration unless one is running: the database allows one per project."""
    from training.tasks import loop_iteration_task

    if trigger not in LoopIteration.Trigger.values:
        raise ValidationError({"trigger": f"Unknown trigger {trigger!r}."})
    try:
        with transaction.atomic():
            iteration = LoopIteration.objects.create(
                project=project, number=_next_number(LoopIteration, project), trigger=trigger
            )
            event_publish(
                project_id=project.pk,
                event="iteration_status",
                data={"iteration": iteration.number, "status": iteration.status},
            )
            transaction.on_commit(lambda: loop_iteration_task.delay(iteration.pk))
    except IntegrityError:  # one is running (the partial unique index said so)
        return None
    return iteration


class IterationMoved(Exception):
    """The iteration is no longer where this step left it (cancelled, or done by another)."""


def iteration_advance(
    *, iteration: LoopIteration, status: str, expected: str | None = None, **fields: Any
) -> LoopIteration:
    """Move an iteration to its next state, recording what the finished step produced.

    With `expected`, the move happens only if the row still has that status (a compare and
    set), so a step that ends after the iteration was cancelled changes nothing.
    """
    with transaction.atomic():
        current = LoopIteration.objects.select_for_update().get(pk=iteration.pk)
        if expected is not None and current.status != expected:
            raise IterationMoved(f"Iteration {current.number} is {current.status}, not {expected}.")
        iteration.status = status
        for name, value in fields.items():
            setattr(iteration, name, value)
        if status not in LoopIteration.ACTIVE_STATUSES:
            iteration.finished_at = timezone.now()
        iteration.save()
        event_publish(
            project_id=iteration.project_id,
            event="iteration_status",
            data={"iteration": iteration.number, "status": status, "error": iteration.error},
        )
    return iteration


def iteration_cancel(*, iteration: LoopIteration) -> LoopIteration:
    """Stop an iteration: its running jobs are asked to stop at their next step."""
    if not iteration.is_running:
        raise ValidationError({"iteration": f"Iteration {iteration.number} is not running."})
    with transaction.atomic():
        TrainingRun.objects.filter(
            iteration=iteration, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        ).update(cancel_requested=True)
        if iteration.policy_id and iteration.policy.status == PolicyVersion.Status.CANDIDATE:
            _candidate_drop(policy_id=iteration.policy_id)
        return iteration_advance(iteration=iteration, status=LoopIteration.Status.CANCELLED)


def _candidate_drop(*, policy_id: int) -> None:
    """A candidate version that will never be promoted (rejected, or its iteration
    cancelled): marked rejected, and the open comparisons that show one of its answers (the
    human gate's) closed, so that nobody labels them any more. Labels already given stay,
    and still count on the leaderboard."""
    PolicyVersion.objects.filter(pk=policy_id).update(status=PolicyVersion.Status.REJECTED)
    (
        Comparison.objects.filter(status=Comparison.Status.OPEN)
        .filter(
            Q(completion_a__policy_version_id=policy_id)
            | Q(completion_b__policy_version_id=policy_id)
        )
        .update(status=Comparison.Status.CLOSED)
    )


def iteration_approve(*, iteration: LoopIteration) -> LoopIteration:
    """An admin accepts a candidate that waits for approval; the worker promotes it."""
    from training.tasks import loop_iteration_task

    with transaction.atomic():
        iteration = iteration_advance(
            iteration=iteration,
            status=LoopIteration.Status.PROMOTING,
            expected=LoopIteration.Status.AWAITING_APPROVAL,
        )
        transaction.on_commit(lambda: loop_iteration_task.delay(iteration.pk))
    return iteration


def iteration_reject(
    *, iteration: LoopIteration, reason: str, expected: str | None = None
) -> LoopIteration:
    """The candidate is not promoted (the gates or an admin said no); the loop is free again.

    With `expected`, only if the iteration still has that status (see iteration_advance).
    """
    with transaction.atomic():
        iteration = iteration_advance(
            iteration=iteration,
            status=LoopIteration.Status.REJECTED,
            expected=expected,
            error=reason,
        )
        if iteration.policy_id:
            _candidate_drop(policy_id=iteration.policy_id)
        return iteration


def status_after_gates(*, project: Project) -> str:
    """Where a candidate that passed every gate goes: promotion, or an admin's approval."""
    if project.auto_promote:
        return LoopIteration.Status.PROMOTING
    return LoopIteration.Status.AWAITING_APPROVAL


def iteration_human_gate_check(*, iteration: LoopIteration) -> str | None:
    """Decide the human gate of an iteration that waits for humans, from the labels so far.

    Returns the status this call moved the iteration to, or None when it moved nothing
    (still waiting, not waiting for humans, its comparisons not sampled yet, or another
    process decided first). Safe to call from anywhere, any number of times: the move is a
    compare-and-set on `awaiting_humans`, and the bootstrap has a fixed seed, so the same
    labels give the same answer. Whoever gets PROMOTING back carries the iteration on.

    The candidate was judged against the version active when it was trained (its parent):
    if another version became active meanwhile (a rollback, a promotion by hand), that
    judgement is void and the candidate is rejected; if the candidate itself was promoted by
    hand, the iteration moves on to promotion.
    """
    from training.gates import human_gate
    from training.leaderboard import version_games

    waiting = LoopIteration.Status.AWAITING_HUMANS
    iteration.refresh_from_db()
    if iteration.status != waiting:
        return None
    project, candidate = iteration.project, iteration.policy
    incumbent = candidate.parent
    evaluation = dict(iteration.evaluation)
    if project.gate_human_min_win_rate is None:
        # An admin turned the gate off while the candidate waited: the candidate passed
        # every gate the project still has.
        if "human_gate" in evaluation:
            evaluation["human_gate"] = {
                **evaluation["human_gate"],
                "decision": "off",
                "passed": None,
                "reason": "the project turned the human gate off",
            }
        report = {"decision": "off"}
    elif not versus_generated(iteration=iteration, policy=candidate, versus=incumbent):
        return None  # the worker is still sampling the comparisons
    else:
        report = human_gate(
            project=project,
            games=version_games(project=project),
            candidate=candidate.number,
            incumbent=incumbent.number,
            open_comparisons=versus_comparisons(policy=candidate, versus=incumbent)
            .filter(status=Comparison.Status.OPEN)
            .count(),
        )
        evaluation["human_gate"] = report
    try:
        with transaction.atomic():
            # Lock the versions: a rollback waits until this decision is written, and this
            # decision sees the active version a rollback left.
            versions = list(PolicyVersion.objects.select_for_update().filter(project=project))
            active = next(v for v in versions if v.status == PolicyVersion.Status.ACTIVE)
            if active.pk == candidate.pk:
                status = LoopIteration.Status.PROMOTING
                iteration_advance(iteration=iteration, status=status, expected=waiting)
                return status
            if active.pk != incumbent.pk:
                iteration_reject(
                    iteration=iteration,
                    expected=waiting,
                    reason=f"Human gate void: v{active.number} became active while the "
                    f"candidate waited for labels against v{incumbent.number}.",
                )
                return LoopIteration.Status.REJECTED
            if report["decision"] == "waiting":
                if evaluation != iteration.evaluation:  # progress, for the page and the API
                    iteration_advance(
                        iteration=iteration, status=waiting, expected=waiting, evaluation=evaluation
                    )
                return None
            if report["decision"] == "failed":
                iteration_advance(
                    iteration=iteration, status=waiting, expected=waiting, evaluation=evaluation
                )
                iteration_reject(
                    iteration=iteration,
                    expected=waiting,
                    reason=f"Human gate not passed: {report['reason']}.",
                )
                return LoopIteration.Status.REJECTED
            status = status_after_gates(project=project)
            iteration_advance(
                iteration=iteration, status=status, expected=waiting, evaluation=evaluation
            )
            return status
    except IterationMoved:  # cancelled, or decided by another process meanwhile
        return None


# --- Training runs -----------------------------------------------------------------------


def run_create(
    *,
    project: Project,
    kind: str,
    config: dict[str, Any],
    iteration: LoopIteration | None = None,
) -> TrainingRun:
    return TrainingRun.objects.create(
        project=project, iteration=iteration, kind=kind, config=config
    )


def run_start(*, run: TrainingRun, worker: str) -> TrainingRun:
    now = timezone.now()
    run.status = TrainingRun.Status.RUNNING
    run.worker = worker
    run.started_at = run.started_at or now
    run.heartbeat_at = now
    run.error = ""
    run.save(update_fields=["status", "worker", "started_at", "heartbeat_at", "error"])
    _run_event(run)
    return run


def run_record_metrics(*, run: TrainingRun, values: dict[str, Any]) -> RunMetric:
    """Store one logging step, beat the heart, and stream the numbers to browsers."""
    step = int(values.get("step", 0))
    clean = {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool))}
    with transaction.atomic():
        metric = RunMetric.objects.create(run=run, step=step, values=clean)
        TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
        event_publish(
            project_id=run.project_id,
            event="run_progress",
            data={"run_id": run.pk, "kind": run.kind, "step": step, "values": clean},
        )
    return metric


def run_log(*, run: TrainingRun, line: str) -> None:
    run.log_tail = (run.log_tail + line.rstrip("\n") + "\n")[-LOG_TAIL_CHARS:]
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["log_tail", "heartbeat_at"])


def run_succeed(*, run: TrainingRun, summary: dict[str, Any]) -> TrainingRun:
    run.status = TrainingRun.Status.SUCCEEDED
    run.summary = summary
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save(update_fields=["status", "summary", "finished_at"])
        _run_event(run)
    return run


def run_fail(*, run: TrainingRun, error: str) -> TrainingRun:
    run.status = TrainingRun.Status.FAILED
    run.error = error
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save(update_fields=["status", "error", "finished_at"])
        _run_event(run)
    return run


def run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Ask a queued or running job to stop; a queued one stops before it starts."""
    if run.status not in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
        raise ValidationError({"run": f"Run {run.pk} is {run.status}: nothing to cancel."})
    run.cancel_requested = True
    run.save(update_fields=["cancel_requested"])
    if run.iteration_id and run.iteration.is_running:
        iteration_cancel(iteration=run.iteration)
    return run


def run_mark_cancelled(*, run: TrainingRun) -> TrainingRun:
    run.status = TrainingRun.Status.CANCELLED
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save(update_fields=["status", "finished_at"])
        _run_event(run)
    return run


def runs_reap_stale(*, older_than_seconds: float) -> list[TrainingRun]:
    """Mark failed every running job whose worker stopped beating (killed, machine lost).

    Its iteration fails too, so the loop is free again; nothing it half-made was registered
    (an artifact only gets its row once complete), and the active policy never changed.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    reaped = []
    for run in TrainingRun.objects.filter(
        status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff
    ).select_related("iteration"):
        with transaction.atomic():
            updated = TrainingRun.objects.filter(
                pk=run.pk, status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff
            ).update(
                status=TrainingRun.Status.FAILED,
                error=f"The worker {run.worker} stopped sending heartbeats "
                f"(last at {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC): it was lost.",
                finished_at=timezone.now(),
            )
            if not updated:
                continue
            run.refresh_from_db()
            _run_event(run)
            if run.iteration_id and run.iteration.is_running:
                iteration_advance(
                    iteration=run.iteration,
                    status=LoopIteration.Status.FAILED,
                    error=f"{run.kind} run {run.pk} lost its worker.",
                )
        reaped.append(run)
    return reaped


def _run_event(run: TrainingRun) -> None:
    event_publish(
        project_id=run.project_id,
        event="run_status",
        data={"run_id": run.pk, "kind": run.kind, "status": run.status, "error": run.error},
    )


# --- Artifacts that become rows ------------------------------------------------------------


def reward_model_register(
    *,
    project: Project,
    run: TrainingRun,
    snapshot: DatasetSnapshot,
    adapter_path: str,
    metrics: dict[str, Any],
) -> RewardModelVersion:
    with transaction.atomic():
        return RewardModelVersion.objects.create(
            project=project,
            number=_next_number(RewardModelVersion, project),
            adapter_path=adapter_path,
            snapshot=snapshot,
            training_run=run,
            heldout_accuracy=metrics.get("heldout_accuracy"),
            metrics=metrics,
        )


def artifact_commit(*, tmp_dir: Path, relative: str) -> str:
    """Move a finished artifact folder into place; a crash before this leaves no artifact."""
    final = artifact_path(relative)
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir.replace(final)
    return relative


def generation_record(
    *,
    project: Project,
    rows: list[tuple[Prompt, list[tuple[PolicyVersion, dict[str, Any]]]]],
    sampling: dict[str, Any],
    priority: float = 0.0,
) -> list[Comparison]:
    """Store sampled answers as completions and pair each prompt's two into a comparison.

    `rows` holds, per prompt, two (policy version, sample) pairs: two samples of one policy,
    or one of the new policy and one of the previous. Pairs whose two answers are identical
    teach nothing and are left out.
    """
    with transaction.atomic():
        pairs: list[tuple[Completion, Completion]] = []
        for prompt, samples in rows:
            completions = Completion.objects.bulk_create(
                [
                    Completion(
                        prompt=prompt,
                        policy_version=policy,
                        text=storable_text(sample["text"]),
                        sampling=sampling,
                        token_count=sample["token_count"],
                        finish_reason=sample["finish_reason"],
                    )
                    for policy, sample in samples
                ]
            )
            if len(completions) >= 2 and completions[0].text != completions[1].text:
                pairs.append((completions[0], completions[1]))
        return comparisons_create(project=project, pairs=pairs, priority=priority)


# --- Schedules --------------------------------------------------------------------------


def loop_schedule_set(*, project: Project, cron: str) -> None:
    """Start an iteration on a cron schedule ("0 3 * * *"); an empty string removes it.

    The schedule is a django-celery-beat PeriodicTask, so it can be edited in the admin too.
    A scheduled start does nothing while an iteration is running.
    """
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    name = f"hone-loop-{project.slug}"
    if not cron.strip():
        PeriodicTask.objects.filter(name=name).delete()
        return
    fields = cron.split()
    if len(fields) != 5:
        raise ValidationError(
            {
                "schedule": f"{cron!r} is not a cron expression: it needs 5 fields "
                "(minute hour day-of-month month day-of-week), e.g. '0 3 * * *'."
            }
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    schedule = CrontabSchedule(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone="UTC",
    )
    try:
        schedule.full_clean()
    except ValidationError as error:
        raise ValidationError({"schedule": f"{cron!r}: {'; '.join(error.messages)}"}) from None
    with transaction.atomic():
        schedule, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone="UTC",
        )
        PeriodicTask.objects.update_or_create(
            name=name,
            defaults={
                "task": "training.tasks.iteration_start_task",
                "crontab": schedule,
                "interval": None,
                "args": json.dumps([project.pk, "schedule"]),
                "enabled": True,
            },
        )
