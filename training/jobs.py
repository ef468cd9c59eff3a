"""GPU work: turn rows into files, call `training.ml`, record the results through services.

Runs inside a Celery worker on the `gpu` queue. `training.ml` (torch, transformers, peft,
TRL) is imported inside each function, so that web processes never pay for it.

Every step of an iteration is resumable: a step whose result is already recorded on the
iteration is skipped, so a retried or redelivered task continues where the last one
stopped, and an artifact only becomes visible (moved into place, then registered) once it
is complete.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.models import Comparison, Project, Prompt
from training import services
from training.models import LoopIteration, PolicyVersion, TrainingRun
from training.selectors import policy_active

logger = logging.getLogger(__name__)

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


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


def _run(run: TrainingRun, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `body` as `run`: mark it running, then succeeded with its summary, or failed."""
    services.run_start(run=run, worker=WORKER_NAME)
    try:
        summary = body()
    except Exception as error:
        services.run_fail(run=run, error=_error_text(error))
        raise
    services.run_succeed(run=run, summary=summary)
    return summary


def _error_text(error: Exception) -> str:
    if isinstance(error, (ValidationError, ValueError)):
        return f"{type(error).__name__}: {'; '.join(getattr(error, 'messages', [str(error)]))}"
    return "".join(traceback.format_exception(error))[-4000:]


def _metrics_sink(run: TrainingRun) -> Callable[[dict[str, Any]], None]:
    def sink(values: dict[str, Any]) -> None:
        services.run_record_metrics(run=run, values=values)

    return sink


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


def generation_prompts(*, project: Project, policy: PolicyVersion, limit: int) -> list[Prompt]:
    """Train prompts with the fewest open comparisons of this policy, oldest first."""
    from django.db.models import Count, Q

    return list(
        Prompt.objects.filter(project=project, split=Prompt.Split.TRAIN)
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


def generation_run(*, run: TrainingRun) -> dict[str, Any]:
    from training.ml.generate import GenerateConfig, generate

    project = run.project
    policy = policy_active(project=project)
    prompts = generation_prompts(
        project=project, policy=policy, limit=project.comparisons_per_iteration
    )

    def body() -> dict[str, Any]:
        if not prompts:
            raise ValidationError(f"Project {project.slug} has no train prompts to sample.")
        config = stage_config(
            GenerateConfig,
            _overrides(project, "generate"),
            base_model=project.base_model,
            adapter=_adapter(policy),
            num_samples=2,
            max_new_tokens=project.max_new_tokens,
            temperature=project.temperature,
            top_p=project.top_p,
            seed=run.pk,  # a new run samples new answers
        )
        run.config = {"policy": policy.number, **dataclasses.asdict(config)}
        run.save(update_fields=["config"])
        services.run_log(run=run, line=f"Sampling {len(prompts)} prompts from v{policy.number}")

        def progress(done: int, total: int) -> None:
            services.run_record_metrics(
                run=run, values={"step": done, "prompts_done": done, "prompts_total": total}
            )

        samples = generate(config, [p.messages for p in prompts], on_progress=progress)
        comparisons = services.generation_record(
            project=project,
            policy=policy,
            prompts=prompts,
            samples=[[dataclasses.asdict(s) for s in per_prompt] for per_prompt in samples],
            sampling={
                "temperature": config.temperature,
                "top_p": config.top_p,
                "max_new_tokens": config.max_new_tokens,
                "seed": config.seed,
            },
        )
        return {
            "policy": policy.number,
            "prompts": len(prompts),
            "comparisons": len(comparisons),
            "identical_pairs_skipped": len(prompts) - len(comparisons),
        }

    return _run(run, body)


# --- The loop iteration --------------------------------------------------------------------


def iteration_run(*, iteration: LoopIteration) -> None:
    """Carry an iteration from wherever it stands to its end. Safe to call again."""
    steps = {
        LoopIteration.Status.COLLECTING: _step_collect,
        LoopIteration.Status.REWARD: _step_reward,
        LoopIteration.Status.PPO: _step_ppo,
        LoopIteration.Status.PROMOTING: _step_promote,
        LoopIteration.Status.GENERATING: _step_generate,
    }
    while iteration.status in steps:
        try:
            steps[iteration.status](iteration)
        except Exception as error:
            logger.exception("Iteration %s of %s failed", iteration.number, iteration.project)
            services.iteration_advance(
                iteration=iteration, status=LoopIteration.Status.FAILED, error=_error_text(error)
            )
            return


def _step_collect(iteration: LoopIteration) -> None:
    snapshot = services.snapshot_create(
        project=iteration.project, name=f"iteration-{iteration.number}"
    )
    services.iteration_advance(
        iteration=iteration, status=LoopIteration.Status.REWARD, snapshot=snapshot
    )


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

    def body() -> dict[str, Any]:
        services.run_log(run=run, line=f"Reward model on {snapshot.pair_count} pairs")
        metrics = train_reward(
            config,
            str(services.artifact_path(snapshot.path)),
            str(work / "adapter"),
            on_metrics=_metrics_sink(run),
        )
        relative = services.artifact_commit(
            tmp_dir=work / "adapter",
            relative=f"projects/{project.pk}/reward/iteration-{iteration.number}",
        )
        holder["model"] = services.reward_model_register(
            project=project, run=run, snapshot=snapshot, adapter_path=relative, metrics=metrics
        )
        return metrics

    try:
        _run(run, body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    services.iteration_advance(
        iteration=iteration, status=LoopIteration.Status.PPO, reward_model=holder["model"]
    )


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

    def body() -> dict[str, Any]:
        prompts = Prompt.objects.filter(project=project, split=Prompt.Split.TRAIN)
        prompts_path = work / "prompts.jsonl"
        write_jsonl(prompts_path, [{"prompt": p.messages} for p in prompts])
        services.run_log(run=run, line=f"PPO from v{parent.number} on {len(prompts)} prompts")
        metrics = train_ppo(
            config, str(prompts_path), str(work / "adapter"), on_metrics=_metrics_sink(run)
        )
        relative = services.artifact_commit(
            tmp_dir=work / "adapter",
            relative=f"projects/{project.pk}/policies/iteration-{iteration.number}",
        )
        holder["policy"] = services.policy_register(
            project=project,
            parent=parent,
            run=run,
            reward_model=reward_model,
            adapter_path=relative,
            metrics=metrics,
        )
        return metrics

    try:
        _run(run, body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    services.iteration_advance(
        iteration=iteration, status=LoopIteration.Status.PROMOTING, policy=holder["policy"]
    )


def _step_promote(iteration: LoopIteration) -> None:
    services.policy_promote(policy=iteration.policy)
    services.iteration_advance(iteration=iteration, status=LoopIteration.Status.GENERATING)


def _step_generate(iteration: LoopIteration) -> None:
    run = services.run_create(
        project=iteration.project, kind=TrainingRun.Kind.GENERATE, config={}, iteration=iteration
    )
    generation_run(run=run)
    services.iteration_advance(iteration=iteration, status=LoopIteration.Status.DONE)
