"""Leases and labels: the annotator's next comparison and the label they submit."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone

from feedback import labeling
from feedback.models import (
    MAX_TIME_SPENT_MS,
    Assignment,
    Comparison,
    Completion,
    PreferenceLabel,
    Project,
    Prompt,
)
from feedback.signals import label_stored

REPEAT_GAP = labeling.REPEAT_GAP
MAX_ID = 2**63 - 1  # a bigint: anything larger names no row, and PostgreSQL would refuse it


def assignment_next(*, project: Project, user: AbstractBaseUser) -> Assignment | None:
    """The annotator's current lease, or a new lease on the next comparison they can label.

    Order: their own unexpired lease; a consistency repeat at the project's repeat rate; gold
    items at the project's gold rate; then the highest priority, oldest first. A comparison is
    never leased to more annotators at once than it still needs labels, and never to someone
    who has labelled it. An expired lease frees its place; its own annotator may get the item
    back, and the lease row is then renewed in place. The rules and how they stay right under
    concurrency: feedback/labeling/, which the fast path (api/fastpath.py) runs too.
    """
    lease = assignment_lease(project=project, user=user)
    return None if lease is None else _assignment_of(lease)


def assignment_lease(*, project: Project, user: AbstractBaseUser) -> labeling.Lease | None:
    """assignment_next as plain values (the JSON API's answer needs no model instance). None
    too for a user who is no longer an active member (the statements check it)."""
    rules = labeling.ProjectRules.of(project)
    now = timezone.now()
    own_transaction = not connection.in_atomic_block
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":  # one call of the function (feedback/labeling/)
                call = labeling.lease_call(
                    rules=rules, user_id=user.pk, now=now, own_transaction=own_transaction
                )
                cursor.execute(*call)
                row = cursor.fetchone()
                return None if row is None else labeling.lease_of(row)
            steps = labeling.lease_steps(
                adapt_datetime=connection.ops.adapt_datetimefield_value,
                rules=rules,
                user_id=user.pk,
                now=now,
            )
            return labeling.run(steps, cursor)
    except DatabaseError as error:  # the function refused a non-member; rolled back
        if not str(error).startswith(labeling.RAISED):
            raise
        return None


def _assignment_of(lease: labeling.Lease) -> Assignment:
    """The lease as model instances, with the comparison's prompt and completions (what the
    annotator's screen shows), so that showing the item costs no further query."""
    columns = labeling.LEASE_COLUMNS
    alias = connection.alias
    assignment = Assignment.from_db(alias, columns, [lease.assignment[c] for c in columns])
    comparison = Comparison.from_db(
        alias,
        ["id", "project_id", "prompt_id", "completion_a_id", "completion_b_id"],
        [assignment.comparison_id, lease.project_id, lease.prompt_id, lease.completion_a_id,
         lease.completion_b_id],
    )  # fmt: skip
    comparison.prompt = Prompt.from_db(alias, ["id", "messages"], [
        lease.prompt_id, lease.prompt_messages,
    ])  # fmt: skip
    comparison.completion_a = Completion.from_db(
        alias, ["id", "text"], [lease.completion_a_id, lease.completion_a]
    )
    comparison.completion_b = Completion.from_db(
        alias, ["id", "text"], [lease.completion_b_id, lease.completion_b]
    )
    assignment.comparison = comparison
    return assignment


def user_leases_close(*, user_id: int, project_id: int | None = None) -> int:
    """Close the user's active leases (in `project_id`, or in every project): marked expired,
    they take no label, and their places go to other annotators at once. Returns how many.
    Called when a membership ends or a user is deactivated; if the user comes back, an
    expired lease can be leased to them again."""
    with transaction.atomic():
        # The lease rows only (as a submit locks them first): a lease submitted meanwhile
        # is not closed.
        leases = Assignment.objects.select_for_update(of=("self",)).filter(
            annotator_id=user_id, status=Assignment.Status.ACTIVE
        )
        if project_id is not None:
            leases = leases.filter(comparison__project_id=project_id)
        closed = list(leases.values_list("pk", "comparison_id", "is_repeat"))
        Assignment.objects.filter(pk__in=[pk for pk, _, _ in closed]).update(
            status=Assignment.Status.EXPIRED
        )
        # Regular leases gave their places back before expiry (Comparison.leases_full_until).
        freed = [comparison_id for _, comparison_id, is_repeat in closed if not is_repeat]
        Comparison.objects.filter(pk__in=freed).update(leases_full_until=None)
    return len(closed)


def vote_check(*, choice: str, strength: int) -> None:
    """A preference is one of the choices with one of the strengths (labels, arena votes)."""
    if choice not in PreferenceLabel.Choice.values:
        raise ValidationError(
            {"choice": f"Unknown choice {choice!r}; use one of {PreferenceLabel.Choice.values}."}
        )
    if strength not in PreferenceLabel.Strength.values:
        raise ValidationError(
            {"strength": f"Strength must be one of {PreferenceLabel.Strength.values}."}
        )


def text_check(model: type[models.Model], field: str, text: str) -> None:
    """`text` against the validators of the model's field (length, control characters): a
    ValidationError naming the field, as full_clean raises it."""
    try:
        model._meta.get_field(field).run_validators(text)
    except ValidationError as error:
        raise ValidationError({field: error.messages}) from None


# Why label_steps stored no label, as the annotator reads it.
_NOT_STORED = {
    "not_assigned": ("assignment", "This comparison is not assigned to you."),
    "not_active": ("assignment", "This comparison was {status}; it takes no label."),
    "closed": ("assignment", "This comparison no longer takes labels."),
    "rationale_required": ("rationale", 'This project asks for a rationale with "both bad".'),
}


def label_submit(
    *,
    user: AbstractBaseUser,
    assignment_id: int,
    choice: str,
    strength: int = PreferenceLabel.Strength.CLEAR,
    rationale: str = "",
    time_spent_ms: int = 0,
) -> PreferenceLabel:
    """Store the annotator's label for a comparison leased to them.

    Submitting the same assignment twice returns the stored label unchanged (a retried
    request after a lost connection never creates a second label). A lease that expired
    still takes its label while the comparison needs one, as long as its annotator is an
    active member of the project (checked in the statement). The comparison's label count is
    raised in one conditional UPDATE, which holds its row lock to the end: a comparison never
    gets more than its k regular labels. Repeats never count towards k. The statements:
    feedback/labeling/ (label_steps on SQLite, the hone_label function built from them on
    PostgreSQL, which the fast path calls too).
    """
    vote_check(choice=choice, strength=strength)
    if not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS:
        raise ValidationError(
            {"time_spent_ms": f"Time spent must be between 0 and {MAX_TIME_SPENT_MS} ms."}
        )
    rationale = rationale.strip()
    text_check(PreferenceLabel, "rationale", rationale)
    if not 0 < assignment_id <= MAX_ID:
        field, message = _NOT_STORED["not_assigned"]
        raise ValidationError({field: message}, code="not_assigned")
    now = timezone.now()
    fields = {
        "user_id": user.pk,
        "assignment_id": assignment_id,
        "choice": choice,
        "strength": strength,
        "rationale": rationale,
        "time_spent_ms": time_spent_ms,
        "now": now,
    }
    with transaction.atomic():
        with connection.cursor() as cursor:
            done = _label_store(cursor, fields)
        if done.outcome == "already_submitted":
            return PreferenceLabel.objects.get(assignment_id=assignment_id)
        if done.outcome != "created":  # raised inside the transaction: it rolls back
            field, message = _NOT_STORED[done.outcome]
            raise ValidationError({field: message.format(status=done.status)}, code=done.outcome)
    label = PreferenceLabel.from_db(
        connection.alias,
        [f.attname for f in PreferenceLabel._meta.concrete_fields],
        [done.label_id, done.comparison_id, user.pk, assignment_id, choice, strength,
         rationale, time_spent_ms, done.a_shown_left, done.is_repeat,
         PreferenceLabel.ReviewStatus.UNREVIEWED, None, now, now],
    )  # fmt: skip
    label_stored_announce(done=done)
    return label


def _label_store(cursor: Any, fields: dict[str, Any]) -> labeling.Submitted:
    """label_steps, as one call of the PostgreSQL function where it is there (see
    feedback/labeling/); when the function refuses, the steps say why."""
    if connection.vendor == "postgresql":
        try:
            with transaction.atomic():  # a savepoint: a refusal rolls back to here
                cursor.execute(*labeling.label_call(**fields))
                return labeling.submitted_of(cursor.fetchone())
        except DatabaseError as error:
            if not str(error).startswith(labeling.RAISED):
                raise
    return labeling.run(
        labeling.label_steps(adapt_datetime=connection.ops.adapt_datetimefield_value, **fields),
        cursor,
    )


def label_audit_state(label: PreferenceLabel) -> dict[str, Any]:
    return labeling.label_state(
        choice=label.choice,
        strength=label.strength,
        rationale=label.rationale,
        review_status=label.review_status,
    )


def label_stored_announce(*, done: labeling.Submitted) -> None:
    """Tell the loop that a regular label was stored (feedback.signals.label_stored), when
    the project listens: a label trigger is set or an iteration waits for human labels.
    Called by label_submit and by the fast path, after the label's transaction."""
    if done.is_repeat or not (done.trigger_new_labels or done.human_gate is not None):
        return
    label_stored.send(
        sender=PreferenceLabel,
        project_id=done.project_id,
        trigger_new_labels=bool(done.trigger_new_labels),
        human_gate=done.human_gate is not None,
    )
