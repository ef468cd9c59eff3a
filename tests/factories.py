"""Rows for tests: completions and comparisons without running a model; and the end of
database connections, as a restart of PostgreSQL brings it."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from django.db.models import QuerySet
from django.utils import timezone

from feedback.models import Assignment, Comparison, Completion, Project, Prompt
from feedback.services import assignment_next, comparisons_create, label_submit
from training.selectors import policy_active

# Loop settings small enough for the tiny test model: an iteration takes seconds.
TINY_TRAINING = {
    "sft": {"epochs": 1, "batch_size": 2, "max_length": 128, "eval_fraction": 0.34},
    "reward": {"epochs": 1, "batch_size": 2, "max_length": 128, "eval_fraction": 0.34},
    "ppo": {
        "total_episodes": 8,
        "rollout_batch_size": 4,
        "num_mini_batches": 2,
        "num_ppo_epochs": 1,
        "response_length": 12,
    },
    "dpo": {"epochs": 1, "batch_size": 2, "max_length": 128, "eval_fraction": 0.34},
    "evaluate": {"batch_size": 4},
}

# The comparisons of the loop tests' project (tests/training/conftest.py, loop_project): the
# annotator prefers the short answer.
LOOP_ANSWERS = [("ok", "a much longer and wordier answer")] * 6


def make_comparisons(
    project: Project, texts: list[tuple[str, str]], split: str = "train"
) -> list[Comparison]:
    """One comparison per (a, b) pair of answer texts, on the project's prompts of a split."""
    policy = policy_active(project=project)
    prompts = list(Prompt.objects.filter(project=project, split=split).order_by("id"))
    pairs = []
    for i, (a, b) in enumerate(texts):
        prompt = prompts[i % len(prompts)]
        pairs.append(
            (
                Completion.objects.create(prompt=prompt, policy_version=policy, text=a),
                Completion.objects.create(prompt=prompt, policy_version=policy, text=b),
            )
        )
    return comparisons_create(project=project, pairs=pairs)


def leases_expire(assignments: QuerySet[Assignment] | None = None) -> None:
    """Time passes for these leases (all by default): they expired a second ago. Their
    comparisons' leases_full_until hint moves with them, as it would with the clock."""
    assignments = Assignment.objects.all() if assignments is None else assignments
    past = timezone.now() - timedelta(seconds=1)
    comparison_ids = list(assignments.values_list("comparison_id", flat=True))
    assignments.update(expires_at=past)
    Comparison.objects.filter(pk__in=comparison_ids, leases_full_until__gt=past).update(
        leases_full_until=past
    )


def one_label_to_train_on(project: Project, annotator, model_dir: str, **fields) -> None:
    """`project` on the tiny model (and `fields`), with one comparison labelled by
    `annotator`: enough data for a reward run to start."""
    project.base_model = model_dir
    for name, value in fields.items():
        setattr(project, name, value)
    project.save()
    make_comparisons(project, [("short", "a long answer")])
    assignment = assignment_next(project=project, user=annotator)
    label_submit(user=annotator, assignment_id=assignment.pk, choice="a")


def backends_end(pid: int | None = None) -> int:
    """Ends PostgreSQL backend `pid`, or every backend of the test database, as a restart or a
    dropped network path does (each client learns it at its next query); returns how many."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    which = "pid = %s" if pid is not None else "datname = current_database()"
    with psycopg.connect(**params, autocommit=True) as other:
        return other.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE {which} AND pid <> pg_backend_pid()",
            [pid] if pid is not None else [],
        ).fetchone()[0]


def labelled(project: Project, annotator, texts: list[tuple[str, str]], choice: str) -> list:
    """New comparisons of (a, b) answer texts, each labelled `choice` by `annotator` (the
    project takes one label per comparison): returns the labels."""
    labels = []
    for comparison in make_comparisons(project, texts):
        assignment = assignment_next(project=project, user=annotator)
        assert assignment.comparison_id == comparison.pk
        labels.append(label_submit(user=annotator, assignment_id=assignment.pk, choice=choice))
    return labels


# What train_reward reports of a reward model that leans on length: right on 2 of 5 pairs whose
# chosen answer is the shorter, 9 of 10 where it is the longer, 4 of 5 of the same length; it
# prefers the shorter answer in 3 of the 15 pairs of different lengths, the labels in 5.
LENGTH_METRICS = {
    "heldout_accuracy": 0.75,
    "heldout_pairs": 20,
    "heldout_accuracy_chosen_shorter": 0.4,
    "heldout_pairs_chosen_shorter": 5,
    "heldout_accuracy_chosen_longer": 0.9,
    "heldout_pairs_chosen_longer": 10,
    "heldout_accuracy_same_length": 0.8,
    "heldout_pairs_same_length": 5,
    "heldout_picks_shorter": 0.2,
    "heldout_labels_pick_shorter": 1 / 3,
    "train_pairs": 60,
    "train_labels_pick_shorter": 0.25,
    "length_control": True,
    "length_effective_pairs": 40.0,
}


def reward_model_registered(
    project: Project,
    *,
    adapter: Path | None = None,
    heldout_accuracy: float | None = None,
    metrics: dict | None = None,
):
    """A reward model of `project` on a snapshot of its labels now, as the loop registers one:
    with a copy of `adapter` (a trained reward folder) when given, else a path to nothing;
    `metrics`: more of what its training reported."""
    from training import services

    snapshot = services.snapshot_create(project=project, name=f"test-{timezone.now():%H%M%S%f}")
    run = services.run_create(project=project, kind="reward", config={})
    relative = f"projects/{project.pk}/reward/test-{run.pk}"
    if adapter is not None:
        shutil.copytree(adapter, services.artifact_path(relative))
    metrics = {
        **({} if heldout_accuracy is None else {"heldout_accuracy": heldout_accuracy}),
        **(metrics or {}),
    }
    return services.reward_model_register(
        project=project, run=run, snapshot=snapshot, adapter_path=relative, metrics=metrics
    )


def sft_line_registered(project: Project, reviewer, texts: list[str]):
    """Without training: `texts` as accepted demonstrations of the train prompt "Say hello.",
    their snapshot, an SFT version (SFT run, adapter folder holding only its config) and a
    PPO candidate v1 started from it, as the loop registers them. Returns (sft, v1)."""
    from feedback.imports import demonstrations_import_records
    from feedback.models import Demonstration
    from feedback.services import demonstration_review
    from training import services

    records = [(i + 1, {"prompt": "Say hello.", "completion": t}) for i, t in enumerate(texts)]
    demonstrations_import_records(project=project, records=records, source="factory.jsonl")
    for demonstration in Demonstration.objects.filter(project=project, text__in=texts):
        demonstration_review(
            reviewer=reviewer, demonstration_id=demonstration.pk, decision="accepted"
        )
    snapshot = services.demonstration_snapshot_create(project=project, name="factory")

    def adapter(relative: str) -> str:
        folder = services.artifact_path(relative)
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
        return relative

    run = services.run_create(project=project, kind="sft", config={"demonstrations": snapshot.pk})
    sft = services.sft_register(
        project=project,
        run=run,
        snapshot=snapshot,
        adapter_path=adapter(f"projects/{project.pk}/sft/factory"),
        metrics={"heldout_loss_before": 3.0, "heldout_loss": 2.5},
    )
    run = services.run_create(
        project=project, kind="ppo", config={"parent": 0, "start": "sft", "sft": sft.number}
    )
    v1 = services.policy_register(
        project=project,
        parent=policy_active(project=project),
        run=run,
        reward_model=None,
        adapter_path=adapter(f"projects/{project.pk}/policies/factory"),
        metrics={},
        sft=sft,
    )
    return sft, v1
