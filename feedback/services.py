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
    Completion,
    LabelAudit,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
)


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
        comparison = Comparison.objects.select_for_update().get(pk=assignment.comparison_id)
        if comparison.status != Comparison.Status.OPEN:
            raise ValidationError(
                {"assignment": "This comparison no longer takes labels."}, code="closed"
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
        label.full_clean(validate_unique=False)
        label.save()
        LabelAudit.objects.create(
            label=label, actor=user, action="created", before=None, after=_label_state(label)
        )
        assignment.status = Assignment.Status.SUBMITTED
        assignment.save(update_fields=["status"])
        if comparison.labels.count() >= comparison.required_labels:
            comparison.status = Comparison.Status.COMPLETE
            comparison.save(update_fields=["status"])
        project = comparison.project
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
