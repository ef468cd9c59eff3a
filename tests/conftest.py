"""Shared fixtures. Django is imported inside them, so that `training/ml` tests can run
without Django (`pytest tests/training/ml -p no:django`), as on a bare GPU worker."""

from __future__ import annotations

import pytest

PROMPTS = [
    {"prompt": "Say hello.", "split": "train"},
    {"prompt": "Name a colour.", "split": "train"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]},
    {"prompt": "Count to three.", "split": "eval"},
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from training.ml.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def make(username: str, **fields):
        return get_user_model().objects.create_user(username=username, password="pw", **fields)

    return make


@pytest.fixture
def project(db, tmp_path, settings):
    from feedback.services import project_create, prompts_import

    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    project = project_create(slug="demo", name="Demo", base_model="unused-in-this-test")
    prompts_import(project=project, records=PROMPTS, source="test")
    return project


@pytest.fixture
def annotator(make_user, project):
    from feedback.services import membership_set

    user = make_user("ann")
    membership_set(project=project, user=user, role="annotator")
    return user


@pytest.fixture
def reviewer(make_user, project):
    from feedback.services import membership_set

    user = make_user("rev")
    membership_set(project=project, user=user, role="reviewer")
    return user


@pytest.fixture
def admin_member(make_user, project):
    from feedback.services import membership_set

    user = make_user("boss")
    membership_set(project=project, user=user, role="admin")
    return user


@pytest.fixture
def token_client():
    """A client that authenticates like a script: with an API token header."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(user) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make
