"""Files no parser should choke on: a CSV cell over the csv module's field limit, JSON nested
deeper than anyone writes (deep enough to exhaust Python's recursion), a lone surrogate, a
Label Studio export with out-of-range numbers and dates. Each is a problem named by file,
line and field, the file is rejected, and nothing is stored: through feedback.imports, the
API's upload and JSON endpoints and `manage.py import_prompts`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from feedback.imports import FileRejected, labels_import_file, prompts_import_file
from feedback.models import Comparison, Completion, PreferenceLabel, Prompt

LABEL_STUDIO = Path(__file__).parent.parent / "fixtures" / "label_studio_pairwise.json"
DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit
DEEP_CELL = "[" * 60_000 + "]" * 60_000  # the same, within a CSV cell's 131,072 characters
NESTED_65 = "[" * 65 + "]" * 65  # parses, but deeper than anyone's metadata
BIG_CELL = "x" * 131_073
DEEPER = "Not valid JSON: Nested deeper than 64 levels."
UNPAIRED = "an unpaired surrogate"


def stored() -> tuple[int, ...]:
    return (
        Prompt.objects.count(),
        Completion.objects.count(),
        Comparison.objects.count(),
        PreferenceLabel.objects.count(),
        get_user_model().objects.count(),
    )


def problems_of(data: str, name: str) -> list[tuple[int, str, str]]:
    with pytest.raises(FileRejected) as rejected:
        prompts_import_file(project=Prompt.objects.first().project, data=data.encode(), name=name)
    return [(p.line, p.field, p.message) for p in rejected.value.problems]


PROMPT_FILES = {
    "csv cell over the field limit": (
        "big.csv",
        f'prompt,split\nFine,train\n"{BIG_CELL}",train\nAlso fine,train\n',
        [(3, "row", "A cell is longer than 131072 characters, the most a CSV cell may hold.")],
    ),
    "csv messages nested too deeply": (
        "deep.csv",
        f'messages\n"{DEEP_CELL}"\n',
        [(2, "messages", DEEPER)],
    ),
    "csv metadata nested deeper than 64": (
        "meta.csv",
        f'prompt,metadata\nFine,"{{""a"": {NESTED_65}}}"\n',
        [(2, "metadata", DEEPER)],
    ),
    "jsonl line nested too deeply": (
        "deep.jsonl",
        f'{{"prompt": "Fine."}}\n{{"prompt": "Deep.", "metadata": {{"x": {DEEP}}}}}\n',
        [(2, "line", DEEPER)],
    ),
    "jsonl line nested deeper than 64": (
        "deep.jsonl",
        f'{{"prompt": {NESTED_65}}}\n',
        [(1, "line", DEEPER)],
    ),
    "json list nested too deeply": ("deep.json", f'[{{"prompt": {DEEP}}}]', [(0, "file", DEEPER)]),
    "lone surrogate": (
        "s.jsonl",
        '{"prompt": "half a pair: \\ud800"}\n{"prompt": "Fine.", "metadata": {"\\udfff": 1}}\n',
        [
            (1, "line", f"Not valid JSON: A string holds {UNPAIRED} (\\ud800), which is not text."),
            (2, "line", f"Not valid JSON: A string holds {UNPAIRED} (\\udfff), which is not text."),
        ],
    ),
}


@pytest.mark.parametrize("case", PROMPT_FILES)
def test_a_prompt_file_no_parser_should_choke_on_is_rejected_with_its_line(project, case):
    name, data, problems = PROMPT_FILES[case]
    before = stored()

    assert problems_of(data, name) == problems
    assert stored() == before


def label_studio(**annotation) -> bytes:
    tasks = json.loads(LABEL_STUDIO.read_text())
    tasks[0]["annotations"][0].update(annotation)
    return json.dumps(tasks).encode()


@pytest.mark.parametrize(
    "annotation, problem",
    [
        ({"lead_time": 1e300}, ("annotations[0].lead_time", "Must be seconds from 0 to 86400.")),
        ({"lead_time": -1}, ("annotations[0].lead_time", "Must be seconds from 0 to 86400.")),
        ({"lead_time": "slow"}, ("annotations[0].lead_time", "Must be seconds from 0 to 86400.")),
        (
            {"created_at": "2026-13-45T25:61:00Z"},
            ("annotations[0].created_at", "Not an ISO 8601 date-time."),
        ),
        ({"completed_by": {"email": json.loads(NESTED_65)}}, ("file", DEEPER)),
    ],
)
def test_a_label_studio_export_out_of_range_is_rejected_with_its_line(project, annotation, problem):
    before = stored()

    with pytest.raises(FileRejected) as rejected:
        labels_import_file(project=project, data=label_studio(**annotation), name="ls.json")

    line = 0 if problem[0] == "file" else 1
    assert [(p.line, p.field, p.message) for p in rejected.value.problems] == [(line, *problem)]
    assert stored() == before


def test_the_api_reports_these_problems_and_stores_nothing(project, admin_member):
    client = APIClient()
    client.force_authenticate(admin_member)
    before = stored()
    big_csv = SimpleUploadedFile("big.csv", f'prompt\n"{BIG_CELL}"\n'.encode())
    deep_labels = SimpleUploadedFile("ls.json", f'[{{"data": {DEEP}}}]'.encode())
    deep_body = '{"prompts": [{"prompt": "Deep.", "metadata": ' + DEEP + "}]}"

    csv_answer = client.post("/api/projects/demo/prompts/import/", {"file": big_csv})
    labels_answer = client.post("/api/projects/demo/labels/import/", {"file": deep_labels})
    body_answer = client.post(
        "/api/projects/demo/prompts/", deep_body, content_type="application/json"
    )
    shallow_answer = client.post(
        "/api/projects/demo/prompts/",
        {"prompts": [{"prompt": "Deep.", "metadata": {"x": json.loads(NESTED_65)}}]},
        format="json",
    )

    assert [
        (a.status_code, a.json()) for a in (csv_answer, labels_answer, body_answer, shallow_answer)
    ] == [
        (
            400,
            {
                "errors": [
                    {
                        "line": 2,
                        "field": "row",
                        "message": "A cell is longer than 131072 characters, the most a CSV "
                        "cell may hold.",
                    }
                ]
            },
        ),
        (400, {"errors": [{"line": 0, "field": "file", "message": DEEPER}]}),
        (
            400,
            {
                "errors": [
                    {
                        "field": "detail",
                        "message": "JSON parse error - Nested deeper than 64 levels",
                    }
                ]
            },
        ),
        (
            400,
            {
                "errors": [
                    {
                        "field": "detail",
                        "message": "JSON parse error - Nested deeper than 64 levels",
                    }
                ]
            },
        ),
    ]
    assert stored() == before


def test_the_command_reports_them_and_imports_nothing(project, tmp_path, capsys):
    path = tmp_path / "big.csv"
    path.write_text(f'prompt\nFine\n"{BIG_CELL}"\n')
    before = stored()

    with pytest.raises(CommandError) as error:
        call_command("import_prompts", str(path), "--project", "demo")

    assert str(error.value) == "big.csv rejected: 1 problem(s); nothing was imported."
    assert capsys.readouterr().err == (
        "big.csv line 3, field 'row': A cell is longer than 131072 characters, the most a CSV "
        "cell may hold.\n"
    )
    assert stored() == before
