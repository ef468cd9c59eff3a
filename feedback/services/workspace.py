"""The annotator workspace: undo the last label, skip, flag."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from feedback.models import (
    Assignment,
    Comparison,
    ComparisonFlag,
    LabelAudit,
    PreferenceLabel,
    Project,
)
from feedback.services.demonstrations import demonstration_withdraw_with
from feedback.services.labels import label_audit_state, text_check

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
    comparison goes back to the same annotator as an active lease. An edit of an answer
    made with the label is withdrawn with it (demonstration_withdraw_with).

    The lease's row is locked first, as a submit locks it first (feedback/labeling.py): an
    undo and a resubmit of the same lease then run one after the other, never interleaved.
    """
    now = timezone.now()
    nothing = ValidationError("There is no label of yours to undo.", code="nothing_to_undo")
    with transaction.atomic():
        latest = (
            PreferenceLabel.objects.filter(
                annotator=user,
                comparison__project=project,
                withdrawn_at__isnull=True,
                assignment__isnull=False,
            )
            .order_by("-created_at", "-id")
            .first()
        )
        if latest is None:
            raise nothing
        assignment = Assignment.objects.select_for_update().get(pk=latest.assignment_id)
        # Read again under the lease's lock: an undo that went first withdrew it.
        label = (
            PreferenceLabel.objects.select_for_update()
            .filter(pk=latest.pk, withdrawn_at__isnull=True, assignment=assignment)
            .first()
        )
        if label is None:
            raise nothing
        if label.created_at < now - UNDO_WINDOW:
            minutes = int(UNDO_WINDOW.total_seconds() // 60)
            raise ValidationError(
                f"Your last label is older than {minutes} minutes; it can no longer be undone.",
                code="too_late",
            )
        if label.review_status != PreferenceLabel.ReviewStatus.UNREVIEWED:
            raise ValidationError("Your last label was already reviewed.", code="reviewed")
        comparison = Comparison.objects.select_for_update().get(pk=label.comparison_id)
        before = label_audit_state(label)
        label.withdrawn_at = now
        label.assignment = None  # the lease takes a new label; this one stays for the record
        label.save(update_fields=["withdrawn_at", "assignment", "updated_at"])
        LabelAudit.objects.create(
            label=label,
            actor=user,
            action="withdrawn",
            before={**before, "assignment_id": assignment.pk},
            after={**label_audit_state(label), "withdrawn_at": now.isoformat()},
        )
        demonstration_withdraw_with(label=label, actor=user, now=now)
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
    text_check(Assignment, "skip_reason", reason)
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
