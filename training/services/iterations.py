"""Loop iterations: start, advance (compare-and-set on status), cancel, approve, reject, and
the human gate's decision. The schedule that starts them: training/services/schedules.py."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from feedback.events import event_publish
from feedback.models import (
    AuditEvent,
    Comparison,
    Project,
)
from feedback.services import audit_record
from training.models import (
    LoopIteration,
    PolicyVersion,
    TrainingRun,
)
from training.selectors import (
    next_number,
    versus_comparisons,
    versus_generated,
)

# --- Loop iterations ---------------------------------------------------------------------


def iteration_start(
    *, project: Project, trigger: str, actor: AbstractBaseUser | None = None
) -> LoopIteration | None:
    """Start an iteration unless one is running: the database allows one per project."""
    from training.tasks import loop_iteration_task

    if trigger not in LoopIteration.Trigger.values:
        raise ValidationError({"trigger": f"Unknown trigger {trigger!r}."})
    try:
        with transaction.atomic():
            iteration = LoopIteration.objects.create(
                project=project, number=next_number(LoopIteration, project), trigger=trigger
            )
            _iteration_audit(
                iteration=iteration,
                action=AuditEvent.Action.ITERATION_START,
                actor=actor,
                before=None,
                after={"status": iteration.status, "trigger": trigger},
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


# An iteration that ends in one of these leaves the active policy as it was, so the loop goes on
# with it: its annotators get new comparisons of it if they are running out, and the next
# trigger can fire (services.comparisons_replenish).
ENDS_WITHOUT_PROMOTION = (
    LoopIteration.Status.REJECTED,
    LoopIteration.Status.FAILED,
    LoopIteration.Status.CANCELLED,
)


class IterationMoved(Exception):
    """The iteration is no longer where this step left it (cancelled, or done by another)."""


def iteration_advance(
    *, iteration: LoopIteration, status: str, expected: str | None = None, **fields: Any
) -> LoopIteration:
    """Move an iteration to its next state, recording what the finished step produced.

    With `expected`, the move happens only if the row still has that status (a compare and
    set), so a step that ends after the iteration was cancelled changes nothing.

    Every end of an iteration passes here: one that ends without a promotion (rejected by
    the gates, the human gate or an admin; failed; cancelled) queues new comparisons of the
    active policy once committed, where its annotators are running out.
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
            data={"iteration": iteration.number, "status": status},
            staff_data={"error": iteration.error},  # tracebacks and paths: staff only
        )
        if status in ENDS_WITHOUT_PROMOTION and current.status not in ENDS_WITHOUT_PROMOTION:
            project_id, reason = iteration.project_id, f"iteration {iteration.number} {status}"
            transaction.on_commit(
                lambda: _comparisons_replenish(project_id=project_id, reason=reason), robust=True
            )
    return iteration


def _comparisons_replenish(*, project_id: int, reason: str) -> None:
    from training.services.recovery import comparisons_replenish

    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        comparisons_replenish(project=project, reason=reason)


def _iteration_audit(
    *,
    iteration: LoopIteration,
    action: str,
    actor: AbstractBaseUser | None,
    before: dict[str, Any] | None,
    after: dict[str, Any],
) -> None:
    audit_record(
        actor=actor,
        project=iteration.project,
        action=action,
        target=iteration,
        before=before,
        after={**after, "policy": iteration.policy.number if iteration.policy_id else None},
    )


def iteration_cancel(
    *, iteration: LoopIteration, actor: AbstractBaseUser | None = None
) -> LoopIteration:
    """Stop an iteration: its running jobs are asked to stop at their next step."""
    if not iteration.is_running:
        raise ValidationError({"iteration": f"Iteration {iteration.number} is not running."})
    with transaction.atomic():
        _iteration_audit(
            iteration=iteration,
            action=AuditEvent.Action.ITERATION_CANCEL,
            actor=actor,
            before={"status": iteration.status},
            after={"status": LoopIteration.Status.CANCELLED},
        )
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


def iteration_approve(
    *, iteration: LoopIteration, actor: AbstractBaseUser | None = None
) -> LoopIteration:
    """An admin accepts a candidate that waits for approval; the worker promotes it."""
    from training.tasks import loop_iteration_task

    with transaction.atomic():
        iteration = iteration_advance(
            iteration=iteration,
            status=LoopIteration.Status.PROMOTING,
            expected=LoopIteration.Status.AWAITING_APPROVAL,
        )
        _iteration_audit(
            iteration=iteration,
            action=AuditEvent.Action.ITERATION_APPROVE,
            actor=actor,
            before={"status": LoopIteration.Status.AWAITING_APPROVAL},
            after={"status": iteration.status},
        )
        transaction.on_commit(lambda: loop_iteration_task.delay(iteration.pk))
    return iteration


def iteration_reject(
    *,
    iteration: LoopIteration,
    reason: str,
    expected: str | None = None,
    actor: AbstractBaseUser | None = None,
) -> LoopIteration:
    """The candidate is not promoted (the gates or an admin said no); the loop is free again.

    With `expected`, only if the iteration still has that status (see iteration_advance).
    """
    with transaction.atomic():
        before = {"status": expected or iteration.status}
        iteration = iteration_advance(
            iteration=iteration,
            status=LoopIteration.Status.REJECTED,
            expected=expected,
            error=reason,
        )
        if iteration.policy_id:
            _candidate_drop(policy_id=iteration.policy_id)
        _iteration_audit(
            iteration=iteration,
            action=AuditEvent.Action.ITERATION_REJECT,
            actor=actor,
            before=before,
            after={"status": iteration.status, "reason": reason},
        )
        return iteration


def iteration_decline(
    *, iteration: LoopIteration, reason: str, actor: AbstractBaseUser | None = None
) -> LoopIteration:
    """An admin says no to a candidate that waits for their approval."""
    waiting = LoopIteration.Status.AWAITING_APPROVAL
    if iteration.status != waiting:
        raise ValidationError(
            {"iteration": f"Iteration {iteration.number} is not waiting for approval."}
        )
    return iteration_reject(iteration=iteration, reason=reason, expected=waiting, actor=actor)


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
