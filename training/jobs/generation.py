"""Generation jobs: the active policy answers prompts and the pairs become comparisons."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.models import Comparison, Project, Prompt
from training import services
from training.jobs.runner import Heartbeat, adapter_of, run_as, stage_config, stage_overrides
from training.models import LoopIteration, PolicyVersion, TrainingRun
from training.selectors import policy_active

logger = logging.getLogger(__name__)


# --- Generation ----------------------------------------------------------------------------


def generation_queue(*, project: Project, iteration: LoopIteration | None = None) -> TrainingRun:
    """Create a generation run for the active policy and send it to a GPU worker.

    A project has one such run waiting at most: while one is queued, it is returned instead
    (it samples the prompts with the fewest open comparisons when it starts, as a second
    would). The project's row is locked meanwhile, so two callers at once queue one run.
    """
    from training.tasks import generate_comparisons_task

    with transaction.atomic():
        Project.objects.select_for_update().only("pk").get(pk=project.pk)
        queued = TrainingRun.objects.filter(
            project=project,
            kind=TrainingRun.Kind.GENERATE,
            status=TrainingRun.Status.QUEUED,
            iteration=iteration,
        ).first()
        if queued is not None:
            return queued
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
    limit = project.comparisons_per_iteration
    judge_limit = 0
    if not versus and project.gate_judge_min_win_rate is not None:
        # A share of the pairs on eval prompts: labels for the independent judge, which the
        # policy's reward model never sees (docs/judgement.md).
        judge_limit = round(limit * project.judge_share)
    prompts = generation_prompts(
        project=project, policy=policy, split=Prompt.Split.EVAL, limit=judge_limit
    ) + generation_prompts(project=project, policy=policy, split=split, limit=limit)
    prompts = prompts[:limit]
    players = [policy, versus] if versus else [policy]

    def body(heartbeat: Heartbeat) -> dict[str, Any]:
        if not prompts:
            raise ValidationError(f"Project {project.slug} has no {split} prompts to sample.")
        configs = [
            stage_config(
                GenerateConfig,
                stage_overrides(project, "generate"),
                base_model=project.base_model,
                adapter=adapter_of(player),
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

    return run_as(run, body)
