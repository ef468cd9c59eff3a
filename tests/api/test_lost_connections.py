"""A restart of PostgreSQL ends every pooled connection of the web processes; each is found
dead only when next used. The next request must still be answered, by the fast path and by
Django (PostgreSQL only: the tests end the backends the way a restart does)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError, connection

from api import fastpath
from feedback.models import Project
from tests.api.test_fastpath import NEXT, Caller, as_json, run
from tests.factories import backends_end, make_comparisons

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="ends PostgreSQL backends",
    ),
]


def database_restart() -> int:
    """Ends every backend of the test database, as a restart does; returns how many. This
    thread's connection goes back to Django's pool first, and ends there."""
    connection.close()
    return backends_end()


def test_the_fast_path_answers_after_the_database_restarts(project, annotator):
    make_comparisons(project, [("x", "y"), ("z", "w")])
    caller = Caller(None, user=annotator)

    async def scenario(app):
        caller.app = app
        first = await caller.post(NEXT)  # opens the fast path's pool
        ended = await sync_to_async(database_restart)()
        again = await caller.post(NEXT)
        return first, ended, again

    (first, ended, again), served = run("fast", scenario)

    assert ended >= 1
    assert (first[0], again[0]) == (200, 200)
    assert as_json(again[2]) == as_json(first[2])  # the same lease, asked again
    assert served == {"next": 2}


def test_django_answers_after_the_database_restarts(project):
    assert database_restart() >= 1

    assert Project.objects.get(slug="demo") == project


def test_a_lookup_that_fails_on_the_database_goes_to_django(project, annotator, monkeypatch):
    make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)
    lookups = []

    def connection_lost(session_key):
        lookups.append(session_key)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(fastpath, "_session_user", connection_lost)

    async def scenario(app):
        caller.app = app
        return await caller.post(NEXT), await caller.post(NEXT)

    (first, second), served = run("fast", scenario)

    assert (first[0], second[0]) == (200, 200)
    assert as_json(first[2]) == as_json(second[2])
    assert served == {"django": 2}
    assert len(lookups) == 2  # a failed lookup is not remembered
