"""Demonstrations through the API: write, edit with a label, review and correct, import and
export; bad input is a 400 naming what is wrong, and nothing is stored."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from feedback.models import (
    MAX_DEMONSTRATION_CHARS,
    Comparison,
    Demonstration,
    DemonstrationAudit,
    PreferenceLabel,
    Prompt,
)
from feedback.services import assignment_next, demonstration_write
from tests.factories import make_comparisons

API = "/api/projects/demo/"


@pytest.fixture
def writing(project):
    project.demonstrations_per_prompt = 1
    project.save(update_fields=["demonstrations_per_prompt"])
    return project


def stored() -> tuple:
    return (
        list(Demonstration.objects.values_list("pk", "text", "review_status").order_by("pk")),
        DemonstrationAudit.objects.count(),
        PreferenceLabel.objects.count(),
        Comparison.objects.count(),
    )


def first_train_prompt(project) -> Prompt:
    return Prompt.objects.filter(project=project, split="train").order_by("id").first()


def test_an_annotator_writes_for_the_prompt_the_api_offers(writing, annotator, token_client):
    client = token_client(annotator)

    offered = client.get(API + "demonstrations/next-prompt/")
    prompt = offered.json()["prompt"]
    created = client.post(
        API + "demonstrations/",
        {"prompt_id": prompt["id"], "text": "Hello!\n", "time_spent_ms": 4000},
        format="json",
    )

    assert offered.status_code == 200
    assert (prompt["id"], offered.json()["waiting"]) == (first_train_prompt(writing).pk, 3)
    assert created.status_code == 201
    body = created.json()
    assert (body["origin"], body["text"], body["author"], body["review_status"]) == (
        "written",
        "Hello!",
        "ann",
        "unreviewed",
    )
    assert (body["prompt"]["id"], body["time_spent_ms"], body["original"]) == (
        prompt["id"],
        4000,
        None,
    )
    assert client.get(API + "demonstrations/next-prompt/").json()["waiting"] == 2


def test_nothing_to_write_is_a_204(project, annotator, token_client):
    response = token_client(annotator).get(API + "demonstrations/next-prompt/")

    assert (response.status_code, response.content) == (204, b"")


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"text": "  "}, [{"field": "text", "message": "The demonstration is empty: write an answer."}]),
        (
            {"text": "x" * (MAX_DEMONSTRATION_CHARS + 1)},
            [{"field": "text", "message": f"The demonstration may have at most "
              f"{MAX_DEMONSTRATION_CHARS} characters (it has {MAX_DEMONSTRATION_CHARS + 1})."}],
        ),
        ({"text": "nul \u0000 inside"}, [{"field": "text", "message": "Null characters are not allowed."}]),
        (
            {"text": "bell \u0007 inside"},
            [{"field": "text", "message": "The demonstration contains a control character; tabs "
              "and line breaks are the only ones allowed."}],
        ),
        ({"text": None}, [{"field": "text", "message": "This field may not be null."}]),
        ({"text": ["a list"]}, [{"field": "text", "message": "Not a valid string."}]),
        ({"prompt_id": 0, "text": "Hi"},
         [{"field": "prompt_id", "message": "Ensure this value is greater than or equal to 1."}]),
        ({"prompt_id": 10**9, "text": "Hi"},
         [{"field": "prompt", "message": "No such prompt in this project."}]),
    ],
)  # fmt: skip
def test_a_bad_demonstration_is_a_400_and_stores_nothing(
    writing, annotator, token_client, body, errors
):
    before = stored()

    response = token_client(annotator).post(
        API + "demonstrations/",
        {"prompt_id": first_train_prompt(writing).pk, **body},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"errors": errors}
    assert stored() == before


def test_an_edit_through_the_api_labels_and_stores_the_edit(project, annotator, token_client):
    make_comparisons(project, [("Colour: bleu.", "Red.")])
    client = token_client(annotator)
    lease = client.post(API + "comparisons/next/").json()

    response = client.post(
        f"/api/assignments/{lease['assignment_id']}/edit/",
        {"choice": "a", "strength": 3, "edit_side": "a", "edit_text": "Colour: blue."},
        format="json",
    )
    again = client.post(
        f"/api/assignments/{lease['assignment_id']}/edit/",
        {"choice": "a", "strength": 3, "edit_side": "a", "edit_text": "Colour: blue."},
        format="json",
    )

    assert (response.status_code, again.status_code) == (201, 201)
    body = response.json()
    demonstration = Demonstration.objects.get()
    assert body == {
        "label_id": PreferenceLabel.objects.get(assignment_id=lease["assignment_id"]).pk,
        "comparison_id": lease["comparison_id"],
        "choice": "a",
        "strength": 3,
        "a_shown_left": lease["a_shown_left"],
        "demonstration_id": demonstration.pk,
    }
    assert again.json() == body
    assert (demonstration.origin, demonstration.text) == ("edited", "Colour: blue.")
    pair = Comparison.objects.get(kind="edit")
    assert pair.labels.get().choice == "a"


def test_a_bad_edit_is_a_400_and_stores_nothing(project, annotator, token_client):
    make_comparisons(project, [("Same.", "Other.")])
    client = token_client(annotator)
    lease = client.post(API + "comparisons/next/").json()
    before = stored()

    same = client.post(
        f"/api/assignments/{lease['assignment_id']}/edit/",
        {"choice": "a", "edit_side": "a", "edit_text": "Same."},
        format="json",
    )
    side = client.post(
        f"/api/assignments/{lease['assignment_id']}/edit/",
        {"choice": "a", "edit_side": "left", "edit_text": "New."},
        format="json",
    )

    assert (same.status_code, side.status_code) == (400, 400)
    assert same.json() == {
        "errors": [
            {
                "field": "edit_text",
                "message": "The edit is the same as the answer: change it, or cancel the edit "
                "(Esc) and submit your choice alone.",
            }
        ]
    }
    assert side.json() == {
        "errors": [{"field": "edit_side", "message": '"left" is not a valid choice.'}]
    }
    assert stored() == before


def test_reviewers_accept_reject_and_correct_with_the_diff_and_the_trail(
    project, annotator, reviewer, token_client
):
    make_comparisons(project, [("The capital is Lyon.", "Other.")])
    client = token_client(annotator)
    lease = client.post(API + "comparisons/next/").json()
    client.post(
        f"/api/assignments/{lease['assignment_id']}/edit/",
        {"choice": "b", "edit_side": "a", "edit_text": "The capital is Paris."},
        format="json",
    )
    demonstration = Demonstration.objects.get()
    staff = token_client(reviewer)
    url = f"{API}demonstrations/{demonstration.pk}/"

    rejected = staff.post(url + "review/", {"decision": "rejected"}, format="json")
    corrected = staff.post(
        url + "review/", {"text": "The capital is Paris, France."}, format="json"
    )
    both = staff.post(url + "review/", {"decision": "accepted", "text": "x"}, format="json")

    assert (rejected.status_code, corrected.status_code) == (200, 200)
    assert rejected.json()["review_status"] == "rejected"
    body = corrected.json()
    assert (body["review_status"], body["reviewed_by"], body["text"], body["original"]) == (
        "corrected",
        "rev",
        "The capital is Paris, France.",
        "The capital is Lyon.",
    )
    assert body["diff"] == [
        {"op": "equal", "text": "The capital is "},
        {"op": "delete", "text": "Lyon"},
        {"op": "insert", "text": "Paris, France"},
        {"op": "equal", "text": "."},
    ]
    assert [(a["actor"], a["action"]) for a in body["audits"]] == [
        ("ann", "created"),
        ("rev", "review_rejected"),
        ("rev", "corrected"),
    ]
    assert body["audits"][2]["before"]["text"] == "The capital is Paris."
    assert both.status_code == 400
    assert both.json() == {
        "errors": [
            {
                "field": "non_field_errors",
                "message": "Send either a decision (accepted, rejected, unreviewed) or a "
                "corrected text.",
            }
        ]
    }
    listed = staff.get(API + "demonstrations/?status=corrected&origin=edited").json()
    assert [row["id"] for row in listed["results"]] == [demonstration.pk]


def test_annotators_see_only_their_own_demonstrations(writing, annotator, reviewer, token_client):
    prompt = first_train_prompt(writing)
    mine = demonstration_write(user=annotator, project=writing, prompt_id=prompt.pk, text="Mine")
    theirs = demonstration_write(user=reviewer, project=writing, prompt_id=prompt.pk, text="Theirs")
    client = token_client(annotator)

    listed = client.get(API + "demonstrations/").json()
    detail = client.get(f"{API}demonstrations/{theirs.pk}/")

    assert [row["id"] for row in listed["results"]] == [mine.pk]
    assert detail.status_code == 404
    assert len(token_client(reviewer).get(API + "demonstrations/").json()["results"]) == 2


def test_an_import_with_problems_is_a_400_listing_them_and_stores_nothing(
    project, admin_member, token_client
):
    data = b'{"prompt": "Q", "completion": "A"}\n{"messages": [{"role": "user", "content": "Q"}]}\n'
    before = (stored(), Prompt.objects.count())

    response = token_client(admin_member).post(
        API + "demonstrations/import/",
        {"file": SimpleUploadedFile("d.jsonl", data)},
        format="multipart",
    )

    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "line": 2,
                "field": "messages",
                "message": "Must be a list of at least two messages: the prompt, then the "
                "assistant's answer.",
            }
        ]
    }
    assert (stored(), Prompt.objects.count()) == before


def test_the_export_downloads_jsonl_in_trl_format(writing, annotator, reviewer, token_client):
    prompt = first_train_prompt(writing)
    demonstration_write(user=annotator, project=writing, prompt_id=prompt.pk, text="Hello.")
    staff = token_client(reviewer)

    messages = staff.get(API + "exports/demonstrations/")
    pairs = staff.get(API + "exports/demonstrations/?style=prompt_completion")
    empty = staff.get(API + "exports/demonstrations/?split=eval")
    bad = staff.get(API + "exports/demonstrations/?style=alpaca")

    assert messages.status_code == 200
    assert messages["Content-Type"] == "application/x-ndjson"
    assert (
        messages["Content-Disposition"] == 'attachment; filename="demo-demonstrations-train.jsonl"'
    )
    assert [json.loads(line) for line in messages.content.splitlines()] == [
        {"messages": [*prompt.messages, {"role": "assistant", "content": "Hello."}]}
    ]
    assert [json.loads(line) for line in pairs.content.splitlines()] == [
        {"prompt": prompt.messages, "completion": [{"role": "assistant", "content": "Hello."}]}
    ]
    assert empty.status_code == 409
    assert empty.json()["errors"][0]["message"] == (
        "Project demo has no standing demonstration on eval prompts yet: write or import some "
        "first."
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "errors": [{"field": "style", "message": '"alpaca" is not a valid choice.'}]
    }


def test_a_comparison_of_an_edit_shows_a_human_completion(
    project, annotator, reviewer, token_client
):
    make_comparisons(project, [("Old.", "Other.")])
    assignment = assignment_next(project=project, user=annotator)
    token_client(annotator).post(
        f"/api/assignments/{assignment.pk}/edit/",
        {"choice": "a", "edit_side": "b", "edit_text": "Other, better."},
        format="json",
    )
    pair = Comparison.objects.get(kind="edit")

    body = token_client(reviewer).get(f"{API}comparisons/{pair.pk}/").json()

    assert (body["kind"], body["status"], body["label_count"]) == ("edit", "complete", 1)
    assert {k: body["completion_a"][k] for k in ("kind", "text", "policy_version")} == {
        "kind": "human",
        "text": "Other, better.",
        "policy_version": None,
    }
    assert {k: body["completion_b"][k] for k in ("kind", "text", "policy_version")} == {
        "kind": "sampled",
        "text": "Other.",
        "policy_version": 0,
    }
