"""Demonstrations into a project, in TRL's SFT formats: validated whole, all or nothing.

A record (a JSONL line or an item of a JSON list) is one of

- `{"messages": [{"role", "content"}, ...]}`: the last message is the answer and must be the
  assistant's; the messages before it are the prompt and end with the user's turn;
- `{"prompt": text or messages, "completion": text or [{"role": "assistant", "content"}]}`,

with optionally `"split"` ("train" or "eval", for a prompt the project does not have yet;
default train) and `"metadata"` (an object); other keys are kept in the demonstration's
metadata. The prompt is the project's prompt with the same turns when it has one, else a new
prompt. The answer obeys the limits of a demonstration written on the labeling page
(MAX_DEMONSTRATION_CHARS, no control characters), so no way in takes what another refuses.
Duplicates (the same prompt and answer, in the file or already in the project) are problems
unless the caller chooses to skip or keep them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.imports.files import (
    DUPLICATES,
    IMPORTABLE_SPLITS,
    Duplicates,
    FileRejected,
    Problem,
    detect_format,
    records_from_bytes,
    records_limit,
)
from feedback.imports.prompts import has_nul, prompt_key, prompt_messages
from feedback.models import (
    MAX_DEMONSTRATION_CHARS,
    AuditEvent,
    Demonstration,
    DemonstrationAudit,
    Project,
    Prompt,
    no_control_characters,
)
from feedback.services.audit import audit_record
from feedback.services.demonstrations import demonstration_state

DEMONSTRATION_FORMATS = ("jsonl", "json")
_RECORD_KEYS = ("messages", "prompt", "completion", "split", "metadata")


@dataclass
class DemonstrationImportResult:
    demonstrations: list[Demonstration]
    prompts_created: int
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": len(self.demonstrations),
            "prompts_created": self.prompts_created,
            "skipped_duplicates": self.skipped,
            "demonstration_ids": [d.pk for d in self.demonstrations],
        }


@dataclass
class _Row:
    line: int
    messages: list[dict[str, str]]
    text: str
    split: str | None
    metadata: dict[str, Any]


def _answer_problems(text: str, line: int, where: str) -> list[Problem]:
    if not text.strip():
        return [Problem(line, where, "Empty: a demonstration needs an answer.")]
    if len(text.strip()) > MAX_DEMONSTRATION_CHARS:
        return [
            Problem(
                line,
                where,
                f"Longer than {MAX_DEMONSTRATION_CHARS} characters ({len(text.strip())}), the "
                "most a demonstration may have.",
            )
        ]
    if has_nul(text):
        return [Problem(line, where, "Contains a NUL character.")]
    try:
        no_control_characters("answer")(text)
    except ValidationError as error:
        return [Problem(line, where, error.messages[0])]
    return []


def _answer(value: Any, line: int) -> tuple[str, list[Problem]]:
    """The answer of a prompt-completion record: a string, or one assistant message."""
    if isinstance(value, str):
        return value, _answer_problems(value, line, "completion")
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        return "", [
            Problem(
                line,
                "completion",
                "Must be a string or a list of one message "
                '[{"role": "assistant", "content": ...}].',
            )
        ]
    message = value[0]
    problems = []
    if message.get("role") != "assistant":
        problems.append(
            Problem(
                line,
                "completion[0].role",
                f"Must be 'assistant' (the answer's role), not {message.get('role')!r}.",
            )
        )
    content = message.get("content")
    if not isinstance(content, str):
        return "", [*problems, Problem(line, "completion[0].content", "Must be a string.")]
    return content, problems + _answer_problems(content, line, "completion[0].content")


def _conversation(value: Any, line: int) -> tuple[list[dict], str, list[Problem]]:
    """`messages` -> (the prompt's turns, the answer)."""
    if not isinstance(value, list) or len(value) < 2:
        return (
            [],
            "",
            [
                Problem(
                    line,
                    "messages",
                    "Must be a list of at least two messages: the prompt, then the assistant's "
                    "answer.",
                )
            ],
        )
    last = value[-1]
    where = f"messages[{len(value) - 1}]"
    if not isinstance(last, dict):
        return [], "", [Problem(line, where, "A message must be an object.")]
    problems: list[Problem] = []
    if last.get("role") != "assistant":
        problems.append(
            Problem(
                line,
                f"{where}.role",
                "The last message is the answer and must be the assistant's, not "
                f"{last.get('role')!r}.",
            )
        )
    content = last.get("content")
    if not isinstance(content, str):
        problems.append(Problem(line, f"{where}.content", "Must be a string."))
        content = ""
    else:
        problems.extend(_answer_problems(content, line, f"{where}.content"))
    messages, prompt_problems = prompt_messages(value[:-1], line, "messages")
    return messages, content, problems + prompt_problems


def _row(line: int, record: Any) -> tuple[_Row | None, list[Problem]]:
    if not isinstance(record, dict):
        return None, [
            Problem(line, "record", "Expected an object: 'messages', or 'prompt' and 'completion'.")
        ]
    if "messages" in record and ("prompt" in record or "completion" in record):
        return None, [
            Problem(
                line,
                "record",
                "Use either 'messages' or 'prompt' and 'completion' (TRL's SFT formats), not both.",
            )
        ]
    if "messages" in record:
        messages, text, problems = _conversation(record["messages"], line)
    elif "prompt" in record and "completion" in record:
        messages, problems = prompt_messages(record["prompt"], line, "prompt")
        text, answer_problems = _answer(record["completion"], line)
        problems = problems + answer_problems
    else:
        missing = "completion" if "prompt" in record else "prompt" if "completion" in record else ""
        message = (
            f"Missing '{missing}'."
            if missing
            else "Missing: 'messages', or 'prompt' and 'completion' (TRL's SFT formats)."
        )
        return None, [Problem(line, missing or "record", message)]
    split = record.get("split")
    if split is not None and split not in IMPORTABLE_SPLITS:
        problems.append(Problem(line, "split", f"Must be one of {IMPORTABLE_SPLITS}."))
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        problems.append(Problem(line, "metadata", "Must be an object."))
        metadata = {}
    extra = {k: v for k, v in record.items() if k not in _RECORD_KEYS}
    if has_nul(metadata) or has_nul(extra):
        problems.append(Problem(line, "metadata", "Contains a NUL character."))
    if problems:
        return None, problems
    return _Row(line, messages, text.strip(), split, {**extra, **metadata}), []


def demonstrations_import_records(
    *,
    project: Project,
    records: list[tuple[int, Any]],
    source: str = "",
    duplicates: str = "error",
    actor: AbstractBaseUser | None = None,
) -> DemonstrationImportResult:
    """Validate every (line, record) first, then write all demonstrations (and the prompts
    they need) or nothing. `duplicates`: "error" (a duplicate rejects the file), "skip" (left
    out and reported) or "keep" (imported again). Each demonstration is `imported`, with no
    author, `source` naming the file and line, and a DemonstrationAudit row by `actor`; the
    import itself is an AuditEvent."""
    if duplicates not in DUPLICATES:
        raise FileRejected(
            [Problem(0, "duplicates", f"Unknown choice {duplicates!r}; use {list(DUPLICATES)}.")],
            source,
        )
    records_limit(records, source)
    prompts = {
        prompt_key(p.messages): p
        for p in Prompt.objects.filter(project=project).only("id", "messages", "split")
    }
    existing: set[tuple[str, str]] = set()
    if duplicates != "keep":
        existing = {
            (prompt_key(messages), text)
            for messages, text in Demonstration.objects.filter(
                project=project, withdrawn_at__isnull=True
            ).values_list("prompt__messages", "text")
        }
    checked = Duplicates(duplicates, existing, "record", "a demonstration the project already has")
    problems: list[Problem] = []
    rows: list[_Row] = []
    for line, record in records:
        row, found = _row(line, record)
        if row is None:
            problems.extend(found)
            continue
        key = prompt_key(row.messages)
        known = prompts.get(key)
        if known is not None and row.split is not None and row.split != known.split:
            problems.append(
                Problem(
                    line,
                    "split",
                    f"The project already has this prompt, in its {known.split} split.",
                )
            )
            continue
        if not checked.admits((key, row.text), line, problems):
            continue
        rows.append(row)
    if problems:
        raise FileRejected(problems, source)
    return _write(project=project, rows=rows, prompts=prompts, source=source,
                  skipped=checked.skipped, duplicates=duplicates, actor=actor)  # fmt: skip


def _write(
    *,
    project: Project,
    rows: list[_Row],
    prompts: dict[str, Prompt],
    source: str,
    skipped: list[dict[str, Any]],
    duplicates: str,
    actor: AbstractBaseUser | None,
) -> DemonstrationImportResult:
    with transaction.atomic():
        new_prompts: dict[str, Prompt] = {}
        for row in rows:
            key = prompt_key(row.messages)
            if key not in prompts and key not in new_prompts:
                new_prompts[key] = Prompt(
                    project=project,
                    messages=row.messages,
                    split=row.split or Prompt.Split.TRAIN,
                    source=source[:200],
                    metadata={"imported_with": "demonstrations"},
                )
        created_prompts = Prompt.objects.bulk_create(list(new_prompts.values()))
        by_key = {**prompts, **{prompt_key(p.messages): p for p in created_prompts}}
        demonstrations = Demonstration.objects.bulk_create(
            [
                Demonstration(
                    project=project,
                    prompt=by_key[prompt_key(row.messages)],
                    author=None,
                    text=row.text,
                    origin=Demonstration.Origin.IMPORTED,
                    source=f"{source}:{row.line}"[:200],
                    metadata=row.metadata,
                )
                for row in rows
            ]
        )
        DemonstrationAudit.objects.bulk_create(
            [
                DemonstrationAudit(
                    demonstration=demonstration,
                    actor=actor if actor is not None and actor.is_authenticated else None,
                    action="imported",
                    before=None,
                    after={**demonstration_state(demonstration), "source": demonstration.source},
                )
                for demonstration in demonstrations
            ]
        )
        audit_record(
            actor=actor,
            project=project,
            action=AuditEvent.Action.DEMONSTRATIONS_IMPORT,
            target=project,
            before=None,
            after={
                "demonstrations": len(demonstrations),
                "prompts_created": len(created_prompts),
                "skipped": len(skipped),
                "duplicates": duplicates,
            },
        )
    return DemonstrationImportResult(
        demonstrations=demonstrations, prompts_created=len(created_prompts), skipped=skipped
    )


def demonstrations_import_file(
    *,
    project: Project,
    data: bytes,
    name: str,
    file_format: str | None = None,
    duplicates: str = "error",
    actor: AbstractBaseUser | None = None,
) -> DemonstrationImportResult:
    """A JSONL file or a JSON list of demonstrations (CSV cannot hold TRL's records)."""
    file_format = file_format or detect_format(name, data)
    if file_format not in DEMONSTRATION_FORMATS:
        raise FileRejected(
            [
                Problem(
                    0,
                    "format",
                    f"Demonstrations import as one of {list(DEMONSTRATION_FORMATS)} (TRL's SFT "
                    f"records), not {file_format}.",
                )
            ],
            name,
        )
    records = records_from_bytes(data=data, name=name, file_format=file_format)
    return demonstrations_import_records(
        project=project, records=records, source=name, duplicates=duplicates, actor=actor
    )
