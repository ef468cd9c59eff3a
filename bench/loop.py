"""Proof that the loop learns: SmolLM2-135M-Instruct and a simulated annotator.

The annotator prefers concise answers without exclamation marks (feedback/preferences.py,
"concise"), a taste the base policy does not know. The script seeds a project with the demo
prompts, lets the annotator label the base policy's comparisons, runs N iterations (reward
model, PPO, or DPO with `--optimizer dpo`, gates, promotion, new comparisons; the annotator
labels the new ones after each), and finally has the same annotator judge the final policy
against the base on the held-out prompts. It prints one JSON line and writes it to
bench/out/loop.json.

    python bench/loop.py --base var/models/smollm2-135m-instruct --iterations 3

Reward hacking (`--train-taste longer`): the labels of the train prompts, from which the
policy's reward model learns, come from a rater who rewards length (a planted exploit), while
the people (the eval prompts' labels, the independent judge's, and the final judgement) keep
the concise taste. PPO climbs the corrupted reward model and writes longer answers; the judge
gate must reject that candidate, while the same run with honest labels is promoted
(`make bench-judge`: three seeds of each, on `--prompts brief`, whose answers have room to grow).

SFT warm start (`--sft-demonstrations 64`): before any label, the annotator writes demonstrations
of its taste (`demonstration_of`), a reviewer accepts them, iteration 1 starts with SFT on them,
and the SFT version alone is judged against the base as well.

The loop's steps run in this process (the same functions a GPU worker runs; the training
stages as child processes, launched as a worker launches them), so the times are the jobs'
own, without queueing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedback.preferences import PREFERENCES  # noqa: E402  (no Django: plain functions)


def wilson(wins: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


# More prompts than the demo's 40, so that a generation round gives enough pairs for a first
# reward model and the final judgement rests on more than 8 held-out prompts. Made here, from
# templates; the held-out split takes whole topics, so no eval prompt shares one with training.
TOPICS = [
    "volcanoes",
    "photosynthesis",
    "the moon",
    "bees",
    "rainbows",
    "the internet",
    "glaciers",
    "coffee",
    "chess",
    "the heart",
    "bridges",
    "honey",
    "tides",
    "clouds",
    "bicycles",
    "libraries",
    "deserts",
    "owls",
    "electricity",
    "bread",
    "whales",
    "maps",
    "snow",
    "the piano",
    "recycling",
    "gravity",
    "forests",
    "trains",
]
TEMPLATES = [
    "Tell me about {t}.",
    "Explain {t} to a ten-year-old.",
    "Tell me one interesting fact about {t}.",
]
# Prompts that ask for short answers: the base answers them in about 26 tokens (9% are cut at
# the 64-token limit), so a policy can learn to write longer as well as shorter. With the
# demo's prompts 94% of the base's answers are cut at the limit and only shorter is learnable.
BRIEF_TEMPLATES = [
    "In one sentence, what is {t}?",
    "Give a one-sentence fact about {t}.",
    "Describe {t} in a few words.",
    "What is {t}? Answer briefly.",
]
EVAL_TOPICS = 8  # the last topics are held out


def extra_prompts(templates: list[str] = TEMPLATES) -> list[dict]:
    records = []
    for i, topic in enumerate(TOPICS):
        split = "eval" if i >= len(TOPICS) - EVAL_TOPICS else "train"
        for template in templates:
            text = template.format(t=topic)
            records.append({"prompt": [{"role": "user", "content": text}], "split": split})
    return records


def iteration_record(iteration, seconds: float) -> dict:
    runs: dict[str, list[float]] = {}  # two reward runs (policy, judge), two generations
    for run in iteration.runs.order_by("pk"):
        runs.setdefault(run.kind, []).append(round(run.duration_seconds or 0, 1))
    return {
        "iteration": iteration.number,
        "status": iteration.status,
        "trigger_to_new_comparisons_s": round(seconds, 1),
        "run_seconds": runs,
        "rm_heldout_accuracy": iteration.reward_model.heldout_accuracy
        if iteration.reward_model_id
        else None,
        "rm_win_rate": iteration.evaluation.get("win_rate"),
        "judge_win_rate": (iteration.evaluation.get("judge") or {}).get("win_rate"),
        "overoptimization_gap": iteration.evaluation.get("overoptimization_gap"),
        "candidate_tokens_mean": (iteration.evaluation.get("candidate") or {}).get("length_mean"),
        "incumbent_tokens_mean": (iteration.evaluation.get("incumbent") or {}).get("length_mean"),
        "policy_version": iteration.policy.number if iteration.policy_id else None,
        "kl_to_base": iteration.evaluation.get("kl_to_base_mean"),
        "error": iteration.error[:300],
    }


def final_judgement(
    args,
    project,
    iterations: list[dict],
    total_s: float,
    name: str = "loop.json",
    version: int | None = None,
    sft: dict | None = None,
) -> None:
    """The simulated annotator judges the active policy (or `version`) against the base on
    held-out prompts."""
    from training.jobs.runner import adapter_of
    from training.leaderboard import leaderboard
    from training.models import PolicyVersion

    final = (
        PolicyVersion.objects.get(project=project, number=version)
        if version is not None
        else PolicyVersion.objects.get(project=project, status="active")
    )
    summary = {
        "optimizer": project.optimizer,
        "restart_from": project.restart_from,
        **({"dpo": project.training_config.get("dpo", {})} if project.optimizer == "dpo" else {}),
        "final_version": final.number,
        **against_base(args, project, adapter_of(final), "final"),
        "iterations": iterations,
        **({"sft_alone": sft} if sft else {}),
        "leaderboard_from_simulated_labels": [
            {
                "version": r.version,
                "status": r.status,
                "rating": None if r.rating is None else round(r.rating, 1),
                "ci95": None if r.low is None else [round(r.low, 1), round(r.high, 1)],
                "games": r.games,
            }
            for r in leaderboard(project=project)
        ],
        "total_s": round(total_s, 1),
    }
    out = ROOT / "bench/out"
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


def against_base(args, project, adapter: str | None, name: str) -> dict:
    """The simulated annotator's concise taste on the held-out prompts: answers of `adapter`
    against the base's (the same seeds), its win rate with a Wilson 95% interval."""
    from feedback.models import Prompt
    from feedback.preferences import judge
    from training.ml.generate import GenerateConfig, generate

    eval_prompts = [p.messages for p in Prompt.objects.filter(project=project, split="eval")]

    def answers(adapter: str | None) -> list[str]:
        config = GenerateConfig(
            base_model=args.base,
            adapter=adapter,
            num_samples=args.judge_samples,
            max_new_tokens=64,
            batch_size=8,
            seed=12345,
        )
        return [s.text for per in generate(config, eval_prompts) for s in per]

    ours, base = answers(adapter), answers(None)
    score = {"a": 1.0, "b": 0.0, "tie": 0.5}
    outcomes = [score[judge("concise", a, b)[0]] for a, b in zip(ours, base, strict=True)]
    wins = sum(outcomes)
    low, high = wilson(wins, len(outcomes))
    return {
        "judged_pairs": len(outcomes),
        "win_rate_vs_base": round(wins / len(outcomes), 3),
        "win_rate_95ci": [round(low, 3), round(high, 3)],
        f"mean_chars_{name}": round(sum(map(len, ours)) / len(ours), 1),
        "mean_chars_base": round(sum(map(len, base)) / len(base), 1),
        f"exclamations_{name}": sum(a.count("!") for a in ours),
        "exclamations_base": sum(a.count("!") for a in base),
    }


def demonstration_of(answers: list[str]) -> str:
    """What the simulated annotator writes for a prompt: the base answer its concise taste
    likes best, cut to its first sentence, exclamation marks made full stops."""
    best = max(answers, key=PREFERENCES["concise"]).strip()
    cut = next((i + 1 for i, c in enumerate(best) if c in ".!?" and i > 20), len(best))
    return best[:cut].replace("!", ".")


def write_demonstrations(project, user, wanted: int) -> None:
    """`wanted` demonstrations of the concise taste, on the train prompts that have the base's
    answers (the generated pairs), accepted by a reviewer: enough new ones for an SFT stage."""
    from django.contrib.auth import get_user_model

    from feedback.models import Completion, Membership, Prompt
    from feedback.services import demonstration_review, demonstration_write, membership_set

    reviewer, _ = get_user_model().objects.get_or_create(username="sim-reviewer")
    membership_set(project=project, user=reviewer, role=Membership.Role.REVIEWER)
    project.demonstrations_per_prompt = 1
    project.sft_min_demonstrations = wanted
    project.save(update_fields=["demonstrations_per_prompt", "sft_min_demonstrations"])
    prompts = Prompt.objects.filter(project=project, split="train").order_by("pk")
    written = 0
    for prompt in prompts:
        answers = list(Completion.objects.filter(prompt=prompt).values_list("text", flat=True))
        if not answers:
            continue
        demonstration = demonstration_write(
            user=user, project=project, prompt_id=prompt.pk, text=demonstration_of(answers)
        )
        demonstration_review(
            reviewer=reviewer, demonstration_id=demonstration.pk, decision="accepted"
        )
        written += 1
        if written == wanted:
            break
    if written < wanted:
        sys.exit(f"--sft-demonstrations {wanted}: only {written} train prompts have answers")
    print(f"{written} demonstrations written and accepted", flush=True)


def sft_judgement(args, project) -> dict:
    """The first SFT version (trained on the demonstrations alone, before any label counted)
    against the base."""
    from training import services
    from training.models import SFTVersion

    sft = SFTVersion.objects.filter(project=project).order_by("number").first()
    adapter = services.artifact_local(
        key=sft.adapter_path, manifest_sha256=sft.adapter_manifest_sha256
    )
    return {"sft_version": sft.number, **against_base(args, project, str(adapter), "sft")}


def django_in(work: Path) -> None:
    """Django on the SQLite database (migrated) and artifacts of a loop's work folder, torch on
    2 threads."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.base",
        DEBUG="1",
        HONE_VAR_DIR=str(work),
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
    )
    import django
    import torch

    django.setup()
    torch.set_num_threads(2)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def judge_only(args) -> None:
    """Judge the active policy of an earlier (or still running) loop's work folder."""
    django_in(Path(args.judge_only))

    from feedback.models import Project
    from training.models import LoopIteration

    project = Project.objects.get(slug="bench")
    iterations = [
        iteration_record(i, ((i.finished_at or i.created_at) - i.created_at).total_seconds())
        for i in LoopIteration.objects.filter(project=project).order_by("number")
    ]
    name = f"loop-judge-v{args.version}.json" if args.version is not None else "loop-judge.json"
    final_judgement(args, project, iterations, float("nan"), name=name, version=args.version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=str(ROOT / "var/models/smollm2-135m-instruct"))
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--comparisons", type=int, default=64, help="new pairs per iteration")
    parser.add_argument(
        "--first-comparisons", type=int, default=128, help="pairs of the base before iteration 1"
    )
    parser.add_argument("--judge-samples", type=int, default=2, help="answers per eval prompt")
    parser.add_argument("--episodes", type=int, default=128, help="PPO episodes per iteration")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="PPO learning rate")
    parser.add_argument(
        "--dpo-learning-rate",
        type=float,
        help="DPO learning rate (default: DPOTrainConfig's, 5e-5). 5e-4 gives DPO's 11 steps "
        "on the first iteration's pairs about PPO's budget of steps x learning rate",
    )
    parser.add_argument(
        "--dpo-beta",
        type=float,
        help="DPO's beta (default: DPOTrainConfig's, 0.1): higher holds the policy closer to its "
        "reference, the loss saturating at a smaller log-prob margin",
    )
    parser.add_argument(
        "--dpo-loss",
        choices=["sigmoid", "ipo"],
        help="DPO's loss (default: DPOTrainConfig's, sigmoid); ipo aims at a margin of 1/(2 beta)",
    )
    parser.add_argument(
        "--train-taste",
        default="concise",
        help="taste of the labels on train prompts (the policy's reward model learns from "
        "them); eval prompts are always labelled concise. 'longer' plants an exploit",
    )
    parser.add_argument(
        "--prompts",
        choices=["demo", "brief"],
        default="demo",
        help="demo: the demo's 40 prompts and 84 more (answers mostly cut at 64 tokens); brief: "
        "112 prompts asking for a sentence (answers below the limit, so length can grow)",
    )
    parser.add_argument(
        "--optimizer",
        choices=["ppo", "dpo"],
        default="ppo",
        help="the project's optimizer: PPO against the reward model, or DPO on the pairs",
    )
    parser.add_argument(
        "--restart-from",
        choices=["active", "base"],
        default="active",
        help="where each candidate starts: the active version's adapter (continued, held to "
        "the base), or a new adapter on the base each iteration",
    )
    parser.add_argument(
        "--final-comparisons",
        type=int,
        help="pairs the last iteration generates (default --comparisons); they are never "
        "labelled here, so a run that only judges its candidate can keep that step short",
    )
    parser.add_argument(
        "--base-cache",
        metavar="FILE",
        help="the database as it stands once the base policy's pairs are generated (before any "
        "label): saved there by the first run, started from by the next runs with the same "
        "--base, --first-comparisons and --comparisons (generation is seeded by run number, so "
        "they would sample the very same pairs)",
    )
    parser.add_argument(
        "--sft-demonstrations",
        type=int,
        default=0,
        metavar="N",
        help="SFT warm start: before any label, the simulated annotator writes N demonstrations "
        "of its taste on train prompts, a reviewer accepts them, and iteration 1 starts with "
        "SFT on them; the SFT version alone is judged against the base too",
    )
    parser.add_argument("--seed", type=int, default=0, help="PPO seed")
    parser.add_argument("--out", default="loop.json", help="file name under bench/out")
    parser.add_argument(
        "--judge-only",
        metavar="WORK_DIR",
        help="only judge the active policy of a loop's work folder (/tmp/hone-bench-loop-*)",
    )
    parser.add_argument(
        "--version", type=int, help="with --judge-only: this policy version, not the active one"
    )
    args = parser.parse_args()
    for name in ("dpo_learning_rate", "dpo_beta"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.judge_only:
        judge_only(args)
        return

    work = Path(tempfile.mkdtemp(prefix="hone-bench-loop-"))
    cache = Path(args.base_cache) if args.base_cache else None
    cache_key = {
        "base": str(Path(args.base).resolve()),
        "first_comparisons": args.first_comparisons,
        "comparisons": args.comparisons,
        "prompts": args.prompts,
    }
    cached = cache is not None and cache.exists()
    if cached:
        saved_key = {"prompts": "demo", **json.loads(cache.with_suffix(".json").read_text())}
        if saved_key != cache_key:
            sys.exit(f"--base-cache {cache} was made with {saved_key}, not {cache_key}")
        with sqlite3.connect(cache) as src, sqlite3.connect(work / "bench.sqlite3") as dst:
            src.backup(dst)
    django_in(work)

    from feedback.models import Membership, Project
    from feedback.services import membership_set, project_create, prompts_import
    from training import jobs, services
    from training.management.commands.seed_demo import DEMO_PROMPTS, _read_jsonl
    from training.models import TrainingRun

    training_config = {
        "reward": {"epochs": 2, "batch_size": 8, "max_length": 384},
        "ppo": {
            "total_episodes": args.episodes,
            "rollout_batch_size": 16,
            "num_mini_batches": 2,
            "response_length": 64,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
        },
        "dpo": {
            "batch_size": 8,
            "max_length": 384,
            "seed": args.seed,
            **{
                key: value
                for key, value in (
                    ("learning_rate", args.dpo_learning_rate),
                    ("beta", args.dpo_beta),
                    ("loss_type", args.dpo_loss),
                )
                if value is not None
            },
        },
        "evaluate": {"batch_size": 16},
        "generate": {"batch_size": 16},
    }
    if cached:
        project = Project.objects.get(slug="bench")
        project.optimizer, project.training_config = args.optimizer, training_config
        project.restart_from = args.restart_from
        project.save()
    else:
        project = project_create(
            slug="bench",
            name="Bench: concise answers",
            base_model=args.base,
            max_new_tokens=64,
            comparisons_per_iteration=args.comparisons,
            optimizer=args.optimizer,
            restart_from=args.restart_from,
            training_config=training_config,
        )
        if args.prompts == "brief":
            prompts_import(project=project, records=extra_prompts(BRIEF_TEMPLATES), source="bench")
        else:
            prompts_import(project=project, records=_read_jsonl(DEMO_PROMPTS), source="demo")
            prompts_import(project=project, records=extra_prompts(), source="bench")
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="sim-concise-1")
    membership_set(project=project, user=user, role=Membership.Role.ANNOTATOR)

    def label_everything() -> int:
        """The simulated annotator labels every open comparison: concise on eval prompts, the
        --train-taste on train prompts."""
        from feedback.preferences import judge
        from feedback.services import assignment_next, label_submit

        given = 0
        while (assignment := assignment_next(project=project, user=user)) is not None:
            comparison = assignment.comparison
            taste = "concise" if comparison.prompt.split == "eval" else args.train_taste
            choice, strength = judge(
                taste, comparison.completion_a.text, comparison.completion_b.text
            )
            label_submit(user=user, assignment_id=assignment.pk, choice=choice, strength=strength)
            given += 1
        return given

    def sample_active_policy(pairs: int) -> None:
        """What annotators get between iterations: pairs of the active policy, labelled."""
        while pairs > 0:
            project.comparisons_per_iteration = min(pairs, args.comparisons)
            run = services.run_create(project=project, kind=TrainingRun.Kind.GENERATE, config={})
            jobs.generation_run(run=run)
            pairs -= project.comparisons_per_iteration
        project.comparisons_per_iteration = args.comparisons
        project.save()

    started = time.monotonic()
    if not cached:
        sample_active_policy(args.first_comparisons)
        if cache is not None:
            from django.db import connection

            connection.close()
            cache.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(work / "bench.sqlite3") as src, sqlite3.connect(cache) as dst:
                src.backup(dst)  # the write-ahead log's pages too
            cache.with_suffix(".json").write_text(json.dumps(cache_key))
    if args.sft_demonstrations:
        write_demonstrations(project, user, args.sft_demonstrations)
    labels = label_everything()
    print(f"base comparisons: {labels} labels in {time.monotonic() - started:.0f} s", flush=True)

    iterations = []
    for number in range(1, args.iterations + 1):
        if number == args.iterations and args.final_comparisons is not None:
            project.comparisons_per_iteration = args.final_comparisons
            project.save(update_fields=["comparisons_per_iteration"])
        t0 = time.monotonic()
        iteration = services.iteration_start(project=project, trigger="manual")
        jobs.iteration_run(iteration=iteration)
        iteration.refresh_from_db()
        record = iteration_record(iteration, time.monotonic() - t0)
        iterations.append(record)
        print(json.dumps(record), flush=True)
        if iteration.status == "rejected" and args.iterations == 1:
            break  # judged below: the rejected candidate against the base
        if iteration.status == "rejected":
            # The loop goes on as in production: more labels on the active policy, then retry.
            sample_active_policy(args.comparisons)
        elif iteration.status != "done":
            break
        label_everything()

    sft = None
    if args.sft_demonstrations and iterations:
        sft = sft_judgement(args, project)
        print(json.dumps({"sft_alone": sft}), flush=True)
    candidate = iterations[-1]["policy_version"] if iterations else None
    rejected = bool(iterations) and iterations[-1]["status"] == "rejected"
    final_judgement(
        args,
        project,
        iterations,
        time.monotonic() - started,
        name=args.out,
        version=candidate if rejected else None,
        sft=sft,
    )


if __name__ == "__main__":
    main()
