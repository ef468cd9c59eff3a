"""The labeling path's steps: generators that yield (sql, params) and receive the rows back,
the little logic between the statements of feedback/labeling/sql.py, and `run`, which drives them
on a DB-API cursor (Django's connection). The caller owns the transaction: a generator never
commits."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils.dateparse import parse_datetime

from feedback.labeling.columns import LABEL_PARAMS, annotator_values
from feedback.labeling.sql import (
    ACTIVE,
    ATTEMPTS,
    AUDIT_WRITE,
    CANDIDATES,
    CURRENT,
    DISPLAY_OF,
    GOLD_NEXT,
    LABEL_WRITE,
    LEASE_COLUMNS,
    LEASE_STATUS,
    LEASE_SUBMIT,
    LEASE_WRITE,
    LEASES_FULL,
    MEMBER,
    REPEAT_WRITE,
    SUBMITTED,
    TAKE_LABEL,
)
from feedback.models import PreferenceLabel, Project

Query = tuple[str, list[Any]]
# A datetime as the database driver takes it (Django's connection.ops.adapt_datetimefield_value).
AdaptDatetime = Callable[[datetime], Any]
Steps = Generator[Query, list[tuple], Any]


@dataclass(frozen=True)
class ProjectRules:
    """The project settings the labeling path reads (cached by the fast path)."""

    project_id: int
    lease_minutes: int
    gold_rate: float
    repeat_rate: float
    trigger_new_labels: int

    @classmethod
    def of(cls, project: Project) -> ProjectRules:
        return cls(
            project_id=project.pk,
            lease_minutes=project.lease_minutes,
            gold_rate=project.gold_rate,
            repeat_rate=project.repeat_rate,
            trigger_new_labels=project.trigger_new_labels,
        )


@dataclass(frozen=True)
class Lease:
    """A lease (Assignment columns, LEASE_COLUMNS) and what the annotator's screen shows."""

    assignment: dict[str, Any]
    project_id: int
    prompt_id: int
    completion_a_id: int
    completion_b_id: int
    prompt_messages: Any
    completion_a: str
    completion_b: str


def _datetime(value: Any) -> datetime:
    """A timestamp column as an aware datetime (SQLite's driver returns text or a naive
    datetime, in UTC as Django writes them)."""
    parsed = value if isinstance(value, datetime) else parse_datetime(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _lease(lease_row: tuple, display_row: tuple) -> Lease:
    assignment = dict(zip(LEASE_COLUMNS, lease_row, strict=True))
    assignment["a_shown_left"] = bool(assignment["a_shown_left"])
    assignment["is_repeat"] = bool(assignment["is_repeat"])
    assignment["created_at"] = _datetime(assignment["created_at"])
    assignment["expires_at"] = _datetime(assignment["expires_at"])
    project_id, prompt_id, a_id, b_id, messages, a_text, b_text = display_row
    return Lease(
        assignment=assignment,
        project_id=project_id,
        prompt_id=prompt_id,
        completion_a_id=a_id,
        completion_b_id=b_id,
        prompt_messages=json.loads(messages) if isinstance(messages, str) else messages,
        completion_a=a_text,
        completion_b=b_text,
    )


def lease_steps(
    *, adapt_datetime: AdaptDatetime, rules: ProjectRules, user_id: int, now: datetime
) -> Generator[Query, list[tuple], Lease | None]:
    """The annotator's current lease, or a new lease on the next comparison they can label
    (the rules: feedback/labeling/__init__.py); None for a user who is not an active member of
    the project. Run inside a transaction."""
    if not (yield MEMBER, [user_id, rules.project_id]):
        return None
    at = adapt_datetime(now)
    rows = yield CURRENT, [user_id, rules.project_id, at]
    if rows:
        return lease_of(rows[0])
    expires_at = adapt_datetime(now + timedelta(minutes=rules.lease_minutes))
    draws = Draws.of(rules)

    if draws.repeat:
        params = [at, expires_at, user_id, rules.project_id, user_id, rules.project_id, user_id]
        rows = yield REPEAT_WRITE, params
        if rows:
            (display,) = yield DISPLAY_OF, [rows[0][1]]
            return _lease(rows[0], display)

    for gold in (True, False) if draws.gold_first else (False, True):
        for _ in range(1 if gold else ATTEMPTS):
            if gold:
                candidates = yield GOLD_NEXT, [rules.project_id, user_id]
            else:
                params = [rules.project_id, at, user_id, at, user_id]
                candidates = yield CANDIDATES, params
            if not candidates:
                break
            comparison_id, *display = candidates[0]
            params = [user_id, draws.a_shown_left, at, expires_at, comparison_id, at, user_id]
            rows = yield LEASE_WRITE, params
            if rows:
                if not gold:
                    yield LEASES_FULL, [at, comparison_id, at]
                return _lease(rows[0], display)
    return None


@dataclass(frozen=True)
class Draws:
    """The chances a new lease takes, drawn before its statements run: a consistency repeat
    first (repeat rate), gold before regular items (gold rate), the side shown left."""

    repeat: bool
    gold_first: bool
    a_shown_left: bool

    @classmethod
    def of(cls, rules: ProjectRules) -> Draws:
        return cls(
            repeat=bool(rules.repeat_rate) and random.random() < rules.repeat_rate,
            gold_first=bool(rules.gold_rate) and random.random() < rules.gold_rate,
            a_shown_left=random.random() < 0.5,
        )


def lease_of(row: tuple) -> Lease:
    """A lease from a row of the current-lease statement (and of the hone_lease function)."""
    return _lease(row[: len(LEASE_COLUMNS)], row[len(LEASE_COLUMNS) :])


@dataclass(frozen=True)
class Submitted:
    """What label_steps did. `outcome` is "created" (a label was written) or why not:
    "not_assigned", "already_submitted", "not_active", "closed", "rationale_required"; the
    caller must roll back on anything but "created". The label function's row fills the fields
    that functions.LABEL_RETURNED names."""

    outcome: str
    label_id: int | None = None
    comparison_id: int | None = None
    project_id: int | None = None
    a_shown_left: bool | None = None
    is_repeat: bool = False
    status: str = ""
    trigger_new_labels: int = 0
    human_gate: float | None = None  # the project's human gate threshold (None: off)


def label_state(*, choice: str, strength: int, rationale: str, review_status: str) -> dict:
    """A label as its audit trail records it."""
    return {
        "choice": choice,
        "strength": strength,
        "rationale": rationale,
        "review_status": review_status,
    }


def created_state(given: dict[str, Any]) -> str:
    """The audit row's `after` of a new label with the annotator's values `given`, as JSON."""
    state = label_state(
        choice=given["choice"],
        strength=given["strength"],
        rationale=given["rationale"],
        review_status=PreferenceLabel.ReviewStatus.UNREVIEWED,
    )
    return json.dumps(state)


def label_steps(
    *,
    adapt_datetime: AdaptDatetime,
    user_id: int,
    assignment_id: int,
    now: datetime,
    **given: Any,
) -> Generator[Query, list[tuple], Submitted]:
    """Mark the annotator's lease submitted, store their label and its audit row. `given`: the
    annotator's values (columns.LABEL_INPUT: choice, strength, rationale, time_spent_ms),
    validated already (services.vote_check and the time bound).

    A double submit waits for the first one's row lock and then finds the lease submitted. A
    lease that expired still takes its label while the comparison needs one. Repeats never
    count towards k. Run inside a transaction; roll back unless the outcome is "created"."""
    given = annotator_values(given)
    rows = yield LEASE_SUBMIT, [assignment_id, user_id]
    if not rows:
        rows = yield LEASE_STATUS, [assignment_id, user_id]
        if not rows:
            return Submitted("not_assigned")
        status = rows[0][0]
        if status != ACTIVE:
            return Submitted(
                "already_submitted" if status == SUBMITTED else "not_active", status=status
            )
        # Active again: an undo committed after the first statement's snapshot. The row
        # lock is this transaction's now, so the lease takes the label.
        rows = yield LEASE_SUBMIT, [assignment_id, user_id]
        if not rows:
            return Submitted("not_assigned")
    comparison_id, a_shown_left, is_repeat, project_id, trigger, needs_why, human_gate = rows[0]
    lease = {
        "comparison_id": comparison_id,
        "project_id": project_id,
        "a_shown_left": bool(a_shown_left),
        "is_repeat": bool(is_repeat),
        "status": ACTIVE,
        "trigger_new_labels": trigger,
        "human_gate": human_gate,
    }
    if given["choice"] == PreferenceLabel.Choice.BOTH_BAD and needs_why and not given["rationale"]:
        return Submitted("rationale_required", **lease)
    at = adapt_datetime(now)
    values = {
        "comparison_id": comparison_id,
        "user_id": user_id,
        "assignment_id": assignment_id,
        "a_shown_left": bool(a_shown_left),
        "is_repeat": bool(is_repeat),
        "now": at,
        **given,
    }
    rows = yield LABEL_WRITE, [values[name] for name in LABEL_PARAMS]
    label_id = rows[0][0]
    yield AUDIT_WRITE, [label_id, user_id, created_state(given), at]
    # Last: the comparison's row lock, which every other submit on it waits for, is then
    # held only until the commit that follows.
    if not is_repeat and not (yield TAKE_LABEL, [comparison_id]):
        return Submitted("closed", **lease)
    return Submitted("created", label_id=label_id, **lease)


def run(steps: Steps, cursor: Any) -> Any:
    """Run `steps` on a DB-API cursor (Django's); returns what the generator returns."""
    try:
        query = next(steps)
        while True:
            cursor.execute(*query)
            query = steps.send(cursor.fetchall() if cursor.description else [])
    except StopIteration as done:
        return done.value
