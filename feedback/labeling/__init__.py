"""The rules of the labeling path, once: leasing the next comparison and storing a label.

They are written as SQL statements (sql.py) and the little logic between them (steps.py), as
generators that yield (sql, params) and receive the rows back; `run` drives them on a DB-API
cursor (Django's connection), and the caller owns the transaction (a generator never commits).
On SQLite, feedback.services runs the generators; on PostgreSQL the same statements and logic
run inside two PL/pgSQL functions built from them (functions.py), called by feedback.services
and by the fast path (the ASGI app of api/fastpath.py). What a new label stores is declared once,
in columns.py, with the list of what to change with it.

Assignment rules (see feedback.services.assignment_next): the annotator's own unexpired lease
first; a consistency repeat at the project's repeat rate; gold items at the project's gold rate;
then the highest priority, oldest first. A regular comparison collects k labels from k
different annotators and is never leased to more annotators at once than it still needs.
An expired lease frees its place; its own annotator may get the item back, and the lease
row is then renewed in place (same side shown left). Only an active member of the project
leases or labels: the statements check it on every request (sql.MEMBER and the
`annotator_is_member` condition of the submit statements).

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

from feedback.labeling.functions import (
    FUNCTIONS_INSTALL,
    RAISED,
    label_call,
    lease_call,
    submitted_of,
)
from feedback.labeling.sql import LEASE_COLUMNS, REPEAT_GAP
from feedback.labeling.steps import (
    Lease,
    ProjectRules,
    Submitted,
    label_state,
    label_steps,
    lease_of,
    lease_steps,
    run,
)

__all__ = [
    "FUNCTIONS_INSTALL",
    "LEASE_COLUMNS",
    "RAISED",
    "REPEAT_GAP",
    "Lease",
    "ProjectRules",
    "Submitted",
    "label_call",
    "label_state",
    "label_steps",
    "lease_call",
    "lease_of",
    "lease_steps",
    "run",
    "submitted_of",
]
