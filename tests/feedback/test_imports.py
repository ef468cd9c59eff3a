from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from feedback.imports import FileRejected, labels_import_file, prompts_import_file
from feedback.models import Comparison, Completion, LabelAudit, PreferenceLabel, Prompt
from training.services import comparison_verdicts

LABEL_STUDIO = Path(__file__).parent.parent / "fixtures" / "label_studio_pairwise.json"


def _problems(error) -> list[tuple[int, str, str]]:
    return [(p.line, p.field, p.message) for p in error.value.problems]


def test_jsonl_text_and_chat_prompts_with_split_and_metadata(project):
    data = (
        b'{"prompt": "Plain text", "split": "eval", "metadata": {"topic": "x"}}\n'
        b"\n"
        b'{"prompt": [{"role": "system", "content": "Brief."}, '
        b'{"role": "user", "content": "Chat"}], "id": 7}\n'
    )

    result = prompts_import_file(project=project, data=data, name="p.jsonl")

    first, second = result.prompts
    assert Prompt.objects.get(pk=first.pk).messages == [{"role": "user", "content": "Plain text"}]
    assert (first.split, first.metadata, first.source) == ("eval", {"topic": "x"}, "p.jsonl")
    assert Prompt.objects.get(pk=second.pk).messages == [
        {"role": "system", "content": "Brief."},
        {"role": "user", "content": "Chat"},
    ]
    assert (second.split, second.metadata) == ("train", {"id": 7})


def test_csv_with_system_column_and_extra_columns_as_metadata(project):
    data = b'prompt,system,split,topic\n"Hello, world",Be kind.,eval,greetings\nSecond,,,\n'

    result = prompts_import_file(project=project, data=data, name="p.csv")

    first, second = (Prompt.objects.get(pk=p.pk) for p in result.prompts)
    assert first.messages == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hello, world"},
    ]
    assert (first.split, first.metadata) == ("eval", {"topic": "greetings"})
    assert (second.messages, second.split, second.metadata) == (
        [{"role": "user", "content": "Second"}],
        "train",
        {},
    )


def test_json_list(project):
    data = json.dumps([{"prompt": "One"}, {"prompt": "Two", "split": "eval"}]).encode()

    result = prompts_import_file(project=project, data=data, name="p.json")

    assert [(p.text, p.split) for p in result.prompts] == [("One", "train"), ("Two", "eval")]


def test_one_bad_line_rejects_the_file_listing_every_problem(project):
    before = Prompt.objects.count()
    data = (
        b'{"prompt": "fine"}\n'
        b"{not json\n"
        b'{"prompt": [{"role": "bot", "content": 3}], "split": "dev"}\n'
        b'{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
        b'{"prompt": "x", "metadata": [1]}\n'
        b'{"text": "no prompt"}\n'
    )

    with pytest.raises(FileRejected) as error:
        prompts_import_file(project=project, data=data, name="bad.jsonl")

    assert _problems(error) == [
        (2, "line", "Not valid JSON: Expecting property name enclosed in double quotes.")
    ]
    data = data.replace(b"{not json\n", b"\n")
    with pytest.raises(FileRejected) as error:
        prompts_import_file(project=project, data=data, name="bad.jsonl")
    assert _problems(error) == [
        (3, "prompt[0].role", "Must be one of ['system', 'user', 'assistant']."),
        (3, "prompt[0].content", "Must be a string."),
        (3, "split", "Must be one of ['train', 'eval']."),
        (4, "prompt", "The last message must be from the user."),
        (5, "metadata", "Must be an object."),
        (6, "prompt", "Missing."),
    ]
    assert error.value.messages[0] == (
        "bad.jsonl line 3, field 'prompt[0].role': Must be one of ['system', 'user', 'assistant']."
    )
    assert Prompt.objects.count() == before


def test_duplicates_reject_by_default_and_are_skipped_by_choice(project):
    before = Prompt.objects.count()
    data = b'{"prompt": "New"}\n{"prompt": "Say hello."}\n{"prompt": "New"}\n'

    with pytest.raises(FileRejected) as error:
        prompts_import_file(project=project, data=data, name="d.jsonl")
    result = prompts_import_file(project=project, data=data, name="d.jsonl", duplicates="skip")

    assert _problems(error) == [
        (2, "prompt", "Duplicate of a prompt the project already has."),
        (3, "prompt", "Duplicate of line 1 of this file."),
    ]
    assert [p.text for p in result.prompts] == ["New"]
    assert result.skipped == [
        {"line": 2, "duplicate_of": "project"},
        {"line": 3, "duplicate_of_line": 1},
    ]
    assert Prompt.objects.count() == before + 1


def test_size_and_record_limits(project, settings):
    before = Prompt.objects.count()
    settings.HONE_IMPORT_MAX_BYTES = 30
    with pytest.raises(FileRejected) as too_big:
        prompts_import_file(project=project, data=b'{"prompt": "a long enough line"}\n', name="b")
    settings.HONE_IMPORT_MAX_BYTES = 1000
    settings.HONE_IMPORT_MAX_RECORDS = 1
    with pytest.raises(FileRejected) as too_many:
        prompts_import_file(project=project, data=b'{"prompt": "a"}\n{"prompt": "b"}\n', name="m")

    assert _problems(too_big) == [(0, "file", "The file has 33 bytes; the limit is 30.")]
    assert _problems(too_many) == [(0, "file", "The file has 2 records; the limit is 1.")]
    assert Prompt.objects.count() == before


def test_nul_characters_are_refused_not_a_server_error(project):
    with pytest.raises(FileRejected) as error:
        prompts_import_file(project=project, data=b'{"prompt": "a\\u0000b"}\n', name="n.jsonl")

    assert _problems(error) == [(1, "prompt", "Contains a NUL character.")]


def test_import_prompts_command(project, tmp_path, capsys):
    good = tmp_path / "p.jsonl"
    good.write_text('{"prompt": "From the CLI"}\n{"prompt": "Say hello."}\n')

    call_command("import_prompts", str(good), "--project", "demo", "--duplicates", "skip")
    with pytest.raises(CommandError) as error:
        call_command("import_prompts", str(good), "--project", "demo")

    out = capsys.readouterr()
    assert "Imported 1 prompts into demo." in out.out
    assert "skipped line 2: duplicate of the project" in out.out
    assert "p.jsonl line 1, field 'prompt': Duplicate of a prompt the project already has." in (
        out.err
    )
    assert str(error.value) == "p.jsonl rejected: 2 problem(s); nothing was imported."
    assert (
        Prompt.objects.filter(messages=[{"role": "user", "content": "From the CLI"}]).count() == 1
    )


# --- Label Studio ---------------------------------------------------------------------------


def test_label_studio_pairwise_export_becomes_comparisons_and_labels(project, admin_member):
    result = labels_import_file(
        project=project, data=LABEL_STUDIO.read_bytes(), name="ls.json", actor=admin_member
    )

    assert result.as_dict() | {"annotators": len(result.annotators)} == {
        "comparisons": 2,
        "labels": 3,
        "prompts_created": 2,
        "annotators": 2,
        "skipped": [{"line": 3, "reason": "no annotations"}],
    }
    first, second = result.comparisons
    assert (first.status, first.required_labels, first.kind) == ("complete", 2, "regular")
    assert first.prompt.messages == [
        {"role": "user", "content": "Explain what a hash map is in one sentence."}
    ]
    assert first.completion_a.text.startswith("A hash map stores")
    assert first.completion_b.text == "It's a map. With hashes!"
    assert first.completion_a.policy_version.number == 0
    assert first.completion_a.sampling == {"imported": "label-studio", "file": "ls.json", "line": 1}
    labels = list(PreferenceLabel.objects.filter(comparison=first).order_by("id"))
    assert [(lb.choice, lb.a_shown_left, lb.time_spent_ms) for lb in labels] == [
        ("a", True, 12500),
        ("a", True, 7250),
    ]
    assert labels[0].created_at.isoformat() == "2025-03-04T10:15:00+00:00"
    ana = labels[0].annotator
    assert (ana.is_active, ana.has_usable_password()) == (False, False)
    # the same person (Label Studio user 7) labelled the second task: same stand-in user
    assert PreferenceLabel.objects.get(comparison=second).annotator == ana
    assert PreferenceLabel.objects.get(comparison=second).choice == "b"
    audit = LabelAudit.objects.get(label=labels[0])
    assert (audit.action, audit.actor, audit.after) == (
        "imported",
        admin_member,
        {"choice": "a", "strength": 2, "source": "label-studio", "file": "ls.json", "line": 1},
    )
    # imported history trains like any other: both comparisons have a majority
    pairs, no_preference = comparison_verdicts(project=project)
    assert [(p.comparison.pk, p.winner, p.margin) for p in pairs] == [
        (first.pk, "a", 2.0),
        (second.pk, "b", 2.0),
    ]
    assert no_preference == 0


def test_importing_the_same_export_again_reuses_prompts_and_annotators(project):
    labels_import_file(project=project, data=LABEL_STUDIO.read_bytes(), name="ls.json")
    users = get_user_model().objects.count()
    prompts = Prompt.objects.count()

    again = labels_import_file(project=project, data=LABEL_STUDIO.read_bytes(), name="ls.json")

    assert again.prompts_created == 0
    assert (get_user_model().objects.count(), Prompt.objects.count()) == (users, prompts)


def test_bad_label_studio_file_is_rejected_whole(project):
    tasks = json.loads(LABEL_STUDIO.read_text())
    tasks[0]["annotations"][1]["result"][0]["value"]["selected"] = "middle"
    del tasks[1]["data"]["answer2"]
    before = (
        Comparison.objects.count(),
        Completion.objects.count(),
        PreferenceLabel.objects.count(),
    )

    with pytest.raises(FileRejected) as error:
        labels_import_file(project=project, data=json.dumps(tasks).encode(), name="bad.json")

    assert _problems(error) == [
        (1, "annotations[1].result.value.selected", "Must be 'left' or 'right'."),
        (2, "data.answer2", "Must be a non-empty string."),
    ]
    assert (
        Comparison.objects.count(),
        Completion.objects.count(),
        PreferenceLabel.objects.count(),
    ) == before


def test_import_labels_through_the_command(project, capsys):
    call_command("import_prompts", str(LABEL_STUDIO), "--project", "demo", "--labels")

    out = capsys.readouterr().out
    assert "Imported 3 labels on 2 comparisons (2 new prompts, 2 annotators) into demo." in out
    assert "skipped line 3: no annotations" in out
