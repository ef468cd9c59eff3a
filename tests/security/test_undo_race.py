"""Undo racing a resubmit of the same lease: both lock the lease row first, so one of them goes
first and the other sees what it did. Never an error, never a label returned that the final
state contradicts.

Two threads, each on its own database connection, released together by a barrier, many
rounds. Either the undo goes first (the resubmit stores the new choice on the lease, active
again) or the resubmit does (a double submit: it returns the standing label, which the undo
then withdraws, and the lease is active again)."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection

from feedback.models import Assignment, Comparison, PreferenceLabel
from feedback.services import assignment_next, label_submit, label_undo
from tests.factories import make_comparisons

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="row locks between connections: PostgreSQL (SQLite serialises every writer)",
    ),
]
ROUNDS = 40


def _race(*calls):
    """Run each call in its own thread and connection, all released at once; returns
    (result or exception) per call."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def worker(i, call):
        try:
            barrier.wait()
            outcomes[i] = call()
        except Exception as error:  # the assertion below names it
            outcomes[i] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_undo_racing_a_resubmit_of_the_same_lease(project, annotator):
    project.labels_per_comparison = 1
    project.save()
    comparisons = make_comparisons(project, [(f"a{i}", f"b{i}") for i in range(ROUNDS)])
    orders = {"undo first": 0, "resubmit first": 0}

    for comparison in comparisons:
        lease = assignment_next(project=project, user=annotator)
        assert lease.comparison_id == comparison.pk
        first = label_submit(user=annotator, assignment_id=lease.pk, choice="a")

        undone, resubmitted = _race(
            lambda: label_undo(user=annotator, project=project),
            lambda lease=lease: label_submit(user=annotator, assignment_id=lease.pk, choice="b"),
        )

        assert isinstance(undone, PreferenceLabel), repr(undone)
        assert isinstance(resubmitted, PreferenceLabel), repr(resubmitted)
        assert undone.pk == first.pk
        lease.refresh_from_db()
        comparison.refresh_from_db()
        standing = list(
            PreferenceLabel.objects.filter(comparison=comparison, withdrawn_at__isnull=True)
        )
        assert PreferenceLabel.objects.get(pk=first.pk).withdrawn_at is not None
        if resubmitted.pk == first.pk:  # a double submit, answered before the undo
            orders["resubmit first"] += 1
            assert resubmitted.choice == "a"
            assert standing == []
            assert lease.status == Assignment.Status.ACTIVE
            assert (comparison.label_count, comparison.status) == (0, Comparison.Status.OPEN)
            # The lease is the annotator's again: label it, as the page offers.
            label_submit(user=annotator, assignment_id=lease.pk, choice="b")
        else:
            orders["undo first"] += 1
            assert standing == [resubmitted]
            assert (resubmitted.choice, resubmitted.assignment_id) == ("b", lease.pk)
            assert lease.status == Assignment.Status.SUBMITTED
            assert (comparison.label_count, comparison.status) == (1, Comparison.Status.COMPLETE)

    assert sum(orders.values()) == ROUNDS
    assert PreferenceLabel.objects.filter(withdrawn_at__isnull=True, choice="b").count() == ROUNDS
