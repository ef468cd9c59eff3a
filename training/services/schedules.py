"""The loop's schedule: a cron expression that starts iterations (django-celery-beat)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.models import AuditEvent, Project
from feedback.services import audit_record

SCHEDULE_TASK_PREFIX = "hone-loop-"


def loop_schedule(*, project: Project) -> str:
    """The project's cron expression ("0 3 * * *"), or "" when it has no schedule."""
    from django_celery_beat.models import PeriodicTask

    task = (
        PeriodicTask.objects.filter(name=f"{SCHEDULE_TASK_PREFIX}{project.slug}")
        .select_related("crontab")
        .first()
    )
    if task is None or task.crontab is None:
        return ""
    c = task.crontab
    return f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"


def loop_schedule_set(
    *, project: Project, cron: str, actor: AbstractBaseUser | None = None
) -> None:
    """Start an iteration on a cron schedule ("0 3 * * *"); an empty string removes it.

    The schedule is a django-celery-beat PeriodicTask, so it can be edited in the admin too.
    A scheduled start does nothing while an iteration is running. A change is audited.
    """
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    name = f"{SCHEDULE_TASK_PREFIX}{project.slug}"
    fields = cron.split()
    if fields and len(fields) != 5:
        raise ValidationError(
            {
                "schedule": f"{cron!r} is not a cron expression: it needs 5 fields "
                "(minute hour day-of-month month day-of-week), e.g. '0 3 * * *'."
            }
        )
    if fields:
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        crontab = {
            "minute": minute,
            "hour": hour,
            "day_of_month": day_of_month,
            "month_of_year": month_of_year,
            "day_of_week": day_of_week,
            "timezone": "UTC",
        }
        try:
            CrontabSchedule(**crontab).full_clean()
        except ValidationError as error:
            raise ValidationError({"schedule": f"{cron!r}: {'; '.join(error.messages)}"}) from None
    with transaction.atomic():
        before = loop_schedule(project=project)
        if not fields:
            PeriodicTask.objects.filter(name=name).delete()
        else:
            schedule, _ = CrontabSchedule.objects.get_or_create(**crontab)
            PeriodicTask.objects.update_or_create(
                name=name,
                defaults={
                    "task": "training.tasks.iteration_start_task",
                    "crontab": schedule,
                    "interval": None,
                    "args": json.dumps([project.pk, "schedule"]),
                    "enabled": True,
                },
            )
        after = " ".join(fields)
        if after != before:
            audit_record(
                actor=actor,
                project=project,
                action=AuditEvent.Action.SCHEDULE_SET,
                target=project,
                before={"cron": before},
                after={"cron": after},
            )


def _loop_schedules() -> dict[str, dict[str, Any]]:
    """Every project's schedule task as django-celery-beat stores it, by project slug: when it
    fires (whichever schedule kind the task has), whether it is enabled, what it runs."""
    from django_celery_beat.models import PeriodicTask

    tasks = PeriodicTask.objects.filter(name__startswith=SCHEDULE_TASK_PREFIX).select_related(
        "crontab", "interval", "solar", "clocked"
    )
    states = {}
    for task in tasks:
        c = task.crontab
        when = (
            f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
            if c is not None
            else str(task.interval or task.solar or task.clocked or "")
        )
        states[task.name.removeprefix(SCHEDULE_TASK_PREFIX)] = {
            "schedule": when,
            "enabled": task.enabled,
            "task": task.task,
            "args": task.args,
        }
    return states


@contextmanager
def loop_schedule_edits_audited(*, actor: AbstractBaseUser | None) -> Iterator[None]:
    """Audit what the enclosed code changes in the projects' schedule tasks, one event per
    project whose task changed (edited, disabled, deleted, retargeted, or its shared crontab
    row edited). For the django-celery-beat admin, whose pages write those rows directly; in
    one transaction with the change."""
    with transaction.atomic():
        before = _loop_schedules()
        yield
        after = _loop_schedules()
        changed = sorted(
            slug for slug in before.keys() | after.keys() if before.get(slug) != after.get(slug)
        )
        projects = Project.objects.in_bulk(changed, field_name="slug")
        for slug in changed:
            if slug not in projects:
                continue  # a task named like ours without a project: not a loop's schedule
            audit_record(
                actor=actor,
                project=projects[slug],
                action=AuditEvent.Action.SCHEDULE_SET,
                target=projects[slug],
                before=before.get(slug),
                after=after.get(slug),
            )
