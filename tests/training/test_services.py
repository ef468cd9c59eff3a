from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from feedback.services import assignment_next, label_submit, membership_set
from tests.factories import make_comparisons
from training import services
from training.models import LoopIteration, PolicyVersion


def label_all(project, people_and_choices):
    for user, choice, strength in people_and_choices:
        assignment = assignment_next(project=project, user=user)
        label_submit(user=user, assignment_id=assignment.pk, choice=choice, strength=strength)


def test_snapshot_takes_the_strength_weighted_majority(project, make_user, settings):
    project.labels_per_comparison = 3
    project.save()
    make_comparisons(project, [("alpha", "beta"), ("gamma", "delta")])
    people = [make_user(f"p{i}") for i in range(3)]
    for person in people:
        membership_set(project=project, user=person, role="annotator")
    # Comparison 1: a, a(slight) vs b(strong) -> 1+1-3 < 0: b wins by 1/3.
    label_all(project, [(people[0], "a", 1), (people[1], "a", 1), (people[2], "b", 3)])
    # Comparison 2: a tie and a both-bad and one slight a -> a wins.
    label_all(project, [(people[0], "tie", 1), (people[1], "both_bad", 1), (people[2], "a", 1)])

    snapshot = services.snapshot_create(project=project, name="s1")

    rows = [
        json.loads(line) for line in services.artifact_path(snapshot.path).read_text().splitlines()
    ]
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        ("beta", "alpha"),
        ("gamma", "delta"),
    ]
    assert rows[0]["prompt"] == [{"role": "user", "content": "Say hello."}]
    assert rows[0]["margin"] == pytest.approx(1 / 3)
    assert snapshot.pair_count == 2
    assert len(snapshot.label_ids) == 6


def test_snapshot_without_preferences_is_refused(project, annotator):
    make_comparisons(project, [("x", "y")])
    label_all(project, [(annotator, "tie", 1)])

    with pytest.raises(ValidationError, match="no comparison with a preference"):
        services.snapshot_create(project=project, name="empty")


def test_database_allows_one_active_policy(project):
    with pytest.raises(IntegrityError):
        PolicyVersion.objects.create(project=project, number=7, status="active")


def test_second_iteration_while_one_runs_is_not_started(
    project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = services.iteration_start(project=project, trigger="manual")
        second = services.iteration_start(project=project, trigger="labels")

    assert first is not None and second is None
    assert LoopIteration.objects.filter(project=project).count() == 1
    assert len(callbacks) == 2  # the event and the task of the first one only


def test_promotion_retires_the_previous_policy(project, tmp_path):
    base = PolicyVersion.objects.get(project=project, number=0)
    candidate = PolicyVersion.objects.create(
        project=project, number=1, parent=base, status="candidate", adapter_path="x"
    )

    services.policy_promote(policy=candidate)

    statuses = dict(PolicyVersion.objects.values_list("number", "status"))
    assert statuses == {0: "retired", 1: "active"}


def test_generation_record_stores_a_nul_in_model_output_as_a_replacement_character(project):
    from feedback.models import Prompt
    from training.selectors import policy_active
    from training.services import generation_record

    prompt = Prompt.objects.filter(project=project).order_by("id").first()
    sample = {"token_count": 2, "finish_reason": "stop"}

    policy = policy_active(project=project)
    (comparison,) = generation_record(
        project=project,
        rows=[(prompt, [(policy, {**sample, "text": "x\x00"}), (policy, {**sample, "text": "y"})])],
        sampling={},
    )

    assert (comparison.completion_a.text, comparison.completion_b.text) == ("x\ufffd", "y")
