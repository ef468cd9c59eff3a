"""Every write of the feedback app: projects, prompts, comparisons, assignments, labels."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from feedback.events import event_publish
from feedback.models import (
    Assignment,
    Comparison,
    ComparisonFlag,
    Completion,
    LabelAudit,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
)

VALID_ROLES = {"system", "user", "assistant"}


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


def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; use one of {Membership.Role.values}."}
        )
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def _prompt_messages(record: Any, where: str) -> list[dict[str, str]]:
    """Validate one prompt record (a string or chat turns) and return chat turns."""
    if not isinstance(record, dict) or "prompt" not in record:
        raise ValidationError(f"{where}: expected an object with a 'prompt' field.")
    prompt = record["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValidationError(f"{where}: field 'prompt' is empty.")
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise ValidationError(f"{where}: field 'prompt' must be a string or a list of messages.")
    for i, message in enumerate(prompt):
        if (
            not isinstance(message, dict)
            or message.get("role") not in VALID_ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise ValidationError(
                f"{where}: message {i} of 'prompt' needs a role in {sorted(VALID_ROLES)} "
                "and a string content."
            )
    if prompt[-1]["role"] != "user":
        raise ValidationError(f"{where}: the last message of 'prompt' must be from the user.")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def prompts_import(*, project: Project, records: list[Any], source: str = "") -> list[Prompt]:
    """Validate every record first, then write all of them or none."""
    prompts: list[Prompt] = []
    problems: list[str] = []
    for line, record in enumerate(records, start=1):
        where = f"{source or 'input'} line {line}"
        try:
            messages = _prompt_messages(record, where)
            split = record.get("split", Prompt.Split.TRAIN)
            importable = [Prompt.Split.TRAIN.value, Prompt.Split.EVAL.value]  # not "arena"
            if split not in importable:
                raise ValidationError(f"{where}: field 'split' must be one of {importable}.")
        except ValidationError as error:
            problems.extend(error.messages)
            continue
        prompts.append(
            Prompt(
                project=project,
                messages=messages,
                split=split,
                source=source,
                metadata=record.get("metadata") or {},
            )
        )
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        created = Prompt.objects.bulk_create(prompts)
    return created


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

    On PostgreSQL candidate rows are locked with SKIP LOCKED, so concurrent annotators never
    wait on each other and an item is never leased to more annotators than it still needs.
    SQLite serialises writers (IMMEDIATE transactions), which keeps it correct.
    """
    now = timezone.now()
    with transaction.atomic():
        mine = (
            Assignment.objects.select_related("comparison")
            .filter(
                annotator=user,
                comparison__project=project,
                status=Assignment.Status.ACTIVE,
                expires_at__gt=now,
            )
            .order_by("created_at")
            .first()
        )
        if mine is not None:
            return mine
        candidates = (
            Comparison.objects.select_for_update(skip_locked=True)
            .filter(project=project, status=Comparison.Status.OPEN)
            .exclude(assignments__annotator=user)
            .order_by("-priority", "created_at", "id")
        )
        for comparison in candidates[:5]:
            busy = comparison.assignments.filter(
                Q(status=Assignment.Status.SUBMITTED)
                | Q(status=Assignment.Status.ACTIVE, expires_at__gt=now)
            ).count()
            if busy >= comparison.required_labels:
                continue
            try:
                with transaction.atomic():
                    return Assignment.objects.create(
                        comparison=comparison,
                        annotator=user,
                        a_shown_left=random.random() < 0.5,
                        expires_at=now + timedelta(minutes=project.lease_minutes),
                    )
            except IntegrityError:  # this annotator got it in a concurrent request
                continue
    return None


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
    request after a lost connection never creates a second label).
    """
    if choice not in PreferenceLabel.Choice.values:
        raise ValidationError(
            {"choice": f"Unknown choice {choice!r}; use one of {PreferenceLabel.Choice.values}."}
        )
    if strength not in PreferenceLabel.Strength.values:
        raise ValidationError(
            {"strength": f"Strength must be one of {PreferenceLabel.Strength.values}."}
        )
    if time_spent_ms < 0:
        raise ValidationError({"time_spent_ms": "Time spent cannot be negative."})

    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update()
            .select_related("comparison__project")
            .filter(pk=assignment_id, annotator=user)
            .first()
        )
        if assignment is None:
            raise ValidationError(
                {"assignment": "This comparison is not assigned to you."}, code="not_assigned"
            )
        if assignment.status == Assignment.Status.SUBMITTED:
            return assignment.label
        if assignment.status != Assignment.Status.ACTIVE:
            raise ValidationError(
                {"assignment": f"This comparison was {assignment.status}; it takes no label."},
                code="not_active",
            )
        comparison = Comparison.objects.select_for_update().get(pk=assignment.comparison_id)
        if comparison.status != Comparison.Status.OPEN:
            raise ValidationError(
                {"assignment": "This comparison no longer takes labels."}, code="closed"
            )
        if (
            choice == PreferenceLabel.Choice.BOTH_BAD
            and assignment.comparison.project.rationale_required_for_both_bad
            and not rationale.strip()
        ):
            raise ValidationError(
                {"rationale": 'This project asks for a rationale with "both bad".'},
                code="rationale_required",
            )
        label = PreferenceLabel(
            comparison=comparison,
            annotator=user,
            assignment=assignment,
            choice=choice,
            strength=strength,
            rationale=rationale.strip(),
            time_spent_ms=time_spent_ms,
            a_shown_left=assignment.a_shown_left,
        )
        # The related rows are locked above and the database enforces the unique constraint:
        # skip the validation queries that would re-check them (the hot path of labeling).
        label.full_clean(
            exclude=["comparison", "annotator", "assignment"],
            validate_unique=False,
            validate_constraints=False,
        )
        label.save()
        LabelAudit.objects.create(
            label=label, actor=user, action="created", before=None, after=_label_state(label)
        )
        assignment.status = Assignment.Status.SUBMITTED
        assignment.save(update_fields=["status"])
        if comparison.labels.filter(withdrawn_at__isnull=True).count() >= (
            comparison.required_labels
        ):
            comparison.status = Comparison.Status.COMPLETE
            comparison.save(update_fields=["status"])
        project = assignment.comparison.project  # loaded with the assignment
    _maybe_trigger_iteration(project=project)
    return label


def _label_state(label: PreferenceLabel) -> dict[str, Any]:
    return {
        "choice": label.choice,
        "strength": label.strength,
        "rationale": label.rationale,
        "review_status": label.review_status,
    }


def _maybe_trigger_iteration(*, project: Project) -> None:
    if not project.trigger_new_labels:
        return
    from training.selectors import labels_since_last_iteration
    from training.services import iteration_start

    if labels_since_last_iteration(project=project) >= project.trigger_new_labels:
        iteration_start(project=project, trigger="labels")


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
        if comparison.status == Comparison.Status.COMPLETE:
            comparison.status = Comparison.Status.OPEN
            comparison.save(update_fields=["status"])
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
    return assignment


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
    return flag
