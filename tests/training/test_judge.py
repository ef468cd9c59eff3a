"""The independent judge: a reward model on the eval prompts' labels, which the policy's reward
model never sees, judges each candidate; the gap between the two is over-optimization."""

from __future__ import annotations

import pytest

from feedback.models import Comparison, Prompt
from feedback.services import assignment_next, label_submit
from tests.factories import TINY_TRAINING, make_comparisons
from training import jobs, services
from training.gates import gate_rejection, gate_report
from training.models import LoopIteration, RewardModelVersion

TRAIN_ANSWERS = [("ok", "a much longer and wordier answer")] * 6
EVAL_ANSWERS = [("fine", "a rambling answer that goes on and on")] * 4


def label_all(project, annotator, choice="a"):
    while (assignment := assignment_next(project=project, user=annotator)) is not None:
        label_submit(user=annotator, assignment_id=assignment.pk, choice=choice)


@pytest.fixture
def judged_project(project, annotator, tiny_model_dir):
    project.base_model = tiny_model_dir
    project.max_new_tokens = 12
    project.comparisons_per_iteration = 4
    project.training_config = TINY_TRAINING
    project.gate_min_win_rate = 0.0  # a tiny random model's win rate is a coin toss
    project.gate_judge_min_win_rate = 0.0  # ... and so is its judge's: the test is the wiring
    project.gate_max_overoptimization = 1.0
    project.judge_min_pairs = 4
    project.save()
    return project


def run_iteration(project, django_capture_on_commit_callbacks) -> LoopIteration:
    with django_capture_on_commit_callbacks(execute=False):
        iteration = services.iteration_start(project=project, trigger="manual")
    jobs.iteration_run(iteration=iteration)
    iteration.refresh_from_db()
    return iteration


def test_the_judge_never_sees_the_policy_reward_models_labels(judged_project, annotator):
    make_comparisons(judged_project, TRAIN_ANSWERS)
    make_comparisons(judged_project, EVAL_ANSWERS, split="eval")
    label_all(judged_project, annotator)
    first = services.snapshot_create(project=judged_project, name="one")
    first_judge = services.judge_snapshot_create(project=judged_project, name="one-judge")
    make_comparisons(judged_project, TRAIN_ANSWERS[:2])
    make_comparisons(judged_project, EVAL_ANSWERS[:2], split="eval")
    label_all(judged_project, annotator, choice="b")
    second = services.snapshot_create(project=judged_project, name="two")
    second_judge = services.judge_snapshot_create(project=judged_project, name="two-judge")

    policy_labels = set(first.label_ids) | set(second.label_ids)
    judge_labels = set(first_judge.label_ids) | set(second_judge.label_ids)
    assert (len(first.label_ids), len(second.label_ids)) == (6, 8)
    assert (len(first_judge.label_ids), len(second_judge.label_ids)) == (4, 6)
    assert policy_labels.isdisjoint(judge_labels)
    splits = {c.prompt.split for c in Comparison.objects.filter(labels__in=judge_labels)}
    assert splits == {Prompt.Split.EVAL}
    assert (first_judge.counts["split"], first.counts["split"]) == ("eval", "train")


def test_no_judge_until_enough_eval_pairs(judged_project, annotator):
    make_comparisons(judged_project, EVAL_ANSWERS[:3], split="eval")
    label_all(judged_project, annotator)

    assert services.judge_snapshot_create(project=judged_project, name="few") is None


EVALUATION = {
    "win_rate": 0.9,
    "kl_to_base_mean": 1.0,
    "candidate": {"empty_rate": 0.0, "repetition_rate": 0.0},
    "judge": {"win_rate": 0.4},
    "overoptimization_gap": 0.5,
}


def test_a_gap_beyond_the_limit_rejects_as_gaming(project):
    report = gate_report(project=project, evaluation=EVALUATION)

    assert report["passed"] is False
    assert report["judge"] == "judged"
    assert [g["name"] for g in report["gates"] if not g["passed"]] == [
        "judge win rate",
        "over-optimization gap",
    ]
    assert "The candidate games its reward model" in gate_rejection(report)


def test_the_judge_gate_passes_an_honest_candidate(project):
    honest = {**EVALUATION, "judge": {"win_rate": 0.8}, "overoptimization_gap": 0.1}

    report = gate_report(project=project, evaluation=honest)

    assert (report["passed"], report["judge"]) == (True, "judged")


def test_without_a_judge_the_report_says_so(project):
    evaluation = {k: v for k, v in EVALUATION.items() if k not in ("judge", "overoptimization_gap")}

    assert gate_report(project=project, evaluation=evaluation)["judge"] == "missing"
    project.gate_judge_min_win_rate = None
    assert gate_report(project=project, evaluation=evaluation)["judge"] == "off"


def test_an_iteration_is_judged_by_the_eval_labels(
    judged_project, annotator, django_capture_on_commit_callbacks
):
    make_comparisons(judged_project, TRAIN_ANSWERS)
    make_comparisons(judged_project, EVAL_ANSWERS, split="eval")
    label_all(judged_project, annotator)

    iteration = run_iteration(judged_project, django_capture_on_commit_callbacks)

    assert iteration.status == "done", iteration.error
    assert (iteration.reward_model.role, iteration.judge.role) == ("policy", "judge")
    assert iteration.judge.snapshot.counts["split"] == "eval"
    evaluation = iteration.evaluation
    assert evaluation["overoptimization_gap"] == pytest.approx(
        evaluation["win_rate"] - evaluation["judge"]["win_rate"]
    )
    assert [g["name"] for g in evaluation["gates"]["gates"]][-2:] == [
        "judge win rate",
        "over-optimization gap",
    ]
    assert RewardModelVersion.objects.filter(project=judged_project).count() == 2


def test_without_a_judge_a_candidate_waits_for_an_admin(
    judged_project, annotator, django_capture_on_commit_callbacks
):
    make_comparisons(judged_project, TRAIN_ANSWERS)
    label_all(judged_project, annotator)

    iteration = run_iteration(judged_project, django_capture_on_commit_callbacks)

    assert iteration.status == "awaiting_approval", iteration.error
    assert iteration.judge is None
    assert iteration.evaluation["gates"]["judge"] == "missing"
    assert iteration.evaluation["awaiting_approval_because"].startswith("no independent judge yet")


def test_new_comparisons_give_the_judge_its_share_of_eval_prompts(
    judged_project, django_capture_on_commit_callbacks
):
    run = services.run_create(project=judged_project, kind="generate", config={})

    jobs.generation_run(run=run)

    splits = sorted(c.prompt.split for c in Comparison.objects.filter(project=judged_project))
    assert splits.count("eval") == round(4 * judged_project.judge_share)
    assert splits.count("train") == len(splits) - splits.count("eval")
