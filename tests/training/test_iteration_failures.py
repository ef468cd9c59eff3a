"""A failing iteration leaves its run marked failed, its error visible, the policy unchanged."""

from __future__ import annotations

import pytest

from tests.factories import one_label_to_train_on
from training import jobs, services
from training.models import LoopIteration, PolicyVersion, RewardModelVersion, TrainingRun


@pytest.fixture
def iteration(project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return services.iteration_start(project=project, trigger="manual")


def active_numbers(project) -> list[int]:
    return list(
        PolicyVersion.objects.filter(project=project, status="active").values_list(
            "number", flat=True
        )
    )


def test_iteration_without_usable_labels_fails_with_its_reason(project, iteration):
    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    assert iteration.status == LoopIteration.Status.FAILED
    assert "no comparison with a preference" in iteration.error
    assert active_numbers(project) == [0]


def test_crash_inside_training_marks_the_run_failed(
    project, annotator, iteration, tiny_model_dir, monkeypatch
):
    import training.ml.reward

    one_label_to_train_on(project, annotator, tiny_model_dir)

    def crash(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(training.ml.reward, "train_reward", crash)

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    run = TrainingRun.objects.get(iteration=iteration)
    assert iteration.status == LoopIteration.Status.FAILED
    assert (run.kind, run.status) == ("reward", "failed")
    assert "RuntimeError: CUDA out of memory (simulated)" in run.error
    assert RewardModelVersion.objects.count() == 0
    assert active_numbers(project) == [0]
    assert not list((services.artifact_path(f"projects/{project.pk}")).glob("reward/*"))


def test_unknown_training_setting_is_named(project, annotator, iteration, tiny_model_dir):
    one_label_to_train_on(
        project, annotator, tiny_model_dir, training_config={"reward": {"learning_rat": 0.1}}
    )

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    assert iteration.status == LoopIteration.Status.FAILED
    assert "learning_rat" in iteration.error
    assert active_numbers(project) == [0]


def test_a_row_that_cannot_be_written_takes_its_adapter_away(project, settings, tmp_path):
    from training.jobs.runner import artifact_publish as _publish_artifact

    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    tmp = tmp_path / "work" / "adapter"
    tmp.mkdir(parents=True)
    (tmp / "adapter_config.json").write_text("{}")

    def register(relative: str):
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        _publish_artifact(tmp, "projects/1/policies/iteration-9", register)

    assert not services.artifact_path("projects/1/policies/iteration-9").exists()
    assert PolicyVersion.objects.count() == 1  # version 0 only


def test_a_second_delivery_leaves_a_step_running_elsewhere_alone(
    project, annotator, iteration, tiny_model_dir
):
    from django.utils import timezone

    one_label_to_train_on(project, annotator, tiny_model_dir)
    services.iteration_advance(iteration=iteration, status="reward", expected="collecting")
    elsewhere = TrainingRun.objects.create(
        project=project,
        iteration=iteration,
        kind="reward",
        status="running",
        worker="gpu-box-2:4242",
        heartbeat_at=timezone.now(),
    )

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    assert iteration.status == "reward"
    assert list(TrainingRun.objects.filter(iteration=iteration)) == [elsewhere]


def test_the_broker_keeps_a_running_job_s_message_longer_than_any_job_runs(settings):
    from training.tasks import ITERATION_TIME_LIMIT

    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > ITERATION_TIME_LIMIT
