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


# --- An S3-compatible artifact store ------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> str:
    """A real S3-compatible server: moto's standalone server in a process of its own, on a
    free port of 127.0.0.1. Hone reaches it over HTTP through django-storages and boto3 as it
    reaches AWS S3 or MinIO; nothing in the test process is patched. Returns its URL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on {url}") from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def settings_with(monkeypatch):
    """config/settings/base.py run afresh as a module of its own with the given environment
    variables (on top of the test process's): the settings a process started with them gets."""
    import importlib.util
    from pathlib import Path

    def load(**variables: str):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        path = Path(__file__).resolve().parents[1] / "config" / "settings" / "base.py"
        spec = importlib.util.spec_from_file_location("hone_settings_under_test", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def s3_store(s3_server, settings_with, settings, tmp_path, monkeypatch):
    """Artifacts in a new bucket of the S3 server (under the prefix "hone"), with the
    settings that config/settings/base.py builds from HONE_ARTIFACT_STORAGE=s3 and its
    variables. The test process is worker 1, its cache under tmp_path/worker-1."""
    import uuid
    from pathlib import Path
    from types import SimpleNamespace

    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "hone-test",
        "AWS_SECRET_ACCESS_KEY": "hone-test-secret",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"hone-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    configured = settings_with(
        HONE_ARTIFACT_STORAGE="s3",
        HONE_S3_BUCKET=bucket,
        HONE_S3_ENDPOINT_URL=s3_server,
        HONE_S3_REGION="us-east-1",
        HONE_S3_ADDRESSING_STYLE="path",
        HONE_S3_PREFIX="hone",
    )
    settings.STORAGES = configured.STORAGES
    settings.ARTIFACT_CACHE = tmp_path / "worker-1"

    def object_keys() -> list[str]:
        listed = client.list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def cache_of(worker: str) -> Path:
        """Be another worker from now on: its own, empty cache."""
        settings.ARTIFACT_CACHE = tmp_path / worker
        return settings.ARTIFACT_CACHE

    return SimpleNamespace(
        client=client, bucket=bucket, url=s3_server, object_keys=object_keys, cache_of=cache_of
    )
