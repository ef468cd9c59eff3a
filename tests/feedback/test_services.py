from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from feedback.models import Assignment, Comparison, LabelAudit, PreferenceLabel, Prompt
from feedback.services import assignment_next, label_submit, membership_set, prompts_import
from tests.factories import make_comparisons


def test_assignment_is_kept_until_submitted(project, annotator):
    make_comparisons(project, [("one", "two"), ("three", "four")])

    first = assignment_next(project=project, user=annotator)
    again = assignment_next(project=project, user=annotator)

    assert first is not None
    assert again.pk == first.pk
    assert Assignment.objects.count() == 1


def test_label_submit_stores_label_with_order_shown_and_audit(project, annotator):
    (comparison,) = make_comparisons(project, [("short", "a much longer answer")])
    assignment = assignment_next(project=project, user=annotator)

    label = label_submit(
        user=annotator, assignment_id=assignment.pk, choice="a", strength=3, time_spent_ms=1200
    )

    assert (label.comparison_id, label.choice, label.strength) == (comparison.pk, "a", 3)
    assert label.a_shown_left == assignment.a_shown_left
    assert label.time_spent_ms == 1200
    comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.COMPLETE
    assert list(LabelAudit.objects.values_list("action", flat=True)) == ["created"]


def test_submitting_twice_returns_the_same_label(project, annotator):
    make_comparisons(project, [("x", "y")])
    assignment = assignment_next(project=project, user=annotator)

    first = label_submit(user=annotator, assignment_id=assignment.pk, choice="b")
    second = label_submit(user=annotator, assignment_id=assignment.pk, choice="a")

    assert second.pk == first.pk
    assert PreferenceLabel.objects.get().choice == "b"


def test_each_comparison_collects_k_labels_from_distinct_annotators(project, make_user):
    project.labels_per_comparison = 2
    project.save()
    (comparison,) = make_comparisons(project, [("x", "y")])
    people = [make_user(f"p{i}") for i in range(3)]
    for person in people:
        membership_set(project=project, user=person, role="annotator")

    leases = [assignment_next(project=project, user=person) for person in people]

    assert [lease is not None for lease in leases] == [True, True, False]
    for person, lease in zip(people[:2], leases[:2], strict=True):
        label_submit(user=person, assignment_id=lease.pk, choice="tie")
    comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.COMPLETE
    assert assignment_next(project=project, user=people[2]) is None
    assert comparison.labels.count() == 2


def test_label_on_a_comparison_not_assigned_to_you_is_refused(project, annotator, make_user):
    make_comparisons(project, [("x", "y")])
    other = make_user("other")
    membership_set(project=project, user=other, role="annotator")
    assignment = assignment_next(project=project, user=annotator)

    with pytest.raises(ValidationError) as error:
        label_submit(user=other, assignment_id=assignment.pk, choice="a")

    assert error.value.message_dict == {"assignment": ["This comparison is not assigned to you."]}
    assert PreferenceLabel.objects.count() == 0
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE


def test_unknown_choice_is_refused_and_changes_nothing(project, annotator):
    make_comparisons(project, [("x", "y")])
    assignment = assignment_next(project=project, user=annotator)

    with pytest.raises(ValidationError) as error:
        label_submit(user=annotator, assignment_id=assignment.pk, choice="left")

    assert "Unknown choice 'left'" in error.value.message_dict["choice"][0]
    assert PreferenceLabel.objects.count() == 0
    assert LabelAudit.objects.count() == 0


def test_prompt_import_is_all_or_nothing_and_names_each_bad_line(project):
    before = Prompt.objects.count()
    records = [
        {"prompt": "fine"},
        {"prompt": ""},
        {"text": "no prompt field"},
        {"prompt": [{"role": "user", "content": "ok"}], "split": "holdout"},
    ]

    with pytest.raises(ValidationError) as error:
        prompts_import(project=project, records=records, source="bad.jsonl")

    assert error.value.messages == [
        "bad.jsonl line 2, field 'prompt': Empty.",
        "bad.jsonl line 3, field 'prompt': Missing.",
        "bad.jsonl line 4, field 'split': Must be one of ['train', 'eval'].",
    ]
    assert Prompt.objects.count() == before
