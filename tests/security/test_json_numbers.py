"""JSON numbers outside JSON: NaN, Infinity, -Infinity and a number too large for a float
(1e400, which Python reads as infinity) are refused wherever Hone reads JSON from outside,
with a message naming the value, and nothing is stored: the labeling API on both paths (the
fast path hands such a body to Django, which answers as it always did) and prompt imports."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from feedback.imports import FileRejected, prompts_import_file
from feedback.models import Assignment, LabelAudit, PreferenceLabel, Prompt
from tests.api.test_fastpath import NEXT, Caller, label_url, run
from tests.asgi import on_both_paths, post
from tests.factories import make_comparisons

BODIES = {
    "NaN": b'{"choice": "a", "rationale": NaN}',
    "Infinity": b'{"choice": "a", "time_spent_ms": Infinity}',
    "-Infinity": b'{"choice": "a", "strength": -Infinity}',
    "1e400": b'{"choice": "a", "rationale": 1e400}',
}


def not_json(value: str) -> dict:
    message = f"JSON parse error - Out of range float values are not JSON compliant: {value!r}"
    return {"errors": [{"field": "detail", "message": message}]}


@on_both_paths
def test_a_label_with_a_number_json_lacks_is_refused_on_both_paths(path, project, annotator):
    make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)

    async def scenario(app):
        caller.app = app
        url = label_url(json.loads((await caller.post(NEXT))[2])["assignment_id"])
        answers = {}
        for name, body in BODIES.items():
            answer = await post(
                app, url, headers=caller.headers, chunks=[body], content_length=len(body)
            )
            answers[name] = (answer.status, answer.json())
        return answers

    answers, served = run(path, scenario)

    assert answers == {name: (400, not_json(name)) for name in BODIES}
    assert (PreferenceLabel.objects.count(), LabelAudit.objects.count()) == (0, 0)
    assert Assignment.objects.get().status == Assignment.Status.ACTIVE
    assert served == ({} if path == "django" else {"next": 1, "django": 4})


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_an_import_with_a_number_json_lacks_is_rejected_naming_the_line(project, value):
    before = Prompt.objects.count()
    data = f'{{"prompt": "Fine."}}\n{{"prompt": "Scored.", "metadata": {{"score": {value}}}}}\n'

    with pytest.raises(FileRejected) as rejected:
        prompts_import_file(project=project, data=data.encode(), name="scores.jsonl")

    assert [p.as_dict() for p in rejected.value.problems] == [
        {
            "line": 2,
            "field": "line",
            "message": "Not valid JSON: Out of range float values are not JSON compliant: "
            f"{value!r}.",
        }
    ]
    assert Prompt.objects.count() == before


def test_the_api_rejects_such_a_file_with_its_line(project, admin_member):
    client = APIClient()
    client.force_authenticate(admin_member)
    before = Prompt.objects.count()
    upload = SimpleUploadedFile("scores.json", b'[{"prompt": "Scored.", "metadata": [NaN]}]')

    response = client.post("/api/projects/demo/prompts/import/", {"file": upload})

    assert (response.status_code, response.json()) == (
        400,
        {
            "errors": [
                {
                    "line": 0,
                    "field": "file",
                    "message": "Not valid JSON: Out of range float values are not JSON "
                    "compliant: 'NaN'.",
                }
            ]
        },
    )
    assert Prompt.objects.count() == before


@pytest.mark.parametrize(
    "body", ['{"prompt": NaN}', '{"prompt": "x", "n": Infinity}', "[" * 200 + "]" * 200]
)
def test_the_arena_takes_only_json_hone_takes(client, project, annotator, body):
    from feedback.models import ArenaBattle, Prompt
    from training.models import PolicyVersion

    PolicyVersion.objects.create(project=project, number=1, status="candidate")
    prompts = Prompt.objects.count()
    client.force_login(annotator)

    response = client.post("/p/demo/arena/battles/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["errors"][0].startswith("The request body is not JSON Hone takes")
    assert (ArenaBattle.objects.count(), Prompt.objects.count()) == (0, prompts)
