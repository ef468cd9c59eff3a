"""Demonstrations: answers people write for a prompt, or edit on the labeling page, and their
review (docs/demonstrations.md).

An edit is two things at once. It is a demonstration (the answer the annotator would have
given), and it is a preference: the edit is better than the answer it edits. The edit becomes
a `Completion` of kind human (no policy version: it is nobody's sample), compared with the
original in a comparison of kind edit that holds the annotator's label preferring it. That
comparison joins the preference data like any other (reward models, DPO), is never leased,
never a consistency repeat and never a version's game. Reviewing the demonstration reviews
that label with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from feedback.models import (
    MAX_TIME_SPENT_MS,
    Assignment,
    Comparison,
    Completion,
    Demonstration,
    DemonstrationAudit,
    LabelAudit,
    PreferenceLabel,
    Project,
    Prompt,
)
from feedback.services.labels import MAX_ID, label_audit_state, label_submit, text_check
from feedback.services.review import label_review
from feedback.signals import label_stored

EDIT_SIDES = ("a", "b")
DECISIONS = (
    Demonstration.ReviewStatus.ACCEPTED,
    Demonstration.ReviewStatus.REJECTED,
    Demonstration.ReviewStatus.UNREVIEWED,
)


def demonstration_text_clean(text: str, field: str = "text") -> str:
    """The text a demonstration stores: without surrounding white space, refused (naming
    `field`) when empty, longer than MAX_DEMONSTRATION_CHARS or holding a control character.
    The same check on every way in: the labeling page, the API, reviewers' corrections."""
    text = text.strip() if isinstance(text, str) else ""
    if not text:
        raise ValidationError({field: "The demonstration is empty: write an answer."})
    try:
        text_check(Demonstration, "text", text)
    except ValidationError as error:
        raise ValidationError({field: error.message_dict["text"]}) from None
    return text


def demonstration_state(demonstration: Demonstration) -> dict[str, Any]:
    """What the audit trail keeps of a demonstration at each change (people by id only)."""
    return {
        "text": demonstration.text,
        "review_status": demonstration.review_status,
        "reviewed_by": demonstration.reviewed_by_id,
    }


def _time_check(time_spent_ms: int) -> None:
    if not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS:
        raise ValidationError(
            {"time_spent_ms": f"Time spent must be between 0 and {MAX_TIME_SPENT_MS} ms."}
        )


def demonstration_write(
    *,
    user: AbstractBaseUser,
    project: Project,
    prompt_id: int,
    text: str,
    time_spent_ms: int = 0,
) -> Demonstration:
    """Store the answer `user` wrote for a train prompt of `project` (the write mode).

    One written demonstration per person and prompt: sending it again (a retry after a lost
    connection) returns the stored one unchanged. A prompt that has reached the project's
    demonstrations per prompt meanwhile (two people wrote at once) still takes it: the quota
    decides which prompts are offered, and nobody's work is thrown away. The caller checks
    that `user` is a member of `project`.
    """
    if project.demonstrations_per_prompt < 1:
        raise ValidationError(
            "This project does not collect written demonstrations (its demonstrations per "
            "prompt is 0).",
            code="write_off",
        )
    text = demonstration_text_clean(text)
    _time_check(time_spent_ms)
    prompt = (
        Prompt.objects.filter(project=project, pk=prompt_id).first()
        if 0 < prompt_id <= MAX_ID
        else None
    )
    if prompt is None:
        raise ValidationError({"prompt": "No such prompt in this project."})
    if prompt.split != Prompt.Split.TRAIN:
        raise ValidationError(
            {
                "prompt": f"Prompt {prompt.pk} is an {prompt.split} prompt: demonstrations are "
                "written for train prompts (the others judge candidates and stay unseen)."
            }
        )
    mine = Demonstration.objects.filter(
        prompt=prompt,
        author=user,
        origin=Demonstration.Origin.WRITTEN,
        withdrawn_at__isnull=True,
    )
    existing = mine.first()
    if existing is not None:
        return existing
    demonstration = Demonstration(
        project=project,
        prompt=prompt,
        author=user,
        text=text,
        origin=Demonstration.Origin.WRITTEN,
        time_spent_ms=time_spent_ms,
    )
    try:
        with transaction.atomic():
            demonstration.save()
            _audit(demonstration, actor=user, action="created", before=None)
    except IntegrityError:  # the same answer, sent twice at once: the first one stands
        existing = mine.first()
        if existing is None:
            raise
        return existing
    return demonstration


def demonstration_edit(
    *,
    user: AbstractBaseUser,
    assignment_id: int,
    choice: str,
    side: str,
    text: str,
    strength: int = PreferenceLabel.Strength.CLEAR,
    rationale: str = "",
    time_spent_ms: int = 0,
) -> Demonstration:
    """Label the leased comparison (as label_submit does) and store the annotator's edit of
    one of its answers (`side`: "a" or "b", the completion, not the position shown): a
    demonstration, a human completion, and a comparison of kind edit (the edit as A, the
    original as B) with the annotator's label preferring A. All or nothing: a refused label
    stores no edit and a refused edit no label.

    Sending it again (a retry) returns the stored demonstration unchanged, as label_submit
    returns the stored label.
    """
    if side not in EDIT_SIDES:
        raise ValidationError(
            {"edit_side": f"Unknown side {side!r}: edit answer 'a' or 'b' of the comparison."}
        )
    text = demonstration_text_clean(text, field="edit_text")
    assignment = (
        Assignment.objects.select_related(
            "comparison__project", "comparison__completion_a", "comparison__completion_b"
        )
        .filter(pk=assignment_id, annotator=user)
        .first()
        if 0 < assignment_id <= MAX_ID
        else None
    )
    if assignment is None:  # label_submit would say the same
        raise ValidationError(
            {"assignment": "This comparison is not assigned to you."}, code="not_assigned"
        )
    comparison = assignment.comparison
    project = comparison.project
    if not project.answer_edits:
        raise ValidationError(
            {"edit_text": "This project does not take edits of answers: choose, then submit."}
        )
    original = comparison.completion_a if side == "a" else comparison.completion_b
    if text == original.text.strip():
        raise ValidationError(
            {
                "edit_text": "The edit is the same as the answer: change it, or cancel the edit "
                "(Esc) and submit your choice alone."
            }
        )
    with transaction.atomic():
        label = label_submit(
            user=user,
            assignment_id=assignment_id,
            choice=choice,
            strength=strength,
            rationale=rationale,
            time_spent_ms=time_spent_ms,
        )
        existing = Demonstration.objects.filter(label=label).first()
        if existing is not None:
            return existing
        demonstration = _edit_store(
            user=user,
            project=project,
            original=original,
            text=text,
            label=label,
            time_spent_ms=time_spent_ms,
        )
    if project.trigger_new_labels:  # the edit's label is one more for the loop's trigger
        label_stored.send(
            sender=PreferenceLabel,
            project_id=project.pk,
            trigger_new_labels=True,
            human_gate=False,
        )
    return demonstration


def _edit_store(
    *,
    user: AbstractBaseUser,
    project: Project,
    original: Completion,
    text: str,
    label: PreferenceLabel,
    time_spent_ms: int,
) -> Demonstration:
    """The rows of an edit (see demonstration_edit); inside the caller's transaction."""
    edited = Completion.objects.create(
        prompt_id=original.prompt_id,
        kind=Completion.Kind.HUMAN,
        policy_version=None,
        text=text,
        sampling={"edit_of": original.pk},
    )
    comparison = Comparison.objects.create(
        project=project,
        prompt_id=original.prompt_id,
        completion_a=edited,
        completion_b=original,
        kind=Comparison.Kind.EDIT,
        required_labels=1,
        label_count=1,
        status=Comparison.Status.COMPLETE,
    )
    preference = PreferenceLabel.objects.create(
        comparison=comparison,
        annotator=user,
        choice=PreferenceLabel.Choice.A,
        strength=PreferenceLabel.Strength.CLEAR,
        a_shown_left=True,
    )
    LabelAudit.objects.create(
        label=preference,
        actor=user,
        action="created",
        before=None,
        after={**label_audit_state(preference), "edit_of": original.pk},
    )
    demonstration = Demonstration.objects.create(
        project=project,
        prompt_id=original.prompt_id,
        author=user,
        text=text,
        origin=Demonstration.Origin.EDITED,
        original=original,
        completion=edited,
        comparison=comparison,
        label=label,
        time_spent_ms=time_spent_ms,
    )
    _audit(demonstration, actor=user, action="created", before=None)
    return demonstration


def demonstration_withdraw_with(
    *, label: PreferenceLabel, actor: AbstractBaseUser, now: datetime
) -> Demonstration | None:
    """The annotator undid `label` (feedback.services.label_undo): the edit they made with it
    is withdrawn too, and so is its own label. Nothing is deleted; both keep their audit
    trail. Inside the undo's transaction."""
    demonstration = (
        Demonstration.objects.select_for_update()
        .filter(label=label, withdrawn_at__isnull=True)
        .first()
    )
    if demonstration is None:
        return None
    if demonstration.review_status != Demonstration.ReviewStatus.UNREVIEWED:
        raise ValidationError(
            "The edit you made with your last label was already reviewed.", code="reviewed"
        )
    before = demonstration_state(demonstration)
    demonstration.withdrawn_at = now
    demonstration.save(update_fields=["withdrawn_at", "updated_at"])
    _audit(
        demonstration,
        actor=actor,
        action="withdrawn",
        before=before,
        after={**demonstration_state(demonstration), "withdrawn_at": now.isoformat()},
    )
    for preference in PreferenceLabel.objects.select_for_update().filter(
        comparison_id=demonstration.comparison_id, withdrawn_at__isnull=True
    ):
        state = label_audit_state(preference)
        preference.withdrawn_at = now
        preference.save(update_fields=["withdrawn_at", "updated_at"])
        LabelAudit.objects.create(
            label=preference,
            actor=actor,
            action="withdrawn",
            before=state,
            after={**label_audit_state(preference), "withdrawn_at": now.isoformat()},
        )
    Comparison.objects.filter(pk=demonstration.comparison_id).update(
        status=Comparison.Status.CLOSED, label_count=0
    )
    return demonstration


def _reviewable(demonstration_id: int) -> Demonstration:
    demonstration = Demonstration.objects.select_for_update().filter(pk=demonstration_id).first()
    if demonstration is None:
        raise ValidationError({"demonstration": "No such demonstration."})
    if demonstration.withdrawn_at is not None:
        raise ValidationError(
            "This demonstration was withdrawn by its author; it takes no review.",
            code="withdrawn",
        )
    return demonstration


def _edit_label_review(
    demonstration: Demonstration, *, reviewer: AbstractBaseUser, decision: str
) -> None:
    """An edit's own preference label follows its demonstration's review: a rejected edit
    leaves the preference data too, an accepted or corrected one is an accepted label."""
    if demonstration.comparison_id is None:
        return
    for preference_id in PreferenceLabel.objects.filter(
        comparison_id=demonstration.comparison_id, withdrawn_at__isnull=True
    ).values_list("pk", flat=True):
        label_review(reviewer=reviewer, label_id=preference_id, decision=decision)


def demonstration_review(
    *, reviewer: AbstractBaseUser, demonstration_id: int, decision: str
) -> Demonstration:
    """Accept or reject a demonstration (or send it back to unreviewed); audited, never
    deleted. A rejected demonstration is left out of exports and SFT data; for an edit, its
    preference label is reviewed the same way. The caller checks that `reviewer` reviews the
    demonstration's project."""
    if decision not in DECISIONS:
        raise ValidationError(
            {
                "decision": f"Unknown decision {decision!r}; use one of {list(DECISIONS)} "
                "(a correction sends the new text instead)."
            }
        )
    with transaction.atomic():
        demonstration = _reviewable(demonstration_id)
        if demonstration.review_status == decision:
            return demonstration
        before = demonstration_state(demonstration)
        demonstration.review_status = decision
        unreviewed = decision == Demonstration.ReviewStatus.UNREVIEWED
        demonstration.reviewed_by = None if unreviewed else reviewer
        demonstration.reviewed_at = None if unreviewed else timezone.now()
        demonstration.save(
            update_fields=["review_status", "reviewed_by", "reviewed_at", "updated_at"]
        )
        _audit(demonstration, actor=reviewer, action=f"review_{decision}", before=before)
        _edit_label_review(demonstration, reviewer=reviewer, decision=decision)
    return demonstration


def demonstration_correct(
    *, reviewer: AbstractBaseUser, demonstration_id: int, text: str
) -> Demonstration:
    """A reviewer replaces the text of a demonstration with a better one: the demonstration
    is then `corrected` (accepted, in the reviewer's words), the audit trail keeps both texts,
    and an edit's completion takes the new text, so the preference pair says the same as
    the demonstration. The same limits as any demonstration. The caller checks that
    `reviewer` reviews the demonstration's project."""
    text = demonstration_text_clean(text)
    with transaction.atomic():
        demonstration = _reviewable(demonstration_id)
        if text == demonstration.text:
            raise ValidationError(
                {"text": "The correction is the text as it is: change it, or accept it."}
            )
        if demonstration.original_id is not None:
            original = Completion.objects.get(pk=demonstration.original_id)
            if text == original.text.strip():
                raise ValidationError(
                    {"text": "The correction is the answer that was edited: reject the edit."}
                )
        before = demonstration_state(demonstration)
        demonstration.text = text
        demonstration.review_status = Demonstration.ReviewStatus.CORRECTED
        demonstration.reviewed_by = reviewer
        demonstration.reviewed_at = timezone.now()
        demonstration.save(
            update_fields=["text", "review_status", "reviewed_by", "reviewed_at", "updated_at"]
        )
        _audit(demonstration, actor=reviewer, action="corrected", before=before)
        if demonstration.completion_id is not None:
            Completion.objects.filter(pk=demonstration.completion_id).update(text=text)
        _edit_label_review(
            demonstration, reviewer=reviewer, decision=PreferenceLabel.ReviewStatus.ACCEPTED
        )
    return demonstration


def _audit(
    demonstration: Demonstration,
    *,
    actor: AbstractBaseUser | None,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None = None,
) -> DemonstrationAudit:
    return DemonstrationAudit.objects.create(
        demonstration=demonstration,
        actor=actor,
        action=action,
        before=before,
        after=after if after is not None else demonstration_state(demonstration),
    )
