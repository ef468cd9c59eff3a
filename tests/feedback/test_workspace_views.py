"""The workspace's htmx endpoints and arena endpoints, through Django's test client."""

from __future__ import annotations

from feedback.models import ArenaBattle, Assignment, ComparisonFlag, PreferenceLabel
from tests.factories import make_comparisons
from training.models import PolicyVersion


def test_submit_answers_with_the_next_item_and_a_repeat_stores_nothing_new(
    client, project, annotator
):
    make_comparisons(project, [("one", "two"), ("three", "four")])
    client.force_login(annotator)
    first = client.get("/p/demo/label/").context["assignment"].pk
    form = {"assignment_id": first, "choice": "a", "strength": "3", "time_spent_ms": "2100"}

    response = client.post("/p/demo/label/submit/", form, HTTP_HX_REQUEST="true")
    repeat = client.post("/p/demo/label/submit/", form, HTTP_HX_REQUEST="true")

    label = PreferenceLabel.objects.get()
    assert (label.assignment_id, label.choice, label.strength, label.time_spent_ms) == (
        first,
        "a",
        3,
        2100,
    )
    assert response.templates[0].name == "feedback/_item.html"
    second = response.context["assignment"].pk
    assert second != first
    assert repeat.context["assignment"].pk == second


def test_submit_errors_keep_the_item_and_say_why(client, project, annotator):
    make_comparisons(project, [("one", "two")])
    client.force_login(annotator)
    first = client.get("/p/demo/label/").context["assignment"].pk

    response = client.post("/p/demo/label/submit/", {"assignment_id": first, "choice": ""})

    assert response.context["assignment"].pk == first
    assert "Unknown choice &#x27;&#x27;" in response.content.decode()
    assert PreferenceLabel.objects.count() == 0


def test_skip_flag_and_undo_views(client, project, annotator):
    make_comparisons(project, [("1", "2"), ("3", "4"), ("5", "6")])
    client.force_login(annotator)
    first = client.get("/p/demo/label/").context["assignment"].pk

    second = (
        client.post(
            "/p/demo/label/skip/", {"assignment_id": first, "reason": "unclear", "note": "vague"}
        )
        .context["assignment"]
        .pk
    )
    third = (
        client.post("/p/demo/label/flag/", {"assignment_id": second, "reason": "broken"})
        .context["assignment"]
        .pk
    )
    client.post("/p/demo/label/submit/", {"assignment_id": third, "choice": "tie"})
    after_undo = client.post("/p/demo/label/undo/")

    assert Assignment.objects.get(pk=first).skip_reason == "The prompt is unclear: vague"
    assert ComparisonFlag.objects.get().reason == "broken"
    assert after_undo.context["assignment"].pk == third
    assert PreferenceLabel.objects.get().withdrawn_at is not None


def test_guidelines_are_rendered_safely(client, project, annotator):
    project.guidelines = "Be **kind**. <script>alert(1)</script>"
    project.save()
    client.force_login(annotator)

    html = client.get("/p/demo/label/").content.decode()

    assert "<p>Be <strong>kind</strong>. &lt;script&gt;alert(1)&lt;/script&gt;</p>" in html


def test_workspace_pages_are_for_members_only(client, project, make_user):
    client.force_login(make_user("stranger"))
    for url in ("/p/demo/label/", "/p/demo/label/item/", "/p/demo/arena/"):
        assert client.get(url).status_code == 404
    for url in ("/p/demo/label/submit/", "/p/demo/label/undo/", "/p/demo/arena/battles/"):
        assert client.post(url).status_code == 404


def test_home_lists_projects_with_what_waits(client, project, annotator):
    make_comparisons(project, [("1", "2"), ("3", "4")])
    client.force_login(annotator)

    overview = client.get("/").context["overview"]

    assert [(row["project"].slug, row["role"]) for row in overview] == [("demo", "annotator")]
    assert overview[0]["progress"]["remaining_for_me"] == 2
    assert overview[0]["progress"]["done_today"] == 0


def test_arena_endpoints_hide_the_names_until_the_vote(client, project, annotator):
    PolicyVersion.objects.create(project=project, number=1, status="candidate")
    client.force_login(annotator)

    started = client.post(
        "/p/demo/arena/battles/", {"prompt": "Hello"}, content_type="application/json"
    )
    battle = ArenaBattle.objects.get()
    voted = client.post(
        f"/p/demo/arena/battles/{battle.pk}/vote/",
        {"choice": "left", "time_to_vote_ms": 900},
        content_type="application/json",
    )

    assert started.status_code == 201
    assert started.json() == {"battle": battle.pk}
    battle.refresh_from_db()
    left, right = (
        (battle.policy_a, battle.policy_b)
        if battle.a_shown_left
        else (battle.policy_b, battle.policy_a)
    )
    assert voted.json() == {
        "battle": battle.pk,
        "choice": "a" if battle.a_shown_left else "b",
        "left": f"v{left.number}",
        "right": f"v{right.number}",
    }
    assert battle.time_to_vote_ms == 900


def test_arena_start_reports_errors(client, project, annotator):
    client.force_login(annotator)
    response = client.post(
        "/p/demo/arena/battles/", {"prompt": "Hello"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0].startswith("The arena needs two policy versions")
    assert ArenaBattle.objects.count() == 0
