"""Every write of the feedback app: projects, prompts, comparisons, assignments, labels."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from feedback.events import event_publish
from feedback.models import (
    Assignment,
    Comparison,
    ComparisonAudit,
    Completion,
    LabelAudit,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
)

VALID_ROLES = {"system", "user", "assistant"}


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
            if split not in Prompt.Split.values:
                raise ValidationError(
                    f"{where}: field 'split' must be one of {Prompt.Split.values}."
                )
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


# Related rows an annotator's screen needs, loaded with the lease in the same query.
_DISPLAY = ("comparison__prompt", "comparison__completion_a", "comparison__completion_b")
# A consistency repeat comes back only after this many later labels of the same annotator.
REPEAT_GAP = 10
# Candidates locked per next-item query: a few, in case a concurrent lease filled one since.
_CANDIDATES = 3


def assignment_next(*, project: Project, user: AbstractBaseUser) -> Assignment | None:
    """The annotator's current lease, or a new lease on the next comparison they can label.

    Order: their own unexpired lease; a consistency repeat at the project's repeat rate; gold
    items at the project's gold rate; then the highest priority, oldest first. A comparison is
    never leased to more annotators at once than it still needs labels, and never to someone
    who has labelled it. An expired lease frees its place; its own annotator may get the item
    back, and the lease row is then renewed in place.

    On PostgreSQL candidate rows are locked with SKIP LOCKED, so concurrent annotators never
    wait on each other; the lease count is re-read after the lock, in a new statement (and so
    a new snapshot), because a lease committed while we waited is not in the first one. SQLite
    serialises writers (IMMEDIATE transactions), which keeps it correct.
    """
    now = timezone.now()
    with transaction.atomic():
        mine = (
            Assignment.objects.select_related(*_DISPLAY)
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
        expires_at = now + timedelta(minutes=project.lease_minutes)
        if project.repeat_rate and random.random() < project.repeat_rate:
            repeat = _lease_repeat(project=project, user=user, expires_at=expires_at)
            if repeat is not None:
                return repeat
        gold_first = bool(project.gold_rate) and random.random() < project.gold_rate
        for gold in (True, False) if gold_first else (False, True):
            lease = (_lease_gold if gold else _lease_regular)(
                project=project, user=user, now=now, expires_at=expires_at
            )
            if lease is not None:
                return lease
    return None


def _not_labelled_by(user: AbstractBaseUser) -> Exists:
    return Exists(
        Assignment.objects.filter(
            comparison=OuterRef("pk"),
            annotator=user,
            is_repeat=False,
            status=Assignment.Status.SUBMITTED,
        )
    )


def _lease_regular(
    *, project: Project, user: AbstractBaseUser, now: datetime, expires_at: datetime
) -> Assignment | None:
    """Lease the best regular (or arena) comparison that still needs a label from `user`."""
    others_leases = Assignment.objects.filter(
        comparison=OuterRef("pk"),
        status=Assignment.Status.ACTIVE,
        is_repeat=False,
        expires_at__gt=now,
    ).exclude(annotator=user)
    own_lease = Assignment.objects.filter(
        comparison=OuterRef("pk"), annotator=user, is_repeat=False
    )
    candidates = list(
        Comparison.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("prompt", "completion_a", "completion_b")
        .filter(project=project, status=Comparison.Status.OPEN)
        .exclude(kind=Comparison.Kind.GOLD)
        .exclude(_not_labelled_by(user))
        .alias(busy=Coalesce(Subquery(_count(others_leases)), 0))
        .filter(busy__lt=F("required_labels") - F("label_count"))
        .annotate(own_lease_id=Subquery(own_lease.values("pk")[:1]))
        .order_by("-priority", "created_at", "id")[:_CANDIDATES]
    )
    if not candidates:
        return None
    # A new statement, so a new snapshot: leases committed before we got the locks count.
    busy = dict(
        Assignment.objects.filter(
            comparison_id__in=[c.pk for c in candidates],
            status=Assignment.Status.ACTIVE,
            is_repeat=False,
            expires_at__gt=now,
        )
        .exclude(annotator=user)
        .values_list("comparison_id")
        .annotate(n=Count("id"))
    )
    for comparison in candidates:
        if busy.get(comparison.pk, 0) + comparison.label_count >= comparison.required_labels:
            continue
        return _lease_write(
            comparison=comparison,
            user=user,
            own_lease_id=comparison.own_lease_id,
            expires_at=expires_at,
        )
    return None


def _lease_gold(
    *, project: Project, user: AbstractBaseUser, now: datetime, expires_at: datetime
) -> Assignment | None:
    """Lease a gold item `user` has not labelled. Gold items are shown to every annotator
    once, so they have no lease limit and need no row lock."""
    comparison = (
        Comparison.objects.select_related("prompt", "completion_a", "completion_b")
        .filter(project=project, status=Comparison.Status.OPEN, kind=Comparison.Kind.GOLD)
        .exclude(_not_labelled_by(user))
        .annotate(
            own_lease_id=Subquery(
                Assignment.objects.filter(
                    comparison=OuterRef("pk"), annotator=user, is_repeat=False
                ).values("pk")[:1]
            )
        )
        .order_by("-priority", "created_at", "id")
        .first()
    )
    if comparison is None:
        return None
    try:
        with transaction.atomic():  # the same annotator in two concurrent requests
            return _lease_write(
                comparison=comparison,
                user=user,
                own_lease_id=comparison.own_lease_id,
                expires_at=expires_at,
            )
    except IntegrityError:
        return None


def _lease_write(
    *,
    comparison: Comparison,
    user: AbstractBaseUser,
    own_lease_id: int | None,
    expires_at: datetime,
) -> Assignment:
    """Create the lease, or renew the annotator's own expired one (same side shown left).

    Precondition for regular comparisons: the caller holds the comparison's row lock.
    """
    if own_lease_id is not None:
        Assignment.objects.filter(pk=own_lease_id).update(
            status=Assignment.Status.ACTIVE, expires_at=expires_at
        )
        lease = Assignment.objects.get(pk=own_lease_id)
    else:
        lease = Assignment.objects.create(
            comparison=comparison,
            annotator=user,
            a_shown_left=random.random() < 0.5,
            expires_at=expires_at,
        )
    lease.comparison = comparison
    return lease


def _lease_repeat(
    *, project: Project, user: AbstractBaseUser, expires_at: datetime
) -> Assignment | None:
    """Bring back an item `user` labelled at least REPEAT_GAP labels ago, sides swapped."""
    mine = PreferenceLabel.objects.filter(
        annotator=user, comparison__project=project, is_repeat=False
    ).order_by("-id")
    cutoff = list(mine.values_list("id", flat=True)[REPEAT_GAP - 1 : REPEAT_GAP])
    if not cutoff:
        return None
    original = (
        mine.filter(id__lt=cutoff[0])
        .exclude(comparison__kind=Comparison.Kind.GOLD)
        .exclude(
            Exists(
                Assignment.objects.filter(
                    comparison=OuterRef("comparison"), annotator=user, is_repeat=True
                )
            )
        )
        .order_by("id")
        .first()
    )
    if original is None:
        return None
    try:
        with transaction.atomic():
            lease = Assignment.objects.create(
                comparison_id=original.comparison_id,
                annotator=user,
                is_repeat=True,
                a_shown_left=not original.a_shown_left,
                expires_at=expires_at,
            )
    except IntegrityError:  # the same annotator in two concurrent requests
        return None
    return Assignment.objects.select_related(*_DISPLAY).get(pk=lease.pk)


def _count(queryset: Any) -> Any:
    """A correlated COUNT(*) subquery over `queryset`."""
    return queryset.order_by().values("comparison").annotate(n=Count("id")).values("n")


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
    gets more than its k regular labels. Repeats never count towards k.
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
            Assignment.objects.select_for_update(of=("self",))
            .select_related("comparison__project")
            .filter(pk=assignment_id, annotator=user)
            .first()
        )
        if assignment is None:
            raise ValidationError(
                {"assignment": "This comparison is not assigned to you."}, code="not_assigned"
            )
        if assignment.status == Assignment.Status.SUBMITTED:
            return PreferenceLabel.objects.get(assignment=assignment)
        comparison = assignment.comparison
        if not assignment.is_repeat and not _comparison_take_label(comparison=comparison):
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
            is_repeat=assignment.is_repeat,
        )
        # The related rows are the ones just locked: skip full_clean's existence queries.
        label.full_clean(
            exclude=["comparison", "annotator", "assignment"],
            validate_unique=False,
            validate_constraints=False,
        )
        label.save()
        LabelAudit.objects.create(
            label=label, actor=user, action="created", before=None, after=_label_state(label)
        )
        Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.SUBMITTED)
        assignment.status = Assignment.Status.SUBMITTED
        project = comparison.project
    if not label.is_repeat:
        _maybe_trigger_iteration(project=project)
    return label


def _comparison_take_label(*, comparison: Comparison) -> bool:
    """Count one more regular label on an open comparison that still needs it; complete it at
    k. Gold items take a label from every annotator and stay open."""
    needs = Q(pk=comparison.pk, status=Comparison.Status.OPEN)
    if comparison.kind != Comparison.Kind.GOLD:
        needs &= Q(label_count__lt=F("required_labels"))
    full = Q(label_count__gte=F("required_labels") - 1) & ~Q(kind=Comparison.Kind.GOLD)
    return bool(
        Comparison.objects.filter(needs).update(
            label_count=F("label_count") + 1,
            status=Case(When(full, then=Value(Comparison.Status.COMPLETE)), default=F("status")),
        )
    )


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
