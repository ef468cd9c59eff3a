"""Every write of the feedback app: projects, prompts, comparisons, assignments, labels."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from feedback.events import event_publish
from feedback.models import (
    Assignment,
    Comparison,
    ComparisonAudit,
    ComparisonFlag,
    Completion,
    LabelAudit,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
)

MAX_TIME_SPENT_MS = 24 * 3600 * 1000  # a day: anything longer is a broken client clock


def storable_text(text: str) -> str:
    """Model output as the database can store it: PostgreSQL text cannot hold NUL, which a
    byte-level model may sample; it becomes U+FFFD (visible, like any undecodable byte)."""
    return text.replace("\x00", "\ufffd")


def project_create(*, slug: str, name: str, base_model: str, **fields: Any) -> Project:
    """Create a project and its version 0 policy (the base model, no adapter)."""
    from training.services import policy_create_base

    project = Project(slug=slug, name=name, base_model=base_model, **fields)
    project.full_clean()
    with transaction.atomic():
        project.save()
        policy_create_base(project=project)
    return project


def project_gates_set(
    *,
    project: Project,
    auto_promote: bool,
    gate_min_win_rate: float,
    gate_max_kl: float,
    gate_max_empty_rate: float,
    gate_max_repetition: float,
    gate_human_min_win_rate: float | None,
    gate_human_labels: int,
) -> Project:
    """Set what a candidate must show before promotion (training/gates.py). A candidate that
    already waits for humans is judged by the settings at each check."""
    values = {
        "auto_promote": auto_promote,
        "gate_min_win_rate": gate_min_win_rate,
        "gate_max_kl": gate_max_kl,
        "gate_max_empty_rate": gate_max_empty_rate,
        "gate_max_repetition": gate_max_repetition,
        "gate_human_min_win_rate": gate_human_min_win_rate,
        "gate_human_labels": gate_human_labels,
    }
    for name, value in values.items():
        setattr(project, name, value)
    project.full_clean()
    project.save(update_fields=list(values))
    return project


def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; use one of {Membership.Role.values}."}
        )
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def prompts_import(
    *, project: Project, records: list[Any], source: str = "", duplicates: str = "keep"
) -> list[Prompt]:
    """Validate every record first, then write all of them or none.

    Records are {"prompt": text or chat turns, "split", "metadata"}; files (JSONL, CSV, JSON)
    go through feedback.imports.prompts_import_file, which also reports duplicates.
    """
    from feedback.imports import prompts_import_records

    result = prompts_import_records(
        project=project,
        records=list(enumerate(records, start=1)),
        source=source,
        duplicates=duplicates,
    )
    return result.prompts


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


# Related rows an annotator's screen needs, loaded with the lease in the same query.
_DISPLAY = ("comparison__prompt", "comparison__completion_a", "comparison__completion_b")
# A consistency repeat comes back only after this many later labels of the same annotator.
REPEAT_GAP = 10
# Candidates locked per next-item query: a few, in case a concurrent lease filled one since.
_CANDIDATES = 3


def assignment_next(*, project: Project, user: AbstractBaseUser) -> Assignment | None:
    """The annotator's current lease, or a new lease on the next comparison they can label.

    Order: their own unexpired lease; a consistency repeat at the project's repeat rate; gold
    items at the project's gold rate; then the highest priority, oldest first. A comparison is
    never leased to more annotators at once than it still needs labels, and never to someone
    who has labelled it. An expired lease frees its place; its own annotator may get the item
    back, and the lease row is then renewed in place.

    On PostgreSQL candidate rows are locked with SKIP LOCKED, so concurrent annotators never
    wait on each other; the lease count is re-read after the lock, in a new statement (and so
    a new snapshot), because a lease committed while we waited is not in the first one. SQLite
    serialises writers (IMMEDIATE transactions), which keeps it correct.
    """
    now = timezone.now()
    with transaction.atomic():
        mine = _lease_current(project=project, user=user, now=now)
        if mine is not None:
            return mine
        expires_at = now + timedelta(minutes=project.lease_minutes)
        if project.repeat_rate and random.random() < project.repeat_rate:
            repeat = _lease_repeat(project=project, user=user, expires_at=expires_at)
            if repeat is not None:
                return repeat
        gold_first = bool(project.gold_rate) and random.random() < project.gold_rate
        for gold in (True, False) if gold_first else (False, True):
            lease = (_lease_gold if gold else _lease_regular)(
                project=project, user=user, now=now, expires_at=expires_at
            )
            if lease is not None:
                return lease
    return None


# Lease statuses after which an item is never offered to the same annotator again.
_FINISHED = (Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED)


def _not_labelled_by(user: AbstractBaseUser) -> Exists:
    return Exists(
        Assignment.objects.filter(
            comparison=OuterRef("pk"),
            annotator=user,
            is_repeat=False,
            status__in=_FINISHED,
        )
    )


# The next-item query, written out: it runs on every request for work, and building it with
# the ORM (subqueries, Exists, annotations) cost more CPU than the rest of the request. The
# same text runs on PostgreSQL and SQLite; only the lock clause differs.
_CANDIDATES_SQL = """
SELECT c.*, p.messages AS prompt_messages, ca.text AS a_text, cb.text AS b_text,
       (SELECT own.id FROM {assignment} own
         WHERE own.comparison_id = c.id AND own.annotator_id = %s AND own.is_repeat = %s
       ) AS own_lease_id
  FROM {comparison} c
  JOIN {prompt} p ON p.id = c.prompt_id
  JOIN {completion} ca ON ca.id = c.completion_a_id
  JOIN {completion} cb ON cb.id = c.completion_b_id
 WHERE c.project_id = %s AND c.status = %s AND NOT (c.kind = %s)
   AND NOT EXISTS (
       SELECT 1 FROM {assignment} done
        WHERE done.comparison_id = c.id AND done.annotator_id = %s
          AND done.is_repeat = %s AND done.status IN ({finished}))
   AND (SELECT COUNT(*) FROM {assignment} other
         WHERE other.comparison_id = c.id AND other.status = %s AND other.is_repeat = %s
           AND other.expires_at > %s AND other.annotator_id <> %s
       ) < c.required_labels - c.label_count
 ORDER BY c.priority DESC, c.created_at, c.id
 LIMIT %s{lock}
"""
_BUSY_SQL = """
SELECT comparison_id, COUNT(*) FROM {assignment}
 WHERE comparison_id IN ({ids}) AND status = %s AND is_repeat = %s
   AND expires_at > %s AND annotator_id <> %s
 GROUP BY comparison_id
"""


def _tables() -> dict[str, str]:
    return {
        "assignment": Assignment._meta.db_table,
        "comparison": Comparison._meta.db_table,
        "prompt": Prompt._meta.db_table,
        "completion": Completion._meta.db_table,
    }


def _lease_regular(
    *, project: Project, user: AbstractBaseUser, now: datetime, expires_at: datetime
) -> Assignment | None:
    """Lease the best regular (or arena) comparison that still needs a label from `user`.

    Candidates: open, not gold, not labelled by `user`, fewer labels plus others' unexpired
    leases than required; best priority, then oldest. Locked with SKIP LOCKED where the
    database can, then re-counted (see assignment_next).
    """
    features = connection.features
    lock = ""
    if features.has_select_for_update_skip_locked and features.has_select_for_update_of:
        lock = " FOR UPDATE OF c SKIP LOCKED"
    now_db = connection.ops.adapt_datetimefield_value(now)
    finished = ", ".join(["%s"] * len(_FINISHED))
    sql = _CANDIDATES_SQL.format(lock=lock, finished=finished, **_tables())
    params = [
        user.pk, False,
        project.pk, Comparison.Status.OPEN, Comparison.Kind.GOLD,
        user.pk, False, *_FINISHED,
        Assignment.Status.ACTIVE, False, now_db, user.pk,
        _CANDIDATES,
    ]  # fmt: skip
    candidates = list(Comparison.objects.raw(sql, params))
    if not candidates:
        return None
    # A new statement, so a new snapshot: leases committed before we got the locks count.
    ids = [c.pk for c in candidates]
    with connection.cursor() as cursor:
        cursor.execute(
            _BUSY_SQL.format(ids=", ".join(["%s"] * len(ids)), **_tables()),
            [*ids, Assignment.Status.ACTIVE, False, now_db, user.pk],
        )
        busy = dict(cursor.fetchall())
    for comparison in candidates:
        if busy.get(comparison.pk, 0) + comparison.label_count >= comparison.required_labels:
            continue
        _attach_display(comparison)
        return _lease_write(
            comparison=comparison,
            user=user,
            own_lease_id=comparison.own_lease_id,
            expires_at=expires_at,
        )
    return None


def _attach_display(comparison: Comparison) -> None:
    """Prompt and completions from the query's extra columns (prompt_messages, a_text,
    b_text), converted as the ORM would, so that showing the item costs no further query."""
    messages = Prompt._meta.get_field("messages").from_db_value(
        comparison.prompt_messages, None, connection
    )
    comparison.prompt = Prompt.from_db(connection.alias, ["id", "messages"], [
        comparison.prompt_id, messages,
    ])  # fmt: skip
    comparison.completion_a = Completion.from_db(
        connection.alias, ["id", "text"], [comparison.completion_a_id, comparison.a_text]
    )
    comparison.completion_b = Completion.from_db(
        connection.alias, ["id", "text"], [comparison.completion_b_id, comparison.b_text]
    )


_CURRENT_SQL = """
SELECT a.*, c.project_id AS c_project_id, c.prompt_id AS c_prompt_id,
       c.completion_a_id AS c_completion_a_id, c.completion_b_id AS c_completion_b_id,
       p.messages AS prompt_messages, ca.text AS a_text, cb.text AS b_text
  FROM {assignment} a
  JOIN {comparison} c ON c.id = a.comparison_id
  JOIN {prompt} p ON p.id = c.prompt_id
  JOIN {completion} ca ON ca.id = c.completion_a_id
  JOIN {completion} cb ON cb.id = c.completion_b_id
 WHERE a.annotator_id = %s AND c.project_id = %s AND a.status = %s AND a.expires_at > %s
 ORDER BY a.created_at, a.id
 LIMIT 1
"""


def _lease_current(*, project: Project, user: AbstractBaseUser, now: datetime) -> Assignment | None:
    """The annotator's oldest unexpired lease in the project, with what the screen shows."""
    params = [user.pk, project.pk, Assignment.Status.ACTIVE]
    params.append(connection.ops.adapt_datetimefield_value(now))
    rows = list(Assignment.objects.raw(_CURRENT_SQL.format(**_tables()), params))
    if not rows:
        return None
    lease = rows[0]
    comparison = Comparison.from_db(
        connection.alias,
        ["id", "project_id", "prompt_id", "completion_a_id", "completion_b_id"],
        [lease.comparison_id, lease.c_project_id, lease.c_prompt_id, lease.c_completion_a_id,
         lease.c_completion_b_id],
    )  # fmt: skip
    comparison.prompt_messages, comparison.a_text, comparison.b_text = (
        lease.prompt_messages, lease.a_text, lease.b_text,
    )  # fmt: skip
    _attach_display(comparison)
    lease.comparison = comparison
    return lease


def _lease_gold(
    *, project: Project, user: AbstractBaseUser, now: datetime, expires_at: datetime
) -> Assignment | None:
    """Lease a gold item `user` has not labelled. Gold items are shown to every annotator
    once, so they have no lease limit and need no row lock."""
    comparison = (
        Comparison.objects.select_related("prompt", "completion_a", "completion_b")
        .filter(project=project, status=Comparison.Status.OPEN, kind=Comparison.Kind.GOLD)
        .exclude(_not_labelled_by(user))
        .annotate(
            own_lease_id=Subquery(
                Assignment.objects.filter(
                    comparison=OuterRef("pk"), annotator=user, is_repeat=False
                ).values("pk")[:1]
            )
        )
        .order_by("-priority", "created_at", "id")
        .first()
    )
    if comparison is None:
        return None
    try:
        with transaction.atomic():  # the same annotator in two concurrent requests
            return _lease_write(
                comparison=comparison,
                user=user,
                own_lease_id=comparison.own_lease_id,
                expires_at=expires_at,
            )
    except IntegrityError:
        return None


def _lease_write(
    *,
    comparison: Comparison,
    user: AbstractBaseUser,
    own_lease_id: int | None,
    expires_at: datetime,
) -> Assignment:
    """Create the lease, or renew the annotator's own expired one (same side shown left).

    Precondition for regular comparisons: the caller holds the comparison's row lock.
    """
    if own_lease_id is not None:
        Assignment.objects.filter(pk=own_lease_id).update(
            status=Assignment.Status.ACTIVE, expires_at=expires_at
        )
        lease = Assignment.objects.get(pk=own_lease_id)
    else:
        lease = Assignment.objects.create(
            comparison=comparison,
            annotator=user,
            a_shown_left=random.random() < 0.5,
            expires_at=expires_at,
        )
    lease.comparison = comparison
    return lease


def _lease_repeat(
    *, project: Project, user: AbstractBaseUser, expires_at: datetime
) -> Assignment | None:
    """Bring back an item `user` labelled at least REPEAT_GAP labels ago, sides swapped."""
    mine = PreferenceLabel.objects.filter(
        annotator=user, comparison__project=project, is_repeat=False
    ).order_by("-id")
    cutoff = list(mine.values_list("id", flat=True)[REPEAT_GAP - 1 : REPEAT_GAP])
    if not cutoff:
        return None
    original = (
        mine.filter(id__lt=cutoff[0])
        .exclude(comparison__kind=Comparison.Kind.GOLD)
        .exclude(
            Exists(
                Assignment.objects.filter(
                    comparison=OuterRef("comparison"), annotator=user, is_repeat=True
                )
            )
        )
        .order_by("id")
        .first()
    )
    if original is None:
        return None
    try:
        with transaction.atomic():
            lease = Assignment.objects.create(
                comparison_id=original.comparison_id,
                annotator=user,
                is_repeat=True,
                a_shown_left=not original.a_shown_left,
                expires_at=expires_at,
            )
    except IntegrityError:  # the same annotator in two concurrent requests
        return None
    return Assignment.objects.select_related(*_DISPLAY).get(pk=lease.pk)


def vote_check(*, choice: str, strength: int) -> None:
    """A preference is one of the choices with one of the strengths (labels, arena votes)."""
    if choice not in PreferenceLabel.Choice.values:
        raise ValidationError(
            {"choice": f"Unknown choice {choice!r}; use one of {PreferenceLabel.Choice.values}."}
        )
    if strength not in PreferenceLabel.Strength.values:
        raise ValidationError(
            {"strength": f"Strength must be one of {PreferenceLabel.Strength.values}."}
        )


def label_submit(
    *,
    user: AbstractBaseUser,
    assignment_id: int,
    choice: str,
    strength: int = PreferenceLabel.Strength.CLEAR,
    rationale: str = "",
    time_spent_ms: int = 0,
) -> PreferenceLabel:
    """Store the annotator's label for a comparison leased to them.

    Submitting the same assignment twice returns the stored label unchanged (a retried
    request after a lost connection never creates a second label). A lease that expired
    still takes its label while the comparison needs one. The comparison's label count is
    raised in one conditional UPDATE, which holds its row lock to the end: a comparison never
    gets more than its k regular labels. Repeats never count towards k.
    """
    vote_check(choice=choice, strength=strength)
    if not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS:
        raise ValidationError(
            {"time_spent_ms": f"Time spent must be between 0 and {MAX_TIME_SPENT_MS} ms."}
        )

    with transaction.atomic():
        assignment = _assignment_lock(assignment_id=assignment_id, user=user)
        if assignment is None:
            raise ValidationError(
                {"assignment": "This comparison is not assigned to you."}, code="not_assigned"
            )
        if assignment.status == Assignment.Status.SUBMITTED:
            return PreferenceLabel.objects.get(assignment=assignment)
        if assignment.status != Assignment.Status.ACTIVE:  # an expired one still is ACTIVE
            raise ValidationError(
                {"assignment": f"This comparison was {assignment.status}; it takes no label."},
                code="not_active",
            )
        comparison = assignment.comparison
        if not assignment.is_repeat and not _comparison_take_label(comparison=comparison):
            raise ValidationError(
                {"assignment": "This comparison no longer takes labels."}, code="closed"
            )
        if (
            choice == PreferenceLabel.Choice.BOTH_BAD
            and assignment.comparison.project.rationale_required_for_both_bad
            and not rationale.strip()
        ):
            raise ValidationError(
                {"rationale": 'This project asks for a rationale with "both bad".'},
                code="rationale_required",
            )
        label = PreferenceLabel(
            comparison=comparison,
            annotator=user,
            assignment=assignment,
            choice=choice,
            strength=strength,
            rationale=rationale.strip(),
            time_spent_ms=time_spent_ms,
            a_shown_left=assignment.a_shown_left,
            is_repeat=assignment.is_repeat,
        )
        # The related rows are the ones just locked: skip full_clean's existence queries.
        label.full_clean(
            exclude=["comparison", "annotator", "assignment"],
            validate_unique=False,
            validate_constraints=False,
        )
        label.save()
        LabelAudit.objects.create(
            label=label, actor=user, action="created", before=None, after=_label_state(label)
        )
        Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.SUBMITTED)
        assignment.status = Assignment.Status.SUBMITTED
    if not label.is_repeat and assignment.project_trigger:
        _maybe_trigger_iteration(project=Project.objects.get(pk=comparison.project_id))
    if not label.is_repeat and assignment.project_human_gate is not None:
        _human_gate_check_later(project_id=comparison.project_id)
    return label


_ASSIGNMENT_LOCK_SQL = """
SELECT a.*, c.kind AS c_kind, c.project_id AS c_project_id,
       pr.trigger_new_labels AS project_trigger,
       pr.gate_human_min_win_rate AS project_human_gate
  FROM {assignment} a
  JOIN {comparison} c ON c.id = a.comparison_id
  JOIN {project} pr ON pr.id = c.project_id
 WHERE a.id = %s AND a.annotator_id = %s{lock}
"""


def _assignment_lock(*, assignment_id: int, user: AbstractBaseUser) -> Assignment | None:
    """The user's lease, row-locked where the database can, with its comparison's kind and
    project and the project's label trigger and human gate. Call inside a transaction."""
    features = connection.features
    lock = ""
    if features.has_select_for_update_of:
        lock = " FOR UPDATE OF a"
    elif features.has_select_for_update:
        lock = " FOR UPDATE"
    sql = _ASSIGNMENT_LOCK_SQL.format(lock=lock, project=Project._meta.db_table, **_tables())
    rows = list(Assignment.objects.raw(sql, [assignment_id, user.pk]))
    if not rows:
        return None
    assignment = rows[0]
    # from_db takes the values in the model's field order (id, project, ..., kind).
    assignment.comparison = Comparison.from_db(
        connection.alias,
        ["id", "project_id", "kind"],
        [assignment.comparison_id, assignment.c_project_id, assignment.c_kind],
    )
    return assignment


_TAKE_LABEL_SQL = """
UPDATE {comparison}
   SET label_count = label_count + 1,
       status = CASE WHEN kind <> %s AND label_count + 1 >= required_labels THEN %s
                     ELSE status END
 WHERE id = %s AND status = %s AND (kind = %s OR label_count < required_labels)
"""


def _comparison_take_label(*, comparison: Comparison) -> bool:
    """Count one more regular label on an open comparison that still needs it; complete it at
    k. Gold items take a label from every annotator and stay open. One UPDATE (the right-hand
    sides read the row as it was), which keeps the row lock until the transaction ends."""
    gold, complete, open_ = Comparison.Kind.GOLD, Comparison.Status.COMPLETE, Comparison.Status.OPEN
    with connection.cursor() as cursor:
        cursor.execute(
            _TAKE_LABEL_SQL.format(comparison=Comparison._meta.db_table),
            [gold, complete, comparison.pk, open_, gold],
        )
        return cursor.rowcount == 1


def _label_state(label: PreferenceLabel) -> dict[str, Any]:
    return {
        "choice": label.choice,
        "strength": label.strength,
        "rationale": label.rationale,
        "review_status": label.review_status,
    }


def _maybe_trigger_iteration(*, project: Project) -> None:
    if not project.trigger_new_labels:
        return
    from training.selectors import labels_since_last_iteration
    from training.services import iteration_start

    if labels_since_last_iteration(project=project) >= project.trigger_new_labels:
        iteration_start(project=project, trigger="labels")


def _human_gate_check_later(*, project_id: int) -> None:
    """A label may decide the human gate of an iteration waiting for humans: check on a
    worker once the label is committed (a bootstrap is no work for the annotator's request).
    Robust: a broker that is down costs the annotator nothing; the beat checks again."""
    from training.tasks import human_gate_check_task

    transaction.on_commit(lambda: human_gate_check_task.delay(project_id), robust=True)


# --- Annotator workspace: undo, skip, flag ------------------------------------------------

UNDO_WINDOW = timedelta(minutes=2)
SKIP_REASONS = {
    "unsure": "I cannot judge this one",
    "unclear": "The prompt is unclear",
    "expertise": "Needs expertise I lack",
    "long": "Too long to judge well",
    "other": "Other",
}


def label_undo(*, user: AbstractBaseUser, project: Project) -> PreferenceLabel:
    """Withdraw the annotator's latest label in `project` if it is recent enough.

    Nothing is deleted: the label is marked withdrawn (training ignores it, see
    training.selectors.labels_for_training), a LabelAudit row records it, and the
    comparison goes back to the same annotator as an active lease.
    """
    now = timezone.now()
    with transaction.atomic():
        label = (
            PreferenceLabel.objects.select_for_update()
            .filter(
                annotator=user,
                comparison__project=project,
                withdrawn_at__isnull=True,
                assignment__isnull=False,
            )
            .order_by("-created_at", "-id")
            .first()
        )
        if label is None:
            raise ValidationError("There is no label of yours to undo.", code="nothing_to_undo")
        if label.created_at < now - UNDO_WINDOW:
            minutes = int(UNDO_WINDOW.total_seconds() // 60)
            raise ValidationError(
                f"Your last label is older than {minutes} minutes; it can no longer be undone.",
                code="too_late",
            )
        if label.review_status != PreferenceLabel.ReviewStatus.UNREVIEWED:
            raise ValidationError("Your last label was already reviewed.", code="reviewed")
        assignment = Assignment.objects.select_for_update().get(pk=label.assignment_id)
        comparison = Comparison.objects.select_for_update().get(pk=label.comparison_id)
        before = _label_state(label)
        label.withdrawn_at = now
        label.assignment = None  # the lease takes a new label; this one stays for the record
        label.save(update_fields=["withdrawn_at", "assignment", "updated_at"])
        LabelAudit.objects.create(
            label=label,
            actor=user,
            action="withdrawn",
            before={**before, "assignment_id": assignment.pk},
            after={**_label_state(label), "withdrawn_at": now.isoformat()},
        )
        assignment.status = Assignment.Status.ACTIVE
        assignment.expires_at = now + timedelta(minutes=project.lease_minutes)
        assignment.save(update_fields=["status", "expires_at"])
        if not label.is_repeat:  # the label no longer counts towards k
            comparison.label_count = max(0, comparison.label_count - 1)
            fields = ["label_count"]
            if comparison.status == Comparison.Status.COMPLETE:
                comparison.status = Comparison.Status.OPEN
                fields.append("status")
            comparison.save(update_fields=fields)
    return label


def assignment_skip(*, user: AbstractBaseUser, assignment_id: int, reason: str) -> Assignment:
    """Give an item back without labeling it; it is not offered to this annotator again.

    Skipping twice is harmless: the second call returns the skipped assignment.
    """
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why you skip this item."})
    if len(reason) > 200:
        raise ValidationError({"reason": "Keep the reason under 200 characters."})
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update().filter(pk=assignment_id, annotator=user).first()
        )
        if assignment is None:
            raise ValidationError(
                {"assignment": "This comparison is not assigned to you."}, code="not_assigned"
            )
        if assignment.status == Assignment.Status.SKIPPED:
            return assignment
        if assignment.status != Assignment.Status.ACTIVE:
            raise ValidationError(
                {"assignment": f"This comparison was {assignment.status}; it cannot be skipped."}
            )
        assignment.status = Assignment.Status.SKIPPED
        assignment.skip_reason = reason
        assignment.save(update_fields=["status", "skip_reason"])
    return assignment


def comparison_flag(
    *, user: AbstractBaseUser, assignment_id: int, reason: str, note: str = ""
) -> ComparisonFlag:
    """Report the leased comparison (unsafe, broken, other) and move past it (skipped)."""
    if reason not in ComparisonFlag.Reason.values:
        raise ValidationError(
            {"reason": f"Unknown flag {reason!r}; use one of {ComparisonFlag.Reason.values}."}
        )
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update().filter(pk=assignment_id, annotator=user).first()
        )
        if assignment is None:
            raise ValidationError(
                {"assignment": "This comparison is not assigned to you."}, code="not_assigned"
            )
        existing = ComparisonFlag.objects.filter(
            comparison_id=assignment.comparison_id, annotator=user
        ).first()
        if existing is not None:
            return existing
        if assignment.status != Assignment.Status.ACTIVE:
            raise ValidationError(
                {"assignment": f"This comparison was {assignment.status}; it cannot be flagged."}
            )
        flag = ComparisonFlag(
            comparison_id=assignment.comparison_id,
            annotator=user,
            reason=reason,
            note=note.strip(),
        )
        flag.full_clean(validate_unique=False)
        flag.save()
        assignment.status = Assignment.Status.SKIPPED
        assignment.skip_reason = f"flagged: {reason}"
        assignment.save(update_fields=["status", "skip_reason"])
    return flag


# --- Review and quality control -------------------------------------------------------------


def label_review(*, reviewer: AbstractBaseUser, label_id: int, decision: str) -> PreferenceLabel:
    """Accept or reject a label (or send it back to unreviewed); audited, never deleted.

    A rejected label stays in the database and is left out of votes and training data.
    The caller checks that `reviewer` reviews the label's project.
    """
    if decision not in PreferenceLabel.ReviewStatus.values:
        raise ValidationError(
            {
                "decision": f"Unknown decision {decision!r}; use one of "
                f"{PreferenceLabel.ReviewStatus.values}."
            }
        )
    with transaction.atomic():
        label = PreferenceLabel.objects.select_for_update().get(pk=label_id)
        if label.review_status == decision:
            return label
        before = _label_state(label)
        label.review_status = decision
        label.save(update_fields=["review_status", "updated_at"])
        LabelAudit.objects.create(
            label=label,
            actor=reviewer,
            action=f"review_{decision}",
            before=before,
            after=_label_state(label),
        )
    return label


def _decision_state(comparison: Comparison) -> dict[str, Any]:
    return {
        "kind": comparison.kind,
        "gold_choice": comparison.gold_choice,
        "final_choice": comparison.final_choice,
        "status": comparison.status,
    }


def _choice_or_blank(choice: str, field: str) -> None:
    if choice and choice not in PreferenceLabel.Choice.values:
        raise ValidationError(
            {
                field: f"Unknown choice {choice!r}; use one of {PreferenceLabel.Choice.values}, "
                "or nothing to clear it."
            }
        )


def comparison_decide(*, reviewer: AbstractBaseUser, comparison_id: int, choice: str) -> Comparison:
    """Set (or clear, with "") the reviewer's final preference, which overrides the vote in
    training data. Audited. The caller checks that `reviewer` reviews the project."""
    _choice_or_blank(choice, "final_choice")
    with transaction.atomic():
        comparison = Comparison.objects.select_for_update().get(pk=comparison_id)
        if comparison.final_choice == choice:
            return comparison
        before = _decision_state(comparison)
        comparison.final_choice = choice
        comparison.final_by = reviewer if choice else None
        comparison.final_at = timezone.now() if choice else None
        comparison.save(update_fields=["final_choice", "final_by", "final_at"])
        ComparisonAudit.objects.create(
            comparison=comparison,
            actor=reviewer,
            action="final_choice",
            before=before,
            after=_decision_state(comparison),
        )
    return comparison


def comparison_set_gold(*, admin: AbstractBaseUser, comparison_id: int, choice: str) -> Comparison:
    """Make a comparison a gold item with a known answer, or (with "") a regular one again.

    Gold items are shown to every annotator once (no k limit); their labels measure each
    annotator's accuracy. Audited. The caller checks that `admin` administers the project.
    """
    _choice_or_blank(choice, "gold_choice")
    with transaction.atomic():
        comparison = Comparison.objects.select_for_update().get(pk=comparison_id)
        before = _decision_state(comparison)
        if choice:
            comparison.kind = Comparison.Kind.GOLD
            comparison.gold_choice = choice
            if comparison.status == Comparison.Status.COMPLETE:
                comparison.status = Comparison.Status.OPEN
        else:
            if comparison.kind != Comparison.Kind.GOLD:
                return comparison
            comparison.kind = Comparison.Kind.REGULAR
            comparison.gold_choice = ""
            if (
                comparison.status == Comparison.Status.OPEN
                and comparison.label_count >= comparison.required_labels
            ):
                comparison.status = Comparison.Status.COMPLETE
        if _decision_state(comparison) == before:
            return comparison
        comparison.full_clean()
        comparison.save(update_fields=["kind", "gold_choice", "status"])
        ComparisonAudit.objects.create(
            comparison=comparison,
            actor=admin,
            action="gold",
            before=before,
            after=_decision_state(comparison),
        )
    return comparison
