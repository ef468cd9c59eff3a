"""Bring data into a project: prompts (JSONL, CSV, JSON list) and existing pairwise labels.

Every import is all or nothing: the whole file is parsed and validated first, every problem is
collected with its line and field, and only a file without problems is written, in one
transaction. Duplicates (inside the file, or of prompts the project already has) are problems
unless the caller chooses to skip them; skipped duplicates are reported.

Line numbers: for JSONL and CSV the physical line of the file (a CSV header is line 1); for a
JSON list the position of the item in the list (1-based). Line 0 is the file as a whole.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from feedback.models import (
    MAX_TIME_SPENT_MS,
    AuditEvent,
    Comparison,
    Completion,
    LabelAudit,
    PreferenceLabel,
    Project,
    Prompt,
    pseudonym_of,
)
from feedback.services.audit import audit_record

VALID_ROLES = ("system", "user", "assistant")
FORMATS = ("jsonl", "csv", "json")
DUPLICATES = ("error", "skip", "keep")
IMPORTABLE_SPLITS = ["train", "eval"]
MAX_PROMPT_CHARS = 100_000
# Deeper than any record or metadata anyone writes, far below what exhausts Python's recursion
# (json.loads, json.dumps and PostgreSQL's jsonb all recurse).
MAX_JSON_DEPTH = 64
MAX_LEAD_SECONDS = MAX_TIME_SPENT_MS // 1000


# --- JSON from outside ----------------------------------------------------------------------


def _out_of_range(text: str) -> float:
    # The wording of DRF's strict JSON parser, so that both say the same.
    raise ValueError(f"Out of range float values are not JSON compliant: {text!r}")


def _finite(text: str) -> float:
    value = float(text)
    return _out_of_range(text) if math.isinf(value) else value


def json_loads(text: str | bytes) -> Any:
    """JSON as Hone takes it from outside (files, API bodies, the fast path): only numbers JSON
    has (no NaN, Infinity, or 1e400, which Python reads as infinity and PostgreSQL refuses in
    jsonb), text that is text (no unpaired surrogate, such as "\\ud800", which no UTF-8 can
    hold) and at most MAX_JSON_DEPTH levels of nesting. Raises ValueError saying what is wrong
    (json.JSONDecodeError, with its position, for text that is not JSON at all)."""
    try:
        value = json.loads(text, parse_constant=_out_of_range, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"Nested deeper than {MAX_JSON_DEPTH} levels") from None
    _json_check(value)
    return value


def _json_check(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            surrogate = _SURROGATE.search(item)
            if surrogate:
                code = f"\\u{ord(surrogate.group()):04x}"
                raise ValueError(
                    f"A string holds an unpaired surrogate ({code}), which is not text"
                )
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"Nested deeper than {MAX_JSON_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_field(text: str, line: int, field: str) -> tuple[Any, Problem | None]:
    """A JSON line or cell of a file: (value, None), or (None, the problem)."""
    try:
        return json_loads(text), None
    except json.JSONDecodeError as error:
        return None, Problem(line, field, f"Not valid JSON: {error.msg}.")
    except ValueError as error:
        return None, Problem(line, field, f"Not valid JSON: {error}.")


@dataclass(frozen=True)
class Problem:
    line: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        where = "file" if self.line == 0 else f"line {self.line}"
        return f"{where}, field '{self.field}': {self.message}"


class FileRejected(ValidationError):
    """The file has problems; nothing was written. `problems` lists every one."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        prefix = f"{source} " if source else ""
        super().__init__([f"{prefix}{p}" for p in problems])


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


# --- Files into records ---------------------------------------------------------------------


def detect_format(name: str, data: bytes) -> str:
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith(".json"):
        return "json"
    head = data.lstrip()[:1]
    return "json" if head == b"[" else "jsonl" if head == b"{" else "csv"


def records_from_bytes(
    *, data: bytes, name: str = "", file_format: str | None = None
) -> list[tuple[int, Any]]:
    """Parse a whole file into (line, record) pairs, or raise FileRejected listing every problem.

    CSV columns: `prompt` (text) or `messages` (a JSON list of chat turns), and optionally
    `system`, `split`, `metadata` (a JSON object); any other column goes into metadata.
    """
    limit = settings.HONE_IMPORT_MAX_BYTES
    if len(data) > limit:
        raise FileRejected(
            [Problem(0, "file", f"The file has {len(data)} bytes; the limit is {limit}.")], name
        )
    file_format = file_format or detect_format(name, data)
    if file_format not in FORMATS:
        raise FileRejected(
            [Problem(0, "format", f"Unknown format {file_format!r}; use one of {list(FORMATS)}.")],
            name,
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileRejected(
            [Problem(0, "file", f"Not UTF-8 text (byte {error.start}).")], name
        ) from None

    problems: list[Problem] = []
    records: list[tuple[int, Any]] = []
    if file_format == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            record, problem = _json_field(line, number, "line")
            if problem is None:
                records.append((number, record))
            else:
                problems.append(problem)
    elif file_format == "json":
        try:
            items = json_loads(text)
        except json.JSONDecodeError as error:
            raise FileRejected(
                [Problem(error.lineno, "file", f"Not valid JSON: {error.msg}.")], name
            ) from None
        except ValueError as error:
            raise FileRejected([Problem(0, "file", f"Not valid JSON: {error}.")], name) from None
        if not isinstance(items, list):
            raise FileRejected([Problem(0, "file", "A JSON file must hold a list.")], name)
        records = list(enumerate(items, start=1))
    else:
        records, problems = _csv_records(text)

    if not records and not problems:
        problems.append(Problem(0, "file", "The file holds no records."))
    max_records = settings.HONE_IMPORT_MAX_RECORDS
    if len(records) > max_records:
        problems.append(
            Problem(0, "file", f"The file has {len(records)} records; the limit is {max_records}.")
        )
    if problems:
        raise FileRejected(problems, name)
    return records


def _csv_records(text: str) -> tuple[list[tuple[int, Any]], list[Problem]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    records: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    try:
        columns = reader.fieldnames or []
        if "prompt" not in columns and "messages" not in columns:
            return [], [Problem(1, "header", "A CSV file needs a 'prompt' or 'messages' column.")]
        for row in reader:
            number = reader.line_num
            if None in row:
                problems.append(Problem(number, "row", "More cells than columns in the header."))
                continue
            record, found = _csv_record(row, number)
            problems.extend(found)
            records.append((number, record))
    except csv.Error as error:  # the reader cannot go on past it: the file is rejected
        # The DictReader's own line_num is its last good row's: the reader's is this one's.
        problems.append(Problem(reader.reader.line_num, "row", _csv_error_message(error)))
    return records, problems


def _csv_error_message(error: csv.Error) -> str:
    if str(error).startswith("field larger than field limit"):
        limit = csv.field_size_limit()
        return f"A cell is longer than {limit} characters, the most a CSV cell may hold."
    return f"Not valid CSV: {error}."


def _csv_record(row: dict[str, str], number: int) -> tuple[dict[str, Any], list[Problem]]:
    record: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    problems: list[Problem] = []
    for column, value in row.items():
        if column in ("messages", "metadata") and value:
            parsed, problem = _json_field(value, number, column)
            if problem is None:
                record["prompt" if column == "messages" else column] = parsed
            else:
                problems.append(problem)
        elif column in ("prompt", "split", "system") and value:
            record[column] = value
        elif column not in ("prompt", "messages", "split", "system", "metadata") and value:
            metadata[column] = value
    if "system" in record and isinstance(record.get("prompt"), str):
        record["prompt"] = [
            {"role": "system", "content": record.pop("system")},
            {"role": "user", "content": record["prompt"]},
        ]
    record.pop("system", None)
    if metadata:
        extra = record.get("metadata")
        record["metadata"] = {**metadata, **extra} if isinstance(extra, dict) else metadata
    return record, problems


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
    max_records = settings.HONE_IMPORT_MAX_RECORDS
    if len(records) > max_records:
        raise FileRejected(
            [Problem(0, "file", f"{len(records)} records; the limit is {max_records}.")], source
        )
    seen: dict[str, int] = {}
    problems: list[Problem] = []
    prompts: list[Prompt] = []
    skipped: list[dict[str, Any]] = []
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
        if duplicates != "keep":
            key = prompt_key(messages)
            duplicate_of = (
                {"duplicate_of_line": seen[key]}
                if key in seen
                else {"duplicate_of": "project"}
                if key in existing
                else None
            )
            if duplicate_of is not None:
                if duplicates == "skip":
                    skipped.append({"line": line, **duplicate_of})
                    continue
                where = (
                    f"line {duplicate_of['duplicate_of_line']} of this file"
                    if "duplicate_of_line" in duplicate_of
                    else "a prompt the project already has"
                )
                problems.append(Problem(line, "prompt", f"Duplicate of {where}."))
                continue
            seen[key] = line
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
        after = {"prompts": len(created), "skipped": len(skipped), "duplicates": duplicates}
        audit_record(
            actor=actor,
            project=project,
            action=AuditEvent.Action.PROMPTS_IMPORT,
            target=project,
            before=None,
            after=after,
        )
    return PromptImportResult(prompts=created, skipped=skipped)


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


# --- Pairwise labels (Label Studio) -------------------------------------------------------

IMPORTED_USER_PREFIX = "imported"


@dataclass(frozen=True)
class LabelStudioMapping:
    """Which fields of a Label Studio task hold the prompt and the two answers."""

    prompt: str = "prompt"
    answer_a: str = "answer1"
    answer_b: str = "answer2"


@dataclass
class LabelImportResult:
    comparisons: list[Comparison]
    labels: list[PreferenceLabel]
    prompts_created: int
    annotators: list[str]
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "comparisons": len(self.comparisons),
            "labels": len(self.labels),
            "prompts_created": self.prompts_created,
            "annotators": self.annotators,
            "skipped": self.skipped,
        }


@dataclass
class _Vote:
    annotator_ref: str
    choice: str
    created_at: Any
    time_spent_ms: int
    rationale: str


@dataclass
class _Task:
    line: int
    messages: list[dict[str, str]]
    answer_a: str
    answer_b: str
    votes: list[_Vote]
    external_id: Any


def _label_studio_choice(result: list[Any], line: int, where: str) -> tuple[str, list[Problem]]:
    """The pairwise choice of one annotation: "a" (left), "b" (right) or "tie"."""
    for region in result:
        if isinstance(region, dict) and region.get("type") == "pairwise":
            selected = (region.get("value") or {}).get("selected")
            if selected == "left":
                return "a", []
            if selected == "right":
                return "b", []
            return "", [
                Problem(line, f"{where}.result.value.selected", "Must be 'left' or 'right'.")
            ]
    for region in result:
        if isinstance(region, dict) and region.get("type") == "choices":
            picked = (region.get("value") or {}).get("choices") or []
            mapping = {"left": "a", "right": "b", "tie": "tie", "both bad": "both_bad"}
            key = str(picked[0]).strip().lower() if picked else ""
            if key in mapping:
                return mapping[key], []
    return "", [Problem(line, f"{where}.result", "No pairwise choice (left or right).")]


def _parse_label_studio(
    records: list[tuple[int, Any]], mapping: LabelStudioMapping
) -> tuple[list[_Task], list[Problem]]:
    tasks: list[_Task] = []
    problems: list[Problem] = []
    for line, task in records:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            problems.append(Problem(line, "data", "Expected a Label Studio task with 'data'."))
            continue
        data = task["data"]
        found: list[Problem] = []
        messages, prompt_problems = prompt_messages(
            data.get(mapping.prompt, ""), line, f"data.{mapping.prompt}"
        )
        found.extend(prompt_problems)
        answers = []
        for key in (mapping.answer_a, mapping.answer_b):
            value = data.get(key)
            if not isinstance(value, str) or not value.strip():
                found.append(Problem(line, f"data.{key}", "Must be a non-empty string."))
            elif has_nul(value):
                found.append(Problem(line, f"data.{key}", "Contains a NUL character."))
            answers.append(value if isinstance(value, str) else "")
        if not found and answers[0] == answers[1]:
            found.append(Problem(line, f"data.{mapping.answer_b}", "Same text as the first."))
        votes: list[_Vote] = []
        annotations = task.get("annotations")
        if not isinstance(annotations, list):
            found.append(Problem(line, "annotations", "Must be a list."))
            annotations = []
        refs: set[str] = set()
        for i, annotation in enumerate(annotations):
            where = f"annotations[{i}]"
            if not isinstance(annotation, dict):
                found.append(Problem(line, where, "Must be an object."))
                continue
            if annotation.get("was_cancelled"):
                continue  # skipped in Label Studio: not a vote
            result = annotation.get("result")
            if not isinstance(result, list):
                found.append(Problem(line, f"{where}.result", "Must be a list."))
                continue
            choice, choice_problems = _label_studio_choice(result, line, where)
            found.extend(choice_problems)
            author = annotation.get("completed_by")
            if isinstance(author, dict):
                author = author.get("email") or author.get("id")
            if author in (None, ""):
                found.append(Problem(line, f"{where}.completed_by", "Missing."))
                continue
            ref = str(author)
            if ref in refs:
                found.append(
                    Problem(line, f"{where}.completed_by", f"{ref} voted twice on this task.")
                )
                continue
            refs.add(ref)
            created_raw = annotation.get("created_at")
            try:
                created_at = parse_datetime(created_raw) if isinstance(created_raw, str) else None
            except ValueError:  # well formed, but no such date or time
                created_at = None
            if created_raw is not None and created_at is None:
                found.append(Problem(line, f"{where}.created_at", "Not an ISO 8601 date-time."))
            lead_time = annotation.get("lead_time") or 0
            if not isinstance(lead_time, (int, float)) or not 0 <= lead_time <= MAX_LEAD_SECONDS:
                found.append(
                    Problem(
                        line, f"{where}.lead_time", f"Must be seconds from 0 to {MAX_LEAD_SECONDS}."
                    )
                )
                lead_time = 0
            votes.append(
                _Vote(
                    annotator_ref=ref,
                    choice=choice,
                    created_at=created_at,
                    time_spent_ms=int(lead_time * 1000),
                    rationale="",
                )
            )
        if found:
            problems.extend(found)
            continue
        tasks.append(
            _Task(
                line=line,
                messages=messages,
                answer_a=answers[0],
                answer_b=answers[1],
                votes=votes,
                external_id=task.get("id"),
            )
        )
    return tasks, problems


def imported_username(*, key: str, source: str, ref: str) -> str:
    """The stand-in's name for (source, their id there, e.g. an email), keyed with the
    project's pseudonym key: stable within the project, so importing a second file from the
    same tool credits the same person (until the key is rotated), different in every other
    project, and no proof of anyone's email or id without the key."""
    pseudonym = pseudonym_of(key=key, text=f"imported:{source}\0{ref}")
    return f"{IMPORTED_USER_PREFIX}-{slugify(source)[:40]}-{pseudonym}"


def imported_annotator(*, project: Project, source: str, ref: str) -> AbstractBaseUser:
    """The stand-in user for a person who labelled elsewhere: inactive, no usable password."""
    username = imported_username(key=project.pseudonym_key, source=source, ref=ref)
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is None:
        user = user_model(username=username, is_active=False)
        user.set_unusable_password()
        user.save()
    return user


def labels_import_file(
    *,
    project: Project,
    data: bytes,
    name: str,
    actor: AbstractBaseUser | None = None,
    source: str = "label-studio",
    mapping: LabelStudioMapping | None = None,
) -> LabelImportResult:
    """Import a Label Studio JSON export of a pairwise project, all or nothing.

    Rows created per task with at least one vote: a Prompt (reused when the project already
    has the same turns), two Completions on the project's version 0 (the base model) marked
    `sampling={"imported": source, ...}`, a Comparison (regular, complete, required labels =
    votes) and one PreferenceLabel per annotation (answer 1 is A and was shown on the left,
    as Label Studio's Pairwise tag shows it) by a stand-in user per external annotator, each
    with a LabelAudit row "imported" by `actor` (or the stand-in itself when none is given).
    The annotators' emails or ids in the file are stored nowhere: only the stand-ins' keyed
    names (imported_username).
    """
    mapping = mapping or LabelStudioMapping()
    records = records_from_bytes(data=data, name=name, file_format="json")
    tasks, problems = _parse_label_studio(records, mapping)
    if problems:
        raise FileRejected(problems, name)
    # Version 0 (the base model), through the schema's relation: feedback imports no training.
    base = project.policy_versions.get(number=0)
    skipped = [{"line": t.line, "reason": "no annotations"} for t in tasks if not t.votes]
    tasks = [t for t in tasks if t.votes]
    existing = {
        prompt_key(p.messages): p
        for p in Prompt.objects.filter(project=project).only("id", "messages")
    }
    comparisons: list[Comparison] = []
    labels: list[PreferenceLabel] = []
    annotators: dict[str, AbstractBaseUser] = {}
    prompts_created = 0
    with transaction.atomic():
        for task in tasks:
            key = prompt_key(task.messages)
            prompt = existing.get(key)
            if prompt is None:
                prompt = Prompt.objects.create(
                    project=project,
                    messages=task.messages,
                    source=name[:200],
                    metadata={"imported_from": source, "external_id": task.external_id},
                )
                existing[key] = prompt
                prompts_created += 1
            sampling = {"imported": source, "file": name, "line": task.line}
            completion_a = Completion.objects.create(
                prompt=prompt, policy_version=base, text=task.answer_a, sampling=sampling
            )
            completion_b = Completion.objects.create(
                prompt=prompt, policy_version=base, text=task.answer_b, sampling=sampling
            )
            comparison = Comparison.objects.create(
                project=project,
                prompt=prompt,
                completion_a=completion_a,
                completion_b=completion_b,
                required_labels=len(task.votes),
                status=Comparison.Status.COMPLETE,
            )
            comparisons.append(comparison)
            for vote in task.votes:
                if vote.annotator_ref not in annotators:
                    annotators[vote.annotator_ref] = imported_annotator(
                        project=project, source=source, ref=vote.annotator_ref
                    )
                annotator = annotators[vote.annotator_ref]
                label = PreferenceLabel(
                    comparison=comparison,
                    annotator=annotator,
                    choice=vote.choice,
                    strength=PreferenceLabel.Strength.CLEAR,
                    rationale=vote.rationale,
                    time_spent_ms=vote.time_spent_ms,
                    a_shown_left=True,
                )
                label.full_clean(validate_unique=False)
                label.save()
                if vote.created_at is not None:
                    # auto_now_add ignores a given value: keep the original date explicitly.
                    PreferenceLabel.objects.filter(pk=label.pk).update(created_at=vote.created_at)
                LabelAudit.objects.create(
                    label=label,
                    actor=actor or annotator,
                    action="imported",
                    before=None,
                    after={
                        "choice": label.choice,
                        "strength": label.strength,
                        "source": source,
                        "file": name,
                        "line": task.line,
                    },
                )
                labels.append(label)
        after = {"comparisons": len(comparisons), "labels": len(labels), "source": source}
        audit_record(
            actor=actor,
            project=project,
            action=AuditEvent.Action.LABELS_IMPORT,
            target=project,
            before=None,
            after=after,
        )
    return LabelImportResult(
        comparisons=comparisons,
        labels=labels,
        prompts_created=prompts_created,
        annotators=sorted(u.get_username() for u in annotators.values()),
        skipped=skipped,
    )
