"""The statements of the labeling path, written once: on SQLite the steps run them one by one
(feedback/labeling/steps.py), on PostgreSQL the two functions built from them do
(feedback/labeling/functions.py). The rules they implement: feedback/labeling/__init__.py."""

from __future__ import annotations

from feedback.labeling.columns import LABEL_COLUMNS
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

# A consistency repeat comes back only after this many later labels of the same annotator.
REPEAT_GAP = 10
# Tries at the next regular comparison: the one locked can have been filled by a lease that
# committed after the query's snapshot; the next try's snapshot sees that lease.
ATTEMPTS = 3

ACTIVE, SUBMITTED, SKIPPED = (
    Assignment.Status.ACTIVE.value,
    Assignment.Status.SUBMITTED.value,
    Assignment.Status.SKIPPED.value,
)
OPEN, COMPLETE = Comparison.Status.OPEN.value, Comparison.Status.COMPLETE.value
GOLD, EDIT = Comparison.Kind.GOLD.value, Comparison.Kind.EDIT.value
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
    "active": f"'{ACTIVE}'",
    "finished": f"'{SUBMITTED}', '{SKIPPED}'",
    "submitted": f"'{SUBMITTED}'",
    "open": f"'{OPEN}'",
    "complete": f"'{COMPLETE}'",
    "gold": f"'{GOLD}'",
    "edit": f"'{EDIT}'",
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
MEMBER = _sql("""
SELECT 1 FROM {membership} m JOIN {user} u ON u.id = m.user_id
 WHERE m.user_id = %s AND m.project_id = %s AND u.is_active
""")

CURRENT = _sql("""
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
CANDIDATES = _sql("""
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
GOLD_NEXT = _sql("""
SELECT c.id, {display}
  FROM {comparison} c
  {display_joins}
 WHERE c.project_id = %s AND c.status = {open} AND c.kind = {gold}
   AND {not_finished_by_annotator}
 ORDER BY c.priority DESC, c.created_at, c.id
 LIMIT 1
""")

# Take the lease if the comparison still needs it, counting again in this statement's own
# snapshot (see feedback/labeling/__init__.py); gold takes one from everybody. The annotator's
# own expired lease is renewed in place; one they finished is never taken back.
LEASE_WRITE = _sql("""
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

# A consistency repeat: the oldest item the annotator labelled at least REPEAT_GAP labels ago
# and never saw again, sides swapped; never a gold item, nor the comparison of their own edit
# with the answer they edited (Demonstration), which they never labeled as a choice.
REPEAT_WRITE = _sql("""
INSERT INTO {assignment}
       (comparison_id, annotator_id, a_shown_left, is_repeat, status, skip_reason,
        created_at, expires_at)
SELECT l.comparison_id, l.annotator_id, NOT l.a_shown_left, TRUE, {active}, '', %s, %s
  FROM {label} l
  JOIN {comparison} c ON c.id = l.comparison_id
 WHERE l.annotator_id = %s AND c.project_id = %s AND l.is_repeat = FALSE
   AND c.kind NOT IN ({gold}, {edit})
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
LEASES_FULL = _sql("""
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

DISPLAY_OF = _sql("""
SELECT {display}
  FROM {comparison} c
  {display_joins}
 WHERE c.id = %s
""")

# The lease marked submitted, if it is the annotator's and still active (an expired lease
# still is): the UPDATE takes the row lock, so a double submit waits for the first and then
# finds nothing to update. Returned: what the next steps need.
LEASE_SUBMIT = _sql("""
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
LEASE_STATUS = _sql("""
UPDATE {assignment} SET status = status
 WHERE id = %s AND annotator_id = %s AND {annotator_is_member}
RETURNING status
""")


# One more regular label on an open comparison that still needs it; complete it at k. Gold
# items take a label from every annotator and stay open. One UPDATE (the right-hand sides
# read the row as it was), which keeps the row lock until the transaction ends.
TAKE_LABEL = _sql("""
UPDATE {comparison}
   SET label_count = label_count + 1,
       status = CASE WHEN kind <> {gold} AND label_count + 1 >= required_labels THEN {complete}
                     ELSE status END
 WHERE id = %s AND status = {open} AND (kind = {gold} OR label_count < required_labels)
RETURNING id
""")

# A new label, as feedback/labeling/columns.py declares it: its parameters are LABEL_PARAMS.
LABEL_WRITE = _sql(
    "INSERT INTO {label} (" + ", ".join(c.name for c in LABEL_COLUMNS) + ")\n"
    "VALUES (" + ", ".join("%s" if c.param else c.value for c in LABEL_COLUMNS) + ")\n"
    "RETURNING id"
)

AUDIT_WRITE = _sql("""
INSERT INTO {audit} (label_id, actor_id, action, before, after, at)
VALUES (%s, %s, 'created', NULL, %s, %s)
""")
