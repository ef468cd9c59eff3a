"""PostgreSQL: each labeling request in one round trip.

On PostgreSQL the steps (feedback/labeling/steps.py) run as two PL/pgSQL functions, called by
feedback.services and by the fast path (api/fastpath.py): one call per request instead of a
round trip per statement plus BEGIN and COMMIT (12 round trips per next + submit pair). The
functions are written from the statements of feedback/labeling/sql.py: `_bind` puts their
variables where the steps pass parameters, in the same order, and the control flow follows
lease_steps and label_steps line by line; SQLite runs the steps. Every statement in a VOLATILE
function takes a new snapshot (READ COMMITTED), which the recount of the lease write relies on,
as it does between the steps' statements. The label function does the successful case only:
anything else raises (RAISED), the call rolls back, and the caller runs label_steps to say what
went wrong. The functions are installed after every migrate (feedback.apps).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from feedback.labeling.columns import LABEL_INPUT, LABEL_PARAMS, annotator_values
from feedback.labeling.sql import (
    ACTIVE,
    ATTEMPTS,
    AUDIT_WRITE,
    CANDIDATES,
    CURRENT,
    GOLD_NEXT,
    LABEL_WRITE,
    LEASE_SUBMIT,
    LEASE_WRITE,
    LEASES_FULL,
    MEMBER,
    REPEAT_WRITE,
    TAKE_LABEL,
)
from feedback.labeling.steps import Draws, ProjectRules, Query, Submitted, created_state
from feedback.models import PreferenceLabel


def _bind(sql: str, *names: str) -> str:
    """`sql` with its %s placeholders replaced, in order, by the PL/pgSQL variables `names`."""
    parts = sql.split("%s")
    if len(parts) != len(names) + 1:
        raise ValueError(f"{len(parts) - 1} placeholders for {len(names)} names")
    return "".join(part + name for part, name in zip(parts, names, strict=False)) + parts[-1]


# The statements as the functions run them: each placeholder becomes the variable the steps
# pass there. The candidate row is locked with SKIP LOCKED, so that concurrent annotators
# never wait on each other (the steps, on SQLite, need no row lock: it locks the file).
_F_MEMBER = _bind(MEMBER, "v_user", "v_project")
_F_CURRENT = _bind(CURRENT, "v_user", "v_project", "v_now")
_F_REPEAT_WRITE = _bind(
    REPEAT_WRITE, "v_now", "v_expires", "v_user", "v_project", "v_user", "v_project", "v_user"
)
_F_GOLD_NEXT = _bind(GOLD_NEXT, "v_project", "v_user")
_F_CANDIDATES = _bind(
    CANDIDATES + " FOR UPDATE OF c SKIP LOCKED", "v_project", "v_now", "v_user", "v_now", "v_user"
)
_F_LEASE_WRITE = _bind(
    LEASE_WRITE, "v_user", "v_a_left", "v_now", "v_expires", "item.id", "v_now", "v_user"
)
_F_LEASES_FULL = _bind(LEASES_FULL, "v_now", "item.id", "v_now")

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

# The label function's arguments, in order: the lease and its annotator, the annotator's values
# (feedback/labeling/columns.py), the time, the audit row's `after`. Its variable of a name is
# `v_<name>`, as is that of a value it returns.
LABEL_ARGUMENTS = (
    ("assignment_id", "bigint"),
    ("user_id", "integer"),
    *((column.name, column.pg_type) for column in LABEL_INPUT),
    ("now", "timestamptz"),
    ("after", "jsonb"),
)
# What the label function returns of the label it stored: the Submitted fields of these names.
LABEL_RETURNED = (
    ("label_id", "bigint"),
    ("comparison_id", "bigint"),
    ("project_id", "bigint"),
    ("a_shown_left", "boolean"),
    ("is_repeat", "boolean"),
    ("trigger_new_labels", "integer"),
    ("human_gate", "double precision"),
)


def _declared(names_types: tuple[tuple[str, str], ...], prefix: str, separator: str) -> str:
    return separator.join(f"{prefix}{name} {pg_type}" for name, pg_type in names_types)


_F_LEASE_SUBMIT = _bind(LEASE_SUBMIT, "v_assignment_id", "v_user_id")
_F_LABEL_WRITE = _bind(LABEL_WRITE, *(f"v_{name}" for name in LABEL_PARAMS))
_F_AUDIT_WRITE = _bind(AUDIT_WRITE, "v_label_id", "v_user_id", "v_after", "v_now")
_F_TAKE_LABEL = _bind(TAKE_LABEL, "v_comparison_id")

_LABEL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION hone_label({_declared(LABEL_ARGUMENTS, "v_", ", ")})
RETURNS TABLE ({_declared(LABEL_RETURNED, "o_", ", ")})
LANGUAGE plpgsql VOLATILE AS $function$
DECLARE
    {_declared(LABEL_RETURNED, "v_", "; ")};
    v_needs_why boolean;
    v_taken bigint;
BEGIN
    {_F_LEASE_SUBMIT}
      INTO v_comparison_id, v_a_shown_left, v_is_repeat, v_project_id, v_trigger_new_labels,
           v_needs_why, v_human_gate;
    IF NOT FOUND THEN RAISE EXCEPTION 'hone: not submitted'; END IF;
    IF v_choice = '{PreferenceLabel.Choice.BOTH_BAD.value}' AND v_needs_why
       AND v_rationale = '' THEN
        RAISE EXCEPTION 'hone: rationale_required';
    END IF;
    {_F_LABEL_WRITE} INTO v_label_id;
    {_F_AUDIT_WRITE};
    IF NOT v_is_repeat THEN
        {_F_TAKE_LABEL} INTO v_taken;
        IF NOT FOUND THEN RAISE EXCEPTION 'hone: closed'; END IF;
    END IF;
    RETURN QUERY SELECT {", ".join(f"v_{name}" for name, _ in LABEL_RETURNED)};
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


_LABEL_CALL = f"SELECT * FROM hone_label({', '.join(['%s'] * len(LABEL_ARGUMENTS))})"


def label_call(*, user_id: int, assignment_id: int, now: datetime, **given: Any) -> Query:
    """label_steps' successful case as one call of the PostgreSQL function (see the module
    docstring); `given`: the annotator's values, as label_steps takes them. Its row is
    `submitted_of`."""
    given = annotator_values(given)
    values = {"assignment_id": assignment_id, "user_id": user_id, "now": now, **given}
    values["after"] = created_state(given)
    return _LABEL_CALL, [values[name] for name, _ in LABEL_ARGUMENTS]


def submitted_of(row: tuple) -> Submitted:
    """What the label function did (LABEL_RETURNED), from its row."""
    returned = dict(zip((name for name, _ in LABEL_RETURNED), row, strict=True))
    return Submitted("created", status=ACTIVE, **returned)
