"""The pages of demonstrations through Django's test client: the labeling page's edit, the
write mode, the reviewers' pages. (In a real browser, keyboard only: tests/browser.)"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feedback.models import (
    MAX_DEMONSTRATION_CHARS,
    Demonstration,
    DemonstrationAudit,
    PreferenceLabel,
    Prompt,
)
from feedback.services import demonstration_edit, demonstration_write
from tests.factories import make_comparisons


@pytest.fixture
def writing(project):
    project.demonstrations_per_prompt = 1
    project.save(update_fields=["demonstrations_per_prompt"])
    return project


def test_the_label_form_sends_an_edit_with_the_choice(client, project, annotator):
    make_comparisons(project, [("Old answer.", "Other."), ("Next.", "One.")])
    client.force_login(annotator)
    page = client.get("/p/demo/label/")
    first = page.context["assignment"].pk
    form = {"assignment_id": first, "choice": "b", "strength": "2", "edit_side": "a",
            "edit_text": "New answer."}  # fmt: skip

    response = client.post("/p/demo/label/submit/", form, HTTP_HX_REQUEST="true")

    html = page.content.decode()
    assert 'name="edit_text" form="label-form" data-side="a"' in html
    assert 'name="edit_side" id="edit-side" value="" disabled' in html
    assert response.status_code == 200
    assert "Saved, with your edit." in response.content.decode()
    assert response.context["assignment"].pk != first
    demonstration = Demonstration.objects.get()
    assert (demonstration.text, demonstration.label.assignment_id) == ("New answer.", first)
    assert PreferenceLabel.objects.get(assignment_id=first).choice == "b"


def test_a_refused_edit_comes_back_open_with_what_was_typed_and_stores_nothing(
    client, project, annotator
):
    make_comparisons(project, [("Old answer.", "Other.")])
    client.force_login(annotator)
    first = client.get("/p/demo/label/").context["assignment"].pk
    too_long = "y" * (MAX_DEMONSTRATION_CHARS + 1)
    form = {"assignment_id": first, "choice": "a", "edit_side": "b", "edit_text": too_long}

    response = client.post("/p/demo/label/submit/", form, HTTP_HX_REQUEST="true")
    plain = client.post("/p/demo/label/", form)

    html = response.content.decode()
    assert (response.status_code, plain.status_code) == (400, 400)
    assert f"The demonstration may have at most {MAX_DEMONSTRATION_CHARS} characters" in html
    assert f'data-side="b" rows="10" maxlength="{MAX_DEMONSTRATION_CHARS}"' in html
    assert f'data-posted="{too_long}"' in html
    assert response.context["assignment"].pk == first
    assert (Demonstration.objects.count(), PreferenceLabel.objects.count()) == (0, 0)


def test_a_plain_post_without_javascript_stores_the_edit_and_redirects(client, project, annotator):
    make_comparisons(project, [("Old.", "Other.")])
    client.force_login(annotator)
    first = client.get("/p/demo/label/").context["assignment"].pk

    response = client.post(
        "/p/demo/label/",
        {"assignment_id": first, "choice": "a", "edit_side": "a", "edit_text": "New."},
    )

    assert (response.status_code, response["Location"]) == (302, "/p/demo/label/")
    assert Demonstration.objects.get().text == "New."


def test_a_plain_label_costs_no_query_more_than_before(client, project, annotator):
    """The labeling hot path: a submit without an edit runs what it ran before edits existed
    (the same statements as a project whose edits are off)."""
    make_comparisons(project, [("1", "2"), ("3", "4"), ("5", "6")])
    client.force_login(annotator)
    first = client.get("/p/demo/label/").context["assignment"].pk
    with CaptureQueriesContext(connection) as with_edits:
        client.post("/p/demo/label/submit/", {"assignment_id": first, "choice": "a"})
    project.answer_edits = False
    project.save(update_fields=["answer_edits"])
    second = client.get("/p/demo/label/").context["assignment"].pk

    with CaptureQueriesContext(connection) as without:
        client.post("/p/demo/label/submit/", {"assignment_id": second, "choice": "a"})

    assert len(with_edits) == len(without)
    assert not any('"feedback_demonstration"' in q["sql"] for q in with_edits.captured_queries)


def test_edits_off_hide_the_editor(client, project, annotator):
    project.answer_edits = False
    project.save(update_fields=["answer_edits"])
    make_comparisons(project, [("Old.", "Other.")])
    client.force_login(annotator)

    html = client.get("/p/demo/label/").content.decode()

    assert "edit-text" not in html and "edit-dialog" not in html and "data-write" not in html


def test_the_write_mode_serves_a_prompt_stores_the_answer_and_serves_the_next(
    client, writing, annotator
):
    client.force_login(annotator)
    first = Prompt.objects.filter(project=writing, split="train").order_by("id").first()

    page = client.get("/p/demo/label/")
    item = client.get("/p/demo/write/item/")
    saved = client.post(
        "/p/demo/write/submit/",
        {"prompt_id": first.pk, "text": "Hello!", "time_spent_ms": "3000"},
        HTTP_HX_REQUEST="true",
    )

    assert 'data-write-url="/p/demo/write/item/"' in page.content.decode()
    assert (item.context["prompt"], item.context["waiting"]) == (first, 3)
    assert item.templates[0].name == "feedback/_write.html"
    assert saved.status_code == 200
    assert "Saved." in saved.content.decode()
    assert saved.context["prompt"] != first
    assert saved.context["waiting"] == 2
    stored = Demonstration.objects.get()
    assert (stored.prompt_id, stored.text, stored.time_spent_ms) == (first.pk, "Hello!", 3000)


def test_a_refused_answer_keeps_the_prompt_and_the_text(client, writing, annotator):
    client.force_login(annotator)
    first = Prompt.objects.filter(project=writing, split="train").order_by("id").first()
    second = Prompt.objects.filter(project=writing, split="train").order_by("id")[1]
    demonstration_write(user=annotator, project=writing, prompt_id=first.pk, text="Done.")

    response = client.post("/p/demo/write/submit/", {"prompt_id": second.pk, "text": "bell \x07"})
    plain = client.post("/p/demo/write/", {"prompt_id": second.pk, "text": "   "})

    assert (response.status_code, plain.status_code) == (400, 400)
    assert response.context["prompt"] == second
    html = response.content.decode()
    assert "The demonstration contains a control character" in html
    assert "bell \x07</textarea>" in html
    assert "The demonstration is empty: write an answer." in plain.content.decode()
    assert Demonstration.objects.count() == 1


def test_the_write_page_works_without_javascript(client, writing, annotator):
    client.force_login(annotator)
    first = Prompt.objects.filter(project=writing, split="train").order_by("id").first()

    page = client.get("/p/demo/write/")
    response = client.post("/p/demo/write/", {"prompt_id": first.pk, "text": "Hi."})

    assert page.context["prompt"] == first
    assert 'id="write-form"' in page.content.decode()
    assert (response.status_code, response["Location"]) == (302, "/p/demo/write/")
    assert Demonstration.objects.get().text == "Hi."


@pytest.fixture
def edited(project, annotator):
    make_comparisons(project, [("The <b>sun</b> is cold.", "Other.")])
    client_assignment = project.comparisons.get().pk
    from feedback.services import assignment_next

    assignment = assignment_next(project=project, user=annotator)
    assert assignment.comparison_id == client_assignment
    return demonstration_edit(
        user=annotator, assignment_id=assignment.pk, choice="a", side="a",
        text="The <b>sun</b> is hot.",
    )  # fmt: skip


def test_reviewers_see_the_edit_as_a_diff_escaped(client, edited, reviewer):
    client.force_login(reviewer)

    queue = client.get("/p/demo/review/demonstrations/")
    page = client.get(f"/p/demo/review/demonstrations/{edited.pk}/")

    assert [d.pk for d in queue.context["page"]] == [edited.pk]
    html = page.content.decode()
    assert "<del>cold</del><ins>hot</ins>" in html
    assert "&lt;b&gt;sun&lt;/b&gt;" in html and "<b>sun</b>" not in html
    assert f"/p/demo/review/comparisons/{edited.comparison_id}/" in html


def test_reviewers_accept_reject_and_correct_on_the_page(client, edited, reviewer):
    client.force_login(reviewer)
    url = f"/p/demo/review/demonstrations/{edited.pk}/"

    rejected = client.post(url, {"action": "review", "decision": "rejected"})
    corrected = client.post(url, {"action": "correct", "text": "The sun is very hot."})
    refused = client.post(url, {"action": "correct", "text": ""})
    unknown = client.post(url, {"action": "review", "decision": "maybe"})

    assert (rejected.status_code, corrected.status_code) == (302, 302)
    assert (refused.status_code, unknown.status_code) == (400, 400)
    assert "The demonstration is empty: write an answer." in refused.content.decode()
    assert "Unknown decision &#x27;maybe&#x27;" in unknown.content.decode()
    edited.refresh_from_db()
    assert (edited.text, edited.review_status) == ("The sun is very hot.", "corrected")
    assert list(edited.audits.order_by("id").values_list("action", flat=True)) == [
        "created",
        "review_rejected",
        "corrected",
    ]
    page = client.get(url).content.decode()
    # the correction's own diff, in the history
    assert "The <del>&lt;b&gt;</del>sun<del>&lt;/b&gt;</del> is <ins>very </ins>hot." in page


def test_annotators_get_a_404_on_the_demonstration_pages(client, edited, annotator):
    client.force_login(annotator)

    queue = client.get("/p/demo/review/demonstrations/")
    page = client.post(
        f"/p/demo/review/demonstrations/{edited.pk}/", {"action": "review", "decision": "accepted"}
    )

    assert (queue.status_code, page.status_code) == (404, 404)
    assert DemonstrationAudit.objects.count() == 1
