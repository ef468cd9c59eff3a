"""The SFT stage of the loop (Project.sft_min_demonstrations) on the tiny model in this process:
demonstrations -> SFT version -> PPO or DPO from its adapter, held to it; and the lineage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from feedback.imports import demonstrations_import_records
from feedback.models import Demonstration, Project
from feedback.services import demonstration_review, project_training_set
from tests.training.test_loop import run_iteration
from training import jobs, services
from training.ml.sft import load_demonstrations
from training.models import LoopIteration, PolicyVersion, RunMetric, SFTVersion, TrainingRun
from training.services import artifact_path


def demonstrations(
    project, reviewer, texts: list[str], *, prompt="Say hello.", decision="accepted"
):
    """Demonstrations imported on `prompt` (a project prompt of the fixture: "Say hello.",
    "Name a colour." are train prompts, "Count to three." an eval one), reviewed as
    `decision` (None: left unreviewed). Returns their ids."""
    records = [(i + 1, {"prompt": prompt, "completion": text}) for i, text in enumerate(texts)]
    demonstrations_import_records(project=project, records=records, source="test.jsonl")
    made = list(Demonstration.objects.filter(project=project, text__in=texts).order_by("id"))
    for demonstration in made:
        if decision is not None:
            demonstration_review(
                reviewer=reviewer, demonstration_id=demonstration.pk, decision=decision
            )
    return [d.pk for d in made]


def sft_on(project, minimum: int | None, optimizer: str = "ppo", restart_from: str = "active"):
    return project_training_set(
        project=project,
        optimizer=optimizer,
        restart_from=restart_from,
        reward_length_control=False,
        sft_min_demonstrations=minimum,
    )


def evaluate_config(iteration: LoopIteration) -> dict:
    return iteration.runs.get(kind="evaluate").config


def first_kl(run: TrainingRun) -> float:
    """The KL to the reference at PPO's first update."""
    return RunMetric.objects.filter(run=run).order_by("step", "id").first().values["objective/kl"]


def test_sft_runs_first_then_ppo_starts_from_it_held_to_it_and_the_line_goes_on(
    loop_project, reviewer, django_capture_on_commit_callbacks
):
    sft_on(loop_project, 4)
    accepted = demonstrations(
        loop_project, reviewer, ["Hello!", "Hi there.", "Hello, friend."]
    ) + demonstrations(loop_project, reviewer, ["Blue."], prompt="Name a colour.")
    # Not trained on: unreviewed, rejected, or on an eval prompt (eval prompts stay unseen).
    demonstrations(loop_project, reviewer, ["Hey."], decision=None)
    demonstrations(loop_project, reviewer, ["Go away."], decision="rejected")
    demonstrations(loop_project, reviewer, ["1, 2, 3."], prompt="Count to three.")

    first = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert first.status == "done", first.error
    assert [r.kind for r in first.runs.order_by("id")] == [
        "sft",
        "reward",
        "ppo",
        "evaluate",
        "generate",
        "generate",
    ]
    # The snapshot: the accepted demonstrations of the train prompts, as TRL SFT records.
    snapshot = first.demonstrations
    assert (snapshot.demonstration_count, snapshot.demonstration_ids) == (4, accepted)
    assert snapshot.counts == {
        "demonstrations": 4,
        "prompts": 2,
        "new": 4,
        "previous_sft": None,
        "by_origin": {"imported": 4},
        "corrected": 0,
        "split": "train",
        "style": "messages",
    }
    data = artifact_path(snapshot.path)
    assert hashlib.sha256(data.read_bytes()).hexdigest() == snapshot.sha256
    assert [d.answer for d in load_demonstrations(data)] == [
        "Hello!",
        "Hi there.",
        "Hello, friend.",
        "Blue.",
    ]
    # The SFT version: made by the SFT run from that snapshot, on the base model.
    sft_run = first.runs.get(kind="sft")
    s1 = SFTVersion.objects.get(project=loop_project)
    assert (s1.number, s1.snapshot_id, s1.training_run_id, first.sft_id) == (
        1,
        snapshot.pk,
        sft_run.pk,
        s1.pk,
    )
    assert (sft_run.status, sft_run.config["demonstrations"]) == ("succeeded", snapshot.pk)
    assert sft_run.summary["demonstrations"] == 4
    assert s1.heldout_loss == sft_run.summary["heldout_loss"]
    assert sft_run.metrics.exists()
    sft_record = json.loads((artifact_path(s1.adapter_path) / "hone_policy.json").read_text())
    assert (sft_record["kind"], sft_record["init_adapter"]) == ("sft", None)
    # PPO starts from the SFT adapter and is held to it: its first KL is exactly 0.
    sft_adapter = str(artifact_path(s1.adapter_path))
    ppo = first.runs.get(kind="ppo")
    assert (ppo.config["start"], ppo.config["sft"], ppo.config["parent"]) == ("sft", 1, 0)
    assert ppo.config["init_adapter"] == ppo.config["reference_adapter"] == sft_adapter
    # 0 up to float rounding: the policy's log-probs come from sampling with the KV cache,
    # the reference's from a full forward (training/ml/ppo.py)
    assert abs(first_kl(ppo)) < 1e-4
    v1 = PolicyVersion.objects.get(project=loop_project, status="active")
    assert (v1.number, v1.sft_id, v1.training_run_id) == (1, s1.pk, ppo.pk)
    # Evaluated against its SFT version too, and the KL gate holds it to that.
    evaluation = first.evaluation
    assert evaluate_config(first)["reference_adapter"] == sft_adapter
    kl_gate = evaluation["gates"]["gates"][1]
    assert (kl_gate["name"], kl_gate["value"]) == (
        "mean KL to its SFT version",
        evaluation["kl_to_reference_mean"],
    )
    record = json.loads((artifact_path(v1.adapter_path) / "hone_policy.json").read_text())
    assert (record["init_adapter"], record["reference_adapter"]) == (sft_adapter, sft_adapter)

    # Two more accepted demonstrations: fewer new ones than 4, no SFT. PPO continues v1,
    # still held to SFT1 (the root of v1's line).
    demonstrations(loop_project, reviewer, ["Red.", "Green."], prompt="Name a colour.")
    second = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert second.status == "done", second.error
    assert [r.kind for r in second.runs.order_by("id")][:2] == ["reward", "ppo"]
    assert (second.demonstrations, second.sft) == (None, None)
    ppo = second.runs.get(kind="ppo")
    assert (ppo.config["start"], ppo.config["sft"], ppo.config["parent"]) == ("parent", 1, 1)
    assert ppo.config["init_adapter"] == str(artifact_path(v1.adapter_path))
    assert ppo.config["reference_adapter"] == sft_adapter
    assert first_kl(ppo) > 1e-4  # v1 has moved from SFT1 already
    v2 = second.policy
    assert (v2.number, v2.parent_id, v2.sft_id) == (2, v1.pk, s1.pk)

    # Two more: four new to SFT1. SFT2 trains from the base on all eight, and PPO starts a
    # new line from it (the active version is its parent all the same).
    demonstrations(loop_project, reviewer, ["Hello again.", "Greetings."])
    third = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert third.status == "done", third.error
    assert [r.kind for r in third.runs.order_by("id")][:3] == ["sft", "reward", "ppo"]
    s2 = third.sft
    assert (s2.number, s2.snapshot.demonstration_count) == (2, 8)
    assert (s2.snapshot.counts["new"], s2.snapshot.counts["previous_sft"]) == (4, 1)
    ppo = third.runs.get(kind="ppo")
    assert (ppo.config["start"], ppo.config["sft"], ppo.config["parent"]) == ("sft", 2, 2)
    assert ppo.config["init_adapter"] == ppo.config["reference_adapter"]
    assert ppo.config["init_adapter"] == str(artifact_path(s2.adapter_path))
    assert (third.policy.parent_id, third.policy.sft_id) == (v2.pk, s2.pk)
    # The lineage, read back: which demonstrations made each SFT version, and which policy
    # versions descend from it.
    assert [
        (s.number, s.snapshot.demonstration_count, sorted(p.number for p in s.policies.all()))
        for s in SFTVersion.objects.filter(project=loop_project).order_by("number")
    ] == [(1, 4, [1, 2]), (2, 8, [3])]


def test_a_dpo_iteration_starts_from_the_sft_adapter(
    loop_project, reviewer, django_capture_on_commit_callbacks
):
    sft_on(loop_project, 2, optimizer="dpo")
    demonstrations(loop_project, reviewer, ["Hello!", "Hi there."])

    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "done", iteration.error
    assert [r.kind for r in iteration.runs.order_by("id")][:3] == ["sft", "reward", "dpo"]
    s1 = iteration.sft
    dpo = iteration.runs.get(kind="dpo")
    # DPO starts from the SFT adapter and is held to it, the root of the line.
    assert (dpo.config["start"], dpo.config["sft"]) == ("sft", 1)
    assert dpo.config["init_adapter"] == dpo.config["reference_adapter"]
    assert dpo.config["init_adapter"] == str(artifact_path(s1.adapter_path))
    v1 = iteration.policy
    assert (v1.number, v1.status, v1.sft_id, v1.training_run_id) == (1, "active", s1.pk, dpo.pk)
    record = json.loads((artifact_path(v1.adapter_path) / "hone_policy.json").read_text())
    assert (record["kind"], record["init_adapter"]) == ("dpo", str(artifact_path(s1.adapter_path)))


def test_without_enough_new_accepted_demonstrations_there_is_no_sft(
    loop_project, reviewer, django_capture_on_commit_callbacks
):
    sft_on(loop_project, 5)
    demonstrations(loop_project, reviewer, ["Hello!", "Hi there.", "Hello, friend.", "Hey!"])
    # Seven demonstrations in all, four accepted on train prompts: below five.
    demonstrations(loop_project, reviewer, ["Hey."], decision=None)
    demonstrations(loop_project, reviewer, ["Go away."], decision="rejected")
    demonstrations(loop_project, reviewer, ["1, 2, 3."], prompt="Count to three.")

    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "done", iteration.error
    assert [r.kind for r in iteration.runs.order_by("id")][:2] == ["reward", "ppo"]
    assert (iteration.demonstrations, iteration.sft) == (None, None)
    assert not SFTVersion.objects.exists()
    ppo = iteration.runs.get(kind="ppo")
    assert (ppo.config["start"], ppo.config["sft"]) == ("parent", None)
    assert (ppo.config["init_adapter"], ppo.config["reference_adapter"]) == (None, None)
    assert iteration.policy.sft is None
    assert evaluate_config(iteration)["reference_adapter"] is None
    assert "kl_to_reference_mean" not in iteration.evaluation
    assert iteration.evaluation["gates"]["gates"][1]["name"] == "mean KL to the base"


def test_restart_from_base_starts_a_new_line_from_the_latest_sft_version(
    loop_project, reviewer, django_capture_on_commit_callbacks
):
    sft_on(loop_project, 2)
    demonstrations(loop_project, reviewer, ["Hello!", "Hi there."])
    first = run_iteration(loop_project, django_capture_on_commit_callbacks)
    sft_on(loop_project, 2, restart_from="base")

    second = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert (first.status, second.status) == ("done", "done"), (first.error, second.error)
    assert [r.kind for r in second.runs.order_by("id")][:2] == ["reward", "ppo"]
    ppo = second.runs.get(kind="ppo")
    sft_adapter = str(artifact_path(first.sft.adapter_path))
    assert (ppo.config["start"], ppo.config["sft"], ppo.config["parent"]) == ("sft", 1, 1)
    assert ppo.config["init_adapter"] == ppo.config["reference_adapter"] == sft_adapter
    # 0 up to float rounding: the policy's log-probs come from sampling with the KV cache,
    # the reference's from a full forward (training/ml/ppo.py)
    assert abs(first_kl(ppo)) < 1e-4
    assert second.policy.sft_id == first.sft_id


def test_a_bad_sft_setting_fails_the_iteration_naming_it_and_makes_no_sft_version(
    loop_project, reviewer, django_capture_on_commit_callbacks
):
    sft_on(loop_project, 1)
    loop_project.training_config = {**loop_project.training_config, "sft": {"epoch": 3}}
    loop_project.save()
    demonstrations(loop_project, reviewer, ["Hello!"])

    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "failed"
    assert "Unknown SFTTrainConfig setting(s) in the project's training_config: epoch." in (
        iteration.error
    )
    assert not SFTVersion.objects.exists()
    assert list(PolicyVersion.objects.values_list("number", "status")) == [(0, "active")]
    assert services.iteration_start(project=loop_project, trigger="manual") is not None


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_sft_run_stops_and_registers_nothing(loop_project, reviewer, monkeypatch):
    import time

    import training.jobs.runner
    import training.ml.sft

    sft_on(loop_project, 1)
    demonstrations(loop_project, reviewer, ["Hello!", "Hi there."])
    demonstrations(loop_project, reviewer, ["Blue."], prompt="Name a colour.")  # one held out
    monkeypatch.setattr(training.jobs.runner, "HEARTBEAT_SECONDS", 0.05)
    train_sft = training.ml.sft.train_sft

    def cancelled_meanwhile(*args, **kwargs):
        services.iteration_cancel(iteration=LoopIteration.objects.get(project=loop_project))
        time.sleep(1.0)  # the heartbeat sees the request; the next metrics stop the run
        return train_sft(*args, **kwargs)

    monkeypatch.setattr(training.ml.sft, "train_sft", cancelled_meanwhile)
    iteration = services.iteration_start(project=loop_project, trigger="manual")

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    run = TrainingRun.objects.get(iteration=iteration)
    assert (iteration.status, run.kind, run.status) == ("cancelled", "sft", "cancelled")
    assert not SFTVersion.objects.exists()
    assert not artifact_path(f"projects/{loop_project.pk}/sft").exists()


def test_the_kl_gate_holds_a_candidate_of_an_sft_line_to_its_sft_version(project):
    from training.gates import gate_report

    project.gate_max_kl, project.gate_judge_min_win_rate = 5.0, None
    evaluation = {
        "win_rate": 0.9,
        "kl_to_base_mean": 30.0,  # mostly the SFT stage's own distance from the base
        "candidate": {"empty_rate": 0.0, "repetition_rate": 0.0},
    }

    held = gate_report(project=project, evaluation={**evaluation, "kl_to_reference_mean": 2.0})
    plain = gate_report(project=project, evaluation=evaluation)

    assert (held["passed"], held["gates"][1]) == (
        True,
        {"name": "mean KL to its SFT version", "value": 2.0, "threshold": "<= 5.0", "passed": True},
    )
    assert (plain["passed"], plain["gates"][1]["name"]) == (False, "mean KL to the base")


@pytest.mark.parametrize("value", [0, -3])
def test_a_bad_sft_threshold_is_refused_and_nothing_changes(project, value):
    with pytest.raises(ValidationError) as error:
        sft_on(project, value, optimizer="dpo")

    assert error.value.message_dict == {
        "sft_min_demonstrations": [
            "The SFT stage needs at least 1 new accepted demonstration; leave it empty for no "
            "SFT stage."
        ]
    }
    stored = Project.objects.get(pk=project.pk)
    assert (stored.optimizer, stored.sft_min_demonstrations) == ("ppo", None)


def test_a_new_project_has_no_sft_stage(project):
    assert project.sft_min_demonstrations is None


def test_on_the_object_store_the_sft_artifacts_are_uploaded_and_read_through_the_cache(
    loop_project, reviewer, s3_store, django_capture_on_commit_callbacks
):
    from training.jobs.runner import demonstrations_of, sft_adapter_of

    sft_on(loop_project, 2)
    demonstrations(loop_project, reviewer, ["Hello!", "Hi there."])

    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "done", iteration.error
    s1, snapshot = iteration.sft, iteration.demonstrations
    keys = s3_store.object_keys()
    for key in (s1.adapter_path, snapshot.path):
        manifest = s3_store.client.get_object(
            Bucket=s3_store.bucket, Key=f"hone/{key}.manifest.json"
        )["Body"].read()
        assert hashlib.sha256(manifest).hexdigest() in (
            s1.adapter_manifest_sha256,
            snapshot.manifest_sha256,
        )
    assert f"hone/{s1.adapter_path}/adapter_model.safetensors" in keys
    assert f"hone/{snapshot.path}" in keys
    # PPO read the SFT adapter through this worker's cache, as its start and its reference.
    ppo = iteration.runs.get(kind="ppo")
    worker_1 = sft_adapter_of(s1)
    assert ppo.config["init_adapter"] == ppo.config["reference_adapter"] == worker_1
    assert s1.adapter_manifest_sha256 in worker_1
    # Another worker downloads the same files, checked against the manifests.
    s3_store.cache_of("worker-2")
    worker_2 = sft_adapter_of(s1)
    assert worker_2 != worker_1
    assert (Path(worker_2) / "adapter_model.safetensors").read_bytes() == (
        Path(worker_1) / "adapter_model.safetensors"
    ).read_bytes()
    data = Path(demonstrations_of(snapshot)).read_bytes()
    assert hashlib.sha256(data).hexdigest() == snapshot.sha256
