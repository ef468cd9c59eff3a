"""PPO refuses a reward model that the labels which arrived after it was trained disagree with
(the project's ppo_min_fresh_agreement), and the setting refuses values it cannot mean."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tests.factories import TINY_TRAINING, labelled, reward_model_registered
from training import jobs, services
from training.models import FreshLabelScore, LoopIteration, PolicyVersion, TrainingRun


@pytest.fixture
def at_ppo(project, annotator, tiny_model_dir, tiny_reward_dir):
    """An iteration whose reward model is trained: the next step is PPO. Six labels arrived
    after the reward model's snapshot."""
    project.base_model = tiny_model_dir
    project.training_config = TINY_TRAINING
    project.gate_min_win_rate = 0.0  # a tiny random model's win rate is a coin toss
    project.gate_judge_min_win_rate = None  # the judge gate has tests of its own
    project.ppo_fresh_min_labels = 5
    project.save()
    labelled(project, annotator, [("ok", "a much longer and wordier answer")] * 3, "a")
    rm = reward_model_registered(project, adapter=tiny_reward_dir, heldout_accuracy=0.9)
    iteration = LoopIteration.objects.create(
        project=project,
        number=1,
        trigger=LoopIteration.Trigger.MANUAL,
        status=LoopIteration.Status.PPO,
        snapshot=rm.snapshot,
        reward_model=rm,
    )
    fresh = labelled(project, annotator, [(f"new {i}", f"other {i}") for i in range(6)], "a")
    return iteration, fresh


def plant(iteration, labels, agreeing: int) -> None:
    """The reward model's scores of `labels`: the first `agreeing` agree, the rest do not."""
    margins = {label.pk: (1.0 if i < agreeing else -1.0) for i, label in enumerate(labels)}
    services.fresh_label_scores_record(reward_model=iteration.reward_model, margins=margins)


def test_ppo_refuses_a_reward_model_people_disagree_with(at_ppo):
    iteration, fresh = at_ppo
    iteration.project.ppo_min_fresh_agreement = 0.6
    iteration.project.save()
    plant(iteration, fresh, agreeing=2)

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    assert iteration.status == LoopIteration.Status.FAILED
    assert iteration.error == (
        "ValidationError: PPO refused: RM1 agrees with 2 of the 6 labels that arrived after it "
        "was trained (0.333, 95% interval 0.097-0.700; held-out accuracy 0.900), below "
        "ppo_min_fresh_agreement 0.6. PPO would climb a reward model that people no longer "
        "agree with: start a new iteration to train one on the new labels, or lower the "
        "setting."
    )
    assert not TrainingRun.objects.filter(kind=TrainingRun.Kind.PPO).exists()
    assert list(PolicyVersion.objects.values_list("number", flat=True)) == [0]


def test_ppo_runs_when_agreement_reaches_the_threshold(at_ppo):
    iteration, fresh = at_ppo
    iteration.project.ppo_min_fresh_agreement = 0.6
    iteration.project.save()
    plant(iteration, fresh, agreeing=4)  # 0.667

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    assert iteration.status == LoopIteration.Status.DONE, iteration.error
    ppo = TrainingRun.objects.get(kind=TrainingRun.Kind.PPO)
    assert ppo.status == TrainingRun.Status.SUCCEEDED
    assert iteration.policy.reward_model == iteration.reward_model
    assert FreshLabelScore.objects.count() == 6  # all were planted: nothing left to score


def test_the_check_before_ppo_counts_only_enough_labels(at_ppo):
    iteration, fresh = at_ppo
    iteration.project.ppo_min_fresh_agreement = 0.6
    iteration.project.ppo_fresh_min_labels = 6
    iteration.project.save()
    plant(iteration, fresh, agreeing=0)

    with pytest.raises(ValidationError, match="RM1 agrees with 0 of the 6 labels"):
        jobs.fresh_agreement_check(reward_model=iteration.reward_model)


@pytest.mark.parametrize(
    "threshold,min_labels",
    [
        (0.6, 7),  # none of 6 agrees, but 6 are fewer than the 7 it takes to refuse
        (None, 1),  # the setting is off
        (0.0, 1),  # nothing is below 0
    ],
)
def test_the_check_before_ppo_lets_it_run(at_ppo, threshold, min_labels):
    iteration, fresh = at_ppo
    iteration.project.ppo_min_fresh_agreement = threshold
    iteration.project.ppo_fresh_min_labels = min_labels
    iteration.project.save()
    plant(iteration, fresh, agreeing=0)

    assert jobs.fresh_agreement_check(reward_model=iteration.reward_model) is None


def test_the_check_scores_pending_fresh_labels_before_it_decides(at_ppo):
    iteration, fresh = at_ppo
    iteration.project.ppo_min_fresh_agreement = 0.0  # never refuses: the scores are the point
    iteration.project.save()

    jobs.fresh_agreement_check(reward_model=iteration.reward_model)

    assert set(
        FreshLabelScore.objects.filter(reward_model=iteration.reward_model).values_list(
            "label_id", flat=True
        )
    ) == {label.pk for label in fresh}


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"ppo_min_fresh_agreement": 1.5}, "less than or equal to 1.0"),
        ({"ppo_min_fresh_agreement": -0.1}, "greater than or equal to 0.0"),
        ({"ppo_fresh_min_labels": 0}, "greater than or equal to 1"),
    ],
)
def test_the_setting_refuses_what_it_cannot_mean(project, fields, message):
    for name, value in fields.items():
        setattr(project, name, value)

    with pytest.raises(ValidationError) as error:
        project.full_clean()

    [name] = fields
    assert list(error.value.message_dict) == [name]
    assert message in error.value.message_dict[name][0]


def test_the_setting_is_off_by_default_and_takes_a_share(project):
    assert (project.ppo_min_fresh_agreement, project.ppo_fresh_min_labels) == (None, 30)
    project.ppo_min_fresh_agreement = 0.7
    project.full_clean()
