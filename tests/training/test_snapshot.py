"""Training data: majority with strength, tie handling, reviewer overrides, rejected labels."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from feedback.models import Assignment
from feedback.services import comparison_decide, label_review, label_submit, membership_set
from tests.factories import make_comparisons
from training import services


@pytest.fixture
def people(project, make_user):
    users = [make_user(f"p{i}") for i in range(3)]
    for user in users:
        membership_set(project=project, user=user, role="annotator")
    return users


def label(user, comparison, choice, strength=2, repeat=False):
    lease = Assignment.objects.create(
        comparison=comparison,
        annotator=user,
        a_shown_left=True,
        is_repeat=repeat,
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    return label_submit(user=user, assignment_id=lease.pk, choice=choice, strength=strength)


def rows_of(snapshot):
    text = services.artifact_path(snapshot.path).read_text()
    return [
        (r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"])
        for r in map(json.loads, text.splitlines())
    ]


@pytest.fixture
def three_labelled(project, people):
    project.labels_per_comparison = 3
    project.save()
    (c,) = make_comparisons(project, [("alpha", "beta")])
    labels = [
        label(people[0], c, "a", 3),
        label(people[1], c, "tie", 1),
        label(people[2], c, "both_bad", 1),
    ]
    return c, labels


def test_ties_abstain_by_default(project, three_labelled):
    snapshot = services.snapshot_create(project=project, name="abstain")

    assert rows_of(snapshot) == [("alpha", "beta", 3.0)]
    assert snapshot.counts["tie_handling"] == "abstain"


def test_ties_counted_as_no_preference_leave_the_item_out(project, three_labelled):
    project.tie_handling = "count"
    project.save()

    with pytest.raises(ValidationError, match="no comparison with a preference"):
        services.snapshot_create(project=project, name="count")


def test_counted_ties_dilute_the_margin(project, people):
    project.labels_per_comparison = 3
    project.tie_handling = "count"
    project.save()
    (c,) = make_comparisons(project, [("alpha", "beta")])
    label(people[0], c, "b", 3)
    label(people[1], c, "b", 3)
    label(people[2], c, "tie", 1)

    assert rows_of(services.snapshot_create(project=project, name="s")) == [("beta", "alpha", 2.0)]


def test_a_reviewer_decision_overrides_the_vote(project, people, three_labelled, make_user):
    c, labels = three_labelled
    reviewer = make_user("rev")

    comparison_decide(reviewer=reviewer, comparison_id=c.pk, choice="b")
    snapshot = services.snapshot_create(project=project, name="override")

    # No label agrees with b: the margin is the slight one.
    assert rows_of(snapshot) == [("beta", "alpha", 1.0)]
    assert snapshot.counts["decided_by_reviewer_or_gold"] == 1
    assert sorted(snapshot.label_ids) == sorted(label.pk for label in labels)


def test_rejected_labels_and_repeats_are_left_out_and_label_ids_say_so(project, people, make_user):
    project.labels_per_comparison = 3
    project.save()
    (c,) = make_comparisons(project, [("alpha", "beta")])
    kept = [label(people[0], c, "a", 1), label(people[1], c, "a", 1)]
    rejected = label(people[2], c, "b", 3)
    label(people[0], c, "b", 3, repeat=True)
    label_review(reviewer=make_user("rev"), label_id=rejected.pk, decision="rejected")

    snapshot = services.snapshot_create(project=project, name="clean")

    assert rows_of(snapshot) == [("alpha", "beta", 1.0)]
    assert sorted(snapshot.label_ids) == sorted(label.pk for label in kept)


def test_comparisons_on_eval_prompts_never_train_the_reward_model(project, people):
    train, held_out = make_comparisons(project, [("alpha", "beta"), ("gamma", "delta")])
    assert train.prompt_id != held_out.prompt_id
    held_out.prompt.split = "eval"
    held_out.prompt.save()
    label(people[0], train, "a")
    eval_label = label(people[0], held_out, "a")

    snapshot = services.snapshot_create(project=project, name="train-only")

    assert rows_of(snapshot) == [("alpha", "beta", 2.0)]
    assert eval_label.pk not in snapshot.label_ids
