"""The API as a contract: Schemathesis generates requests from the OpenAPI schema and checks
that no response is a server error and every response matches the schema.

Bounded for CI: a few examples per operation, no example database, requests go straight to
the WSGI application (no server). The project's slug is fixed to a real project where the
admin's token works, so generated requests reach the handlers instead of stopping at 404.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import make_comparisons

MAX_EXAMPLES = 12


def _load_schema():
    from django.core.wsgi import get_wsgi_application

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


# Loaded at collection (pytest-django has set Django up by then); the schema view needs no
# database. schemathesis.pytest.from_fixture would defer this, but it does not run on pytest 9.
schema = _load_schema()


@pytest.fixture(autouse=True)
def contract_world(project, admin_member, annotator, settings):
    """Data for requests to land on, no throttling, and the test transaction kept open."""
    from feedback.services import assignment_next, label_submit

    make_comparisons(project, [("one", "two"), ("three", "four")])
    assignment = assignment_next(project=project, user=annotator)
    label_submit(user=annotator, assignment_id=assignment.pk, choice="a")
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": [],  # fuzzing sends many requests on purpose
    }
    # As Django's test client does: a request must not close the test's open transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(admin_member) -> str:
    return Token.objects.get_or_create(user=admin_member)[0].key


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_matches_its_schema(case, admin_token):
    if "slug" in (case.path_parameters or {}):
        case.path_parameters["slug"] = "demo"
    case.call_and_validate(
        headers={"Authorization": f"Token {admin_token}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
