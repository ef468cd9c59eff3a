"""Demonstrations out of Hone in TRL's SFT formats, which `training/ml/sft.py` and TRL's
SFTTrainer read as they are (docs/demonstrations.md).

One row per standing demonstration (not withdrawn by its author, not rejected by a reviewer;
a corrected one with the reviewer's text), oldest first, on the prompts of one split:

- `messages`: `{"messages": [...prompt turns, {"role": "assistant", "content": answer}]}`;
- `prompt_completion`: `{"prompt": [...prompt turns], "completion": [{"role": "assistant",
  "content": answer}]}`.

Preference exports (pairs, votes) are the loop's data and live in training/exports.py; these
are what people wrote, and live beside the import that reads the same formats back
(feedback/imports/demonstrations.py).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from feedback.models import AuditEvent, Demonstration, Project
from feedback.services.audit import audit_record

SFT_STYLES = ("messages", "prompt_completion")
SFT_SPLITS = ("train", "eval", "all")


def demonstration_rows(
    *, project: Project, style: str = "messages", split: str = "train"
) -> list[dict[str, Any]]:
    """The project's standing demonstrations as TRL SFT records (see the module)."""
    if style not in SFT_STYLES:
        raise ValidationError({"style": f"Unknown style {style!r}; use one of {list(SFT_STYLES)}."})
    if split not in SFT_SPLITS:
        raise ValidationError({"split": f"Unknown split {split!r}; use one of {list(SFT_SPLITS)}."})
    demonstrations = (
        Demonstration.objects.filter(project=project, withdrawn_at__isnull=True)
        .exclude(review_status=Demonstration.ReviewStatus.REJECTED)
        .select_related("prompt")
        .order_by("id")
    )
    if split != "all":
        demonstrations = demonstrations.filter(prompt__split=split)
    return [demonstration_record(demonstration, style=style) for demonstration in demonstrations]


def demonstration_record(
    demonstration: Demonstration, *, style: str = "messages"
) -> dict[str, Any]:
    """One demonstration as a TRL SFT record of `style` (see the module); also the records of
    the loop's SFT snapshots (training/services/snapshots.py)."""
    prompt = [{"role": m["role"], "content": m["content"]} for m in demonstration.prompt.messages]
    answer = {"role": "assistant", "content": demonstration.text}
    if style == "messages":
        return {"messages": [*prompt, answer]}
    return {"prompt": prompt, "completion": [answer]}


def demonstrations_export(
    *,
    project: Project,
    style: str = "messages",
    split: str = "train",
    actor: AbstractBaseUser | None = None,
) -> bytes:
    """The demonstrations as JSONL, audited (what, style, split, how many rows) whoever asks:
    the data page, the API or the command line. A project without any is refused with why,
    rather than answered with an empty file."""
    rows = demonstration_rows(project=project, style=style, split=split)
    if not rows:
        raise ValidationError(
            f"Project {project.slug} has no standing demonstration on {split} prompts yet: "
            "write or import some first."
        )
    audit_record(
        actor=actor,
        project=project,
        action=AuditEvent.Action.DATA_EXPORT,
        target=project,
        before=None,
        after={
            "what": "demonstrations",
            "format": "jsonl",
            "style": style,
            "split": split,
            "rows": len(rows),
        },
    )
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
