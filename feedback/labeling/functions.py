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
_F_LEASE_SUBMIT = _bind(LEASE_SUBMIT, "v_assignment", "v_user")
_F_LABEL_WRITE = _bind(
    LABEL_WRITE,
    *("v_comparison", "v_user", "v_assignment", "v_choice", "v_strength", "v_rationale"),
    *("v_time_spent", "v_a_left", "v_is_repeat", "v_now", "v_now"),
)
_F_AUDIT_WRITE = _bind(AUDIT_WRITE, "v_label", "v_user", "v_after", "v_now")
_F_TAKE_LABEL = _bind(TAKE_LABEL, "v_comparison")

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
    """label_steps' successful case as one call of the PostgreSQL function (see the
    module docstring); its row is `submitted_of`."""
    after = created_state(choice=choice, strength=strength, rationale=rationale)
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
        status=ACTIVE,
        trigger_new_labels=trigger,
        human_gate=human_gate,
    )
