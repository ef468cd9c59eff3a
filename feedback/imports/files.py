"""Files into records: the formats (JSONL, CSV, JSON list), JSON as Hone takes it from outside,
and the problems a file is rejected with."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from feedback.models import (
    MAX_TIME_SPENT_MS,
)

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


class Duplicates:
    """A file's duplicates policy over its records, in order: "keep" takes every record;
    "skip" leaves out a record whose key came earlier in the file or is already in `existing`
    (noted in `skipped`); "error" makes it a problem of `field`, naming the earlier line or
    `described` (what the project already has)."""

    def __init__(self, policy: str, existing: set, field: str, described: str) -> None:
        self.policy, self.existing, self.field, self.described = policy, existing, field, described
        self.seen: dict[Any, int] = {}
        self.skipped: list[dict[str, Any]] = []

    def admits(self, key: Any, line: int, problems: list[Problem]) -> bool:
        """Whether the record of `line` goes in (a duplicate is skipped or made a problem)."""
        if self.policy == "keep":
            return True
        if key in self.seen:
            duplicate_of: dict[str, Any] = {"duplicate_of_line": self.seen[key]}
            where = f"line {self.seen[key]} of this file"
        elif key in self.existing:
            duplicate_of, where = {"duplicate_of": "project"}, self.described
        else:
            self.seen[key] = line
            return True
        if self.policy == "skip":
            self.skipped.append({"line": line, **duplicate_of})
        else:
            problems.append(Problem(line, self.field, f"Duplicate of {where}."))
        return False


def records_limit(records: list, source: str) -> None:
    """Reject a file of more records than HONE_IMPORT_MAX_RECORDS."""
    max_records = settings.HONE_IMPORT_MAX_RECORDS
    if len(records) > max_records:
        raise FileRejected(
            [Problem(0, "file", f"{len(records)} records; the limit is {max_records}.")], source
        )


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
