"""Prompts into a project: validated whole, duplicates reported, all or nothing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.imports.files import (
    DUPLICATES,
    IMPORTABLE_SPLITS,
    MAX_PROMPT_CHARS,
    VALID_ROLES,
    Duplicates,
    FileRejected,
    Problem,
    records_from_bytes,
    records_limit,
)
from feedback.models import (
    AuditEvent,
    Project,
    Prompt,
)
from feedback.services.audit import audit_record


@dataclass
class PromptImportResult:
    prompts: list[Prompt]
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": len(self.prompts),
            "skipped_duplicates": self.skipped,
            "prompt_ids": [p.pk for p in self.prompts],
        }


# --- Prompts -----------------------------------------------------------------------------


def has_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character anywhere (PostgreSQL refuses to store one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def prompt_messages(
    value: Any, line: int, name: str = "prompt"
) -> tuple[list[dict], list[Problem]]:
    """Chat turns from a prompt given as text or as messages; problems name the field."""
    if has_nul(value):
        return [], [Problem(line, name, "Contains a NUL character.")]
    if isinstance(value, str):
        if not value.strip():
            return [], [Problem(line, name, "Empty.")]
        if len(value) > MAX_PROMPT_CHARS:
            return [], [Problem(line, name, f"Longer than {MAX_PROMPT_CHARS} characters.")]
        return [{"role": "user", "content": value}], []
    if not isinstance(value, list) or not value:
        return [], [Problem(line, name, "Must be a string or a non-empty list of messages.")]
    problems: list[Problem] = []
    for i, message in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(message, dict):
            problems.append(Problem(line, where, "A message must be an object."))
            continue
        if message.get("role") not in VALID_ROLES:
            problems.append(Problem(line, f"{where}.role", f"Must be one of {list(VALID_ROLES)}."))
        content = message.get("content")
        if not isinstance(content, str):
            problems.append(Problem(line, f"{where}.content", "Must be a string."))
        elif len(content) > MAX_PROMPT_CHARS:
            problems.append(
                Problem(line, f"{where}.content", f"Longer than {MAX_PROMPT_CHARS} characters.")
            )
    if not problems and value[-1].get("role") != "user":
        problems.append(Problem(line, name, "The last message must be from the user."))
    if problems:
        return [], problems
    return [{"role": m["role"], "content": m["content"]} for m in value], []


def prompt_key(messages: list[dict[str, str]]) -> str:
    """Identity of a prompt for duplicate detection: its exact turns."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def prompts_import_records(
    *,
    project: Project,
    records: list[tuple[int, Any]],
    source: str = "",
    duplicates: str = "error",
    actor: AbstractBaseUser | None = None,
) -> PromptImportResult:
    """Validate every (line, record) first, then write all prompts or none.

    A record is {"prompt": text or chat turns, "split": "train"|"eval", "metadata": {...}};
    other keys are kept in metadata. `duplicates`: "error" (a duplicate rejects the file),
    "skip" (left out and reported) or "keep" (imported again).
    """
    if duplicates not in DUPLICATES:
        raise ValidationError(
            {"duplicates": f"Unknown choice {duplicates!r}; use one of {list(DUPLICATES)}."}
        )
    existing: set[str] = set()
    if duplicates != "keep":
        existing = {
            prompt_key(m)
            for m in Prompt.objects.filter(project=project).values_list("messages", flat=True)
        }
    records_limit(records, source)
    checked = Duplicates(duplicates, existing, "prompt", "a prompt the project already has")
    problems: list[Problem] = []
    prompts: list[Prompt] = []
    for line, record in records:
        if not isinstance(record, dict):
            problems.append(Problem(line, "record", "Expected an object with a 'prompt' field."))
            continue
        if "prompt" not in record:
            problems.append(Problem(line, "prompt", "Missing."))
            continue
        messages, found = prompt_messages(record["prompt"], line)
        split = record.get("split", Prompt.Split.TRAIN)
        if split not in IMPORTABLE_SPLITS:  # "arena" prompts are typed in the arena only
            found.append(Problem(line, "split", f"Must be one of {IMPORTABLE_SPLITS}."))
        metadata = record.get("metadata", {})
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            found.append(Problem(line, "metadata", "Must be an object."))
        extra = {k: v for k, v in record.items() if k not in ("prompt", "split", "metadata")}
        if has_nul(metadata) or has_nul(extra):
            found.append(Problem(line, "metadata", "Contains a NUL character."))
        if found:
            problems.extend(found)
            continue
        if not checked.admits(prompt_key(messages), line, problems):
            continue
        prompts.append(
            Prompt(
                project=project,
                messages=messages,
                split=split,
                source=source[:200],
                metadata={**extra, **metadata},
            )
        )
    if problems:
        raise FileRejected(problems, source)
    with transaction.atomic():
        created = Prompt.objects.bulk_create(prompts)
        after = {"prompts": len(created), "skipped": len(checked.skipped), "duplicates": duplicates}
        audit_record(
            actor=actor,
            project=project,
            action=AuditEvent.Action.PROMPTS_IMPORT,
            target=project,
            before=None,
            after=after,
        )
    return PromptImportResult(prompts=created, skipped=checked.skipped)


def prompts_import_file(
    *,
    project: Project,
    data: bytes,
    name: str,
    file_format: str | None = None,
    duplicates: str = "error",
    actor: AbstractBaseUser | None = None,
) -> PromptImportResult:
    records = records_from_bytes(data=data, name=name, file_format=file_format)
    return prompts_import_records(
        project=project, records=records, source=name, duplicates=duplicates, actor=actor
    )
