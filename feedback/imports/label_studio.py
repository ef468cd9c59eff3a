"""Existing pairwise labels from a Label Studio JSON export, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from feedback.imports.files import MAX_LEAD_SECONDS, FileRejected, Problem, records_from_bytes
from feedback.imports.prompts import has_nul, prompt_key, prompt_messages
from feedback.models import (
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
