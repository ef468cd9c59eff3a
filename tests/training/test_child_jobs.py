"""Training stages as child processes the worker supervises (training/jobs/child.py): real
processes started by the same code the worker runs, on the tiny model."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from feedback.services import project_settings_set
from tests.factories import one_label_to_train_on
from training import jobs, services
from training.models import LoopIteration, RewardModelVersion, TrainingRun

# Each test launches real processes; none may hang the suite.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def child_processes(settings):
    settings.HONE_TRAINING_JOBS = "process"
    settings.HONE_JOB_TERMINATE_SECONDS = 5.0


@pytest.fixture
def iteration(project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return services.iteration_start(project=project, trigger="manual")


def job_children() -> list[int]:
    """Pids of this process's children that run a training job."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and b"training.ml.job" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def kill_first_job(after_seconds: float, killed: list[int]) -> threading.Thread:
    """A thread that SIGKILLs the first job child's process group once it has run a while."""

    def kill() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pids = job_children()
            if pids:
                time.sleep(after_seconds)
                os.killpg(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.1)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_reward_stage_runs_as_a_child_and_its_metrics_reach_the_run(
    child_processes, project, annotator, iteration, tiny_model_dir
):
    one_label_to_train_on(project, annotator, tiny_model_dir)

    jobs.iteration_run(iteration=iteration)

    run = TrainingRun.objects.get(iteration=iteration, kind="reward")
    assert run.status == "succeeded", run.error
    assert "reward job launched as pid" in run.log_tail
    assert run.config["launch"] == {"processes": 1, "accelerate_config": None}
    assert run.metrics.filter(values__has_key="heldout_pairs").count() == 1
    assert RewardModelVersion.objects.filter(training_run=run).count() == 1
    assert job_children() == []


def test_two_processes_write_one_result_and_one_line_per_report(
    child_processes, project, annotator, iteration, tiny_model_dir
):
    one_label_to_train_on(
        project, annotator, tiny_model_dir, training_config={"launch": {"processes": 2}}
    )

    jobs.iteration_run(iteration=iteration)

    run = TrainingRun.objects.get(iteration=iteration, kind="reward")
    assert run.status == "succeeded", run.error
    assert "(2 processes)" in run.log_tail
    steps = [m.values.get("step") for m in run.metrics.all() if "loss" in m.values]
    assert len(steps) == len(set(steps))  # rank 0 reports; rank 1 does not repeat it
    assert run.metrics.filter(values__has_key="heldout_pairs").count() == 1


def test_a_killed_child_fails_the_run_with_its_last_lines_and_frees_the_loop(
    child_processes,
    project,
    annotator,
    iteration,
    tiny_model_dir,
    django_capture_on_commit_callbacks,
):
    one_label_to_train_on(project, annotator, tiny_model_dir)
    killed: list[int] = []
    killer = kill_first_job(after_seconds=1.0, killed=killed)

    jobs.iteration_run(iteration=iteration)
    killer.join()

    iteration.refresh_from_db()
    run = TrainingRun.objects.get(iteration=iteration, kind="reward")
    assert killed
    assert run.status == "failed"
    assert f"The reward job (pid {killed[0]}) was killed by SIGKILL without a result" in run.error
    assert "Its last lines:" in run.error
    assert iteration.status == LoopIteration.Status.FAILED
    assert RewardModelVersion.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=False):
        assert services.iteration_start(project=project, trigger="manual") is not None


@pytest.mark.django_db(transaction=True)
def test_a_cancel_terminates_the_job_and_its_processes(
    child_processes, project, annotator, tiny_model_dir, monkeypatch
):
    import training.jobs.runner

    monkeypatch.setattr(training.jobs.runner, "HEARTBEAT_SECONDS", 0.2)
    # Long enough to be cancelled while it trains (many passes over the one pair; minutes on
    # a loaded machine), short enough to end by itself should the cancel never come.
    one_label_to_train_on(
        project, annotator, tiny_model_dir, training_config={"reward": {"epochs": 5000}}
    )
    iteration = LoopIteration.objects.create(project=project, number=1, trigger="manual")
    seen: list[list[int]] = []

    def cancel() -> None:
        while not seen:
            try:
                run = TrainingRun.objects.filter(iteration=iteration, kind="reward").first()
                training = run is not None and run.metrics.exists()  # past its imports
                if training and job_children():
                    pids = job_children()
                    services.run_cancel(run=run)
                    seen.append(pids)
            finally:
                connection.close()
            time.sleep(0.2)

    canceller = threading.Thread(target=cancel, daemon=True)
    canceller.start()
    jobs.iteration_run(iteration=iteration)
    canceller.join()

    run = TrainingRun.objects.get(iteration=iteration, kind="reward")
    assert seen and seen[0]
    assert run.status == "cancelled"
    assert LoopIteration.objects.get(pk=iteration.pk).status == LoopIteration.Status.CANCELLED
    assert job_children() == []
    for pid in seen[0]:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_bad_input_ends_the_job_with_its_message(
    child_processes, project, annotator, iteration, tiny_model_dir, tmp_path
):
    one_label_to_train_on(project, annotator, tiny_model_dir)
    project.base_model = str(tmp_path / "no-such-model")
    project.save()

    jobs.iteration_run(iteration=iteration)

    run = TrainingRun.objects.get(iteration=iteration, kind="reward")
    assert run.status == "failed"
    assert "no-such-model" in run.error
    assert "Traceback" not in run.error


def test_an_accelerate_config_missing_on_the_worker_is_named(
    child_processes, project, annotator, iteration, tiny_model_dir
):
    one_label_to_train_on(
        project,
        annotator,
        tiny_model_dir,
        training_config={"launch": {"accelerate_config": "/etc/hone/missing-fsdp.yaml"}},
    )

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    assert iteration.status == LoopIteration.Status.FAILED
    assert "/etc/hone/missing-fsdp.yaml" in iteration.error


@pytest.mark.parametrize(
    ("launch", "named"),
    [
        ("8", "training_config.launch must be an object"),
        ({"processes": 0}, "training_config.launch.processes must be a whole number"),
        ({"processes": True}, "training_config.launch.processes must be a whole number"),
        ({"ppo": {"processes": "8"}}, "training_config.launch.ppo.processes must be a whole"),
        ({"accelerate_config": "fsdp.yaml"}, "must be the absolute path"),
        ({"ppo": 4}, "training_config.launch.ppo must be an object"),
        ({"gpus": 4}, "training_config.launch.gpus is not a launch setting"),
        ({"ppo": {"gpus": 4}}, "training_config.launch.ppo.gpus is not a launch setting"),
    ],
)
def test_bad_launch_settings_are_refused_naming_them(project, launch, named):
    with pytest.raises(ValidationError) as error:
        project_settings_set(project=project, values={"training_config": {"launch": launch}})

    assert named in str(error.value)
    project.refresh_from_db()
    assert project.training_config == {}


def test_good_launch_settings_are_kept(project):
    launch = {"processes": 2, "ppo": {"processes": 8, "accelerate_config": "/etc/hone/fsdp.yaml"}}
    project_settings_set(project=project, values={"training_config": {"launch": launch}})

    from training.jobs.child import Launch, launch_of

    project.refresh_from_db()
    assert launch_of(project, "ppo") == Launch(8, "/etc/hone/fsdp.yaml")
    assert launch_of(project, "reward") == Launch(2, None)
