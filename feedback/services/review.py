"""Review and quality control: accept or reject labels, decide a comparison, set a gold answer."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from feedback.models import (
    Comparison,
    ComparisonAudit,
    LabelAudit,
    PreferenceLabel,
)
from feedback.services.labels import label_audit_state


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
        before = label_audit_state(label)
        label.review_status = decision
        label.save(update_fields=["review_status", "updated_at"])
        LabelAudit.objects.create(
            label=label,
            actor=reviewer,
            action=f"review_{decision}",
            before=before,
            after=label_audit_state(label),
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
        if comparison.kind == Comparison.Kind.EDIT:
            raise ValidationError(
                {
                    "gold_choice": "An edit's comparison (the edit against the answer it edits) "
                    "cannot be a gold item: review the demonstration instead."
                }
            )
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
