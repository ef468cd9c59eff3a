"""Comparisons: pairs of completions of one prompt, open for labels."""

from __future__ import annotations

from collections.abc import Sequence

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
    *,
    project: Project,
    pairs: list[tuple[Completion, Completion]],
    priority: float | Sequence[float] = 0.0,
) -> list[Comparison]:
    """Turn pairs of completions of the same prompt into open comparisons, with one priority
    for all of them or one per pair (the queue serves the highest first)."""
    priorities = [priority] * len(pairs) if isinstance(priority, (int, float)) else priority
    if len(priorities) != len(pairs):
        raise ValueError(f"{len(priorities)} priorities for {len(pairs)} pairs")
    comparisons = [
        Comparison(
            project=project,
            prompt=a.prompt,
            completion_a=a,
            completion_b=b,
            required_labels=project.labels_per_comparison,
            priority=value,
        )
        for (a, b), value in zip(pairs, priorities, strict=True)
    ]
    with transaction.atomic():
        created = Comparison.objects.bulk_create(comparisons)
        event_publish(
            project_id=project.pk, event="comparisons_added", data={"count": len(created)}
        )
    return created


def comparisons_prioritize(*, project: Project, priorities: dict[int, float]) -> int:
    """Give open comparisons of `project` new priorities (comparison id: priority); returns
    how many changed. One that was completed or closed meanwhile keeps its own: it has left
    the queue. Only the priority is written, so a label stored at the same time is kept."""
    with transaction.atomic():
        rows = list(
            Comparison.objects.filter(
                project=project, status=Comparison.Status.OPEN, pk__in=list(priorities)
            ).only("pk", "priority")
        )
        for row in rows:
            row.priority = priorities[row.pk]
        return Comparison.objects.bulk_update(rows, ["priority"], batch_size=1000)
