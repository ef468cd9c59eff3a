"""Gold accuracy, self-consistency, position bias, agreement, review and its audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from feedback.models import (
    Assignment,
    Comparison,
    ComparisonAudit,
    LabelAudit,
    PreferenceLabel,
)
from feedback.quality import project_quality, review_queue
from feedback.services import (
    comparison_decide,
    comparison_set_gold,
    label_review,
    label_submit,
    membership_set,
)
from tests.factories import make_comparisons


def label(user, comparison, choice, *, strength=2, a_left=True, repeat=False):
    """A label through label_submit, on a lease with a chosen side shown left."""
    lease = Assignment.objects.create(
        comparison=comparison,
        annotator=user,
        a_shown_left=a_left,
        is_repeat=repeat,
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    return label_submit(user=user, assignment_id=lease.pk, choice=choice, strength=strength)


@pytest.fixture
def team(project, make_user):
    users = {name: make_user(name) for name in ("ann", "bob", "cyd")}
    for user in users.values():
        membership_set(project=project, user=user, role="annotator")
    reviewer = make_user("rev")
    membership_set(project=project, user=reviewer, role="reviewer")
    users["rev"] = reviewer
    return users


@pytest.fixture
def labelled(project, team, admin_member):
    """Three regular comparisons (k=3) and five gold ones.

    ann and bob agree everywhere; cyd disagrees on one comparison, misses 4 of 5 gold items,
    always picks the left side and changes her mind on her repeat.
    """
    project.labels_per_comparison = 3
    project.gold_min_labels = 5
    project.gold_accuracy_threshold = 0.7
    project.save()
    comparisons = make_comparisons(project, [(f"a{i}", f"b{i}") for i in range(8)])
    regular, gold = comparisons[:3], comparisons[3:]
    for c in gold:
        comparison_set_gold(admin=admin_member, comparison_id=c.pk, choice="a")
    ann, bob, cyd = team["ann"], team["bob"], team["cyd"]
    for c, choice in zip(regular, ["a", "b", "a"], strict=True):
        label(ann, c, choice, strength=3, a_left=True)
        label(bob, c, choice, strength=2, a_left=False)
    label(cyd, regular[0], "a", a_left=True)
    label(cyd, regular[1], "b", a_left=False)
    label(cyd, regular[2], "b", a_left=False)
    for c in gold:
        label(ann, c, "a", a_left=True)
    for i, c in enumerate(gold):
        label(cyd, c, "a" if i == 0 else "b", a_left=i == 0)
    label(cyd, regular[0], "b", a_left=False, repeat=True)
    label(ann, regular[0], "a", strength=3, a_left=False, repeat=True)
    return {"regular": regular, "gold": gold}


def by_name(quality):
    return {a["username"]: a for a in quality["annotators"]}


def test_gold_accuracy_and_the_flag_of_an_annotator_under_the_threshold(project, labelled):
    people = by_name(project_quality(project=project))

    assert people["ann"]["gold"] == {"labels": 5, "correct": 5, "accuracy": 1.0}
    assert people["cyd"]["gold"] == {"labels": 5, "correct": 1, "accuracy": 0.2}
    assert (people["ann"]["flagged"], people["bob"]["flagged"]) == (False, False)
    assert people["cyd"]["flags"] == ["gold accuracy 20% is under 70%"]


def test_no_flag_before_enough_gold_labels(project, labelled):
    project.gold_min_labels = 6
    project.save()

    assert by_name(project_quality(project=project))["cyd"]["flagged"] is False


def test_self_consistency_from_repeats(project, labelled):
    people = by_name(project_quality(project=project))

    assert people["ann"]["consistency"] == {"repeats": 1, "consistent": 1, "rate": 1.0}
    assert people["cyd"]["consistency"] == {"repeats": 1, "consistent": 0, "rate": 0.0}
    assert people["bob"]["consistency"] == {"repeats": 0, "consistent": 0, "rate": None}


def test_position_bias_counts_left_wins_with_an_exact_test(project, labelled):
    people = by_name(project_quality(project=project))

    # cyd: 8 decisive regular labels, every one for the side shown left.
    assert people["cyd"]["position_bias"] == {
        "decisive_labels": 8,
        "left_wins": 8,
        "left_share": 1.0,
        "p_value": 0.007812,
        "biased": True,
    }
    # bob saw B on the left and chose a, b, a: the left side won once.
    assert people["bob"]["position_bias"]["left_wins"] == 1
    assert people["bob"]["position_bias"]["biased"] is False


def test_agreement_alpha_and_pairwise_kappa(project, labelled):
    quality = project_quality(project=project)
    pairs = {tuple(p["annotators"]): p for p in quality["pairs"]}

    assert pairs[("ann", "bob")] == {"annotators": ["ann", "bob"], "shared_items": 3, "kappa": 1.0}
    # ann and cyd share 3 regular + 5 gold items; they agree on regular 0, 1 and gold 0.
    ann_cyd = pairs[("ann", "cyd")]
    assert ann_cyd["shared_items"] == 8
    # ann: a,b,a + a*5 = 7a 1b; cyd: a,b,b + a,b,b,b,b = 2a 6b; chance (7*2 + 1*6)/64 = 20/64.
    assert ann_cyd["kappa"] == pytest.approx(round((3 / 8 - 20 / 64) / (1 - 20 / 64), 4))
    assert quality["alpha_ordinal"] is not None
    people = by_name(quality)
    assert people["cyd"]["alpha_without"] > quality["alpha_ordinal"]
    assert quality["labels"] == 19 and quality["repeat_labels"] == 2


def test_review_queue_lists_no_majority_items_and_flagged_annotators_labels(
    project, labelled, team
):
    regular = labelled["regular"]
    # A fourth comparison with k=3 and no majority: a, b, tie.
    (split,) = make_comparisons(project, [("p", "q")])
    Comparison.objects.filter(pk=split.pk).update(required_labels=3)
    for user, choice in zip(
        [team["ann"], team["bob"], team["cyd"]], ["a", "b", "tie"], strict=True
    ):
        label(user, split, choice)

    queue = review_queue(project=project)

    assert [c.pk for c in queue["no_majority"]] == [split.pk]
    assert [a["username"] for a in queue["flagged_annotators"]] == ["cyd"]
    cyd_labels = PreferenceLabel.objects.filter(annotator=team["cyd"]).count()
    assert len(queue["flagged_labels"]) == cyd_labels
    assert regular[0].pk in {lab.comparison_id for lab in queue["flagged_labels"]}


def test_a_final_decision_takes_an_item_out_of_the_queue_and_is_audited(project, team):
    project.labels_per_comparison = 2
    project.save()
    (c,) = make_comparisons(project, [("x", "y")])
    label(team["ann"], c, "a")
    label(team["bob"], c, "b")
    assert [x.pk for x in review_queue(project=project)["no_majority"]] == [c.pk]

    comparison_decide(reviewer=team["rev"], comparison_id=c.pk, choice="b")

    c.refresh_from_db()
    assert (c.final_choice, c.final_by, c.final_at is not None) == ("b", team["rev"], True)
    assert review_queue(project=project)["no_majority"] == []
    audit = ComparisonAudit.objects.get()
    assert (audit.actor, audit.action) == (team["rev"], "final_choice")
    assert (audit.before["final_choice"], audit.after["final_choice"]) == ("", "b")


def test_rejecting_a_label_is_audited_and_deletes_nothing(project, team):
    (c,) = make_comparisons(project, [("x", "y")])
    stored = label(team["ann"], c, "a", strength=3)

    label_review(reviewer=team["rev"], label_id=stored.pk, decision="rejected")
    label_review(reviewer=team["rev"], label_id=stored.pk, decision="accepted")

    stored.refresh_from_db()
    assert stored.review_status == "accepted"
    audits = list(LabelAudit.objects.filter(label=stored).order_by("id"))
    assert [(a.action, a.actor.username) for a in audits] == [
        ("created", "ann"),
        ("review_rejected", "rev"),
        ("review_accepted", "rev"),
    ]
    assert (audits[1].before["review_status"], audits[1].after["review_status"]) == (
        "unreviewed",
        "rejected",
    )
    assert PreferenceLabel.objects.count() == 1


def test_an_unknown_decision_is_refused_and_changes_nothing(project, team):
    (c,) = make_comparisons(project, [("x", "y")])
    stored = label(team["ann"], c, "a")

    with pytest.raises(ValidationError, match="Unknown decision 'maybe'"):
        label_review(reviewer=team["rev"], label_id=stored.pk, decision="maybe")
    with pytest.raises(ValidationError, match="Unknown choice 'left'"):
        comparison_decide(reviewer=team["rev"], comparison_id=c.pk, choice="left")

    stored.refresh_from_db()
    c.refresh_from_db()
    assert (stored.review_status, c.final_choice) == ("unreviewed", "")
    assert LabelAudit.objects.count() == 1
    assert ComparisonAudit.objects.count() == 0


def test_marking_gold_is_audited_and_reopens_a_complete_item(project, team, admin_member):
    (c,) = make_comparisons(project, [("x", "y")])
    label(team["ann"], c, "a")
    c.refresh_from_db()
    assert c.status == "complete"

    comparison_set_gold(admin=admin_member, comparison_id=c.pk, choice="b")
    c.refresh_from_db()
    assert (c.kind, c.gold_choice, c.status) == ("gold", "b", "open")
    comparison_set_gold(admin=admin_member, comparison_id=c.pk, choice="")
    c.refresh_from_db()
    assert (c.kind, c.gold_choice, c.status) == ("regular", "", "complete")
    assert [(a.action, a.after["kind"]) for a in ComparisonAudit.objects.order_by("id")] == [
        ("gold", "gold"),
        ("gold", "regular"),
    ]
