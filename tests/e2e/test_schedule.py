"""The loop's schedule end to end: a real `celery beat` (django-celery-beat's DatabaseScheduler,
as production runs it) sends the project's scheduled start, a real worker of the light queue
runs it, and the iteration it starts waits on the gpu queue for a GPU worker.

The loop page sets a cron expression, whose finest step is a minute. So that a test does not
wait for the next minute, the schedule is set through the product's service and then given a
start date and time of now in django-celery-beat's admin page, as an admin could:
django-celery-beat sends a task that has a start time and has never run as soon as that time
has come, then on its cron. A start at the next minute, should a test last that long, finds the
first iteration still running (no worker consumes the gpu queue here) and starts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from config.celery import app as celery_app
from feedback.models import AuditEvent
from tests.e2e.conftest import ROOT, celery_environment
from tests.e2e.test_loop import wait_for
from training import services
from training.broker import broker_messages_held
from training.models import LoopIteration

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

START = "training.tasks.iteration_start_task"
ITERATE = "training.tasks.loop_iteration_task"


@pytest.fixture
def celery_processes(broker, settings, tmp_path):
    """start(*celery arguments) -> a `celery -A config ...` process against the test database
    and the test Redis; every one is stopped (SIGTERM, then SIGKILL after 15 s) at the end of
    the test, and its log printed."""
    started: list[tuple[subprocess.Popen, Path]] = []
    env = celery_environment(broker, settings, OMP_NUM_THREADS="1")

    def start(*arguments: str) -> subprocess.Popen:
        log_path = tmp_path / f"celery-{len(started)}-{arguments[0]}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", *arguments],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log_path))
        return process

    yield start
    for process, _ in started:
        process.terminate()
    for process, log_path in started:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        print(f"--- {log_path.name}\n{log_path.read_text()[-3000:]}")


@pytest.fixture
def beat_and_light_worker(celery_processes):
    """The beat, and one worker of the light queue (`-Q default`, as the README runs it), once
    it answers a ping. No worker consumes the gpu queue."""

    def start() -> None:
        celery_processes("beat", "--loglevel", "INFO", "--max-interval", "1")
        worker = celery_processes(
            "worker", "-Q", "default", "--pool", "solo", "-n", f"light-{os.getpid()}@%h",
            "--loglevel", "INFO",
        )  # fmt: skip
        wait_for(
            lambda: worker.poll() is not None or celery_app.control.ping(timeout=1.0),
            120,
            "the worker to answer a ping",
        )
        assert worker.poll() is None, "the worker stopped"

    return start


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw"))
    return client


def start_now_in_the_admin(client, project) -> None:
    """Save the project's schedule task in django-celery-beat's admin page with its start
    date and time set to now, every other field as it was."""
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name=f"hone-loop-{project.slug}")
    now = timezone.localtime()
    response = client.post(
        f"/admin/django_celery_beat/periodictask/{task.pk}/change/",
        {
            "name": task.name,
            "regtask": task.task,
            "task": "",
            "enabled": "on",
            "description": "",
            "interval": "",
            "crontab": task.crontab_id,
            "solar": "",
            "clocked": "",
            "start_time_0": now.strftime("%Y-%m-%d"),
            "start_time_1": now.strftime("%H:%M:%S"),
            "args": task.args,
            "kwargs": task.kwargs,
            "expires_0": "",
            "expires_1": "",
            "expire_seconds": "",
            "queue": "",
            "exchange": "",
            "routing_key": "",
            "priority": "",
            "headers": task.headers,
        },
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    task.refresh_from_db()
    assert (task.start_time is not None, task.crontab.minute, task.last_run_at) == (True, "*", None)


def scheduled_starts_done() -> int:
    """How many scheduled starts the worker has run to the end: it took them (its counts), and
    the broker holds none (a message is acknowledged when its task ends)."""
    replies = celery_app.control.inspect(timeout=1.0).stats() or {}
    taken = sum(stats["total"].get(START, 0) for stats in replies.values())
    held = broker_messages_held() or set()
    return 0 if any(name == START for name, _ in held) else taken


def iterations(project) -> list[tuple[int, str]]:
    return list(
        LoopIteration.objects.filter(project=project)
        .order_by("number")
        .values_list("number", "trigger")
    )


def test_the_beat_starts_one_iteration_on_schedule(
    project, superuser_client, beat_and_light_worker
):
    services.loop_schedule_set(project=project, cron="* * * * *")
    start_now_in_the_admin(superuser_client, project)

    beat_and_light_worker()
    iteration = wait_for(
        lambda: LoopIteration.objects.filter(project=project).first(),
        90,
        "the scheduled iteration",
    )
    wait_for(scheduled_starts_done, 30, "the worker to end the scheduled start")

    assert iterations(project) == [(1, "schedule")]
    assert (ITERATE, (iteration.pk,)) in broker_messages_held()  # waiting for a GPU worker
    assert list(
        AuditEvent.objects.filter(action=AuditEvent.Action.ITERATION_START).values_list(
            "actor", "after"
        )
    ) == [(None, {"policy": None, "status": "collecting", "trigger": "schedule"})]


def test_the_schedule_starts_nothing_while_an_iteration_runs(
    project, superuser_client, beat_and_light_worker
):
    running = services.iteration_start(project=project, trigger="manual")
    services.loop_schedule_set(project=project, cron="* * * * *")
    start_now_in_the_admin(superuser_client, project)

    beat_and_light_worker()
    wait_for(scheduled_starts_done, 90, "the worker to end the scheduled start")

    assert iterations(project) == [(1, "manual")]
    assert LoopIteration.objects.get(pk=running.pk).status == LoopIteration.Status.COLLECTING
    assert (ITERATE, (running.pk,)) in broker_messages_held()
