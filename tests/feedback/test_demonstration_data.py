"""Demonstrations in and out in TRL's SFT formats: all or nothing, every problem with its line
and field; exports that the SFT stage reads as they are."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from feedback.exports import demonstration_rows, demonstrations_export
from feedback.imports import FileRejected, demonstrations_import_file
from feedback.models import (
    MAX_DEMONSTRATION_CHARS,
    AuditEvent,
    Demonstration,
    DemonstrationAudit,
    Prompt,
)
from feedback.services import (
    demonstration_correct,
    demonstration_review,
    demonstration_write,
    project_create,
)
from training.ml.sft import load_demonstrations


def jsonl(*records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def problems(error) -> list[tuple[int, str, str]]:
    return [(p.line, p.field, p.message) for p in error.value.problems]


def counts() -> tuple[int, int, int, int]:
    return (
        Demonstration.objects.count(),
        DemonstrationAudit.objects.count(),
        Prompt.objects.count(),
        AuditEvent.objects.filter(action="demonstrations.import").count(),
    )


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]


def test_both_sft_formats_import_onto_existing_and_new_prompts(project, admin_member):
    data = jsonl(
        {"messages": [*CHAT, {"role": "assistant", "content": "Hello."}], "id": 7},
        {"prompt": "Say hello.", "completion": "Hello!"},
        {
            "prompt": [{"role": "user", "content": "A new one?"}],
            "completion": [{"role": "assistant", "content": "Yes."}],
            "split": "eval",
            "metadata": {"source": "team"},
        },
    )
    prompts_before = Prompt.objects.count()

    result = demonstrations_import_file(
        project=project, data=data, name="demos.jsonl", actor=admin_member
    )

    assert result.as_dict()["created"] == 3
    assert result.prompts_created == 1
    first, second, third = Demonstration.objects.order_by("id").select_related("prompt")
    assert (first.prompt.messages, first.text, first.metadata) == (CHAT, "Hello.", {"id": 7})
    assert (second.prompt.text, second.prompt.split, second.text) == (
        "Say hello.",
        "train",
        "Hello!",
    )
    assert (third.prompt.text, third.prompt.split, third.metadata) == (
        "A new one?",
        "eval",
        {"source": "team"},
    )
    assert {(d.origin, d.author_id, d.source) for d in (first, second)} == {
        ("imported", None, "demos.jsonl:1"),
        ("imported", None, "demos.jsonl:2"),
    }
    assert Prompt.objects.count() == prompts_before + 1
    assert list(DemonstrationAudit.objects.values_list("actor_id", "action").distinct()) == [
        (admin_member.pk, "imported")
    ]
    event = AuditEvent.objects.get(action="demonstrations.import")
    assert (event.actor_id, event.after) == (
        admin_member.pk,
        {"demonstrations": 3, "prompts_created": 1, "skipped": 0, "duplicates": "error"},
    )


def test_a_json_list_imports_too(project):
    data = json.dumps([{"prompt": "Say hello.", "completion": "Hi."}]).encode()

    result = demonstrations_import_file(project=project, data=data, name="demos.json")

    assert [d.text for d in result.demonstrations] == ["Hi."]


def test_bad_demonstrations_are_rejected_with_every_line_and_nothing_stored(project):
    long = "x" * (MAX_DEMONSTRATION_CHARS + 1)
    data = jsonl(
        {"prompt": "Fine.", "completion": "Fine too."},  # 1: good, yet not stored
        {"prompt": "Empty answer.", "completion": "   "},  # 2
        {"prompt": "Too long.", "completion": long},  # 3
        {"messages": [{"role": "user", "content": "Q"}, {"role": "user", "content": "A"}]},  # 4
        {"messages": [{"role": "bot", "content": "Q"}, {"role": "assistant", "content": "A"}]},
        {"prompt": "Q", "completion": [{"role": "user", "content": "A"}]},  # 6
        {"messages": [{"role": "assistant", "content": "A"}]},  # 7
        {"prompt": "Q"},  # 8
        {"text": "what?"},  # 9
        {"messages": [*CHAT, {"role": "assistant", "content": "A"}], "prompt": "Q"},  # 10
        {"messages": [{"role": "assistant", "content": "Earlier."}, {"role": "assistant", "content": "A"}]},
        {"prompt": "Q", "completion": "bell\u0007"},  # 12
    )  # fmt: skip
    before = counts()

    with pytest.raises(FileRejected) as error:
        demonstrations_import_file(project=project, data=data, name="bad.jsonl")

    assert problems(error) == [
        (2, "completion", "Empty: a demonstration needs an answer."),
        (3, "completion", f"Longer than {MAX_DEMONSTRATION_CHARS} characters "
                          f"({MAX_DEMONSTRATION_CHARS + 1}), the most a demonstration may have."),
        (4, "messages[1].role", "The last message is the answer and must be the assistant's, "
                                "not 'user'."),
        (5, "messages[0].role", "Must be one of ['system', 'user', 'assistant']."),
        (6, "completion[0].role", "Must be 'assistant' (the answer's role), not 'user'."),
        (7, "messages", "Must be a list of at least two messages: the prompt, then the "
                        "assistant's answer."),
        (8, "completion", "Missing 'completion'."),
        (9, "record", "Missing: 'messages', or 'prompt' and 'completion' (TRL's SFT formats)."),
        (10, "record", "Use either 'messages' or 'prompt' and 'completion' (TRL's SFT formats), "
                       "not both."),
        (11, "messages", "The last message must be from the user."),
        (12, "completion", "The answer contains a control character; tabs and line breaks are "
                           "the only ones allowed."),
    ]  # fmt: skip
    assert str(error.value.messages[0]) == (
        "bad.jsonl line 2, field 'completion': Empty: a demonstration needs an answer."
    )
    assert counts() == before


def test_duplicates_are_problems_unless_skipped_or_kept(project, annotator):
    project.demonstrations_per_prompt = 1
    prompt = Prompt.objects.get(
        project=project, messages=[{"role": "user", "content": "Say hello."}]
    )
    demonstration_write(user=annotator, project=project, prompt_id=prompt.pk, text="Hello!")
    data = jsonl(
        {"prompt": "Say hello.", "completion": "Hello!"},  # the project has it
        {"prompt": "Name a colour.", "completion": "Blue."},
        {"prompt": "Name a colour.", "completion": "Blue."},  # line 2 has it
    )
    before = counts()

    with pytest.raises(FileRejected) as error:
        demonstrations_import_file(project=project, data=data, name="d.jsonl")
    assert problems(error) == [
        (1, "record", "Duplicate of a demonstration the project already has."),
        (3, "record", "Duplicate of line 2 of this file."),
    ]
    assert counts() == before

    skipped = demonstrations_import_file(
        project=project, data=data, name="d.jsonl", duplicates="skip"
    )
    assert skipped.as_dict()["skipped_duplicates"] == [
        {"line": 1, "duplicate_of": "project"},
        {"line": 3, "duplicate_of_line": 2},
    ]
    assert [d.text for d in skipped.demonstrations] == ["Blue."]
    kept = demonstrations_import_file(project=project, data=data, name="d.jsonl", duplicates="keep")
    assert len(kept.demonstrations) == 3


def test_a_prompt_of_another_split_and_csv_files_are_refused(project):
    data = jsonl({"prompt": "Count to three.", "completion": "1 2 3", "split": "train"})
    with pytest.raises(FileRejected) as error:
        demonstrations_import_file(project=project, data=data, name="d.jsonl")
    assert problems(error) == [
        (1, "split", "The project already has this prompt, in its eval split.")
    ]

    with pytest.raises(FileRejected) as error:
        demonstrations_import_file(project=project, data=b"prompt,completion\nQ,A\n", name="d.csv")
    assert problems(error) == [
        (
            0,
            "format",
            "Demonstrations import as one of ['jsonl', 'json'] (TRL's SFT records), not csv.",
        )
    ]
    assert counts()[0] == 0


def test_the_command_line_imports_and_reports_every_problem(project, tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl({"prompt": "Say hello.", "completion": "Hi."}))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl({"prompt": "Say hello.", "completion": ""}))

    call_command("import_prompts", str(good), "--project", "demo", "--demonstrations")
    with pytest.raises(CommandError) as error:
        call_command("import_prompts", str(bad), "--project", "demo", "--demonstrations")

    out, err = capsys.readouterr()
    assert "Imported 1 demonstrations (0 new prompts) into demo." in out
    assert "bad.jsonl line 1, field 'completion': Empty: a demonstration needs an answer." in err
    assert str(error.value) == "bad.jsonl rejected: 1 problem(s); nothing was imported."
    assert list(Demonstration.objects.values_list("text", flat=True)) == ["Hi."]


# --- Export -------------------------------------------------------------------------------


@pytest.fixture
def demonstrations(project, annotator, reviewer):
    """Three standing demonstrations (one corrected) and one rejected, on train prompts, and
    one on an eval prompt."""
    demonstrations_import_file(
        project=project,
        data=jsonl(
            {"messages": [*CHAT, {"role": "assistant", "content": "Hello."}]},
            {"prompt": "Say hello.", "completion": "Hi."},
            {"prompt": "Name a colour.", "completion": "Blue."},
            {"prompt": "Name a colour.", "completion": "Sky."},
            {"prompt": "Count to three.", "completion": "1, 2, 3."},
        ),
        name="seed.jsonl",
    )
    ids = list(Demonstration.objects.order_by("id").values_list("pk", flat=True))
    demonstration_correct(reviewer=reviewer, demonstration_id=ids[1], text="Hi there.")
    demonstration_review(reviewer=reviewer, demonstration_id=ids[3], decision="rejected")
    return ids


def test_the_export_holds_standing_demonstrations_of_the_split(project, demonstrations):
    assert demonstration_rows(project=project) == [
        {"messages": [*CHAT, {"role": "assistant", "content": "Hello."}]},
        {"messages": [{"role": "user", "content": "Say hello."},
                      {"role": "assistant", "content": "Hi there."}]},
        {"messages": [{"role": "user", "content": "Name a colour."},
                      {"role": "assistant", "content": "Blue."}]},
    ]  # fmt: skip
    assert demonstration_rows(project=project, style="prompt_completion", split="eval") == [
        {
            "prompt": [{"role": "user", "content": "Count to three."}],
            "completion": [{"role": "assistant", "content": "1, 2, 3."}],
        }
    ]
    assert len(demonstration_rows(project=project, split="all")) == 4


def test_an_export_is_audited_and_read_back_by_the_sft_stage_and_the_import(
    project, demonstrations, admin_member, tmp_path
):
    for style in ("messages", "prompt_completion"):
        payload = demonstrations_export(project=project, style=style, actor=admin_member)
        path = tmp_path / f"{style}.jsonl"
        path.write_bytes(payload)
        read = load_demonstrations(path)
        assert [d.answer for d in read] == ["Hello.", "Hi there.", "Blue."]
        assert read[0].prompt == CHAT
        other = project_create(slug=f"copy-{style.replace('_', '-')}", name="Copy", base_model="x")
        copied = demonstrations_import_file(project=other, data=payload, name=path.name)
        assert demonstration_rows(project=other, style=style) == demonstration_rows(
            project=project, style=style
        )
        assert copied.prompts_created == 3

    events = AuditEvent.objects.filter(action="data.export").order_by("id")
    assert [e.after for e in events] == [
        {"what": "demonstrations", "format": "jsonl", "style": style, "split": "train", "rows": 3}
        for style in ("messages", "prompt_completion")
    ]
    assert {e.actor_id for e in events} == {admin_member.pk}


def test_an_empty_export_and_bad_options_are_refused(project):
    with pytest.raises(ValidationError) as error:
        demonstrations_export(project=project)
    assert error.value.messages == [
        "Project demo has no standing demonstration on train prompts yet: write or import some "
        "first."
    ]
    with pytest.raises(ValidationError) as error:
        demonstration_rows(project=project, style="alpaca")
    assert error.value.message_dict == {
        "style": ["Unknown style 'alpaca'; use one of ['messages', 'prompt_completion']."]
    }
    assert not AuditEvent.objects.filter(action="data.export").exists()


def test_the_export_command_writes_what_the_api_serves(project, demonstrations, tmp_path, capsys):
    out = tmp_path / "sft" / "demos.jsonl"

    call_command("export_demonstrations", "--project", "demo", "--out", str(out))

    assert out.read_bytes() == demonstrations_export(project=project)
    assert "Wrote 3 demonstrations to" in capsys.readouterr().out
    project_create(slug="empty", name="Empty", base_model="x")
    with pytest.raises(CommandError) as error:
        call_command("export_demonstrations", "--project", "empty", "--out", str(tmp_path / "e"))
    assert str(error.value) == (
        "Project empty has no standing demonstration on train prompts yet: write or import some "
        "first."
    )
    assert not (tmp_path / "e").exists()
