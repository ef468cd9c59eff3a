"""Workers that die: a real worker is killed with SIGKILL in the middle of a job, the broker
may lose what it held (the demo's private Redis keeps nothing), and a new worker takes over.

The tiny model samples long answers one at a time, so a generation run is still running when
the worker is killed; the project is then set to short answers, so that what the new worker
runs ends in seconds.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.core.management import call_command
from django.utils import timezone

from feedback.models import Project
from feedback.services import project_create, prompts_import
from tests.e2e.test_loop import wait_for
from tests.factories import TINY_TRAINING, make_comparisons
from training import jobs, services, tasks
from training.broker import broker_messages_held
from training.models import LoopIteration, TrainingRun
from training.selectors import comparisons_open

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROMPTS = [{"prompt": f"Tell me a long story about topic number {i}."} for i in range(6)]
# Heartbeats every second; a run is never stale here: only a dead process makes it lost.
WORKER = {"HONE_HEARTBEAT_SECONDS": "1", "HONE_RUN_STALE_SECONDS": "3600"}
GENERATE = "training.tasks.generate_comparisons_task"
ITERATE = "training.tasks.loop_iteration_task"


def slow_project(slug: str, model_dir: str) -> Project:
    project = project_create(
        slug=slug,
        name=slug,
        base_model=model_dir,
        max_new_tokens=200,
        comparisons_per_iteration=6,
        training_config={**TINY_TRAINING, "generate": {"batch_size": 1}},
        # A tiny random model: these tests are about the mechanics, not the candidate.
        gate_min_win_rate=0.0,
        gate_max_empty_rate=1.0,
        gate_max_repetition=1.0,
        gate_judge_min_win_rate=None,  # the judge gate has tests of its own (test_judge.py)
    )
    prompts_import(project=project, records=PROMPTS, source=slug)
    return project


def answers_short(project: Project) -> None:
    Project.objects.filter(pk=project.pk).update(max_new_tokens=4, training_config=TINY_TRAINING)


def sampling(run: TrainingRun) -> TrainingRun:
    """The run once it has sampled its first answer: it is well inside its job."""
    return wait_for(
        lambda: (
            TrainingRun.objects.filter(pk=run.pk, status="running", metrics__isnull=False)
            .distinct()
            .first()
        ),
        240,
        f"run {run.pk} to sample",
    )


def kill(worker) -> None:
    worker.kill()  # SIGKILL: no cleanup, no goodbye
    worker.wait(timeout=30)


def ended(run: TrainingRun, seconds: float = 240) -> TrainingRun:
    return wait_for(
        lambda: (
            TrainingRun.objects.exclude(status__in=["queued", "running"]).filter(pk=run.pk).first()
        ),
        seconds,
        f"run {run.pk} to end",
    )


def test_a_run_of_a_killed_worker_fails_at_once_and_comparisons_are_queued_again(
    start_worker, tiny_model_dir
):
    first = start_worker(**WORKER)
    project = slow_project("killed", tiny_model_dir)
    run = sampling(jobs.generation_queue(project=project))
    kill(first)
    answers_short(project)
    restarted_at = timezone.now()

    start_worker(**WORKER)

    run = ended(run, seconds=60)
    assert run.status == "failed"
    assert run.error.startswith(f"The worker {run.worker} is gone: its process no longer exists")
    # It ran until its last heartbeat, not until a new worker found it.
    assert run.started_at < run.finished_at == run.heartbeat_at < restarted_at
    again = TrainingRun.objects.exclude(pk=run.pk).get(project=project)
    assert again.log_tail.startswith(
        "Queued by the loop (a worker started): v0 is 6 open comparisons short.\n"
    )
    again = ended(again)
    assert (again.status, again.iteration) == ("succeeded", None)
    assert comparisons_open(project=project).count() == again.summary["comparisons"] >= 1


def test_an_iteration_whose_message_was_lost_resumes_on_a_new_worker(
    broker, start_worker, tiny_model_dir
):
    first = start_worker(**WORKER)
    project = slow_project("lost-iteration", tiny_model_dir)
    make_comparisons(project, [("ok", "a much longer answer")] * 4)
    call_command("simulate_annotators", project=project.slug, labels=4, preference="shorter")
    generation = sampling(jobs.generation_queue(project=project))
    iteration = services.iteration_start(project=project, trigger="manual")
    assert (ITERATE, (iteration.pk,)) in broker_messages_held()  # behind the generation run
    kill(first)
    redis.Redis.from_url(broker).flushdb()  # the private Redis restarted: nothing was kept
    answers_short(project)

    start_worker(**WORKER)

    wait_for(
        lambda: not LoopIteration.objects.get(pk=iteration.pk).is_running,
        900,  # generous: four child processes on a loaded CI machine
        "the iteration to finish",
    )
    iteration.refresh_from_db()
    generation.refresh_from_db()
    runs = list(iteration.runs.order_by("id").values_list("kind", "status"))
    assert iteration.status == "done", (iteration.error, iteration.evaluation, runs)
    assert runs == [
        ("reward", "succeeded"),
        ("ppo", "succeeded"),
        ("evaluate", "succeeded"),
        ("generate", "succeeded"),
    ]
    assert generation.status == "failed"


def test_queued_runs_whose_message_was_lost_are_sent_again(broker, start_worker, tiny_model_dir):
    first = start_worker(**WORKER)
    project = slow_project("lost-run", tiny_model_dir)
    running = sampling(jobs.generation_queue(project=project))
    waiting = jobs.generation_queue(project=project)  # queued behind it
    kill(first)
    redis.Redis.from_url(broker).flushdb()
    answers_short(project)

    # A new worker sends it again as it starts.
    start_worker(**WORKER)

    waiting = ended(waiting)
    assert waiting.status == "succeeded"
    assert "Sent to the workers again: the broker had lost its message.\n" in waiting.log_tail
    assert ended(running).status == "failed"

    # The beat: a run whose message the broker lost while every worker lived.
    lost = services.run_create(project=project, kind="generate", config={})
    TrainingRun.objects.filter(pk=lost.pk).update(queued_at=timezone.now() - timedelta(minutes=10))
    tasks.runs_resend_lost_task()
    assert ended(lost).status == "succeeded"
    assert TrainingRun.objects.filter(project=project).count() == 3


def test_only_what_the_broker_lost_is_sent_again(broker, tiny_model_dir):
    project = slow_project("resend", tiny_model_dir)
    long_ago = timezone.now() - timedelta(minutes=10)
    sent = jobs.generation_queue(project=project)  # its message went to the broker
    lost = services.run_create(project=project, kind="generate", config={})
    fresh = services.run_create(project=project, kind="generate", config={})
    TrainingRun.objects.filter(pk__in=[sent.pk, lost.pk]).update(queued_at=long_ago)

    resent = services.runs_resend_lost(older_than_seconds=60)

    assert [r.pk for r in resent] == [lost.pk]
    assert broker_messages_held() == {(GENERATE, (sent.pk,)), (GENERATE, (lost.pk,))}
    assert services.runs_resend_lost(older_than_seconds=60) == []
    fresh.refresh_from_db()
    assert (fresh.status, fresh.log_tail) == ("queued", "")


def test_only_iterations_nobody_will_carry_on_are_queued_again(broker, tiny_model_dir):
    def waiting_iteration(slug: str, status: str) -> LoopIteration:
        project = slow_project(slug, tiny_model_dir)
        return LoopIteration.objects.create(
            project=project, number=1, trigger="manual", status=status
        )

    lost = waiting_iteration("lost", "reward")
    waiting_iteration("approval", "awaiting_approval")
    working = waiting_iteration("working", "ppo")
    TrainingRun.objects.create(
        project=working.project, iteration=working, kind="ppo", status="running"
    )

    resumed = services.iterations_resume_lost()

    assert [i.pk for i in resumed] == [lost.pk]
    assert broker_messages_held() == {(ITERATE, (lost.pk,))}
    assert services.iterations_resume_lost() == []
