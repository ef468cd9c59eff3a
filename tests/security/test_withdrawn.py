"""A label its annotator withdrew (undo) counts nowhere: not in the raw-votes export, not in the
quality figures, not in the review queue's majorities. The export leaves it out; the audit
trail (LabelAudit) keeps the record."""

from __future__ import annotations

import pytest

from feedback.models import Comparison, PreferenceLabel
from feedback.quality import majority_choice, project_quality, review_queue
from feedback.services import assignment_next, label_submit, label_undo, membership_set
from tests.factories import make_comparisons
from training.exports import vote_rows


@pytest.fixture
def changed_mind(project, annotator, make_user):
    """One comparison that takes two labels: the annotator says a, undoes it and says b;
    another annotator says a. Standing: b and a, no majority."""
    project.labels_per_comparison = 2
    project.save()
    (comparison,) = make_comparisons(project, [("x", "y")])
    lease = assignment_next(project=project, user=annotator)
    label_submit(user=annotator, assignment_id=lease.pk, choice="a")
    label_undo(user=annotator, project=project)
    label_submit(user=annotator, assignment_id=lease.pk, choice="b")
    other = make_user("other")
    membership_set(project=project, user=other, role="annotator")
    lease = assignment_next(project=project, user=other)
    label_submit(user=other, assignment_id=lease.pk, choice="a")
    comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.COMPLETE
    return comparison


def test_the_votes_export_leaves_a_withdrawn_label_out(changed_mind):
    rows = vote_rows(project=changed_mind.project)

    assert [row["choice"] for row in rows] == ["b", "a"]
    standing = PreferenceLabel.objects.filter(withdrawn_at__isnull=True).order_by("id")
    assert [row["label_id"] for row in rows] == [label.pk for label in standing]
    assert PreferenceLabel.objects.count() == 3  # the withdrawn one is kept, for the record


def test_quality_counts_standing_labels_only(changed_mind, annotator):
    quality = project_quality(project=changed_mind.project)

    assert quality["labels"] == 2
    assert quality["comparisons_with_two_or_more_labels"] == 1
    mine = next(a for a in quality["annotators"] if a["annotator_id"] == annotator.pk)
    assert mine["labels"] == 1
    assert mine["position_bias"]["decisive_labels"] == 1


def test_the_review_queue_and_majority_read_standing_labels_only(changed_mind):
    queue = review_queue(project=changed_mind.project)

    assert majority_choice(comparison=changed_mind) is None  # b against a
    assert [c.pk for c in queue["no_majority"]] == [changed_mind.pk]
