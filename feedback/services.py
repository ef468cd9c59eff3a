"""Every write of the feedback app: projects, prompts, comparisons, assignments, labels."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from feedback import labeling
from feedback.events import event_publish
from feedback.models import (
    Assignment,
    Comparison,
    ComparisonAudit,
    ComparisonFlag,
    Completion,
    LabelAudit,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
    pseudonym_key_new,
)

MAX_TIME_SPENT_MS = 24 * 3600 * 1000  # a day: anything longer is a broken client clock
REPEAT_GAP = labeling.REPEAT_GAP


def storable_text(text: str) -> str:
    """Model output as the database can store it: PostgreSQL text cannot hold NUL, which a
    byte-level model may sample; it becomes U+FFFD (visible, like any undecodable byte)."""
    return text.replace("\x00", "\ufffd")


def project_create(*, slug: str, name: str, base_model: str, **fields: Any) -> Project:
    """Create a project and its version 0 policy (the base model, no adapter)."""
    from training.services import policy_create_base

    project = Project(slug=slug, name=name, base_model=base_model, **fields)
    project.full_clean()
    with transaction.atomic():
        project.save()
        policy_create_base(project=project)
    return project


def project_gates_set(
    *,
    project: Project,
    auto_promote: bool,
    gate_min_win_rate: float,
    gate_max_kl: float,
    gate_max_empty_rate: float,
    gate_max_repetition: float,
    gate_human_min_win_rate: float | None,
    gate_human_labels: int,
) -> Project:
    """Set what a candidate must show before promotion (training/gates.py). A candidate that
    already waits for humans is judged by the settings at each check."""
    values = {
        "auto_promote": auto_promote,
        "gate_min_win_rate": gate_min_win_rate,
        "gate_max_kl": gate_max_kl,
        "gate_max_empty_rate": gate_max_empty_rate,
        "gate_max_repetition": gate_max_repetition,
        "gate_human_min_win_rate": gate_human_min_win_rate,
        "gate_human_labels": gate_human_labels,
    }
    for name, value in values.items():
        setattr(project, name, value)
    project.full_clean()
    project.save(update_fields=list(values))
    return project


def project_pseudonym_key_rotate(*, project: Project) -> Project:
    """A new random key for the project's pseudonyms. Exports name every annotator anew from
    now on (they cannot be joined with earlier exports), and a person an earlier import
    credited to a stand-in user gets a new stand-in in the next import."""
    project.pseudonym_key = pseudonym_key_new()
    project.save(update_fields=["pseudonym_key"])
    return project


def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; use one of {Membership.Role.values}."}
        )
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def prompts_import(
    *, project: Project, records: list[Any], source: str = "", duplicates: str = "keep"
) -> list[Prompt]:
    """Validate every record first, then write all of them or none.

    Records are {"prompt": text or chat turns, "split", "metadata"}; files (JSONL, CSV, JSON)
    go through feedback.imports.prompts_import_file, which also reports duplicates.
    """
    from feedback.imports import prompts_import_records

    result = prompts_import_records(
        project=project,
        records=list(enumerate(records, start=1)),
        source=source,
        duplicates=duplicates,
    )
    return result.prompts


def comparisons_create(
    *, project: Project, pairs: list[tuple[Completion, Completion]], priority: float = 0.0
) -> list[Comparison]:
    """Turn pairs of completions of the same prompt into open comparisons."""
    comparisons = [
        Comparison(
            project=project,
            prompt=a.prompt,
            completion_a=a,
            completion_b=b,
            required_labels=project.labels_per_comparison,
            priority=priority,
        )
        for a, b in pairs
    ]
    with transaction.atomic():
        created = Comparison.objects.bulk_create(comparisons)
        event_publish(
            project_id=project.pk, event="comparisons_added", data={"count": len(created)}
        )
    return created


def assignment_next(*, project: Project, user: AbstractBaseUser) -> Assignment | None:
    """The annotator's current lease, or a new lease on the next comparison they can label.

    Order: their own unexpired lease; a consistency repeat at the project's repeat rate; gold
    items at the project's gold rate; then the highest priority, oldest first. A comparison is
    never leased to more annotators at once than it still needs labels, and never to someone
    who has labelled it. An expired lease frees its place; its own annotator may get the item
    back, and the lease row is then renewed in place. The rules and how they stay right under
    concurrency: feedback/labeling.py, which the lean API path (api/fastpath.py) runs too.
    """
    lease = assignment_lease(project=project, user=user)
    return None if lease is None else _assignment_of(lease)


def assignment_lease(*, project: Project, user: AbstractBaseUser) -> labeling.Lease | None:
    """assignment_next as plain values (the JSON API's answer needs no model instance)."""
    rules = labeling.ProjectRules.of(project)
    now = timezone.now()
    own_transaction = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # one call of the function (feedback/labeling.py)
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
    still takes its label while the comparison needs one. The comparison's label count is
    raised in one conditional UPDATE, which holds its row lock to the end: a comparison never
    gets more than its k regular labels. Repeats never count towards k. The statements:
    feedback/labeling.py (label_steps on SQLite, the hone_label function built from them on
    PostgreSQL, which the lean API path calls too).
    """
    vote_check(choice=choice, strength=strength)
    if not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS:
        raise ValidationError(
            {"time_spent_ms": f"Time spent must be between 0 and {MAX_TIME_SPENT_MS} ms."}
        )
    now = timezone.now()
    fields = {
        "user_id": user.pk,
        "assignment_id": assignment_id,
        "choice": choice,
        "strength": strength,
        "rationale": rationale.strip(),
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
         rationale.strip(), time_spent_ms, done.a_shown_left, done.is_repeat,
         PreferenceLabel.ReviewStatus.UNREVIEWED, None, now, now],
    )  # fmt: skip
    if not done.is_repeat and done.trigger_new_labels:
        iteration_maybe_trigger(project_id=done.project_id)
    if not done.is_repeat and done.human_gate is not None:
        human_gate_check_later(project_id=done.project_id)
    return label


def _label_store(cursor: Any, fields: dict[str, Any]) -> labeling.Submitted:
    """label_steps, as one call of the PostgreSQL function where it is there (see
    feedback/labeling.py); when the function refuses, the steps say why."""
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


def _label_state(label: PreferenceLabel) -> dict[str, Any]:
    return labeling.label_state(
        choice=label.choice,
        strength=label.strength,
        rationale=label.rationale,
        review_status=label.review_status,
    )


def iteration_maybe_trigger(*, project_id: int) -> None:
    """After a new regular label: start an iteration if the project's label trigger is met
    (called by label_submit and by the lean API path, after the label's transaction)."""
    project = Project.objects.get(pk=project_id)
    if not project.trigger_new_labels:
        return
    from training.selectors import labels_since_last_iteration
    from training.services import iteration_start

    if labels_since_last_iteration(project=project) >= project.trigger_new_labels:
        iteration_start(project=project, trigger="labels")


def human_gate_check_later(*, project_id: int) -> None:
    """A label may decide the human gate of an iteration waiting for humans: check on a
    worker once the label is committed (a bootstrap is no work for the annotator's request;
    called by label_submit and by the lean API path, after the label's transaction).
    Robust: a broker that is down costs the annotator nothing; the beat checks again."""
    from training.tasks import human_gate_check_task

    transaction.on_commit(lambda: human_gate_check_task.delay(project_id), robust=True)


# --- Annotator workspace: undo, skip, flag ------------------------------------------------

UNDO_WINDOW = timedelta(minutes=2)
SKIP_REASONS = {
    "unsure": "I cannot judge this one",
    "unclear": "The prompt is unclear",
    "expertise": "Needs expertise I lack",
    "long": "Too long to judge well",
    "other": "Other",
}


def label_undo(*, user: AbstractBaseUser, project: Project) -> PreferenceLabel:
    """Withdraw the annotator's latest label in `project` if it is recent enough.

    Nothing is deleted: the label is marked withdrawn (training ignores it, see
    training.selectors.labels_for_training), a LabelAudit row records it, and the
    comparison goes back to the same annotator as an active lease.
    """
    now = timezone.now()
    with transaction.atomic():
        label = (
            PreferenceLabel.objects.select_for_update()
            .filter(
                annotator=user,
                comparison__project=project,
                withdrawn_at__isnull=True,
                assignment__isnull=False,
            )
            .order_by("-created_at", "-id")
            .first()
        )
        if label is None:
            raise ValidationError("There is no label of yours to undo.", code="nothing_to_undo")
        if label.created_at < now - UNDO_WINDOW:
            minutes = int(UNDO_WINDOW.total_seconds() // 60)
            raise ValidationError(
                f"Your last label is older than {minutes} minutes; it can no longer be undone.",
                code="too_late",
            )
        if label.review_status != PreferenceLabel.ReviewStatus.UNREVIEWED:
            raise ValidationError("Your last label was already reviewed.", code="reviewed")
        assignment = Assignment.objects.select_for_update().get(pk=label.assignment_id)
        comparison = Comparison.objects.select_for_update().get(pk=label.comparison_id)
        before = _label_state(label)
        label.withdrawn_at = now
        label.assignment = None  # the lease takes a new label; this one stays for the record
        label.save(update_fields=["withdrawn_at", "assignment", "updated_at"])
        LabelAudit.objects.create(
            label=label,
            actor=user,
            action="withdrawn",
            before={**before, "assignment_id": assignment.pk},
            after={**_label_state(label), "withdrawn_at": now.isoformat()},
        )
        assignment.status = Assignment.Status.ACTIVE
        assignment.expires_at = now + timedelta(minutes=project.lease_minutes)
        assignment.save(update_fields=["status", "expires_at"])
        if not label.is_repeat:  # the label no longer counts towards k
            comparison.label_count = max(0, comparison.label_count - 1)
            comparison.leases_full_until = None
            fields = ["label_count", "leases_full_until"]
            if comparison.status == Comparison.Status.COMPLETE:
                comparison.status = Comparison.Status.OPEN
                fields.append("status")
            comparison.save(update_fields=fields)
    return label


def assignment_skip(*, user: AbstractBaseUser, assignment_id: int, reason: str) -> Assignment:
    """Give an item back without labeling it; it is not offered to this annotator again.

    Skipping twice is harmless: the second call returns the skipped assignment.
    """
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why you skip this item."})
    if len(reason) > 200:
        raise ValidationError({"reason": "Keep the reason under 200 characters."})
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update().filter(pk=assignment_id, annotator=user).first()
        )
        if assignment is None:
            raise ValidationError(
                {"assignment": "This comparison is not assigned to you."}, code="not_assigned"
            )
        if assignment.status == Assignment.Status.SKIPPED:
            return assignment
        if assignment.status != Assignment.Status.ACTIVE:
            raise ValidationError(
                {"assignment": f"This comparison was {assignment.status}; it cannot be skipped."}
            )
        assignment.status = Assignment.Status.SKIPPED
        assignment.skip_reason = reason
        assignment.save(update_fields=["status", "skip_reason"])
        _lease_place_freed(assignment)
    return assignment


def _lease_place_freed(assignment: Assignment) -> None:
    """A regular lease gave its place back before it expired: the comparison is no longer
    full of leases (see Comparison.leases_full_until)."""
    if not assignment.is_repeat:
        Comparison.objects.filter(pk=assignment.comparison_id).update(leases_full_until=None)


def comparison_flag(
    *, user: AbstractBaseUser, assignment_id: int, reason: str, note: str = ""
) -> ComparisonFlag:
    """Report the leased comparison (unsafe, broken, other) and move past it (skipped)."""
    if reason not in ComparisonFlag.Reason.values:
        raise ValidationError(
            {"reason": f"Unknown flag {reason!r}; use one of {ComparisonFlag.Reason.values}."}
        )
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update().filter(pk=assignment_id, annotator=user).first()
        )
        if assignment is None:
            raise ValidationError(
                {"assignment": "This comparison is not assigned to you."}, code="not_assigned"
            )
        existing = ComparisonFlag.objects.filter(
            comparison_id=assignment.comparison_id, annotator=user
        ).first()
        if existing is not None:
            return existing
        if assignment.status != Assignment.Status.ACTIVE:
            raise ValidationError(
                {"assignment": f"This comparison was {assignment.status}; it cannot be flagged."}
            )
        flag = ComparisonFlag(
            comparison_id=assignment.comparison_id,
            annotator=user,
            reason=reason,
            note=note.strip(),
        )
        flag.full_clean(validate_unique=False)
        flag.save()
        assignment.status = Assignment.Status.SKIPPED
        assignment.skip_reason = f"flagged: {reason}"
        assignment.save(update_fields=["status", "skip_reason"])
        _lease_place_freed(assignment)
    return flag


# --- Review and quality control -------------------------------------------------------------


def label_review(*, reviewer: AbstractBaseUser, label_id: int, decision: str) -> PreferenceLabel:
    """Accept or reject a label (or send it back to unreviewed); audited, never deleted.

    A rejected label stays in the database and is left out of votes and training data.
    The caller checks that `reviewer` reviews the label's project.
    """
    if decision not in PreferenceLabel.ReviewStatus.values:
        raise ValidationError(
            {
                "decision": f"Unknown decision {decision!r}; use one of "
                f"{PreferenceLabel.ReviewStatus.values}."
            }
        )
    with transaction.atomic():
        label = PreferenceLabel.objects.select_for_update().get(pk=label_id)
        if label.review_status == decision:
            return label
        before = _label_state(label)
        label.review_status = decision
        label.save(update_fields=["review_status", "updated_at"])
        LabelAudit.objects.create(
            label=label,
            actor=reviewer,
            action=f"review_{decision}",
            before=before,
            after=_label_state(label),
        )
    return label


def _decision_state(comparison: Comparison) -> dict[str, Any]:
    return {
        "kind": comparison.kind,
        "gold_choice": comparison.gold_choice,
        "final_choice": comparison.final_choice,
        "status": comparison.status,
    }


def _choice_or_blank(choice: str, field: str) -> None:
    if choice and choice not in PreferenceLabel.Choice.values:
        raise ValidationError(
            {
                field: f"Unknown choice {choice!r}; use one of {PreferenceLabel.Choice.values}, "
                "or nothing to clear it."
            }
        )


def comparison_decide(*, reviewer: AbstractBaseUser, comparison_id: int, choice: str) -> Comparison:
    """Set (or clear, with "") the reviewer's final preference, which overrides the vote in
    training data. Audited. The caller checks that `reviewer` reviews the project."""
    _choice_or_blank(choice, "final_choice")
    with transaction.atomic():
        comparison = Comparison.objects.select_for_update().get(pk=comparison_id)
        if comparison.final_choice == choice:
            return comparison
        before = _decision_state(comparison)
        comparison.final_choice = choice
        comparison.final_by = reviewer if choice else None
        comparison.final_at = timezone.now() if choice else None
        comparison.save(update_fields=["final_choice", "final_by", "final_at"])
        ComparisonAudit.objects.create(
            comparison=comparison,
            actor=reviewer,
            action="final_choice",
            before=before,
            after=_decision_state(comparison),
        )
    return comparison


def comparison_set_gold(*, admin: AbstractBaseUser, comparison_id: int, choice: str) -> Comparison:
    """Make a comparison a gold item with a known answer, or (with "") a regular one again.

    Gold items are shown to every annotator once (no k limit); their labels measure each
    annotator's accuracy. Audited. The caller checks that `admin` administers the project.
    """
    _choice_or_blank(choice, "gold_choice")
    with transaction.atomic():
        comparison = Comparison.objects.select_for_update().get(pk=comparison_id)
        before = _decision_state(comparison)
        if choice:
            comparison.kind = Comparison.Kind.GOLD
            comparison.gold_choice = choice
            if comparison.status == Comparison.Status.COMPLETE:
                comparison.status = Comparison.Status.OPEN
        else:
            if comparison.kind != Comparison.Kind.GOLD:
                return comparison
            comparison.kind = Comparison.Kind.REGULAR
            comparison.gold_choice = ""
            if (
                comparison.status == Comparison.Status.OPEN
                and comparison.label_count >= comparison.required_labels
            ):
                comparison.status = Comparison.Status.COMPLETE
        if _decision_state(comparison) == before:
            return comparison
        comparison.full_clean()
        comparison.save(update_fields=["kind", "gold_choice", "status"])
        ComparisonAudit.objects.create(
            comparison=comparison,
            actor=admin,
            action="gold",
            before=before,
            after=_decision_state(comparison),
        )
    return comparison
