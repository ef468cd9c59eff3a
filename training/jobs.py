"""GPU work: turn rows into files, call `training.ml`, record the results through services.

Runs inside a Celery worker on the `gpu` queue. `training.ml` (torch, transformers, peft,
TRL) is imported inside each function, so that web processes never pay for it.

An iteration is a small state machine on its row: each step moves it on with a
compare-and-set on the status, so a retried or redelivered task continues where the last one
stopped, and a step that ends after a cancel changes nothing. An artifact only becomes
visible (moved into place, then registered) once it is complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from feedback.models import Comparison, Project, Prompt
from training import services
from training.gates import gate_report
from training.models import LoopIteration, PolicyVersion, TrainingRun
from training.selectors import policy_active, versus_generated

logger = logging.getLogger(__name__)

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
HEARTBEAT_SECONDS = float(os.environ.get("HONE_HEARTBEAT_SECONDS", "15"))


class RunCancelled(Exception):
    """Someone asked this run to stop."""


class WaitingForHumans(Exception):
    """The human gate waits for labels: the worker is free; a label or the beat goes on."""


# The human gate's comparisons come before other items in annotators' queues: the loop waits.
HUMAN_GATE_PRIORITY = 1.0


def _connection_release() -> None:
    """What Django does between two requests, done between the steps of work that lasts
    hours: the connection goes back (to the pool, which checks it before handing it out
    again: CONN_HEALTH_CHECKS), so the next query runs on a live one even if the database
    restarted or the network path dropped this one meanwhile. Inside a transaction the
    caller's connection is left alone."""
    if not connection.in_atomic_block:
        connection.close()


class Heartbeat(threading.Thread):
    """Beats a run's heart while its job works, and notices a request to cancel it.

    A job between two metric steps can be silent for minutes; the beat tells the reaper
    (`runs_reap_stale_task`) that the worker is alive all the same.
    """

    def __init__(self, run_id: int) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.run_id = run_id
        self.stopped = threading.Event()
        self.cancelled = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(HEARTBEAT_SECONDS):
                try:
                    TrainingRun.objects.filter(pk=self.run_id).update(heartbeat_at=timezone.now())
                    if TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists():
                        self.cancelled.set()
                except DatabaseError:  # a busy or lost database: the next beat will do
                    logger.warning("Heartbeat of run %s missed", self.run_id, exc_info=True)
                    _connection_release()
        finally:
            connection.close()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise RunCancelled(f"Run {self.run_id} was cancelled.")


def stage_config(cls: type, overrides: dict[str, Any], **values: Any) -> Any:
    """Build a `training.ml` config dataclass from defaults, project overrides and values."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValidationError(
            f"Unknown {cls.__name__} setting(s) in the project's training_config: "
            f"{', '.join(unknown)}. Known: {', '.join(sorted(known))}."
        )
    config = cls(**{**overrides, **values})
    config.validate()
    return config


def _overrides(project: Project, stage: str) -> dict[str, Any]:
    value = (project.training_config or {}).get(stage, {})
    if not isinstance(value, dict):
        raise ValidationError(f"training_config.{stage} must be an object.")
    return value


def _work_dir(project: Project) -> Path:
    root = Path(settings.ARTIFACT_ROOT) / f"projects/{project.pk}/tmp"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root))


def _run(run: TrainingRun, body: Callable[[Heartbeat], dict[str, Any]]) -> dict[str, Any]:
    """Run `body` as `run`: running, then succeeded with its summary, failed or cancelled."""
    run.refresh_from_db()
    if run.cancel_requested:
        services.run_mark_cancelled(run=run)
        raise RunCancelled(f"Run {run.pk} was cancelled before it started.")
    services.run_start(run=run, worker=WORKER_NAME)
    heartbeat = Heartbeat(run.pk)
    heartbeat.start()
    try:
        summary = body(heartbeat)
    except RunCancelled:
        _connection_release()
        services.run_mark_cancelled(run=run)
        raise
    except Exception as error:
        _connection_release()
        services.run_fail(run=run, error=_error_text(error))
        raise
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
    services.run_succeed(run=run, summary=summary)
    return summary


def _error_text(error: Exception) -> str:
    if isinstance(error, (ValidationError, ValueError)):
        return f"{type(error).__name__}: {'; '.join(getattr(error, 'messages', [str(error)]))}"
    return "".join(traceback.format_exception(error))[-4000:]


def _metrics_sink(run: TrainingRun, heartbeat: Heartbeat) -> Callable[[dict[str, Any]], None]:
    def sink(values: dict[str, Any]) -> None:
        heartbeat.check()
        services.run_record_metrics(run=run, values=values)

    return sink


def _publish_artifact(tmp_dir: Path, relative: str, register: Callable[[str], Any]) -> Any:
    """Move a finished artifact into place, then register its row; if the row cannot be
    written, the artifact goes again: never an adapter without its row, nor a row without
    its adapter."""
    services.artifact_commit(tmp_dir=tmp_dir, relative=relative)
    try:
        return register(relative)
    except Exception:
        shutil.rmtree(services.artifact_path(relative), ignore_errors=True)
        raise


def _adapter(policy: PolicyVersion) -> str | None:
    return str(services.artifact_path(policy.adapter_path)) if policy.adapter_path else None


# --- Generation ----------------------------------------------------------------------------


def generation_queue(*, project: Project, iteration: LoopIteration | None = None) -> TrainingRun:
    """Create a generation run for the active policy and send it to a GPU worker."""
    from training.tasks import generate_comparisons_task

    with transaction.atomic():
        run = services.run_create(
            project=project, kind=TrainingRun.Kind.GENERATE, config={}, iteration=iteration
        )
        transaction.on_commit(lambda: generate_comparisons_task.delay(run.pk))
    return run


def generation_prompts(
    *, project: Project, policy: PolicyVersion, split: str, limit: int
) -> list[Prompt]:
    """Prompts of a split with the fewest open comparisons of this policy, oldest first."""
    from django.db.models import Count, Q

    return list(
        Prompt.objects.filter(project=project, split=split)
        .annotate(
            open_of_policy=Count(
                "comparisons",
                filter=Q(
                    comparisons__status=Comparison.Status.OPEN,
                    comparisons__completion_a__policy_version=policy,
                ),
            )
        )
        .order_by("open_of_policy", "created_at", "id")[:limit]
    )


def generation_run(
    *,
    run: TrainingRun,
    policy: PolicyVersion | None = None,
    versus: PolicyVersion | None = None,
    priority: float = 0.0,
) -> dict[str, Any]:
    """Sample comparisons from `policy` (the active policy unless given).

    Without `versus`: two answers of the policy per train prompt (data for the next reward
    model). With `versus`: one answer of the policy (side A) and one of `versus` (side B) per
    eval prompt, so that people judge each new version against the one before it: after a
    promotion, or before it for the human gate (a candidate against the active policy).
    """
    from training.ml.generate import GenerateConfig, generate

    project = run.project
    policy = policy or policy_active(project=project)
    split = Prompt.Split.EVAL if versus else Prompt.Split.TRAIN
    prompts = generation_prompts(
        project=project, policy=policy, split=split, limit=project.comparisons_per_iteration
    )
    players = [policy, versus] if versus else [policy]

    def body(heartbeat: Heartbeat) -> dict[str, Any]:
        if not prompts:
            raise ValidationError(f"Project {project.slug} has no {split} prompts to sample.")
        configs = [
            stage_config(
                GenerateConfig,
                _overrides(project, "generate"),
                base_model=project.base_model,
                adapter=_adapter(player),
                num_samples=2 // len(players),
                max_new_tokens=project.max_new_tokens,
                temperature=project.temperature,
                top_p=project.top_p,
                seed=run.pk + i,  # a new run samples new answers
            )
            for i, player in enumerate(players)
        ]
        run.config = {
            "policy": policy.number,
            "versus": versus.number if versus else None,
            "split": split,
            **dataclasses.asdict(configs[0]),
        }
        run.save(update_fields=["config"])
        names = " and ".join(f"v{p.number}" for p in players)
        services.run_log(run=run, line=f"Sampling {len(prompts)} {split} prompts from {names}")
        # generate() reports answers (sequences) done; every player samples as many.
        per_player_total = len(prompts) * configs[0].num_samples
        total = per_player_total * len(players)

        per_player = []
        for i, (player, config) in enumerate(zip(players, configs, strict=True)):

            def progress(done: int, _total: int, offset: int = i * per_player_total) -> None:
                heartbeat.check()
                services.run_record_metrics(
                    run=run,
                    values={
                        "step": offset + done,
                        "answers_done": offset + done,
                        "answers_total": total,
                    },
                )

            samples = generate(config, [p.messages for p in prompts], on_progress=progress)
            per_player.append([[(player, dataclasses.asdict(s)) for s in one] for one in samples])
        rows = [
            (prompt, [pair for player_samples in per_player for pair in player_samples[k]])
            for k, prompt in enumerate(prompts)
        ]
        comparisons = services.generation_record(
            project=project,
            rows=rows,
            sampling={
                "temperature": configs[0].temperature,
                "top_p": configs[0].top_p,
                "max_new_tokens": configs[0].max_new_tokens,
                "seed": configs[0].seed,
            },
            priority=priority,
        )
        return {
            "policy": policy.number,
            "versus": versus.number if versus else None,
            "prompts": len(prompts),
            "comparisons": len(comparisons),
            "identical_pairs_skipped": len(prompts) - len(comparisons),
        }

    return _run(run, body)


# --- The loop iteration --------------------------------------------------------------------


def iteration_run(*, iteration: LoopIteration) -> None:
    """Carry an iteration from wherever it stands to its end. Safe to call again.

    Each step records its result on the iteration with a compare-and-set on the status, so
    a step that finishes after the iteration was cancelled (or was run twice by a
    redelivered message) changes nothing.
    """
    steps = {
        LoopIteration.Status.COLLECTING: _step_collect,
        LoopIteration.Status.REWARD: _step_reward,
        LoopIteration.Status.PPO: _step_ppo,
        LoopIteration.Status.EVALUATING: _step_evaluate,
        LoopIteration.Status.AWAITING_HUMANS: _step_human_gate,
        LoopIteration.Status.PROMOTING: _step_promote,
        LoopIteration.Status.GENERATING: _step_generate,
    }
    while True:
        _connection_release()
        iteration.refresh_from_db()
        step = steps.get(iteration.status)
        if step is None:
            return  # done, failed, rejected, cancelled, or waiting for an admin
        try:
            step(iteration)
        except (services.IterationMoved, RunCancelled, WaitingForHumans):
            return
        except Exception as error:
            logger.exception("Iteration %s of %s failed", iteration.number, iteration.project)
            _connection_release()
            with contextlib.suppress(services.IterationMoved):
                services.iteration_advance(
                    iteration=iteration,
                    status=LoopIteration.Status.FAILED,
                    expected=iteration.status,
                    error=_error_text(error),
                )
            return


def _advance(iteration: LoopIteration, status: str, **fields: Any) -> None:
    services.iteration_advance(
        iteration=iteration, status=status, expected=iteration.status, **fields
    )


def _step_collect(iteration: LoopIteration) -> None:
    snapshot = services.snapshot_create(
        project=iteration.project, name=f"iteration-{iteration.number}"
    )
    _advance(iteration, LoopIteration.Status.REWARD, snapshot=snapshot)


def _step_reward(iteration: LoopIteration) -> None:
    from training.ml.reward import RewardTrainConfig, train_reward

    project, snapshot = iteration.project, iteration.snapshot
    config = stage_config(
        RewardTrainConfig, _overrides(project, "reward"), base_model=project.base_model
    )
    run = services.run_create(
        project=project,
        kind=TrainingRun.Kind.REWARD,
        iteration=iteration,
        config={"snapshot": snapshot.pk, **dataclasses.asdict(config)},
    )
    work = _work_dir(project)
    holder: dict[str, Any] = {}

    def body(heartbeat: Heartbeat) -> dict[str, Any]:
        services.run_log(run=run, line=f"Reward model on {snapshot.pair_count} pairs")
        metrics = train_reward(
            config,
            str(services.artifact_path(snapshot.path)),
            str(work / "adapter"),
            on_metrics=_metrics_sink(run, heartbeat),
        )
        heartbeat.check()
        holder["model"] = _publish_artifact(
            work / "adapter",
            f"projects/{project.pk}/reward/iteration-{iteration.number}",
            lambda relative: services.reward_model_register(
                project=project, run=run, snapshot=snapshot, adapter_path=relative, metrics=metrics
            ),
        )
        return metrics

    try:
        _run(run, body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _advance(iteration, LoopIteration.Status.PPO, reward_model=holder["model"])


def _step_ppo(iteration: LoopIteration) -> None:
    from training.ml.data import write_jsonl
    from training.ml.ppo import PPOConfig, train_ppo

    project = iteration.project
    parent = policy_active(project=project)
    reward_model = iteration.reward_model
    config = stage_config(
        PPOConfig,
        _overrides(project, "ppo"),
        base_model=project.base_model,
        reward_model=str(services.artifact_path(reward_model.adapter_path)),
        init_adapter=_adapter(parent),
    )
    run = services.run_create(
        project=project,
        kind=TrainingRun.Kind.PPO,
        iteration=iteration,
        config={"parent": parent.number, **dataclasses.asdict(config)},
    )
    work = _work_dir(project)
    holder: dict[str, Any] = {}

    def body(heartbeat: Heartbeat) -> dict[str, Any]:
        prompts = Prompt.objects.filter(project=project, split=Prompt.Split.TRAIN)
        prompts_path = work / "prompts.jsonl"
        write_jsonl(prompts_path, [{"prompt": p.messages} for p in prompts])
        services.run_log(run=run, line=f"PPO from v{parent.number} on {len(prompts)} prompts")
        metrics = train_ppo(
            config,
            str(prompts_path),
            str(work / "adapter"),
            on_metrics=_metrics_sink(run, heartbeat),
        )
        heartbeat.check()
        holder["policy"] = _publish_artifact(
            work / "adapter",
            f"projects/{project.pk}/policies/iteration-{iteration.number}",
            lambda relative: services.policy_register(
                project=project,
                parent=parent,
                run=run,
                reward_model=reward_model,
                adapter_path=relative,
                metrics=metrics,
            ),
        )
        return metrics

    try:
        _run(run, body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _advance(iteration, LoopIteration.Status.EVALUATING, policy=holder["policy"])


def _step_evaluate(iteration: LoopIteration) -> None:
    """Candidate against the active policy on held-out prompts, then the project's gates."""
    from training.ml.data import write_jsonl
    from training.ml.evaluate import EvaluateConfig, evaluate

    project, candidate = iteration.project, iteration.policy
    incumbent = policy_active(project=project)
    prompts = list(Prompt.objects.filter(project=project, split=Prompt.Split.EVAL))
    if not prompts:  # no held-out prompts: judge on train prompts rather than not at all
        prompts = list(Prompt.objects.filter(project=project, split=Prompt.Split.TRAIN))
    config = stage_config(
        EvaluateConfig,
        _overrides(project, "evaluate"),
        base_model=project.base_model,
        reward_model=str(services.artifact_path(iteration.reward_model.adapter_path)),
        candidate_adapter=_adapter(candidate),
        incumbent_adapter=_adapter(incumbent),
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
    work = _work_dir(project)

    def body(heartbeat: Heartbeat) -> dict[str, Any]:
        prompts_path = work / "prompts.jsonl"
        write_jsonl(prompts_path, [{"prompt": p.messages} for p in prompts])

        def progress(done: int, total: int) -> None:
            heartbeat.check()
            services.run_record_metrics(run=run, values={"step": done, "of": total})

        return evaluate(config, str(prompts_path), on_progress=progress)

    try:
        evaluation = _run(run, body)
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
        failed = ", ".join(g["name"] for g in report["gates"] if not g["passed"])
        services.iteration_advance(iteration=iteration, status=iteration.status, evaluation=record)
        services.iteration_reject(iteration=iteration, reason=f"Gates not passed: {failed}.")
        return
    if project.gate_human_min_win_rate is not None:
        next_status = LoopIteration.Status.AWAITING_HUMANS
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
