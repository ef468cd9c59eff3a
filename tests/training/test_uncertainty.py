"""Comparisons chosen by the reward models' uncertainty (training/jobs/uncertainty.py), on the
tiny model with two tiny reward models (the policy's and the judge), in this process.

What the job kept is checked against the pool sampled again from the run's recorded settings
and scored again here, each reward model loaded on its own.
"""

from __future__ import annotations

import json
import shutil

import pytest

from feedback.models import Comparison, ComparisonStrategy
from feedback.services import (
    REPEAT_GAP,
    assignment_next,
    comparison_set_gold,
    comparisons_create,
    label_submit,
)
from tests.factories import TINY_TRAINING, make_comparisons
from training import jobs, services
from training.jobs.uncertainty import UNCERTAINTY_PRIORITY_MAX
from training.ml.uncertainty import pair_uncertainty, preference_probability
from training.models import DatasetSnapshot, PolicyVersion, RewardModelVersion, TrainingRun
from training.selectors import policy_active

ROLES = ("policy", "judge")


@pytest.fixture(scope="session")
def tiny_reward_dirs(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    """Two tiny reward models trained on different pairs: they disagree here and there."""
    from training.ml.reward import RewardTrainConfig, train_reward

    dirs = {}
    for seed, role in enumerate(ROLES):
        root = tmp_path_factory.mktemp(f"reward-{role}")
        data = root / "pairs.jsonl"
        words = [("yes", "no"), ("good", "bad"), ("clear", "vague")]
        rows = [
            {"prompt": f"Question {i}", "chosen": good * (i + 1), "rejected": bad}
            for i, (good, bad) in enumerate(words[seed:] + words[:seed])
        ]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        config = RewardTrainConfig(
            base_model=tiny_model_dir, epochs=1, batch_size=2, max_length=128, eval_fraction=0.0
        )
        train_reward(config, data, root / "rm")
        dirs[role] = str(root / "rm")
    return dirs


@pytest.fixture
def uncertain_project(project, tiny_model_dir):
    project.base_model = tiny_model_dir
    project.max_new_tokens = 12
    project.comparisons_per_iteration = 2  # a pool of 4 prompts: the fixture's 3 train prompts
    project.comparison_strategy = ComparisonStrategy.UNCERTAINTY
    project.save()
    return project


def committee_add(project, reward_dirs, roles=ROLES) -> list[RewardModelVersion]:
    """Reward model rows of the project, their adapters in its artifact folder."""
    models = []
    for role in roles:
        relative = f"projects/{project.pk}/reward/{role}"
        shutil.copytree(reward_dirs[role], services.artifact_path(relative))
        snapshot = DatasetSnapshot.objects.create(
            project=project, path="unused", sha256="0" * 64, pair_count=3, label_ids=[]
        )
        run = services.run_create(project=project, kind=TrainingRun.Kind.REWARD, config={})
        model = services.reward_model_register(
            project=project, run=run, snapshot=snapshot, adapter_path=relative, metrics={}
        )
        RewardModelVersion.objects.filter(pk=model.pk).update(role=role)
        models.append(model)
    return models


def generation(project) -> TrainingRun:
    run = services.run_create(project=project, kind=TrainingRun.Kind.GENERATE, config={})
    jobs.generation_run(run=run)
    run.refresh_from_db()
    return run


class Committee:
    """The reward models as this test scores with them: priority = 0.5 x uncertainty."""

    def __init__(self, project, reward_dirs, roles=ROLES):
        from training.ml.reward import RewardScorer

        self.scorers = [RewardScorer.load(project.base_model, reward_dirs[r]) for r in roles]

    def priority(self, prompt, a: str, b: str) -> float:
        probabilities = []
        for scorer in self.scorers:
            ra, rb = scorer.score([prompt.messages, prompt.messages], [a, b])
            probabilities.append(preference_probability(ra, rb))
        return UNCERTAINTY_PRIORITY_MAX * pair_uncertainty(probabilities)


def pool_again(run: TrainingRun, prompts) -> list[list[str]]:
    """Each pool prompt's answers, sampled again with the run's recorded draws."""
    from training.ml.generate import GenerateConfig, generate

    answers: list[list[str]] = [[] for _ in prompts]
    for draw in run.config["draws"]:
        samples = generate(GenerateConfig(**draw), [p.messages for p in prompts])
        for texts, one in zip(answers, samples, strict=True):
            texts += [s.text for s in one]
    return answers


def test_new_comparisons_are_the_pairs_the_reward_models_know_least(
    uncertain_project, tiny_reward_dirs, annotator
):
    committee_add(uncertain_project, tiny_reward_dirs)
    policy = policy_active(project=uncertain_project)
    pool = jobs.generation_prompts(project=uncertain_project, policy=policy, split="train", limit=4)

    run = generation(uncertain_project)

    assert run.status == "succeeded", run.error
    committee = Committee(uncertain_project, tiny_reward_dirs)
    best = []  # per pool prompt: its most uncertain pair, first of equals
    for prompt, texts in zip(pool, pool_again(run, pool), strict=True):
        pairs = [
            (committee.priority(prompt, texts[i], texts[j]), prompt.pk, texts[i], texts[j])
            for i in range(len(texts))
            for j in range(i + 1, len(texts))
            if texts[i] != texts[j]
        ]
        best.append(max(pairs, key=lambda pair: pair[0]))
    best.sort(key=lambda pair: -pair[0])
    stored = Comparison.objects.filter(project=uncertain_project).order_by("-priority")
    assert [(c.prompt_id, c.completion_a.text, c.completion_b.text) for c in stored] == [
        pair[1:] for pair in best[:2]
    ]
    assert [c.priority for c in stored] == pytest.approx([pair[0] for pair in best[:2]], abs=1e-5)
    assert all(0 <= c.priority <= UNCERTAINTY_PRIORITY_MAX for c in stored)
    assert run.summary["strategy"] == "uncertainty"
    assert run.summary["reward_models"] == ["RM1 (policy)", "RM2 (judge)"]
    assert (run.summary["prompts"], run.summary["comparisons"]) == (3, 2)
    assert run.summary["priority_dropped_max"] == pytest.approx(best[2][0], abs=1e-5)
    # Answers at two temperatures: the project's and half of it.
    temperatures = {c.completion_b.sampling["temperature"] for c in stored} | {
        c.completion_a.sampling["temperature"] for c in stored
    }
    assert temperatures <= {0.8, 0.4}
    # The queue serves the most uncertain first.
    first = assignment_next(project=uncertain_project, user=annotator)
    assert first.comparison_id == stored[0].pk


@pytest.mark.parametrize("judge_gate", [0.5, None])
def test_the_judge_keeps_its_share_of_eval_prompts(uncertain_project, tiny_reward_dirs, judge_gate):
    """Choosing by uncertainty, the judge's share of new pairs is still on eval prompts (the
    labels it learns from), chosen by uncertainty among them; none without a judge gate."""
    uncertain_project.judge_share = 0.5
    uncertain_project.gate_judge_min_win_rate = judge_gate
    uncertain_project.save()
    committee_add(uncertain_project, tiny_reward_dirs)

    run = generation(uncertain_project)

    assert run.status == "succeeded", run.error
    splits = sorted(
        Comparison.objects.filter(project=uncertain_project).values_list("prompt__split", flat=True)
    )
    if judge_gate is None:
        assert splits == ["train", "train"]
        assert run.summary["eval_prompts"] == 0
    else:
        assert splits == ["eval", "train"]
        assert run.summary["eval_prompts"] == 1


def test_open_comparisons_of_one_version_are_scored_again_and_the_others_keep_theirs(
    uncertain_project, tiny_reward_dirs, annotator
):
    committee_add(uncertain_project, tiny_reward_dirs, roles=("policy",))
    waiting, done = make_comparisons(
        uncertain_project, [("short", "a long answer"), ("yes", "no no")]
    )
    Comparison.objects.filter(pk=done.pk).update(status=Comparison.Status.COMPLETE, priority=0.2)
    v0 = policy_active(project=uncertain_project)
    candidate = PolicyVersion.objects.create(
        project=uncertain_project, number=1, parent=v0, status="candidate"
    )
    prompt = waiting.prompt
    gate = comparisons_create(
        project=uncertain_project,
        pairs=[
            (
                prompt.completions.create(policy_version=candidate, text="new"),
                prompt.completions.create(policy_version=v0, text="old"),
            )
        ],
        priority=jobs.HUMAN_GATE_PRIORITY,
    )[0]

    run = generation(uncertain_project)

    assert run.summary["open_comparisons_rescored"] == 1
    committee = Committee(uncertain_project, tiny_reward_dirs, roles=("policy",))
    waiting.refresh_from_db()
    assert waiting.priority == pytest.approx(
        committee.priority(prompt, "short", "a long answer"), abs=1e-5
    )
    assert Comparison.objects.get(pk=done.pk).priority == 0.2
    assert Comparison.objects.get(pk=gate.pk).priority == jobs.HUMAN_GATE_PRIORITY


def test_without_a_reward_model_uncertainty_samples_as_fifo(uncertain_project):
    policy = policy_active(project=uncertain_project)
    fifo_prompts = jobs.generation_prompts(
        project=uncertain_project, policy=policy, split="train", limit=2
    )

    run = generation(uncertain_project)

    assert (run.status, run.summary["strategy"], run.config["strategy"]) == (
        "succeeded",
        "fifo",
        "fifo",
    )
    stored = Comparison.objects.filter(project=uncertain_project).order_by("id")
    assert sorted(c.prompt_id for c in stored) == sorted(p.pk for p in fifo_prompts)
    assert [c.priority for c in stored] == [0.0] * len(stored)
    assert len(run.config["draws"]) == 1


def test_an_iteration_chooses_by_its_new_reward_model_and_keeps_versus_ahead(
    uncertain_project, annotator, django_capture_on_commit_callbacks
):
    uncertain_project.training_config = TINY_TRAINING
    uncertain_project.gate_min_win_rate = 0.0  # a tiny random model's win rate is a coin toss
    uncertain_project.gate_judge_min_win_rate = None  # the judge gate has tests of its own
    uncertain_project.save()
    make_comparisons(uncertain_project, [("ok", "a much longer and wordier answer")] * 6)
    for _ in range(6):
        lease = assignment_next(project=uncertain_project, user=annotator)
        label_submit(user=annotator, assignment_id=lease.pk, choice="a")
    with django_capture_on_commit_callbacks(execute=False):
        iteration = services.iteration_start(project=uncertain_project, trigger="manual")

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    assert iteration.status == "done", iteration.error
    versus_run, pairs_run = iteration.runs.filter(kind="generate").order_by("id")
    assert (versus_run.summary["strategy"], pairs_run.summary["strategy"]) == (
        "fifo",
        "uncertainty",
    )
    assert pairs_run.summary["reward_models"] == ["RM1 (policy)"]
    v1 = iteration.policy
    versus = Comparison.objects.filter(
        completion_a__policy_version=v1, completion_b__policy_version=v1.parent
    )
    new = Comparison.objects.filter(
        completion_a__policy_version=v1, completion_b__policy_version=v1
    )
    assert set(versus.values_list("priority", flat=True)) == {UNCERTAINTY_PRIORITY_MAX}
    assert new.count() == pairs_run.summary["comparisons"] >= 1
    assert all(0 <= p <= UNCERTAINTY_PRIORITY_MAX for p in new.values_list("priority", flat=True))


# --- What comes before any uncertainty: the human gate, gold items, consistency repeats -------


def test_the_human_gate_comes_before_the_most_uncertain_pair(uncertain_project, annotator):
    uncertain, gate = make_comparisons(uncertain_project, [("a", "b"), ("c", "d")])
    Comparison.objects.filter(pk=uncertain.pk).update(priority=UNCERTAINTY_PRIORITY_MAX)
    Comparison.objects.filter(pk=gate.pk).update(priority=jobs.HUMAN_GATE_PRIORITY)

    lease = assignment_next(project=uncertain_project, user=annotator)

    assert lease.comparison_id == gate.pk


def test_gold_comes_at_its_rate_before_the_most_uncertain_pair(
    uncertain_project, annotator, admin_member
):
    uncertain, gold = make_comparisons(uncertain_project, [("a", "b"), ("g", "h")])
    Comparison.objects.filter(pk=uncertain.pk).update(priority=UNCERTAINTY_PRIORITY_MAX)
    comparison_set_gold(admin=admin_member, comparison_id=gold.pk, choice="a")
    uncertain_project.gold_rate = 1.0
    uncertain_project.save()

    lease = assignment_next(project=uncertain_project, user=annotator)

    assert lease.comparison_id == gold.pk


def test_a_repeat_comes_at_its_rate_before_the_most_uncertain_pair(uncertain_project, annotator):
    labelled = make_comparisons(
        uncertain_project, [(f"a{i}", f"b{i}") for i in range(REPEAT_GAP + 1)]
    )
    for _ in labelled:
        lease = assignment_next(project=uncertain_project, user=annotator)
        label_submit(user=annotator, assignment_id=lease.pk, choice="a")
    (uncertain,) = make_comparisons(uncertain_project, [("new", "pair")])
    Comparison.objects.filter(pk=uncertain.pk).update(priority=UNCERTAINTY_PRIORITY_MAX)
    uncertain_project.repeat_rate = 1.0
    uncertain_project.save()

    lease = assignment_next(project=uncertain_project, user=annotator)

    assert (lease.comparison_id, lease.is_repeat) == (labelled[0].pk, True)
