"""The human gate: people judge a candidate against the active policy before it is promoted.

Iterations run in this process on the tiny model (as in test_loop.py) and stop at
`awaiting_humans`; labels then go through the same services as the labeling page. Where the
model adds nothing (cancel, rollback, settings), the waiting iteration is made from rows.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from feedback.models import Comparison, Completion, Prompt
from feedback.services import (
    assignment_next,
    comparisons_create,
    label_submit,
    membership_set,
    prompts_import,
)
from tests.factories import TINY_TRAINING, make_comparisons
from training import jobs, services, tasks
from training.gates import human_gate
from training.leaderboard import Game
from training.models import LoopIteration, PolicyVersion, TrainingRun
from training.selectors import versus_comparisons

ANSWERS = [("ok", "a much longer and wordier answer")] * 6
# With the fixture's one eval prompt: four prompts for the candidate-versus-active comparisons.
MORE_EVAL_PROMPTS = [{"prompt": f"Name a fruit, number {i}.", "split": "eval"} for i in range(3)]


@pytest.fixture
def gated_project(project, annotator, tiny_model_dir):
    prompts_import(project=project, records=MORE_EVAL_PROMPTS, source="test")
    project.base_model = tiny_model_dir
    project.max_new_tokens = 12
    project.comparisons_per_iteration = 4
    project.training_config = TINY_TRAINING
    project.gate_min_win_rate = 0.0  # a tiny random model's reward-model win rate is a coin toss
    project.gate_judge_min_win_rate = None  # the judge gate has tests of its own
    project.gate_human_min_win_rate = 0.6
    project.gate_human_labels = 6
    project.save()
    make_comparisons(project, ANSWERS)
    for _ in ANSWERS:
        assignment = assignment_next(project=project, user=annotator)
        label_submit(user=annotator, assignment_id=assignment.pk, choice="a")
    project.labels_per_comparison = 2  # the gate's comparisons: 4 prompts x 2 labels
    project.save()
    return project


@pytest.fixture
def waiting(gated_project, django_capture_on_commit_callbacks) -> LoopIteration:
    """An iteration whose candidate passed the reward-model gates and waits for humans."""
    with django_capture_on_commit_callbacks(execute=False):
        iteration = services.iteration_start(project=gated_project, trigger="manual")
    jobs.iteration_run(iteration=iteration)
    iteration.refresh_from_db()
    return iteration


@pytest.fixture
def judges(gated_project, make_user):
    users = [make_user(f"judge{i}") for i in range(2)]
    for user in users:
        membership_set(project=gated_project, user=user, role="annotator")
    return users


@pytest.fixture
def vote(gated_project, judges, django_capture_on_commit_callbacks):
    """vote(labels, prefer): that many labels from the judges in turn, each for `prefer`
    ("candidate" or "incumbent": the candidate is v1, the incumbent v0), through the
    labeling services. Returns how many checks the labels queued after their commit."""

    def cast(labels: int, prefer: str) -> int:
        queued = 0
        for i in range(labels):
            assignment = assignment_next(project=gated_project, user=judges[i % len(judges)])
            candidate_is_a = assignment.comparison.completion_a.policy_version.number == 1
            choice = "a" if candidate_is_a == (prefer == "candidate") else "b"
            with django_capture_on_commit_callbacks(execute=False) as queued_now:
                label_submit(user=assignment.annotator, assignment_id=assignment.pk, choice=choice)
            queued += len(queued_now)
        return queued

    return cast


def check(project, monkeypatch) -> list[int]:
    """Run the check task as a worker would; returns the iterations it sent on to promotion."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.loop_iteration_task, "delay", sent.append)
    tasks.human_gate_check_task(project.pk)
    return sent


def test_too_few_human_labels_keep_the_candidate_waiting(
    waiting,
    gated_project,
    vote,
    monkeypatch,
    client,
    admin_member,
):
    candidate = waiting.policy
    # The candidate passed the reward-model gates; its comparisons went to the annotators.
    assert waiting.status == "awaiting_humans", waiting.error
    assert waiting.evaluation["gates"]["passed"] is True
    assert (candidate.status, candidate.parent.number) == ("candidate", 0)
    assert [r.kind for r in waiting.runs.order_by("id")] == [
        "reward",
        "ppo",
        "evaluate",
        "generate",
    ]
    gate_run = waiting.runs.get(kind="generate")
    assert (gate_run.config["policy"], gate_run.config["versus"]) == (candidate.number, 0)
    comparisons = versus_comparisons(policy=candidate, versus=candidate.parent)
    assert comparisons.count() == gate_run.summary["comparisons"] == 4
    assert set(comparisons.values_list("prompt__split", "priority", "required_labels")) == {
        ("eval", jobs.HUMAN_GATE_PRIORITY, 2)
    }
    gate = waiting.evaluation["human_gate"]
    assert (gate["decision"], gate["labels"], gate["labels_needed"], gate["value"]) == (
        "waiting",
        0,
        6,
        None,
    )

    queued = vote(5, "candidate")

    assert check(gated_project, monkeypatch) == []
    waiting.refresh_from_db()
    assert queued == 5  # every label asks for a check once it is committed
    assert waiting.status == "awaiting_humans"
    gate = waiting.evaluation["human_gate"]
    assert (gate["decision"], gate["labels"], gate["passed"]) == ("waiting", 5, None)
    assert gate["low"] <= gate["value"] <= gate["high"]
    assert waiting.policy.status == "candidate"
    assert PolicyVersion.objects.get(project=gated_project, status="active").number == 0
    # The one-running-iteration rule holds while people label, and the page says so.
    assert services.iteration_start(project=gated_project, trigger="manual") is None
    client.force_login(admin_member)
    page = client.get(f"/p/{gated_project.slug}/").content.decode()
    assert "Waiting for human labels" in page
    assert "no other iteration can start" in page
    assert "human win rate" in page and "5 of 6 labels, waiting" in page
    api = client.get(f"/api/projects/{gated_project.slug}/iterations/").json()
    assert api["results"][0]["human_gate"]["labels"] == 5


def test_human_labels_for_the_candidate_promote_it(waiting, gated_project, vote, monkeypatch):
    candidate = waiting.policy
    vote(6, "candidate")

    sent = check(gated_project, monkeypatch)
    assert sent == [waiting.pk]
    assert check(gated_project, monkeypatch) == []  # decided once
    jobs.iteration_run(iteration=waiting)

    waiting.refresh_from_db()
    candidate.refresh_from_db()
    assert waiting.status == "done", waiting.error
    gate = waiting.evaluation["human_gate"]
    assert (gate["decision"], gate["passed"], gate["labels"]) == ("passed", True, 6)
    assert gate["low"] >= 0.6
    assert candidate.status == "active"
    assert PolicyVersion.objects.get(project=gated_project, number=0).status == "retired"
    # After promotion only the new version's own pairs are sampled: the new-versus-parent
    # comparisons are the gate's, not sampled a second time.
    generations = [r.config["split"] for r in waiting.runs.filter(kind="generate").order_by("id")]
    assert generations == ["eval", "train"]
    assert versus_comparisons(policy=candidate, versus=candidate.parent).count() == 4


def test_human_labels_for_the_incumbent_reject_the_candidate(
    waiting, gated_project, vote, monkeypatch
):
    candidate = waiting.policy
    vote(6, "incumbent")

    assert check(gated_project, monkeypatch) == []

    waiting.refresh_from_db()
    candidate.refresh_from_db()
    assert waiting.status == "rejected"
    assert waiting.error.startswith("Human gate not passed: humans prefer v0:")
    assert "from 6 labels" in waiting.error
    gate = waiting.evaluation["human_gate"]
    assert (gate["decision"], gate["passed"]) == ("failed", False)
    assert gate["high"] < 0.6
    assert candidate.status == "rejected"
    assert PolicyVersion.objects.get(project=gated_project, status="active").number == 0
    # Nobody is asked to judge a rejected candidate any more.
    assert (
        not versus_comparisons(policy=candidate, versus=candidate.parent)
        .filter(status="open")
        .exists()
    )
    assert services.iteration_start(project=gated_project, trigger="manual") is not None


# --- The gate's decision, from games alone ---------------------------------------------------

GATE = SimpleNamespace(gate_human_min_win_rate=0.5, gate_human_labels=10)


def test_human_gate_counts_the_candidate_on_either_side_and_ties_as_half():
    games = (
        [Game(2, 1, 1.0)] * 6  # candidate v2 on side A, wins
        + [Game(1, 2, 0.0)] * 6  # candidate on side B, wins
        + [Game(2, 1, 0.5)] * 2  # ties
        + [Game(1, 0, 0.0)] * 9  # other versions: not this gate's games
    )

    gate = human_gate(project=GATE, games=games, candidate=2, incumbent=1, open_comparisons=3)

    assert (gate["labels"], gate["decision"], gate["passed"]) == (14, "passed", True)
    assert 0.5 <= gate["low"] < gate["value"] <= gate["high"] < 1.0


def test_human_gate_waits_while_the_interval_contains_the_threshold():
    games = [Game(2, 1, 1.0)] * 6 + [Game(2, 1, 0.0)] * 6

    gate = human_gate(project=GATE, games=games, candidate=2, incumbent=1, open_comparisons=1)

    assert (gate["labels"], gate["decision"], gate["passed"]) == (12, "waiting", None)
    assert gate["value"] == pytest.approx(0.5)
    assert gate["low"] < 0.5 < gate["high"]


def test_human_gate_fails_when_no_more_labels_can_come():
    undecided = [Game(2, 1, 1.0)] * 6 + [Game(2, 1, 0.0)] * 6
    too_few = [Game(2, 1, 1.0)] * 4

    split = human_gate(project=GATE, games=undecided, candidate=2, incumbent=1, open_comparisons=0)
    short = human_gate(project=GATE, games=too_few, candidate=2, incumbent=1, open_comparisons=0)

    assert (split["decision"], short["decision"]) == ("failed", "failed")
    assert split["reason"].startswith("undecided after all 12 labels")
    assert short["reason"].startswith("only 4 of the 10 labels it needs could be collected")


# --- The check on rows alone (no model): what the settings and other admins' actions do ----


@pytest.fixture
def waiting_rows(gated_project):
    """An iteration waiting for humans, its candidate v1 against v0 on four eval prompts, made
    from rows as the worker would have left them."""
    v0 = PolicyVersion.objects.get(project=gated_project, number=0)
    v1 = PolicyVersion.objects.create(
        project=gated_project, number=1, parent=v0, status="candidate", adapter_path="unused"
    )
    iteration = LoopIteration.objects.create(
        project=gated_project, number=1, trigger="manual", status="awaiting_humans", policy=v1
    )
    TrainingRun.objects.create(
        project=gated_project,
        iteration=iteration,
        kind="generate",
        status="succeeded",
        config={"policy": 1, "versus": 0, "split": "eval"},
    )
    pairs = [
        (
            Completion.objects.create(prompt=prompt, policy_version=v1, text=f"new {prompt.pk}"),
            Completion.objects.create(prompt=prompt, policy_version=v0, text=f"old {prompt.pk}"),
        )
        for prompt in Prompt.objects.filter(project=gated_project, split="eval")
    ]
    comparisons_create(project=gated_project, pairs=pairs, priority=jobs.HUMAN_GATE_PRIORITY)
    return iteration


def test_a_passed_human_gate_waits_for_approval_when_promotion_needs_it(
    waiting_rows, gated_project, vote, monkeypatch
):
    gated_project.auto_promote = False
    gated_project.save()
    vote(6, "candidate")

    assert check(gated_project, monkeypatch) == []  # an admin carries it on, not the check

    waiting_rows.refresh_from_db()
    assert waiting_rows.status == "awaiting_approval"
    assert waiting_rows.evaluation["human_gate"]["decision"] == "passed"
    assert waiting_rows.policy.status == "candidate"


def test_turning_the_human_gate_off_lets_a_waiting_candidate_go_on(
    waiting_rows, gated_project, monkeypatch
):
    assert check(gated_project, monkeypatch) == []  # no label yet: it waits
    gated_project.gate_human_min_win_rate = None
    gated_project.save()

    sent = check(gated_project, monkeypatch)

    waiting_rows.refresh_from_db()
    assert sent == [waiting_rows.pk]
    assert waiting_rows.status == "promoting"
    gate = waiting_rows.evaluation["human_gate"]
    assert (gate["decision"], gate["passed"], gate["labels"]) == ("off", None, 0)


def test_a_candidate_promoted_by_hand_while_waiting_goes_on(
    waiting_rows, gated_project, monkeypatch
):
    services.policy_promote(policy=waiting_rows.policy)

    sent = check(gated_project, monkeypatch)

    waiting_rows.refresh_from_db()
    assert sent == [waiting_rows.pk]
    assert waiting_rows.status == "promoting"


def test_cancel_while_waiting_for_humans(waiting_rows, gated_project, judges, vote, monkeypatch):
    candidate = waiting_rows.policy
    vote(2, "candidate")

    services.iteration_cancel(iteration=waiting_rows)
    judge_after = assignment_next(project=gated_project, user=judges[0])

    assert check(gated_project, monkeypatch) == []
    jobs.iteration_run(iteration=waiting_rows)  # a redelivered message changes nothing
    waiting_rows.refresh_from_db()
    candidate.refresh_from_db()
    assert waiting_rows.status == "cancelled"
    assert candidate.status == "rejected"
    assert judge_after is None
    # Two labels completed the first comparison (k = 2); the three others are closed.
    assert sorted(
        versus_comparisons(policy=candidate, versus=candidate.parent).values_list(
            "status", flat=True
        )
    ) == [Comparison.Status.CLOSED] * 3 + [Comparison.Status.COMPLETE]
    assert PolicyVersion.objects.get(project=gated_project, status="active").number == 0
    assert services.iteration_start(project=gated_project, trigger="manual") is not None


def test_a_rollback_while_waiting_voids_the_human_gate(waiting_rows, gated_project, monkeypatch):
    older = PolicyVersion.objects.create(
        project=gated_project, number=7, status="retired", adapter_path="unused"
    )

    services.policy_rollback(policy=older)

    assert check(gated_project, monkeypatch) == []
    waiting_rows.refresh_from_db()
    assert waiting_rows.status == "rejected"
    assert waiting_rows.error == (
        "Human gate void: v7 became active while the candidate waited for labels against v0."
    )
    assert waiting_rows.policy.status == "rejected"
    assert TrainingRun.objects.filter(iteration=waiting_rows).count() == 1  # nothing more ran
