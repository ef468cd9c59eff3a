"""The loop iteration as a small state machine on its row: each step moves it on with a
compare-and-set on the status, so a retried or redelivered task continues where the last one
stopped, and a step that ends after a cancel changes nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedback.models import Optimizer, Prompt, RestartFrom
from training import services
from training.gates import gate_rejection, gate_report
from training.jobs.child import Launch, launch_of, stage_train
from training.jobs.generation import generation_run
from training.jobs.health import fresh_agreement_check
from training.jobs.runner import (
    HUMAN_GATE_PRIORITY,
    Heartbeat,
    RunCancelled,
    WaitingForHumans,
    adapter_of,
    artifact_publish,
    connection_release,
    demonstrations_of,
    error_text,
    reference_adapter_of,
    reward_model_of,
    run_as,
    sft_adapter_of,
    snapshot_of,
    stage_config,
    stage_overrides,
    work_dir,
)
from training.models import (
    DatasetSnapshot,
    LoopIteration,
    PolicyVersion,
    RewardModelVersion,
    SFTVersion,
    TrainingRun,
)
from training.selectors import (
    demonstrations_new_to_sft,
    policy_active,
    run_live,
    sft_latest,
    versus_generated,
)

logger = logging.getLogger(__name__)


# --- The loop iteration --------------------------------------------------------------------


def iteration_run(*, iteration: LoopIteration) -> None:
    """Carry an iteration from wherever it stands to its end. Safe to call again.

    Each step records its result on the iteration with a compare-and-set on the status, so
    a step that finishes after the iteration was cancelled (or was run twice by a
    redelivered message) changes nothing.
    """
    steps = {
        LoopIteration.Status.COLLECTING: _step_collect,
        LoopIteration.Status.SFT: _step_sft,
        LoopIteration.Status.REWARD: _step_reward,
        LoopIteration.Status.PPO: _step_ppo,
        LoopIteration.Status.DPO: _step_dpo,
        LoopIteration.Status.EVALUATING: _step_evaluate,
        LoopIteration.Status.AWAITING_HUMANS: _step_human_gate,
        LoopIteration.Status.PROMOTING: _step_promote,
        LoopIteration.Status.GENERATING: _step_generate,
    }
    while True:
        connection_release()
        iteration.refresh_from_db()
        step = steps.get(iteration.status)
        if step is None:
            return  # done, failed, rejected, cancelled, or waiting for an admin
        live = run_live(iteration=iteration)
        if live is not None:  # a message delivered twice: the step is in other hands
            logger.warning(
                "Iteration %s of %s: run %s is running on %s; this delivery leaves it be",
                iteration.number,
                iteration.project,
                live.pk,
                live.worker,
            )
            return
        try:
            step(iteration)
        except (services.IterationMoved, RunCancelled, WaitingForHumans):
            return
        except Exception as error:
            logger.exception("Iteration %s of %s failed", iteration.number, iteration.project)
            connection_release()
            with contextlib.suppress(services.IterationMoved):
                services.iteration_advance(
                    iteration=iteration,
                    status=LoopIteration.Status.FAILED,
                    expected=iteration.status,
                    error=error_text(error),
                )
            return


def _advance(iteration: LoopIteration, status: str, **fields: Any) -> None:
    services.iteration_advance(
        iteration=iteration, status=status, expected=iteration.status, **fields
    )


def _step_collect(iteration: LoopIteration) -> None:
    """Snapshot the preference data; and the accepted demonstrations too when the project has
    an SFT stage and enough of them are new to its latest SFT version: then SFT comes first."""
    project = iteration.project
    snapshot = services.snapshot_create(project=project, name=f"iteration-{iteration.number}")
    demonstrations = None
    wanted = project.sft_min_demonstrations
    if wanted is not None and demonstrations_new_to_sft(project=project) >= wanted:
        demonstrations = services.demonstration_snapshot_create(
            project=project, name=f"iteration-{iteration.number}-demonstrations"
        )
    next_status = LoopIteration.Status.SFT if demonstrations else LoopIteration.Status.REWARD
    _advance(iteration, next_status, snapshot=snapshot, demonstrations=demonstrations)


def _step_sft(iteration: LoopIteration) -> None:
    """SFT from the base model on the iteration's demonstrations (every accepted one on the
    train prompts): a new SFT version, where this iteration's candidate starts."""
    from training.ml.sft import SFTTrainConfig

    project, snapshot = iteration.project, iteration.demonstrations
    config = stage_config(
        SFTTrainConfig, stage_overrides(project, "sft"), base_model=project.base_model
    )
    launch = launch_of(project, "sft")
    run = services.run_create(
        project=project,
        kind=TrainingRun.Kind.SFT,
        iteration=iteration,
        config={
            "demonstrations": snapshot.pk,
            "launch": dataclasses.asdict(launch),
            **dataclasses.asdict(config),
        },
    )

    def train(work: Path, heartbeat: Heartbeat) -> dict[str, Any]:
        services.run_log(
            run=run,
            line=f"SFT on {snapshot.demonstration_count} demonstrations "
            f"({snapshot.counts['new']} new)",
        )
        return stage_train(
            run=run,
            heartbeat=heartbeat,
            stage="sft",
            config=config,
            data=demonstrations_of(snapshot),
            out=work / "adapter",
            launch=launch,
        )

    sft = _adapter_train(
        run,
        train,
        f"projects/{project.pk}/sft/iteration-{iteration.number}",
        services.sft_register,
        snapshot=snapshot,
    )
    _advance(iteration, LoopIteration.Status.REWARD, sft=sft)


def _step_reward(iteration: LoopIteration) -> None:
    """The policy's reward model on the train prompts' labels, then the independent judge on
    the eval prompts' labels (when the judge gate is on and there are enough of them). PPO
    climbs the first; with DPO it still gives the gates their reward-model win rate."""
    project = iteration.project
    reward_model = _reward_train(iteration, iteration.snapshot, RewardModelVersion.Role.POLICY)
    judge = None
    if project.gate_judge_min_win_rate is not None:
        snapshot = services.judge_snapshot_create(
            project=project, name=f"iteration-{iteration.number}-judge"
        )
        if snapshot is not None:
            judge = _reward_train(iteration, snapshot, RewardModelVersion.Role.JUDGE)
    # The optimizer as set now: a change from here on applies to the next iteration.
    dpo = project.optimizer == Optimizer.DPO
    training = LoopIteration.Status.DPO if dpo else LoopIteration.Status.PPO
    _advance(iteration, training, reward_model=reward_model, judge=judge)


def _reward_train(
    iteration: LoopIteration, snapshot: DatasetSnapshot, role: str
) -> RewardModelVersion:
    from training.ml.reward import RewardTrainConfig

    project = iteration.project
    config = stage_config(
        RewardTrainConfig,
        stage_overrides(project, "reward"),
        base_model=project.base_model,
        length_control=project.reward_length_control,
    )
    launch = launch_of(project, "reward")
    run = services.run_create(
        project=project,
        kind=TrainingRun.Kind.REWARD,
        iteration=iteration,
        config={
            "snapshot": snapshot.pk,
            "role": role,
            "launch": dataclasses.asdict(launch),
            **dataclasses.asdict(config),
        },
    )
    folder = "reward" if role == RewardModelVersion.Role.POLICY else "judge"

    def train(work: Path, heartbeat: Heartbeat) -> dict[str, Any]:
        services.run_log(run=run, line=f"Reward model ({role}) on {snapshot.pair_count} pairs")
        return stage_train(
            run=run,
            heartbeat=heartbeat,
            stage="reward",
            config=config,
            data=snapshot_of(snapshot),
            out=work / "adapter",
            launch=launch,
        )

    return _adapter_train(
        run,
        train,
        f"projects/{project.pk}/{folder}/iteration-{iteration.number}",
        services.reward_model_register,
        snapshot=snapshot,
        role=role,
    )


def _adapter_train(
    run: TrainingRun,
    train: Callable[[Path, Heartbeat], dict[str, Any]],
    key: str,
    register: Callable[..., Any],
    **fields: Any,
) -> Any:
    """Run `train` as `run` in a work folder of its own, publish the adapter it writes to
    `work/adapter` under `key` and register it (`register` gets the project, the run, the
    stored adapter, the run's metrics and `fields`); returns the row `register` made. The
    work folder goes, whatever happens."""
    work = work_dir(run.project)
    holder: dict[str, Any] = {}

    def body(heartbeat: Heartbeat) -> dict[str, Any]:
        metrics = train(work, heartbeat)
        heartbeat.check()
        holder["row"] = artifact_publish(
            work / "adapter",
            key,
            lambda stored: register(
                project=run.project,
                run=run,
                adapter_path=stored.key,
                adapter_manifest_sha256=stored.manifest_sha256,
                metrics=metrics,
                **fields,
            ),
        )
        return metrics

    try:
        run_as(run, body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return holder["row"]


def _step_ppo(iteration: LoopIteration) -> None:
    from training.ml.data import write_jsonl
    from training.ml.ppo import PPOConfig

    project = iteration.project
    parent = policy_active(project=project)
    reward_model = iteration.reward_model
    fresh_agreement_check(reward_model=reward_model)  # people may disagree with it by now
    start = _start(iteration, parent)
    config = stage_config(
        PPOConfig,
        stage_overrides(project, "ppo"),
        base_model=project.base_model,
        reward_model=reward_model_of(reward_model),
        init_adapter=start.adapter,
        reference_adapter=reference_adapter_of(start.sft),
    )

    def train(run: TrainingRun, work: Path, heartbeat: Heartbeat) -> dict[str, Any]:
        prompts = Prompt.objects.filter(project=project, split=Prompt.Split.TRAIN)
        prompts_path = work / "prompts.jsonl"
        write_jsonl(prompts_path, [{"prompt": p.messages} for p in prompts])
        services.run_log(
            run=run, line=f"PPO from {start.described(parent)} on {len(prompts)} prompts"
        )
        return stage_train(
            run=run,
            heartbeat=heartbeat,
            stage="ppo",
            config=config,
            data=prompts_path,
            out=work / "adapter",
            launch=launch,
        )

    launch = launch_of(project, "ppo")
    _candidate_train(
        iteration, TrainingRun.Kind.PPO, config, parent, reward_model, start, train, launch=launch
    )


def _step_dpo(iteration: LoopIteration) -> None:
    """DPO on the pairs of the iteration's snapshot (the train prompts' labels, the data the
    policy's reward model learned from); no reward model is climbed."""
    from training.ml.dpo import DPOTrainConfig

    project, snapshot = iteration.project, iteration.snapshot
    parent = policy_active(project=project)
    start = _start(iteration, parent)
    config = stage_config(
        DPOTrainConfig,
        stage_overrides(project, "dpo"),
        base_model=project.base_model,
        init_adapter=start.adapter,
        reference_adapter=reference_adapter_of(start.sft),
    )

    def train(run: TrainingRun, work: Path, heartbeat: Heartbeat) -> dict[str, Any]:
        services.run_log(
            run=run, line=f"DPO from {start.described(parent)} on {snapshot.pair_count} pairs"
        )
        return stage_train(
            run=run,
            heartbeat=heartbeat,
            stage="dpo",
            config=config,
            data=snapshot_of(snapshot),
            out=work / "adapter",
            launch=launch,
        )

    launch = launch_of(project, "dpo")
    _candidate_train(
        iteration,
        TrainingRun.Kind.DPO,
        config,
        parent,
        None,
        start,
        train,
        launch=launch,
        snapshot=snapshot.pk,
    )


@dataclasses.dataclass(frozen=True)
class Start:
    """Where an iteration's PPO or DPO starts, and the SFT version at the root of the
    candidate's line (None: the base model), the reference of PPO and DPO."""

    point: str  # "sft": a new line from an SFT version; "parent": the active version; "base"
    adapter: str | None  # the adapter folder it starts from (None: a new adapter on the base)
    sft: SFTVersion | None

    def described(self, parent: PolicyVersion) -> str:
        if self.point == "sft":
            return f"SFT{self.sft.number}"
        return f"v{parent.number}" if self.point == "parent" else "the base model"


def _start(iteration: LoopIteration, parent: PolicyVersion) -> Start:
    """Where PPO or DPO starts:

    - the SFT version this iteration trained: a new line from its adapter, held to it;
    - restart_from "active": the active version's adapter, held to the root of its line (its
      SFT version, or the base model);
    - restart_from "base": a new line from the project's latest SFT version when it has an SFT
      stage and one exists, else a new adapter on the base model.
    """
    project = iteration.project
    if iteration.sft is not None:
        return Start("sft", sft_adapter_of(iteration.sft), iteration.sft)
    if project.restart_from == RestartFrom.ACTIVE:
        return Start("parent", adapter_of(parent), parent.sft)
    latest = sft_latest(project=project) if project.sft_min_demonstrations is not None else None
    if latest is not None:
        return Start("sft", sft_adapter_of(latest), latest)
    return Start("base", None, None)


def _candidate_train(
    iteration: LoopIteration,
    kind: str,
    config: Any,
    parent: PolicyVersion,
    reward_model: RewardModelVersion | None,
    start: Start,
    train: Callable[[TrainingRun, Path, Heartbeat], dict[str, Any]],
    *,
    launch: Launch,
    **recorded: Any,
) -> None:
    """Run `train` as the iteration's run of `kind`, register the adapter it writes to
    `work/adapter` as the candidate (its parent the active version, its lineage this run and
    the SFT version at the root of its line), and move on to the evaluation."""
    project = iteration.project
    run = services.run_create(
        project=project,
        kind=kind,
        iteration=iteration,
        config={
            "parent": parent.number,
            "start": start.point,
            "sft": start.sft.number if start.sft is not None else None,
            "launch": dataclasses.asdict(launch),
            **recorded,
            **dataclasses.asdict(config),
        },
    )
    policy = _adapter_train(
        run,
        lambda work, heartbeat: train(run, work, heartbeat),
        f"projects/{project.pk}/policies/iteration-{iteration.number}",
        services.policy_register,
        parent=parent,
        reward_model=reward_model,
        sft=start.sft,
    )
    _advance(iteration, LoopIteration.Status.EVALUATING, policy=policy)


def _step_evaluate(iteration: LoopIteration) -> None:
    """Candidate against the active policy on held-out prompts, then the project's gates."""
    from training.ml.data import write_jsonl
    from training.ml.evaluate import EvaluateConfig

    project, candidate = iteration.project, iteration.policy
    incumbent = policy_active(project=project)
    prompts = list(Prompt.objects.filter(project=project, split=Prompt.Split.EVAL))
    if not prompts:  # no held-out prompts: judge on train prompts rather than not at all
        prompts = list(Prompt.objects.filter(project=project, split=Prompt.Split.TRAIN))
    config = stage_config(
        EvaluateConfig,
        stage_overrides(project, "evaluate"),
        base_model=project.base_model,
        reward_model=reward_model_of(iteration.reward_model),
        judge_model=reward_model_of(iteration.judge) if iteration.judge else None,
        candidate_adapter=adapter_of(candidate),
        incumbent_adapter=adapter_of(incumbent),
        reference_adapter=reference_adapter_of(candidate.sft),
        max_new_tokens=project.max_new_tokens,
        seed=iteration.number,
    )
    run = services.run_create(
        project=project,
        kind=TrainingRun.Kind.EVALUATE,
        iteration=iteration,
        config={
            "candidate": candidate.number,
            "incumbent": incumbent.number,
            **dataclasses.asdict(config),
        },
    )
    work = work_dir(project)

    def body(heartbeat: Heartbeat) -> dict[str, Any]:
        prompts_path = work / "prompts.jsonl"
        write_jsonl(prompts_path, [{"prompt": p.messages} for p in prompts])

        def progress(values: dict[str, Any]) -> None:
            services.run_record_metrics(
                run=run, values={"step": values["done"], "of": values["total"]}
            )

        return stage_train(
            run=run,
            heartbeat=heartbeat,
            stage="evaluate",
            config=config,
            data=prompts_path,
            out=work / "evaluation",
            launch=Launch(),
            report=progress,
        )

    try:
        evaluation = run_as(run, body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = gate_report(project=project, evaluation=evaluation)
    record = {
        **evaluation,
        "candidate_version": candidate.number,
        "incumbent_version": incumbent.number,
        "gates": report,
    }
    if not report["passed"]:
        services.iteration_advance(iteration=iteration, status=iteration.status, evaluation=record)
        services.iteration_reject(iteration=iteration, reason=gate_rejection(report))
        return
    if project.gate_human_min_win_rate is not None:
        next_status = LoopIteration.Status.AWAITING_HUMANS
    elif report["judge"] == "missing":
        # No independent judge yet: the training reward model's word alone promotes nothing.
        record["awaiting_approval_because"] = (
            f"no independent judge yet: fewer than {project.judge_min_pairs} preference pairs "
            "on eval prompts"
        )
        next_status = LoopIteration.Status.AWAITING_APPROVAL
    else:
        next_status = services.status_after_gates(project=project)
    _advance(iteration, next_status, evaluation=record)


def _step_human_gate(iteration: LoopIteration) -> None:
    """The human gate: sample the candidate against the active policy on the eval prompts
    (once), then let the labels decide (services.iteration_human_gate_check, also called as
    labels arrive and by the beat). The worker does not wait for people: unless this very
    check moves the iteration on to promotion, it leaves, and whoever decides later carries
    the iteration on (a decision made here continues in this loop)."""
    candidate = iteration.policy
    if iteration.project.gate_human_min_win_rate is not None and not versus_generated(
        iteration=iteration, policy=candidate, versus=candidate.parent
    ):
        run = services.run_create(
            project=iteration.project,
            kind=TrainingRun.Kind.GENERATE,
            config={},
            iteration=iteration,
        )
        generation_run(
            run=run, policy=candidate, versus=candidate.parent, priority=HUMAN_GATE_PRIORITY
        )
    if services.iteration_human_gate_check(iteration=iteration) is None:
        raise WaitingForHumans(f"Iteration {iteration.number} waits for human labels.")


def _step_promote(iteration: LoopIteration) -> None:
    services.policy_promote(policy=iteration.policy)
    _advance(iteration, LoopIteration.Status.GENERATING)


def _step_generate(iteration: LoopIteration) -> None:
    """New comparisons: the new version against its parent (unless the human gate or an
    earlier try of this step already sampled them), and pairs of the new version."""
    project, policy = iteration.project, iteration.policy
    if (
        policy.parent_id
        and Prompt.objects.filter(project=project, split="eval").exists()
        and not versus_generated(iteration=iteration, policy=policy, versus=policy.parent)
    ):
        run = services.run_create(
            project=project, kind=TrainingRun.Kind.GENERATE, config={}, iteration=iteration
        )
        generation_run(run=run, versus=policy.parent)
    run = services.run_create(
        project=project, kind=TrainingRun.Kind.GENERATE, config={}, iteration=iteration
    )
    generation_run(run=run)
    _advance(iteration, LoopIteration.Status.DONE)
