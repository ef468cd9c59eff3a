"""Free text people post has a limit: a label's rationale 4,000 characters, a flag's note
2,000, without control characters but tabs and line breaks. The same on every way in (the
API on both labeling paths, the labeling page, its htmx form, the model); past it a 400 names
the field and the limit, and nothing is stored."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from feedback.models import Assignment, ComparisonFlag, LabelAudit, PreferenceLabel
from tests.api.test_fastpath import NEXT, Caller, label_url, run
from tests.asgi import on_both_paths
from tests.factories import make_comparisons

RATIONALE_TOO_LONG = "The rationale may have at most 4000 characters (it has 4001)."
RATIONALE_CONTROL = (
    "The rationale contains a control character; tabs and line breaks are the only ones allowed."
)


@on_both_paths
def test_the_api_refuses_a_rationale_over_the_limit_on_both_paths(path, project, annotator):
    make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)

    async def scenario(app):
        caller.app = app
        url = label_url(json.loads((await caller.post(NEXT))[2])["assignment_id"])
        refused = [
            await caller.post(url, {"choice": "a", "rationale": rationale})
            for rationale in ("x" * 4001, "thirty\x1b[31m red")
        ]
        taken = await caller.post(url, {"choice": "a", "rationale": "y" * 4000 + "\n  "})
        return refused, taken

    (refused, taken), served = run(path, scenario)

    assert [(status, json.loads(body)) for status, _, body in refused] == [
        (400, {"errors": [{"field": "rationale", "message": RATIONALE_TOO_LONG}]}),
        (400, {"errors": [{"field": "rationale", "message": RATIONALE_CONTROL}]}),
    ]
    assert taken[0] == 201
    assert PreferenceLabel.objects.get().rationale == "y" * 4000
    assert LabelAudit.objects.get().after["rationale"] == "y" * 4000
    assert served == ({} if path == "django" else {"next": 1, "django": 2, "label": 1})


@pytest.mark.parametrize("url", ["/p/demo/label/submit/", "/p/demo/label/"])
def test_the_labeling_page_refuses_a_rationale_over_the_limit(client, project, annotator, url):
    make_comparisons(project, [("x", "y")])
    client.force_login(annotator)
    assignment = client.get("/p/demo/label/").context["assignment"]
    form = {"assignment_id": assignment.pk, "choice": "a", "rationale": "x" * 4001}

    response = client.post(url, form, HTTP_HX_REQUEST="true")

    assert response.status_code == 400
    assert RATIONALE_TOO_LONG in response.content.decode()
    assert PreferenceLabel.objects.count() == 0
    assert Assignment.objects.get().status == Assignment.Status.ACTIVE


def test_a_flag_note_over_the_limit_is_refused_and_one_at_it_is_kept(client, project, annotator):
    make_comparisons(project, [("x", "y")])
    client.force_login(annotator)
    assignment = client.get("/p/demo/label/").context["assignment"]
    flag = {"assignment_id": assignment.pk, "reason": "broken"}

    refused = client.post("/p/demo/label/flag/", {**flag, "note": "n" * 2001})
    control = client.post("/p/demo/label/flag/", {**flag, "note": "bell\x07"})
    nothing_stored = (ComparisonFlag.objects.count(), Assignment.objects.get().status)
    taken = client.post("/p/demo/label/flag/", {**flag, "note": "n" * 2000})

    assert (refused.status_code, control.status_code, taken.status_code) == (400, 400, 200)
    assert "The note may have at most 2000 characters (it has 2001)." in refused.content.decode()
    assert "The note contains a control character" in control.content.decode()
    assert nothing_stored == (0, Assignment.Status.ACTIVE)
    assert ComparisonFlag.objects.get().note == "n" * 2000


def test_the_forms_say_the_limits(client, project, annotator):
    make_comparisons(project, [("x", "y")])
    client.force_login(annotator)

    html = client.get("/p/demo/label/").content.decode()

    assert '<textarea id="rationale" name="rationale" rows="2" maxlength="4000">' in html
    assert '<input id="flag-note" name="note" maxlength="2000">' in html


def test_the_model_refuses_what_the_forms_refuse(project, annotator):
    (comparison,) = make_comparisons(project, [("x", "y")])
    label = PreferenceLabel(
        comparison=comparison, annotator=annotator, choice="a", a_shown_left=True
    )
    flag = ComparisonFlag(comparison=comparison, annotator=annotator, reason="other")

    label.rationale, flag.note = "x" * 4001, "n" * 2001
    with pytest.raises(ValidationError) as too_long:
        label.full_clean()
    with pytest.raises(ValidationError) as note_too_long:
        flag.full_clean()
    label.rationale, flag.note = "x" * 4000, "n" * 2000
    label.full_clean()
    flag.full_clean()

    assert too_long.value.message_dict == {"rationale": [RATIONALE_TOO_LONG]}
    assert note_too_long.value.message_dict == {
        "note": ["The note may have at most 2000 characters (it has 2001)."]
    }
