"""Review and quality pages and the quality endpoint: roles, actions, escaping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from feedback.models import Assignment, ComparisonAudit, LabelAudit, PreferenceLabel
from feedback.services import label_submit, membership_set
from tests.factories import make_comparisons


@pytest.fixture
def labelled(project, annotator, make_user):
    project.labels_per_comparison = 2
    project.save()
    (comparison,) = make_comparisons(project, [("<b>bold</b>", "plain")])
    other = make_user("other")
    membership_set(project=project, user=other, role="annotator")
    labels = []
    for user, choice in ((annotator, "a"), (other, "b")):
        lease = Assignment.objects.create(
            comparison=comparison,
            annotator=user,
            a_shown_left=True,
            expires_at=timezone.now() + timedelta(minutes=5),
        )
        labels.append(label_submit(user=user, assignment_id=lease.pk, choice=choice))
    return comparison, labels


@pytest.mark.parametrize("path", ["/p/demo/review/", "/p/demo/quality/"])
def test_annotators_get_a_404_on_review_pages(client, project, annotator, path):
    client.force_login(annotator)

    assert client.get(path).status_code == 404


def test_annotators_get_a_404_on_the_quality_endpoint(project, annotator):
    client = APIClient()
    client.force_authenticate(annotator)

    assert client.get("/api/projects/demo/quality/").status_code == 404


def test_quality_endpoint_returns_the_figures(project, reviewer, labelled):
    client = APIClient()
    client.force_authenticate(reviewer)

    body = client.get("/api/projects/demo/quality/").json()

    assert body["project"] == "demo"
    assert body["labels"] == 2
    assert body["pairs"] == [{"annotators": ["ann", "other"], "shared_items": 1, "kappa": 0.0}]
    assert [a["username"] for a in body["annotators"]] == ["ann", "other"]


def test_review_queue_and_quality_pages_render_for_a_reviewer(client, project, reviewer, labelled):
    comparison, _ = labelled
    client.force_login(reviewer)

    queue = client.get("/p/demo/review/")
    quality = client.get("/p/demo/quality/")

    assert queue.status_code == 200
    assert f"/p/demo/review/comparisons/{comparison.pk}/" in queue.content.decode()
    assert quality.status_code == 200
    assert 'data-annotator="other"' in quality.content.decode()


def test_reviewer_rejects_a_label_and_sets_the_final_choice_on_the_page(
    client, project, reviewer, labelled
):
    comparison, (first, second) = labelled
    client.force_login(reviewer)
    url = f"/p/demo/review/comparisons/{comparison.pk}/"

    page = client.get(url)
    client.post(url, {"action": "review_label", "label_id": first.pk, "decision": "rejected"})
    client.post(url, {"action": "final_choice", "choice": "b"})

    assert "&lt;b&gt;bold&lt;/b&gt;" in page.content.decode()
    first.refresh_from_db()
    comparison.refresh_from_db()
    assert first.review_status == "rejected"
    assert (comparison.final_choice, comparison.final_by) == ("b", reviewer)
    assert LabelAudit.objects.filter(action="review_rejected", actor=reviewer).count() == 1


def test_a_reviewer_cannot_mark_gold_and_nothing_changes(client, project, reviewer, labelled):
    comparison, _ = labelled
    client.force_login(reviewer)

    response = client.post(
        f"/p/demo/review/comparisons/{comparison.pk}/", {"action": "gold", "choice": "a"}
    )

    comparison.refresh_from_db()
    assert response.status_code == 404
    assert (comparison.kind, comparison.gold_choice) == ("regular", "")
    assert ComparisonAudit.objects.count() == 0


def test_an_admin_marks_gold_on_the_page(client, project, admin_member, labelled):
    comparison, _ = labelled
    client.force_login(admin_member)

    client.post(f"/p/demo/review/comparisons/{comparison.pk}/", {"action": "gold", "choice": "a"})

    comparison.refresh_from_db()
    assert (comparison.kind, comparison.gold_choice) == ("gold", "a")


def test_a_label_of_another_comparison_cannot_be_reviewed_through_this_one(
    client, project, reviewer, labelled
):
    comparison, (first, _) = labelled
    (elsewhere,) = make_comparisons(project, [("m", "n")])
    client.force_login(reviewer)

    client.post(
        f"/p/demo/review/comparisons/{elsewhere.pk}/",
        {"action": "review_label", "label_id": first.pk, "decision": "rejected"},
    )

    assert PreferenceLabel.objects.get(pk=first.pk).review_status == "unreviewed"
