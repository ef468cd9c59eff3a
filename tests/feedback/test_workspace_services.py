"""Undo, skip, flag and the rationale rule of the annotator workspace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from feedback.models import Assignment, Comparison, ComparisonFlag, LabelAudit, PreferenceLabel
from feedback.selectors import annotator_progress, label_undoable
from feedback.services import (
    assignment_next,
    assignment_skip,
    comparison_flag,
    label_submit,
    label_undo,
)
from tests.factories import make_comparisons
from training.selectors import labels_for_training, labels_since_last_iteration


def label_one(project, user, choice="a"):
    assignment = assignment_next(project=project, user=user)
    return assignment, label_submit(user=user, assignment_id=assignment.pk, choice=choice)


def test_undo_withdraws_with_audit_and_gives_the_item_back(project, annotator):
    (comparison,) = make_comparisons(project, [("x", "y")])
    assignment, label = label_one(project, annotator, "b")

    undone = label_undo(user=annotator, project=project)

    assert undone.pk == label.pk
    label.refresh_from_db()
    assignment.refresh_from_db()
    comparison.refresh_from_db()
    assert label.withdrawn_at is not None and label.assignment_id is None
    assert (assignment.status, comparison.status) == ("active", "open")
    audits = list(LabelAudit.objects.filter(label=label).order_by("id"))
    assert [a.action for a in audits] == ["created", "withdrawn"]
    assert audits[1].before["assignment_id"] == assignment.pk
    assert audits[1].before["choice"] == "b"
    assert assignment_next(project=project, user=annotator).pk == assignment.pk
    assert list(labels_for_training(project=project)) == []
    assert labels_since_last_iteration(project=project) == 0
    assert annotator_progress(project=project, user=annotator)["done_total"] == 0


def test_an_undone_item_takes_a_new_label_and_both_rows_stay(project, annotator):
    make_comparisons(project, [("x", "y")])
    assignment, first = label_one(project, annotator, "a")
    label_undo(user=annotator, project=project)

    second = label_submit(user=annotator, assignment_id=assignment.pk, choice="tie")

    assert PreferenceLabel.objects.count() == 2
    assert [x.pk for x in labels_for_training(project=project)] == [second.pk]
    assert Comparison.objects.get().status == "complete"


def test_undo_is_refused_after_the_window_and_changes_nothing(project, annotator):
    make_comparisons(project, [("x", "y")])
    assignment, label = label_one(project, annotator)
    PreferenceLabel.objects.filter(pk=label.pk).update(
        created_at=timezone.now() - timedelta(minutes=3)
    )

    with pytest.raises(ValidationError) as error:
        label_undo(user=annotator, project=project)

    assert error.value.messages == [
        "Your last label is older than 2 minutes; it can no longer be undone."
    ]
    label.refresh_from_db()
    assert label.withdrawn_at is None and label.assignment_id == assignment.pk
    assert LabelAudit.objects.count() == 1
    assert label_undoable(user=annotator, project=project) is None


def test_undo_with_nothing_to_undo(project, annotator):
    with pytest.raises(ValidationError) as error:
        label_undo(user=annotator, project=project)
    assert error.value.messages == ["There is no label of yours to undo."]


def test_undo_touches_only_the_callers_labels(project, annotator, make_user):
    from feedback.services import membership_set

    other = make_user("other")
    membership_set(project=project, user=other, role="annotator")
    make_comparisons(project, [("x", "y"), ("z", "w")])
    _, mine = label_one(project, annotator)
    _, theirs = label_one(project, other)

    label_undo(user=annotator, project=project)

    assert PreferenceLabel.objects.get(pk=theirs.pk).withdrawn_at is None
    assert PreferenceLabel.objects.get(pk=mine.pk).withdrawn_at is not None


def test_skip_records_the_reason_and_moves_on(project, annotator):
    make_comparisons(project, [("x", "y"), ("z", "w")])
    first = assignment_next(project=project, user=annotator)

    assignment_skip(user=annotator, assignment_id=first.pk, reason="The prompt is unclear")
    again = assignment_skip(user=annotator, assignment_id=first.pk, reason="twice")
    following = assignment_next(project=project, user=annotator)

    assert (again.status, again.skip_reason) == ("skipped", "The prompt is unclear")
    assert following.pk != first.pk
    with pytest.raises(ValidationError) as error:
        label_submit(user=annotator, assignment_id=first.pk, choice="a")
    assert error.value.message_dict == {
        "assignment": ["This comparison was skipped; it takes no label."]
    }
    assert PreferenceLabel.objects.count() == 0


def test_skip_needs_a_reason_and_changes_nothing_without(project, annotator):
    make_comparisons(project, [("x", "y")])
    assignment = assignment_next(project=project, user=annotator)

    with pytest.raises(ValidationError) as error:
        assignment_skip(user=annotator, assignment_id=assignment.pk, reason="  ")

    assert error.value.message_dict == {"reason": ["Say why you skip this item."]}
    assert Assignment.objects.get().status == "active"


def test_flag_records_the_report_and_skips(project, annotator):
    (comparison,) = make_comparisons(project, [("x", "y")])
    assignment = assignment_next(project=project, user=annotator)

    flag = comparison_flag(
        user=annotator, assignment_id=assignment.pk, reason="unsafe", note=" harmful "
    )

    assert (flag.comparison_id, flag.reason, flag.note) == (comparison.pk, "unsafe", "harmful")
    assignment.refresh_from_db()
    assert (assignment.status, assignment.skip_reason) == ("skipped", "flagged: unsafe")
    assert comparison_flag(user=annotator, assignment_id=assignment.pk, reason="other").pk == (
        flag.pk
    )


def test_flag_rejects_an_unknown_reason_and_changes_nothing(project, annotator):
    make_comparisons(project, [("x", "y")])
    assignment = assignment_next(project=project, user=annotator)

    with pytest.raises(ValidationError) as error:
        comparison_flag(user=annotator, assignment_id=assignment.pk, reason="boring")

    assert error.value.message_dict == {
        "reason": ["Unknown flag 'boring'; use one of ['unsafe', 'broken', 'other']."]
    }
    assert ComparisonFlag.objects.count() == 0
    assert Assignment.objects.get().status == "active"


def test_skip_and_flag_refuse_another_annotators_assignment(project, annotator, make_user):
    make_comparisons(project, [("x", "y")])
    assignment = assignment_next(project=project, user=annotator)
    stranger = make_user("stranger")

    with pytest.raises(ValidationError):
        assignment_skip(user=stranger, assignment_id=assignment.pk, reason="no")
    with pytest.raises(ValidationError):
        comparison_flag(user=stranger, assignment_id=assignment.pk, reason="broken")

    assert Assignment.objects.get().status == "active"
    assert ComparisonFlag.objects.count() == 0


def test_project_can_require_a_rationale_for_both_bad(project, annotator):
    project.rationale_required_for_both_bad = True
    project.save()
    make_comparisons(project, [("x", "y")])
    assignment = assignment_next(project=project, user=annotator)

    with pytest.raises(ValidationError) as error:
        label_submit(user=annotator, assignment_id=assignment.pk, choice="both_bad")
    assert error.value.message_dict == {
        "rationale": ['This project asks for a rationale with "both bad".']
    }
    assert PreferenceLabel.objects.count() == 0

    label = label_submit(
        user=annotator, assignment_id=assignment.pk, choice="both_bad", rationale="Both wrong."
    )
    assert label.rationale == "Both wrong."
