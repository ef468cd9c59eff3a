"""The audit log: one AuditEvent per change to the loop or to who may act.

Services call `audit_record` inside the transaction of the change they make, so an event
exists exactly when its change does. Training writes here too (it may import feedback).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from feedback.models import AuditEvent, Project


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    project: Project | None,
    action: str,
    target: models.Model | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEvent:
    """Record one change. `actor` None is the system (the loop, a command line without a
    person). `before` and `after` name people by id only, never by name or e-mail, so that
    erasing a person (feedback.services.annotator_erase) leaves no trace of them here."""
    if action not in AuditEvent.Action.values:
        raise ValueError(f"Unknown audit action {action!r}.")
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        project=project,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=target.pk if target is not None else None,
        before=before,
        after=after,
    )
