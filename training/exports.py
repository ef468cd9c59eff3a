"""Preference data out of Hone, in the formats other tools read as they are.

- Preferences: one row per comparison with a majority preference (the same pairs a snapshot
  trains on: `training.services.comparison_verdicts`), in TRL's explicit-prompt format
  `{"prompt", "chosen", "rejected", "margin", "comparison_id"}`. Conversational (lists of
  `{"role", "content"}` turns, `chosen`/`rejected` one assistant turn each) when the prompts are
  chats; standard (plain strings) when every prompt is a single user turn. Written as JSONL or
  as a Hugging Face `datasets` folder (`Dataset.save_to_disk`).
- Votes: one row per standing label (a label its annotator withdrew is left out; the audit
  trail keeps it), every review status, with a pseudonymous annotator id (an HMAC of the user
  id keyed with the project's pseudonym key: the same person has the same id in every export
  of the project until the key is rotated, another id in every other project, and the id
  cannot be turned back into a user without the key).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from feedback.models import AuditEvent, Completion, PreferenceLabel, Project
from feedback.services import audit_record
from training.models import DatasetSnapshot
from training.services import artifact_local, comparison_verdicts

STYLES = ("auto", "conversational", "standard")
PREFERENCE_FORMATS = ("jsonl", "hf")
VOTE_FORMATS = ("jsonl", "csv")
VOTE_COLUMNS = [
    "label_id",
    "comparison_id",
    "comparison_kind",
    "prompt",
    "completion_a",
    "completion_b",
    "policy_version_a",
    "policy_version_b",
    "annotator",
    "choice",
    "strength",
    "shown_left",
    "rationale",
    "time_spent_ms",
    "review_status",
    "created_at",
]


def annotator_pseudonym(*, project: Project, user_id: int) -> str:
    return f"ann_{project.pseudonym(f'annotator:{user_id}')}"


def _is_chat(messages: list[dict[str, str]]) -> bool:
    return len(messages) != 1 or messages[0]["role"] != "user"


def preference_rows(*, project: Project, style: str = "auto") -> list[dict[str, Any]]:
    """TRL explicit-prompt rows of the project's majority preferences."""
    if style not in STYLES:
        raise ValidationError({"style": f"Unknown style {style!r}; use one of {list(STYLES)}."})
    pairs, no_preference = comparison_verdicts(project=project)
    if not pairs:
        raise ValidationError(
            f"Project {project.slug} has no comparison with a preference yet "
            f"({no_preference} without one): label some comparisons first."
        )
    conversational = style == "conversational" or (
        style == "auto" and any(_is_chat(p.comparison.prompt.messages) for p in pairs)
    )
    rows = []
    for pair in pairs:
        messages = pair.comparison.prompt.messages
        if conversational:
            prompt: Any = messages
            chosen: Any = [{"role": "assistant", "content": pair.chosen}]
            rejected: Any = [{"role": "assistant", "content": pair.rejected}]
        else:
            prompt = "\n\n".join(m["content"] for m in messages)
            chosen, rejected = pair.chosen, pair.rejected
        rows.append(
            {
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "margin": pair.margin,
                "comparison_id": pair.comparison.pk,
            }
        )
    return rows


def vote_rows(*, project: Project) -> list[dict[str, Any]]:
    """Every standing label of the project, one row each, annotators pseudonymous."""
    labels = (
        PreferenceLabel.objects.filter(comparison__project=project, withdrawn_at__isnull=True)
        .select_related(
            "comparison__prompt",
            "comparison__completion_a__policy_version",
            "comparison__completion_b__policy_version",
        )
        .order_by("comparison_id", "id")
    )
    rows = []
    for label in labels:
        comparison = label.comparison
        rows.append(
            {
                "label_id": label.pk,
                "comparison_id": comparison.pk,
                "comparison_kind": comparison.kind,
                "prompt": comparison.prompt.messages,
                "completion_a": comparison.completion_a.text,
                "completion_b": comparison.completion_b.text,
                "policy_version_a": _version_number(comparison.completion_a),
                "policy_version_b": _version_number(comparison.completion_b),
                "annotator": annotator_pseudonym(project=project, user_id=label.annotator_id),
                "choice": label.choice,
                "strength": label.strength,
                "shown_left": "a" if label.a_shown_left else "b",
                "rationale": label.rationale,
                "time_spent_ms": label.time_spent_ms,
                "review_status": label.review_status,
                "created_at": label.created_at.isoformat(),
            }
        )
    return rows


def _version_number(completion: Completion) -> int | None:
    """The version that sampled an answer; None for a person's edit (docs/demonstrations.md)."""
    return None if completion.policy_version is None else completion.policy_version.number


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


UNTRUSTED_CSV_COLUMNS = ("prompt", "completion_a", "completion_b", "rationale")


def _spreadsheet_safe(text: str) -> str:
    """Model output and rationales are untrusted: a cell starting with = + - @ would run as a
    formula in a spreadsheet, so it gets a leading apostrophe (OWASP "CSV injection").
    The JSONL export is the lossless one."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=VOTE_COLUMNS)
    writer.writeheader()
    for row in rows:
        cells = {**row, "prompt": json.dumps(row["prompt"], ensure_ascii=False)}
        for column in UNTRUSTED_CSV_COLUMNS:
            cells[column] = _spreadsheet_safe(cells[column])
        writer.writerow(cells)
    return out.getvalue().encode()


def save_hf_dataset(rows: list[dict[str, Any]], out_dir: Path) -> Path:
    """A `datasets` folder that `datasets.load_from_disk(out_dir)` opens as it is."""
    import datasets  # heavy: only when a folder is asked for

    datasets.Dataset.from_list(rows).save_to_disk(str(out_dir))
    return out_dir


def hf_zip_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The `datasets` folder, zipped for a download (unzip, then `load_from_disk`)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_hf_dataset(rows, Path(tmp) / "preferences")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, Path("preferences") / path.relative_to(folder))
        return buffer.getvalue()


def export_rows(
    *,
    project: Project,
    what: str,
    file_format: str,
    style: str = "auto",
    actor: AbstractBaseUser | None = None,
) -> list[dict[str, Any]]:
    """The rows of an export ("preferences" or "votes" in one of its formats); every export
    is audited (what, format, how many rows) whoever asks for it, page, API or command."""
    if what == "preferences":
        if file_format not in PREFERENCE_FORMATS:
            raise ValidationError(
                {"format": f"Preferences export as one of {list(PREFERENCE_FORMATS)}."}
            )
        rows = preference_rows(project=project, style=style)
    elif what == "votes":
        if file_format not in VOTE_FORMATS:
            raise ValidationError({"format": f"Votes export as one of {list(VOTE_FORMATS)}."})
        rows = vote_rows(project=project)
    else:
        raise ValidationError({"what": "Export 'preferences' or 'votes'."})
    after = {"what": what, "format": file_format, "rows": len(rows)}
    audit_record(
        actor=actor,
        project=project,
        action=AuditEvent.Action.DATA_EXPORT,
        target=project,
        before=None,
        after={**after, "style": style} if what == "preferences" else after,
    )
    return rows


def snapshot_export(*, snapshot: DatasetSnapshot, actor: AbstractBaseUser | None = None) -> Path:
    """The file of a dataset snapshot, for a download (audited): in place on the filesystem
    store, through the local cache from an object store. Raises
    training.services.ArtifactPathError when the recorded path leaves the artifact root,
    FileNotFoundError when the file is missing, ArtifactCorruptError when the store's copy is
    not what the snapshot recorded, ArtifactStoreError when the store cannot be read."""
    path = artifact_local(key=snapshot.path, manifest_sha256=snapshot.manifest_sha256)
    if not path.is_file():
        raise FileNotFoundError(snapshot.path)
    audit_record(
        actor=actor,
        project=snapshot.project,
        action=AuditEvent.Action.DATA_EXPORT,
        target=snapshot,
        before=None,
        after={"what": "snapshot", "format": "jsonl", "rows": snapshot.pair_count},
    )
    return path


def export_to_path(
    *,
    project: Project,
    what: str,
    file_format: str,
    out: Path,
    style: str = "auto",
    actor: AbstractBaseUser | None = None,
) -> int:
    """Write an export to `out` (a file, or a folder for "hf"); returns the number of rows.

    The export is written aside and moved into place, so `out` is never half-written.
    """
    rows = export_rows(
        project=project, what=what, file_format=file_format, style=style, actor=actor
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "hf":
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
        try:
            save_hf_dataset(rows, tmp / "data")
            if out.exists():
                shutil.rmtree(out)
            (tmp / "data").replace(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return len(rows)
    payload = jsonl_bytes(rows) if file_format == "jsonl" else csv_bytes(rows)
    tmp_file = out.with_name(f".{out.name}.tmp")
    tmp_file.write_bytes(payload)
    tmp_file.replace(out)
    return len(rows)
