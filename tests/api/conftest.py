from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.fixture
def outsider(make_user, db):
    """A member of another project only."""
    from feedback.services import membership_set, project_create

    other = project_create(slug="other", name="Other", base_model="unused")
    user = make_user("outsider")
    membership_set(project=other, user=user, role="admin")
    return user


@pytest.fixture
def users(annotator, reviewer, admin_member, outsider):
    return {
        "annotator": annotator,
        "reviewer": reviewer,
        "admin": admin_member,
        "outsider": outsider,
        "anonymous": None,
    }


@pytest.fixture
def token_client():
    """A client that authenticates like a script: with an API token header."""

    def make(user) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make
