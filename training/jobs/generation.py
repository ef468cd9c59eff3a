"""Generation jobs: the active policy answers prompts and the pairs become comparisons."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from feedback.models import Comparison, ComparisonStrategy, Project, Prompt
from feedback.services import comparisons_prioritize
from training import services
from training.jobs.child import Launch, stage_train
from training.jobs.runner import (
    Heartbeat,
    adapter_of,
    run_as,
    stage_config,
    stage_overrides,
    work_dir,
)
from training.jobs.uncertainty import (
    POOL_FACTOR,
    UNCERTAINTY_PRIORITY_MAX,
    candidate_pairs,
    committee_names,
    committee_priorities,
    open_pairs,
)
from training.models import LoopIteration, PolicyVersion, RewardModelVersion, TrainingRun
from training.selectors import policy_active, reward_models_latest

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


@dataclasses.dataclass(frozen=True)
class Draw:
    """Answers that one policy samples for each prompt, at one temperature."""

    policy: PolicyVersion
    num_samples: int
    temperature: float


def answers_sample(
    *, run: TrainingRun, heartbeat: Heartbeat, prompts: list[Prompt], draws: list[Draw]
) -> list[list[tuple[PolicyVersion, dict[str, Any]]]]:
    """Per prompt, the answers of every draw in turn, as (policy, sample); each sample carries
    its sampling settings. Records the draws in the run's config and its progress."""
    from training.ml.data import write_jsonl
    from training.ml.generate import GenerateConfig

    project = run.project
    configs = [
        stage_config(
            GenerateConfig,
            stage_overrides(project, "generate"),
            base_model=project.base_model,
            adapter=adapter_of(draw.policy),
            num_samples=draw.num_samples,
            max_new_tokens=project.max_new_tokens,
            temperature=draw.temperature,
            top_p=project.top_p,
            seed=run.pk + i,  # a new run samples new answers
        )
        for i, draw in enumerate(draws)
    ]
    run.config = {
        **run.config,
        **dataclasses.asdict(configs[0]),
        "draws": [dataclasses.asdict(config) for config in configs],
    }
    run.save(update_fields=["config"])
    # generate() reports answers (sequences) done.
    total = len(prompts) * sum(config.num_samples for config in configs)
    per_prompt: list[list[tuple[PolicyVersion, dict[str, Any]]]] = [[] for _ in prompts]
    offset = 0
    work = work_dir(project)
    try:
        prompts_path = work / "prompts.jsonl"
        write_jsonl(prompts_path, [{"prompt": p.messages} for p in prompts])
        for draw, config in zip(draws, configs, strict=True):

            def progress(values: dict[str, Any], offset: int = offset) -> None:
                done = offset + values["done"]
                services.run_record_metrics(
                    run=run, values={"step": done, "answers_done": done, "answers_total": total}
                )

            samples = stage_train(
                run=run,
                heartbeat=heartbeat,
                stage="generate",
                config=config,
                data=prompts_path,
                out=work / "answers",
                launch=Launch(),
                report=progress,
            )["samples"]
            sampling = {
                "temperature": config.temperature,
                "top_p": config.top_p,
                "max_new_tokens": config.max_new_tokens,
                "seed": config.seed,
            }
            for answers, one in zip(per_prompt, samples, strict=True):
                answers += [(draw.policy, {**s, "sampling": sampling}) for s in one]
            offset += len(prompts) * config.num_samples
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return per_prompt


def generation_run(
    *,
    run: TrainingRun,
    policy: PolicyVersion | None = None,
    versus: PolicyVersion | None = None,
    priority: float = 0.0,
) -> dict[str, Any]:
    """Sample comparisons from `policy` (the active policy unless given).

    Without `versus`: two answers of the policy per train prompt (data for the next reward
    model), or, where the project chooses by uncertainty and has a reward model, the pairs its
    reward models are least sure of (`generation_by_uncertainty`). With `versus`: one answer of
    the policy (side A) and one of `versus` (side B) per eval prompt, so that people judge each
    new version against the one before it: after a promotion, or before it for the human gate
    (a candidate against the active policy).
    """
    project = run.project
    policy = policy or policy_active(project=project)
    by_uncertainty = project.comparison_strategy == ComparisonStrategy.UNCERTAINTY
    if versus is None and by_uncertainty:
        committee = reward_models_latest(project=project)
        if committee:
            return generation_by_uncertainty(run=run, policy=policy, committee=committee)
    if versus is not None and by_uncertainty:
        priority = max(priority, UNCERTAINTY_PRIORITY_MAX)
    split = Prompt.Split.EVAL if versus else Prompt.Split.TRAIN
    limit = project.comparisons_per_iteration
    judge_limit = 0 if versus else judge_pairs(project=project, limit=limit)
    prompts = generation_prompts(
        project=project, policy=policy, split=Prompt.Split.EVAL, limit=judge_limit
    ) + generation_prompts(project=project, policy=policy, split=split, limit=limit)
    prompts = prompts[:limit]
    players = [policy, versus] if versus else [policy]

    def body(heartbeat: Heartbeat) -> dict[str, Any]:
        if not prompts:
            raise ValidationError(f"Project {project.slug} has no {split} prompts to sample.")
        run.config = {
            "policy": policy.number,
            "versus": versus.number if versus else None,
            "split": split,
            "strategy": ComparisonStrategy.FIFO,
        }
        names = " and ".join(f"v{p.number}" for p in players)
        services.run_log(run=run, line=f"Sampling {len(prompts)} {split} prompts from {names}")
        draws = [Draw(player, 2 // len(players), project.temperature) for player in players]
        rows = answers_sample(run=run, heartbeat=heartbeat, prompts=prompts, draws=draws)
        comparisons = services.generation_record(
            project=project,
            rows=list(zip(prompts, rows, strict=True)),
            sampling={},  # each sample carries its own
            priority=priority,
        )
        return {
            "policy": policy.number,
            "versus": versus.number if versus else None,
            "strategy": ComparisonStrategy.FIFO,
            "prompts": len(prompts),
            "comparisons": len(comparisons),
            "identical_pairs_skipped": len(prompts) - len(comparisons),
        }

    return run_as(run, body)


def judge_pairs(*, project: Project, limit: int) -> int:
    """How many of `limit` new pairs go to eval prompts: labels for the independent judge,
    which the policy's reward model never sees (docs/judgement.md). None without a judge gate."""
    if project.gate_judge_min_win_rate is None:
        return 0
    return round(limit * project.judge_share)


def generation_by_uncertainty(
    *, run: TrainingRun, policy: PolicyVersion, committee: list[RewardModelVersion]
) -> dict[str, Any]:
    """New comparisons where the reward models are least sure, and the open ones reordered.

    A pool of POOL_FACTOR times comparisons_per_iteration prompts (fewest open comparisons
    first, as fifo; the judge's share, `judge_pairs`, of eval prompts, chosen apart), each answered three times by the policy: twice at the project's
    temperature, once at half of it (answers nearer the policy's mode, where PPO takes it). The
    committee scores every candidate pair (any two different answers of a prompt); each prompt
    offers its most uncertain pair, and the comparisons_per_iteration most uncertain are kept,
    with their uncertainty as priority. The open comparisons of one version get their priority
    from the same committee, so the queue serves old and new pairs by what the newest reward
    models know. Answers of the previous version are not paired: a pair of two versions counts
    as a game on the leaderboard, and one chosen for being close would bias it.
    """
    from training.ml.uncertainty import most_uncertain

    project = run.project
    keep = project.comparisons_per_iteration
    keep_eval = judge_pairs(project=project, limit=keep)
    keep_train = keep - keep_eval
    train_prompts = generation_prompts(
        project=project, policy=policy, split=Prompt.Split.TRAIN, limit=POOL_FACTOR * keep_train
    )
    prompts = train_prompts + generation_prompts(
        project=project, policy=policy, split=Prompt.Split.EVAL, limit=POOL_FACTOR * keep_eval
    )
    names = committee_names(committee)

    def body(heartbeat: Heartbeat) -> dict[str, Any]:
        if not prompts:
            raise ValidationError(f"Project {project.slug} has no train prompts to sample.")
        run.config = {
            "policy": policy.number,
            "versus": None,
            "split": Prompt.Split.TRAIN,
            "strategy": ComparisonStrategy.UNCERTAINTY,
            "reward_models": names,
        }
        services.run_log(
            run=run,
            line=f"Sampling {len(prompts)} prompts ({len(prompts) - len(train_prompts)} eval) "
            f"from v{policy.number}, "
            f"keeping the {keep} pairs {' and '.join(names)} are least sure of",
        )
        draws = [
            Draw(policy, 2, project.temperature),
            Draw(policy, 1, project.temperature / 2),
        ]
        answers = answers_sample(run=run, heartbeat=heartbeat, prompts=prompts, draws=draws)
        candidates = [candidate_pairs([sample for _, sample in one]) for one in answers]
        pairs = [
            (prompt.messages, one[i][1]["text"], one[j][1]["text"])
            for prompt, one, pairs_of_prompt in zip(prompts, answers, candidates, strict=True)
            for i, j in pairs_of_prompt
        ]
        open_ids, open_pairs_now = open_pairs(project=project)
        services.run_log(
            run=run,
            line=f"Scoring {len(pairs)} candidate pairs and {len(open_ids)} open comparisons",
        )
        scores = committee_priorities(
            project=project,
            committee=committee,
            pairs=pairs + open_pairs_now,
            heartbeat=heartbeat,
        )
        heartbeat.check()
        groups, at = [], 0
        for pairs_of_prompt in candidates:
            groups.append(scores[at : at + len(pairs_of_prompt)])
            at += len(pairs_of_prompt)
        # The train prompts' share and the judge's (eval prompts), each by uncertainty.
        n = len(train_prompts)
        picked = most_uncertain(groups[:n], keep_train) + [
            (n + g, c) for g, c in most_uncertain(groups[n:], keep_eval)
        ]
        rows, priorities = [], []
        for g, c in picked:
            i, j = candidates[g][c]
            rows.append((prompts[g], [answers[g][i], answers[g][j]]))
            priorities.append(groups[g][c])
        rescored = comparisons_prioritize(
            project=project, priorities=dict(zip(open_ids, scores[len(pairs) :], strict=True))
        )
        comparisons = services.generation_record(
            project=project,
            rows=rows,
            sampling={},
            priority=priorities,  # samples carry theirs
        )
        kept_groups = {g for g, _ in picked}
        dropped = [max(group) for n, group in enumerate(groups) if group and n not in kept_groups]
        return {
            "policy": policy.number,
            "versus": None,
            "strategy": ComparisonStrategy.UNCERTAINTY,
            "reward_models": names,
            "prompts": len(prompts),
            "eval_prompts": len(prompts) - n,
            "candidate_pairs": len(pairs),
            "comparisons": len(comparisons),
            "priority_kept_min": min(priorities, default=None),
            "priority_dropped_max": max(dropped, default=None),
            "open_comparisons_rescored": rescored,
        }

    return run_as(run, body)
