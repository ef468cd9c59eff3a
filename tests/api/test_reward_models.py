"""GET /api/projects/<slug>/reward-models/: each reward model with its health on the labels
that arrived after it was trained."""

from __future__ import annotations

from django.utils import timezone

from tests.factories import LENGTH_METRICS, labelled, reward_model_registered
from training import services


def test_reward_models_with_their_fresh_agreement_and_alarm(
    project, annotator, reviewer, token_client
):
    labelled(project, annotator, [("old 1", "old 2")], "a")
    rm = reward_model_registered(project, heldout_accuracy=0.9)
    fresh = labelled(project, annotator, [(f"new {i}", f"other {i}") for i in range(3)], "b")
    labelled(project, annotator, [("tie 1", "tie 2")], "tie")
    services.fresh_label_scores_record(
        reward_model=rm, margins={fresh[0].pk: -0.2, fresh[1].pk: -1.5, fresh[2].pk: 0.7}
    )

    response = token_client(reviewer).get(f"/api/projects/{project.slug}/reward-models/")

    assert response.status_code == 200
    [body] = response.json()
    low, high = body["fresh"].pop("low"), body["fresh"].pop("high")
    assert (round(low, 4), round(high, 4)) == (0.0615, 0.7923)
    assert body == {
        "number": 1,
        "role": "policy",
        "snapshot": rm.snapshot_id,
        "training_run": rm.training_run_id,
        "created_at": body["created_at"],
        "heldout_accuracy": 0.9,
        "heldout": {  # trained before the length split existed: its figures are unknown
            "accuracy": 0.9,
            "pairs": 0,
            "chosen_shorter": {"pairs": 0, "accuracy": None},
            "chosen_longer": {"pairs": 0, "accuracy": None},
            "same_length": {"pairs": 0, "accuracy": None},
            "picks_shorter": None,
            "labels_pick_shorter": None,
        },
        "length_control": {
            "enabled": False,
            "train_pairs": None,
            "effective_pairs": None,
            "train_labels_pick_shorter": None,
        },
        "fresh": {
            "labels": 3,
            "agreed": 1,
            "agreement": 1 / 3,
            "not_scorable": 1,
            "waiting": 0,
            "alarm": True,
            "calibration": [
                {"labels": 1, "agreement": 0.0, "low": 0.0, "high": 0.5},
                {"labels": 1, "agreement": 1.0, "low": 0.5, "high": 1.0},
                {"labels": 1, "agreement": 0.0, "low": 1.0, "high": 2.0},
                {"labels": 0, "agreement": None, "low": 2.0, "high": None},
            ],
            "by_day": [
                {
                    "labels": 3,
                    "agreement": 1 / 3,
                    "date": timezone.localdate().isoformat(),
                    "day": 0,
                }
            ],
        },
    }


def test_each_reward_model_splits_its_heldout_accuracy_by_length(
    project, annotator, reviewer, token_client
):
    labelled(project, annotator, [("old 1", "old 2")], "a")
    reward_model_registered(project, metrics=LENGTH_METRICS)

    response = token_client(reviewer).get(f"/api/projects/{project.slug}/reward-models/")

    assert response.status_code == 200
    [body] = response.json()
    assert body["heldout_accuracy"] == 0.75
    assert body["heldout"] == {
        "accuracy": 0.75,
        "pairs": 20,
        "chosen_shorter": {"pairs": 5, "accuracy": 0.4},
        "chosen_longer": {"pairs": 10, "accuracy": 0.9},
        "same_length": {"pairs": 5, "accuracy": 0.8},
        "picks_shorter": 0.2,
        "labels_pick_shorter": 1 / 3,
    }
    assert body["length_control"] == {
        "enabled": True,
        "train_pairs": 60,
        "effective_pairs": 40.0,
        "train_labels_pick_shorter": 0.25,
    }


def test_a_reward_runs_summary_carries_the_length_split(project, reviewer, token_client):
    run = services.run_create(project=project, kind="reward", config={})
    services.run_start(run=run, worker="w")
    services.run_succeed(run=run, summary=LENGTH_METRICS)

    response = token_client(reviewer).get(f"/api/projects/{project.slug}/runs/{run.pk}/")

    assert response.status_code == 200
    assert response.json()["summary"] == LENGTH_METRICS
