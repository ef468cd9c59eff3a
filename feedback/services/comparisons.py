"""Comparisons: pairs of completions of one prompt, open for labels."""

from __future__ import annotations

from django.db import transaction

from feedback.events import event_publish
from feedback.models import (
    Comparison,
    Completion,
    Project,
)


def storable_text(text: str) -> str:
    """Model output as the database can store it: PostgreSQL text cannot hold NUL, which a
    byte-level model may sample; it becomes U+FFFD (visible, like any undecodable byte)."""
    return text.replace("\x00", "\ufffd")


def comparisons_create(
    *, project: Project, pairs: list[tuple[Completion, Completion]], priority: float = 0.0
) -> list[Comparison]:
    """Turn pairs of completions of the same prompt into open comparisons."""
    comparisons = [
        Comparison(
            project=project,
            prompt=a.prompt,
            completion_a=a,
            completion_b=b,
            required_labels=project.labels_per_comparison,
            priority=priority,
        )
        for a, b in pairs
    ]
    with transaction.atomic():
        created = Comparison.objects.bulk_create(comparisons)
        event_publish(
            project_id=project.pk, event="comparisons_added", data={"count": len(created)}
        )
    return created
