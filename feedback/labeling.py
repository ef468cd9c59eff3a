"""The rules of the labeling path, once: leasing the next comparison and storing a label.

They are written as SQL statements and the little logic between them, as generators that
yield (sql, params) and receive the rows back; `run` drives them on a DB-API cursor (Django's
connection), and the caller owns the transaction (a generator never commits). On SQLite,
feedback.services runs the generators; on PostgreSQL the same statements and logic run inside
two PL/pgSQL functions built from them (see "PostgreSQL: each request in one round trip"),
called by feedback.services and by the lean ASGI path of api/fastpath.py.

Assignment rules (see services.assignment_next): the annotator's own unexpired lease first;
a consistency repeat at the project's repeat rate; gold items at the project's gold rate;
then the highest priority, oldest first. A regular comparison collects k labels from k
different annotators and is never leased to more annotators at once than it still needs.
An expired lease frees its place; its own annotator may get the item back, and the lease
row is then renewed in place (same side shown left). Only an active member of the project
leases or labels: the statements check it on every request (_MEMBER, _ANNOTATOR_IS_MEMBER).

Concurrency on PostgreSQL: the best candidate row is locked with FOR UPDATE SKIP LOCKED,
so annotators never wait on each other; its leases are then counted again in the INSERT
that takes the lease, a new statement and so a new snapshot, because a lease committed
while the candidate was read is not in the first one. If that count says the comparison is
full, the next try's snapshot sees it so (up to ATTEMPTS tries). SQLite serialises writers
(IMMEDIATE transactions), which keeps it correct without row locks.

Under load, the head of the queue is full of comparisons whose places are all taken by
leases: counting each one's leases on every walk cost most of the next-item query's time
at 64 annotators. Each comparison therefore carries a hint, `leases_full_until`, written
when a lease fills it (the earliest expiry of its leases) and cleared when a lease gives
its place back early; the walk steps over a row whose hint lies in the future and counts
the others exactly as before. The hint only ever skips rows that are full: a passed or
empty hint falls back to the count.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils.dateparse import parse_datetime

from feedback.models import (
    Assignment,
    Comparison,
    Completion,
    LabelAudit,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
)

Query = tuple[str, list[Any]]
# A datetime as the database driver takes it (Django's connection.ops.adapt_datetimefield_value).
AdaptDatetime = Callable[[datetime], Any]
Steps = Generator[Query, list[tuple], Any]

# A consistency repeat comes back only after this many later labels of the same annotator.
REPEAT_GAP = 10
# Tries at the next regular comparison: the one locked can have been filled by a lease that
# committed after the query's snapshot; the next try's snapshot sees that lease.
ATTEMPTS = 3

_ACTIVE, _SUBMITTED, _SKIPPED = (
    Assignment.Status.ACTIVE.value,
    Assignment.Status.SUBMITTED.value,
    Assignment.Status.SKIPPED.value,
)
_OPEN, _COMPLETE = Comparison.Status.OPEN.value, Comparison.Status.COMPLETE.value
_GOLD = Comparison.Kind.GOLD.value
_USER = Membership._meta.get_field("user").related_model
# Enum values and limits are written into the statements as literals (constants, never user
# input): a generic plan of a prepared statement (api/fastpath.py) can then use the partial
# index of the open queue and knows how many rows it stops after.
_NAMES = {
    "assignment": Assignment._meta.db_table,
    "comparison": Comparison._meta.db_table,
    "prompt": Prompt._meta.db_table,
    "completion": Completion._meta.db_table,
    "project": Project._meta.db_table,
    "label": PreferenceLabel._meta.db_table,
    "audit": LabelAudit._meta.db_table,
    "membership": Membership._meta.db_table,
    "user": _USER._meta.db_table,
    "active": f"'{_ACTIVE}'",
    "finished": f"'{_SUBMITTED}', '{_SKIPPED}'",
    "submitted": f"'{_SUBMITTED}'",
    "open": f"'{_OPEN}'",
    "complete": f"'{_COMPLETE}'",
    "gold": f"'{_GOLD}'",
    "unreviewed": f"'{PreferenceLabel.ReviewStatus.UNREVIEWED.value}'",
}
# Assignment columns in the model's field order (Assignment.from_db takes them so).
LEASE_COLUMNS = (
    "id", "comparison_id", "annotator_id", "a_shown_left", "is_repeat", "status",
    "skip_reason", "created_at", "expires_at",
)  # fmt: skip
# What the annotator's screen shows, read with the lease.
_DISPLAY = """c.project_id, c.prompt_id, c.completion_a_id, c.completion_b_id,
       p.messages, ca.text, cb.text"""
_DISPLAY_JOINS = """JOIN {prompt} p ON p.id = c.prompt_id
  JOIN {completion} ca ON ca.id = c.completion_a_id
  JOIN {completion} cb ON cb.id = c.completion_b_id"""


# Not finished (labelled or skipped) by this annotator: a scalar subquery, so that each row
# walked costs one probe of the unique (comparison, annotator, is_repeat) index. Written as
# NOT EXISTS, the planner made it an anti-join against all of the annotator's leases, for
# every row walked: quadratic in what one annotator has labelled (12 ms a query after 650).
_NOT_FINISHED = """COALESCE((
       SELECT own.status FROM {assignment} own
        WHERE own.comparison_id = c.id AND own.annotator_id = %s AND own.is_repeat = FALSE
       ), '') NOT IN ({finished})"""


# The lease's annotator is an active user and a member of its comparison's project. Checked in
# the statements themselves, so that a membership ended or a user deactivated a moment ago
# labels nothing more, on both paths, whatever a caller cached (api/fastpath.py).
_ANNOTATOR_IS_MEMBER = """EXISTS (
       SELECT 1 FROM {comparison} mc
         JOIN {membership} m ON m.project_id = mc.project_id
         JOIN {user} u ON u.id = m.user_id
        WHERE mc.id = {assignment}.comparison_id AND m.user_id = {assignment}.annotator_id
          AND u.is_active)"""


def _sql(text: str) -> str:
    return (
        text.replace("{not_finished_by_annotator}", _NOT_FINISHED)
        .replace("{annotator_is_member}", _ANNOTATOR_IS_MEMBER)
        .replace("{display}", _DISPLAY)
        .replace("{display_joins}", _DISPLAY_JOINS)
        .format(
            **_NAMES,
            lease_columns=", ".join(LEASE_COLUMNS),
            repeat_offset=REPEAT_GAP - 1,
            lease_columns_a=", ".join(f"a.{column}" for column in LEASE_COLUMNS),
        )
    )


# The annotator is an active user and a member of the project (see _ANNOTATOR_IS_MEMBER).
_MEMBER = _sql("""
SELECT 1 FROM {membership} m JOIN {user} u ON u.id = m.user_id
 WHERE m.user_id = %s AND m.project_id = %s AND u.is_active
""")

_CURRENT = _sql("""
SELECT {lease_columns_a}, {display}
  FROM {assignment} a
  JOIN {comparison} c ON c.id = a.comparison_id
  {display_joins}
 WHERE a.annotator_id = %s AND c.project_id = %s AND a.status = {active} AND a.expires_at > %s
 ORDER BY a.created_at, a.id
 LIMIT 1
""")

# The next regular (or arena) comparisons: open, not gold, not finished by this annotator,
# fewer labels plus others' unexpired leases than required; best priority, then oldest.
_CANDIDATES = _sql("""
SELECT c.id, {display}
  FROM {comparison} c
  {display_joins}
 WHERE c.project_id = %s AND c.status = {open} AND NOT (c.kind = {gold})
   AND (c.leases_full_until IS NULL OR c.leases_full_until <= %s)
   AND {not_finished_by_annotator}
   AND (SELECT COUNT(*) FROM {assignment} other
         WHERE other.comparison_id = c.id AND other.status = {active}
           AND other.is_repeat = FALSE AND other.expires_at > %s AND other.annotator_id <> %s
       ) < c.required_labels - c.label_count
 ORDER BY c.priority DESC, c.created_at, c.id
 LIMIT 1
""")

# Gold items are shown to every annotator once: no lease limit, no row lock.
_GOLD_NEXT = _sql("""
SELECT c.id, {display}
  FROM {comparison} c
  {display_joins}
 WHERE c.project_id = %s AND c.status = {open} AND c.kind = {gold}
   AND {not_finished_by_annotator}
 ORDER BY c.priority DESC, c.created_at, c.id
 LIMIT 1
""")

# Take the lease if the comparison still needs it, counting again in this statement's own
# snapshot (see the module docstring); gold takes one from everybody. The annotator's own
# expired lease is renewed in place; one they finished is never taken back.
_LEASE_WRITE = _sql("""
INSERT INTO {assignment}
       (comparison_id, annotator_id, a_shown_left, is_repeat, status, skip_reason,
        created_at, expires_at)
SELECT c.id, %s, %s, FALSE, {active}, '', %s, %s
  FROM {comparison} c
 WHERE c.id = %s AND c.status = {open}
   AND (c.kind = {gold} OR c.label_count + (
        SELECT COUNT(*) FROM {assignment} other
         WHERE other.comparison_id = c.id AND other.status = {active}
           AND other.is_repeat = FALSE AND other.expires_at > %s AND other.annotator_id <> %s
       ) < c.required_labels)
    ON CONFLICT (comparison_id, annotator_id, is_repeat)
    DO UPDATE SET status = excluded.status, expires_at = excluded.expires_at
       WHERE {assignment}.status NOT IN ({finished})
RETURNING {lease_columns}
""")

# A consistency repeat: the oldest non-gold item the annotator labelled at least REPEAT_GAP
# labels ago and never saw again, sides swapped.
_REPEAT_WRITE = _sql("""
INSERT INTO {assignment}
       (comparison_id, annotator_id, a_shown_left, is_repeat, status, skip_reason,
        created_at, expires_at)
SELECT l.comparison_id, l.annotator_id, NOT l.a_shown_left, TRUE, {active}, '', %s, %s
  FROM {label} l
  JOIN {comparison} c ON c.id = l.comparison_id
 WHERE l.annotator_id = %s AND c.project_id = %s AND l.is_repeat = FALSE
   AND NOT (c.kind = {gold})
   AND l.id < (SELECT l2.id FROM {label} l2
                 JOIN {comparison} c2 ON c2.id = l2.comparison_id
                WHERE l2.annotator_id = %s AND c2.project_id = %s AND l2.is_repeat = FALSE
                ORDER BY l2.id DESC
                LIMIT 1 OFFSET {repeat_offset})
   AND NOT EXISTS (
       SELECT 1 FROM {assignment} seen
        WHERE seen.comparison_id = l.comparison_id AND seen.annotator_id = %s
          AND seen.is_repeat = TRUE)
 ORDER BY l.id
 LIMIT 1
    ON CONFLICT DO NOTHING
RETURNING {lease_columns}
""")

# After a regular lease: if the comparison's labels and unexpired leases now fill it, note
# until when (its first lease's expiry), so that the next-item query steps over it with a
# look at the row instead of counting its leases. A hint, never trusted for the decision:
# a passed or empty time sends the row to the exact count. Cleared where a lease gives its
# place back early (skip, flag, undo: feedback.services).
_LEASES_FULL = _sql("""
UPDATE {comparison}
   SET leases_full_until = (
       SELECT MIN(a.expires_at) FROM {assignment} a
        WHERE a.comparison_id = {comparison}.id AND a.status = {active}
          AND a.is_repeat = FALSE AND a.expires_at > %s)
 WHERE id = %s
   AND label_count + (
       SELECT COUNT(*) FROM {assignment} a
        WHERE a.comparison_id = {comparison}.id AND a.status = {active}
          AND a.is_repeat = FALSE AND a.expires_at > %s) >= required_labels
""")

_DISPLAY_OF = _sql("""
SELECT {display}
  FROM {comparison} c
  {display_joins}
 WHERE c.id = %s
""")


@dataclass(frozen=True)
class ProjectRules:
    """The project settings the labeling path reads (cached by the lean path)."""

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
    (the rules are in the module docstring); None for a user who is not an active member of
    the project. Run inside a transaction."""
    if not (yield _MEMBER, [user_id, rules.project_id]):
        return None
    at = adapt_datetime(now)
    rows = yield _CURRENT, [user_id, rules.project_id, at]
    if rows:
        return lease_of(rows[0])
    expires_at = adapt_datetime(now + timedelta(minutes=rules.lease_minutes))
    draws = Draws.of(rules)

    if draws.repeat:
        params = [at, expires_at, user_id, rules.project_id, user_id, rules.project_id, user_id]
        rows = yield _REPEAT_WRITE, params
        if rows:
            (display,) = yield _DISPLAY_OF, [rows[0][1]]
            return _lease(rows[0], display)

    for gold in (True, False) if draws.gold_first else (False, True):
        for _ in range(1 if gold else ATTEMPTS):
            if gold:
                candidates = yield _GOLD_NEXT, [rules.project_id, user_id]
            else:
                params = [rules.project_id, at, user_id, at, user_id]
                candidates = yield _CANDIDATES, params
            if not candidates:
                break
            comparison_id, *display = candidates[0]
            params = [user_id, draws.a_shown_left, at, expires_at, comparison_id, at, user_id]
            rows = yield _LEASE_WRITE, params
            if rows:
                if not gold:
                    yield _LEASES_FULL, [at, comparison_id, at]
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


# The lease marked submitted, if it is the annotator's, still active (an expired lease still
# is) and the annotator still a member: the UPDATE takes the row lock first, so a double
# submit waits for the first and then finds nothing to update, and an undo (which locks the
# lease first too) goes wholly before or after it. Returned: what the next steps need.
_LEASE_SUBMIT = _sql("""
UPDATE {assignment} SET status = {submitted}
 WHERE id = %s AND annotator_id = %s AND status = {active}
   AND {annotator_is_member}
RETURNING comparison_id, a_shown_left, is_repeat,
       (SELECT c.project_id FROM {comparison} c WHERE c.id = {assignment}.comparison_id),
       (SELECT pr.trigger_new_labels FROM {comparison} c
          JOIN {project} pr ON pr.id = c.project_id WHERE c.id = {assignment}.comparison_id),
       (SELECT pr.rationale_required_for_both_bad FROM {comparison} c
          JOIN {project} pr ON pr.id = c.project_id WHERE c.id = {assignment}.comparison_id),
       (SELECT pr.gate_human_min_win_rate FROM {comparison} c
          JOIN {project} pr ON pr.id = c.project_id WHERE c.id = {assignment}.comparison_id)
""")

# Why the lease took no label: its status, read with its row locked (an UPDATE that changes
# nothing, as SQLite has no FOR UPDATE), so that what the caller reads next (the stored label
# of a double submit) stays as it is until the transaction ends.
_LEASE_STATUS = _sql("""
UPDATE {assignment} SET status = status
 WHERE id = %s AND annotator_id = %s AND {annotator_is_member}
RETURNING status
""")


# One more regular label on an open comparison that still needs it; complete it at k. Gold
# items take a label from every annotator and stay open. One UPDATE (the right-hand sides
# read the row as it was), which keeps the row lock until the transaction ends.
_TAKE_LABEL = _sql("""
UPDATE {comparison}
   SET label_count = label_count + 1,
       status = CASE WHEN kind <> {gold} AND label_count + 1 >= required_labels THEN {complete}
                     ELSE status END
 WHERE id = %s AND status = {open} AND (kind = {gold} OR label_count < required_labels)
RETURNING id
""")

_LABEL_WRITE = _sql("""
INSERT INTO {label}
       (comparison_id, annotator_id, assignment_id, choice, strength, rationale,
        time_spent_ms, a_shown_left, is_repeat, review_status, withdrawn_at, created_at,
        updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, {unreviewed}, NULL, %s, %s)
RETURNING id
""")

_AUDIT_WRITE = _sql("""
INSERT INTO {audit} (label_id, actor_id, action, before, after, at)
VALUES (%s, %s, 'created', NULL, %s, %s)
""")


@dataclass(frozen=True)
class Submitted:
    """What label_steps did. `outcome` is "created" (a label was written) or why not:
    "not_assigned", "already_submitted", "not_active", "closed", "rationale_required"; the
    caller must roll back on anything but "created"."""

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


def _created_state(*, choice: str, strength: int, rationale: str) -> str:
    """The audit row's `after` of a new label, as JSON."""
    state = label_state(
        choice=choice,
        strength=strength,
        rationale=rationale,
        review_status=PreferenceLabel.ReviewStatus.UNREVIEWED,
    )
    return json.dumps(state)


def label_steps(
    *,
    adapt_datetime: AdaptDatetime,
    user_id: int,
    assignment_id: int,
    choice: str,
    strength: int,
    rationale: str,
    time_spent_ms: int,
    now: datetime,
) -> Generator[Query, list[tuple], Submitted]:
    """Mark the annotator's lease submitted, store their label and its audit row. The values
    are validated already (services.vote_check and the time bound).

    A double submit waits for the first one's row lock and then finds the lease submitted. A
    lease that expired still takes its label while the comparison needs one. Repeats never
    count towards k. Run inside a transaction; roll back unless the outcome is "created"."""
    rows = yield _LEASE_SUBMIT, [assignment_id, user_id]
    if not rows:
        rows = yield _LEASE_STATUS, [assignment_id, user_id]
        if not rows:
            return Submitted("not_assigned")
        status = rows[0][0]
        if status != _ACTIVE:
            return Submitted(
                "already_submitted" if status == _SUBMITTED else "not_active", status=status
            )
        # Active again: an undo committed after the first statement's snapshot. The row
        # lock is this transaction's now, so the lease takes the label.
        rows = yield _LEASE_SUBMIT, [assignment_id, user_id]
        if not rows:
            return Submitted("not_assigned")
    comparison_id, a_shown_left, is_repeat, project_id, trigger, needs_why, human_gate = rows[0]
    lease = {
        "comparison_id": comparison_id,
        "project_id": project_id,
        "a_shown_left": bool(a_shown_left),
        "is_repeat": bool(is_repeat),
        "status": _ACTIVE,
        "trigger_new_labels": trigger,
        "human_gate": human_gate,
    }
    if choice == PreferenceLabel.Choice.BOTH_BAD and needs_why and not rationale:
        return Submitted("rationale_required", **lease)
    at = adapt_datetime(now)
    values = [comparison_id, user_id, assignment_id, choice, strength, rationale, time_spent_ms]
    rows = yield _LABEL_WRITE, [*values, bool(a_shown_left), bool(is_repeat), at, at]
    label_id = rows[0][0]
    after = _created_state(choice=choice, strength=strength, rationale=rationale)
    yield _AUDIT_WRITE, [label_id, user_id, after, at]
    # Last: the comparison's row lock, which every other submit on it waits for, is then
    # held only until the commit that follows.
    if not is_repeat and not (yield _TAKE_LABEL, [comparison_id]):
        return Submitted("closed", **lease)
    return Submitted("created", label_id=label_id, **lease)


# --- PostgreSQL: each request in one round trip ---------------------------------------------
#
# On PostgreSQL the steps above run as two PL/pgSQL functions (feedback.services and the lean
# API path of api/fastpath.py): one call per request instead of a round trip per statement
# plus BEGIN and COMMIT (12 round trips per next + submit pair). The functions are written
# from this module's statements: `_bind` puts their variables where the steps pass
# parameters, in the same order, and the control flow follows lease_steps and label_steps line
# by line; SQLite runs the steps. Every statement in a VOLATILE function takes a new snapshot
# (READ COMMITTED), which the recount of the lease write relies on, as it does between the
# statements above. The label function does the successful case only: anything else raises
# (RAISED), the call rolls back, and the caller runs label_steps to say what went wrong.


def _bind(sql: str, *names: str) -> str:
    """`sql` with its %s placeholders replaced, in order, by the PL/pgSQL variables `names`."""
    parts = sql.split("%s")
    if len(parts) != len(names) + 1:
        raise ValueError(f"{len(parts) - 1} placeholders for {len(names)} names")
    return "".join(part + name for part, name in zip(parts, names, strict=False)) + parts[-1]


# The statements as the functions run them: each placeholder becomes the variable the steps
# pass there. The candidate row is locked with SKIP LOCKED, so that concurrent annotators
# never wait on each other (the steps, on SQLite, need no row lock: it locks the file).
_F_MEMBER = _bind(_MEMBER, "v_user", "v_project")
_F_CURRENT = _bind(_CURRENT, "v_user", "v_project", "v_now")
_F_REPEAT_WRITE = _bind(
    _REPEAT_WRITE, "v_now", "v_expires", "v_user", "v_project", "v_user", "v_project", "v_user"
)
_F_GOLD_NEXT = _bind(_GOLD_NEXT, "v_project", "v_user")
_F_CANDIDATES = _bind(
    _CANDIDATES + " FOR UPDATE OF c SKIP LOCKED", "v_project", "v_now", "v_user", "v_now", "v_user"
)
_F_LEASE_WRITE = _bind(
    _LEASE_WRITE, "v_user", "v_a_left", "v_now", "v_expires", "item.id", "v_now", "v_user"
)
_F_LEASES_FULL = _bind(_LEASES_FULL, "v_now", "item.id", "v_now")
_F_LEASE_SUBMIT = _bind(_LEASE_SUBMIT, "v_assignment", "v_user")
_F_LABEL_WRITE = _bind(
    _LABEL_WRITE,
    *("v_comparison", "v_user", "v_assignment", "v_choice", "v_strength", "v_rationale"),
    *("v_time_spent", "v_a_left", "v_is_repeat", "v_now", "v_now"),
)
_F_AUDIT_WRITE = _bind(_AUDIT_WRITE, "v_label", "v_user", "v_after", "v_now")
_F_TAKE_LABEL = _bind(_TAKE_LABEL, "v_comparison")

_LEASE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION hone_lease(
    v_project bigint, v_user integer, v_now timestamptz, v_expires timestamptz,
    v_repeat boolean, v_gold_first boolean, v_a_left boolean, v_commit_async boolean)
RETURNS TABLE (
    o_id bigint, o_comparison_id bigint, o_annotator_id integer, o_a_shown_left boolean,
    o_is_repeat boolean, o_status varchar, o_skip_reason varchar, o_created_at timestamptz,
    o_expires_at timestamptz, o_project_id bigint, o_prompt_id bigint,
    o_completion_a_id bigint, o_completion_b_id bigint, o_messages jsonb,
    o_completion_a text, o_completion_b text)
LANGUAGE plpgsql VOLATILE AS $function$
DECLARE
    lease record;
    item record;
    v_gold boolean;
BEGIN
    -- A lease lost in a crash costs nothing (the annotator asks again): when the call is its
    -- own transaction, its commit need not wait for the disk, nor hold the comparison's row
    -- lock that long. (Inside a caller's transaction it would make the caller's writes wait
    -- for nothing either: then the caller's setting stays.)
    IF v_commit_async THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- Not an active member: the caller says so (Django answers the fast path's request).
    IF NOT EXISTS ({_F_MEMBER}) THEN RAISE EXCEPTION 'hone: not_member'; END IF;
    RETURN QUERY {_F_CURRENT};
    IF FOUND THEN RETURN; END IF;
    IF v_repeat THEN
        {_F_REPEAT_WRITE} INTO lease;
        IF FOUND THEN RETURN QUERY {_F_CURRENT}; RETURN; END IF;
    END IF;
    FOREACH v_gold IN ARRAY ARRAY[v_gold_first, NOT v_gold_first] LOOP
        FOR v_try IN 1 .. CASE WHEN v_gold THEN 1 ELSE {ATTEMPTS} END LOOP
            IF v_gold THEN
                {_F_GOLD_NEXT} INTO item;
            ELSE
                {_F_CANDIDATES} INTO item;
            END IF;
            EXIT WHEN NOT FOUND;
            {_F_LEASE_WRITE} INTO lease;
            IF FOUND THEN
                IF NOT v_gold THEN
                    {_F_LEASES_FULL};
                END IF;
                RETURN QUERY {_F_CURRENT};
                RETURN;
            END IF;
        END LOOP;
    END LOOP;
END
$function$
"""

_LABEL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION hone_label(
    v_assignment bigint, v_user integer, v_choice varchar, v_strength integer,
    v_rationale text, v_time_spent integer, v_now timestamptz, v_after jsonb)
RETURNS TABLE (
    o_label_id bigint, o_comparison_id bigint, o_project_id bigint, o_a_shown_left boolean,
    o_is_repeat boolean, o_trigger_new_labels integer, o_human_gate double precision)
LANGUAGE plpgsql VOLATILE AS $function$
DECLARE
    v_comparison bigint;
    v_a_left boolean;
    v_is_repeat boolean;
    v_project bigint;
    v_trigger integer;
    v_needs_why boolean;
    v_gate double precision;
    v_label bigint;
    v_taken bigint;
BEGIN
    {_F_LEASE_SUBMIT}
      INTO v_comparison, v_a_left, v_is_repeat, v_project, v_trigger, v_needs_why, v_gate;
    IF NOT FOUND THEN RAISE EXCEPTION 'hone: not submitted'; END IF;
    IF v_choice = '{PreferenceLabel.Choice.BOTH_BAD.value}' AND v_needs_why
       AND v_rationale = '' THEN
        RAISE EXCEPTION 'hone: rationale_required';
    END IF;
    {_F_LABEL_WRITE} INTO v_label;
    {_F_AUDIT_WRITE};
    IF NOT v_is_repeat THEN
        {_F_TAKE_LABEL} INTO v_taken;
        IF NOT FOUND THEN RAISE EXCEPTION 'hone: closed'; END IF;
    END IF;
    RETURN QUERY SELECT v_label, v_comparison, v_project, v_a_left, v_is_repeat, v_trigger,
                        v_gate;
END
$function$
"""

# Installed after every `migrate` (feedback.apps): the database runs the statements of the
# code that migrated it last.
FUNCTIONS_INSTALL = (
    "DROP FUNCTION IF EXISTS hone_lease, hone_label",
    _LEASE_FUNCTION,
    _LABEL_FUNCTION,
)
# The message prefix of what the label function raises instead of storing a label.
RAISED = "hone: "


def lease_call(*, rules: ProjectRules, user_id: int, now: datetime, own_transaction: bool) -> Query:
    """lease_steps as one call of the PostgreSQL function; its row, if any, is `lease_of`.
    `own_transaction`: nothing else is written in the call's transaction (its commit may then
    skip waiting for the disk)."""
    draws = Draws.of(rules)
    expires_at = now + timedelta(minutes=rules.lease_minutes)
    params = [rules.project_id, user_id, now, expires_at]
    params += [draws.repeat, draws.gold_first, draws.a_shown_left, own_transaction]
    return "SELECT * FROM hone_lease(%s, %s, %s, %s, %s, %s, %s, %s)", params


def label_call(
    *,
    user_id: int,
    assignment_id: int,
    choice: str,
    strength: int,
    rationale: str,
    time_spent_ms: int,
    now: datetime,
) -> Query:
    """label_steps' successful case as one call of the PostgreSQL function (see above); its
    row is `submitted_of`."""
    after = _created_state(choice=choice, strength=strength, rationale=rationale)
    params = [assignment_id, user_id, choice, strength, rationale, time_spent_ms, now, after]
    return "SELECT * FROM hone_label(%s, %s, %s, %s, %s, %s, %s, %s)", params


def submitted_of(row: tuple) -> Submitted:
    label_id, comparison_id, project_id, a_shown_left, is_repeat, trigger, human_gate = row
    return Submitted(
        "created",
        label_id=label_id,
        comparison_id=comparison_id,
        project_id=project_id,
        a_shown_left=a_shown_left,
        is_repeat=is_repeat,
        status=_ACTIVE,
        trigger_new_labels=trigger,
        human_gate=human_gate,
    )


# --- Drivers ------------------------------------------------------------------------------


def run(steps: Steps, cursor: Any) -> Any:
    """Run `steps` on a DB-API cursor (Django's); returns what the generator returns."""
    try:
        query = next(steps)
        while True:
            cursor.execute(*query)
            query = steps.send(cursor.fetchall() if cursor.description else [])
    except StopIteration as done:
        return done.value
