"""Project.reward_length_control in the loop: an iteration trains its reward models with
length-balanced loss weights, and refuses labels that only ever prefer one length."""

from __future__ import annotations

from feedback.services import project_training_set
from tests.factories import labelled
from tests.training.test_loop import run_iteration
from training.models import TrainingRun


def test_an_iteration_trains_its_reward_model_with_length_control(
    loop_project, annotator, django_capture_on_commit_callbacks
):
    # the loop project's six labels prefer the shorter answer; these three the longer
    labelled(loop_project, annotator, [("no", "a longer answer that wins")] * 3, "b")
    project_training_set(
        project=loop_project,
        optimizer="ppo",
        restart_from="active",
        reward_length_control=True,
        sft_min_demonstrations=None,
    )

    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "done", iteration.error
    run = iteration.runs.get(kind=TrainingRun.Kind.REWARD)
    metrics = iteration.reward_model.metrics
    assert run.config["length_control"] is True
    assert run.summary["length_control"] is metrics["length_control"] is True
    assert 0 < metrics["length_effective_pairs"] < metrics["train_pairs"]
    assert 0 < metrics["train_labels_pick_shorter"] < 1
    assert metrics["heldout_picks_shorter"] is not None


def test_length_control_fails_an_iteration_whose_labels_only_prefer_one_length(
    loop_project, django_capture_on_commit_callbacks
):
    project_training_set(
        project=loop_project,
        optimizer="ppo",
        restart_from="active",
        reward_length_control=True,
        sft_min_demonstrations=None,
    )

    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "failed"
    assert (
        "length control leaves no pair to learn from: the chosen answer is the shorter one in "
        "every training pair, and no pair has answers of equal length" in iteration.error
    )
    assert not iteration.reward_model_id
    assert iteration.runs.get(kind=TrainingRun.Kind.REWARD).status == "failed"
