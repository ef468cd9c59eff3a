"""The loop with DPO as its optimizer, and where PPO or DPO starts (restart_from), on the tiny
model in this process."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from feedback.models import Completion, Project
from feedback.services import project_training_set
from tests.training.test_loop import run_iteration
from training.models import PolicyVersion
from training.services import artifact_path


def train(project, optimizer: str, restart_from: str) -> None:
    project_training_set(
        project=project,
        optimizer=optimizer,
        restart_from=restart_from,
        reward_length_control=False,
        sft_min_demonstrations=None,
    )


def test_a_dpo_iteration_trains_its_candidate_on_the_snapshot_and_promotes_it(
    loop_project, django_capture_on_commit_callbacks
):
    train(loop_project, "dpo", "active")

    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "done", iteration.error
    assert [r.kind for r in iteration.runs.order_by("id")] == [
        "reward",
        "dpo",
        "evaluate",
        "generate",
        "generate",
    ]
    assert iteration.reward_model.role == "policy"  # still trained: the gates read it
    dpo = iteration.runs.get(kind="dpo")
    assert (dpo.status, dpo.config["parent"], dpo.config["init_adapter"]) == ("succeeded", 0, None)
    assert dpo.config["snapshot"] == iteration.snapshot_id
    assert dpo.summary["pairs"] == iteration.snapshot.pair_count == 6
    assert iteration.evaluation["gates"]["passed"] is True
    assert iteration.evaluation["candidate_version"] == 1
    # Lineage: the DPO run made v1, against no reward model.
    v1 = PolicyVersion.objects.get(project=loop_project, status="active")
    assert (v1.number, v1.parent.number, v1.training_run_id, v1.reward_model_id) == (
        1,
        0,
        dpo.pk,
        None,
    )
    record = json.loads((artifact_path(v1.adapter_path) / "hone_policy.json").read_text())
    assert (record["kind"], record["init_adapter"]) == ("dpo", None)
    # The candidate's adapter loads for generation: the new comparisons are v1's answers.
    generate = iteration.runs.filter(kind="generate").order_by("id").last()
    assert (generate.status, generate.config["policy"]) == ("succeeded", 1)
    assert generate.config["adapter"] == str(artifact_path(v1.adapter_path))
    answers = Completion.objects.filter(policy_version=v1, prompt__split="train")
    assert answers.count() == 2 * generate.summary["prompts"]


def test_dpo_continues_the_active_adapter_and_restart_from_base_starts_anew(
    loop_project, django_capture_on_commit_callbacks
):
    first = run_iteration(loop_project, django_capture_on_commit_callbacks)  # PPO, from v0
    v1 = first.policy
    train(loop_project, "dpo", "active")
    second = run_iteration(loop_project, django_capture_on_commit_callbacks)
    train(loop_project, "dpo", "base")
    third = run_iteration(loop_project, django_capture_on_commit_callbacks)
    train(loop_project, "ppo", "base")
    fourth = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert [i.status for i in (first, second, third, fourth)] == ["done"] * 4, [
        i.error for i in (first, second, third, fourth)
    ]
    starts = [
        (kind, run.config["parent"], run.config["init_adapter"])
        for kind, run in (
            ("dpo", second.runs.get(kind="dpo")),
            ("dpo", third.runs.get(kind="dpo")),
            ("ppo", fourth.runs.get(kind="ppo")),
        )
    ]
    # DPO continues v1's PPO adapter; then each candidate is a new adapter on the base model.
    assert starts == [
        ("dpo", 1, str(artifact_path(v1.adapter_path))),
        ("dpo", 2, None),
        ("ppo", 3, None),
    ]
    # Continuing v1, DPO is held to the root of v1's line, the base model, as PPO would be.
    assert second.runs.get(kind="dpo").config["reference_adapter"] is None
    assert (
        json.loads((artifact_path(third.policy.adapter_path) / "hone_policy.json").read_text())[
            "init_adapter"
        ]
        is None
    )
    assert PolicyVersion.objects.get(project=loop_project, status="active").number == 4


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"optimizer": "sgd"}, "optimizer", "Unknown optimizer 'sgd': use 'ppo' or 'dpo'."),
        (
            {"restart_from": "scratch"},
            "restart_from",
            "Unknown restart_from 'scratch': use 'active' or 'base'.",
        ),
    ],
)
def test_an_unknown_optimizer_or_start_is_refused_and_nothing_changes(
    project, values, field, message
):
    with pytest.raises(ValidationError) as error:
        project_training_set(
            project=project,
            **{
                "optimizer": "dpo",
                "restart_from": "base",
                "reward_length_control": False,
                "sft_min_demonstrations": None,
                **values,
            },
        )

    assert error.value.message_dict == {field: [message]}
    stored = Project.objects.get(pk=project.pk)
    assert (stored.optimizer, stored.restart_from) == ("ppo", "active")


def test_a_new_project_trains_with_ppo_from_the_active_version(project):
    assert (project.optimizer, project.restart_from) == ("ppo", "active")
