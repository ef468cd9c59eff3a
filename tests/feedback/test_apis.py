from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from feedback.models import PreferenceLabel
from tests.factories import make_comparisons


@pytest.fixture
def client_for():
    def make(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


def test_next_then_submit(project, annotator, client_for):
    make_comparisons(project, [("first answer", "second answer")])
    client = client_for(annotator)

    item = client.post("/api/projects/demo/comparisons/next/").json()
    response = client.post(
        f"/api/assignments/{item['assignment_id']}/label/",
        {"choice": "b", "strength": 1, "time_spent_ms": 900},
        format="json",
    )

    assert item["completion_a"] == "first answer"
    assert item["prompt"] == [{"role": "user", "content": "Say hello."}]
    assert response.status_code == 201
    assert response.json()["choice"] == "b"
    assert client.post("/api/projects/demo/comparisons/next/").status_code == 204


def test_missing_field_names_the_field(project, annotator, client_for):
    make_comparisons(project, [("x", "y")])
    client = client_for(annotator)
    item = client.post("/api/projects/demo/comparisons/next/").json()

    response = client.post(f"/api/assignments/{item['assignment_id']}/label/", {}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"field": "choice", "message": "This field is required."}]
    }
    assert PreferenceLabel.objects.count() == 0


def test_unknown_choice_gets_a_clear_error(project, annotator, client_for):
    make_comparisons(project, [("x", "y")])
    client = client_for(annotator)
    item = client.post("/api/projects/demo/comparisons/next/").json()

    response = client.post(
        f"/api/assignments/{item['assignment_id']}/label/", {"choice": "maybe"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "choice"
    assert "Unknown choice 'maybe'" in response.json()["errors"][0]["message"]
    assert PreferenceLabel.objects.count() == 0


def test_someone_elses_assignment_is_refused(project, annotator, make_user, client_for):
    make_comparisons(project, [("x", "y")])
    item = client_for(annotator).post("/api/projects/demo/comparisons/next/").json()
    intruder = make_user("intruder")

    response = client_for(intruder).post(
        f"/api/assignments/{item['assignment_id']}/label/", {"choice": "a"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "assignment", "message": "This comparison is not assigned to you."}
    ]
    assert PreferenceLabel.objects.count() == 0


def test_non_member_cannot_see_the_project(project, make_user, client_for):
    make_comparisons(project, [("x", "y")])

    response = client_for(make_user("stranger")).post("/api/projects/demo/comparisons/next/")

    assert response.status_code == 404


def test_anonymous_is_refused(project):
    response = APIClient().post("/api/projects/demo/comparisons/next/")

    assert response.status_code == 403
