"""Reward-model health on fresh labels: what the worker scores (with the tiny model), what the
reads count, when the alarm fires, and when a label queues the scoring."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from feedback.models import PreferenceLabel
from feedback.services import label_undo
from tests.factories import labelled, reward_model_registered
from training import jobs, services, tasks
from training.health import reward_model_health, wilson_interval
from training.models import FreshLabelScore


@pytest.fixture
def tiny_project(project, tiny_model_dir):
    project.base_model = tiny_model_dir
    project.save()
    return project


@pytest.fixture
def trained_on(tiny_project, annotator):
    """The labels a reward model was trained on (two, both in its snapshot)."""
    return labelled(tiny_project, annotator, [("old one", "old two"), ("old 3", "old 4")], "a")


def health_of(project, reward_model):
    [health] = reward_model_health(project=project, reward_models=[reward_model])
    return health


def test_the_worker_scores_fresh_decisive_labels_once(
    tiny_project, annotator, trained_on, tiny_reward_dir
):
    from training.ml.reward import RewardScorer

    rm = reward_model_registered(tiny_project, adapter=tiny_reward_dir)
    [prefers_a] = labelled(tiny_project, annotator, [("good and clear", "bad")], "a")
    [prefers_b] = labelled(tiny_project, annotator, [("bad", "good and clear")], "b")
    [tie] = labelled(tiny_project, annotator, [("t1", "t2")], "tie")
    [both_bad] = labelled(tiny_project, annotator, [("x1", "x2")], "both_bad")
    repeat = PreferenceLabel.objects.create(
        comparison=prefers_a.comparison, annotator=annotator, choice="a", a_shown_left=False,
        is_repeat=True,
    )  # fmt: skip
    [listed] = labelled(tiny_project, annotator, [("listed 1", "listed 2")], "a")
    rm.snapshot.label_ids = [*rm.snapshot.label_ids, listed.pk]  # newer, yet in the snapshot
    rm.snapshot.save(update_fields=["label_ids"])
    [withdrawn] = labelled(tiny_project, annotator, [("undone 1", "undone 2")], "b")
    label_undo(user=annotator, project=tiny_project)

    first = jobs.reward_health_score(project=tiny_project)
    rows = {s.label_id: s for s in FreshLabelScore.objects.filter(reward_model=rm)}
    scored_at = {pk: s.scored_at for pk, s in rows.items()}
    second = jobs.reward_health_score(project=tiny_project)

    assert (first, second) == ({rm.number: 2}, {rm.number: 0})
    assert set(rows) == {prefers_a.pk, prefers_b.pk}
    assert not (
        {t.pk for t in trained_on} | {tie.pk, both_bad.pk, repeat.pk, listed.pk, withdrawn.pk}
    ) & set(rows)
    assert {
        s.label_id: s.scored_at for s in FreshLabelScore.objects.filter(reward_model=rm)
    } == scored_at
    # The margin is the reward of the preferred answer minus the other's, in the label's
    # direction: both labels prefer the same text, so both margins are the same number.
    scorer = RewardScorer.load(tiny_project.base_model, services.artifact_path(rm.adapter_path))
    prompt = prefers_a.comparison.prompt.messages
    good, bad = scorer.score([prompt, prompt], ["good and clear", "bad"])
    assert rows[prefers_a.pk].margin == pytest.approx(good - bad, abs=1e-5)
    assert rows[prefers_b.pk].margin == pytest.approx(good - bad, abs=1e-5)
    assert [s.agrees for s in rows.values()] == [good > bad] * 2
    health = health_of(tiny_project, rm)
    assert (health.labels, health.not_scorable, health.waiting) == (2, 2, 0)


def test_a_label_withdrawn_after_scoring_leaves_the_health(tiny_project, annotator, trained_on):
    rm = reward_model_registered(tiny_project, heldout_accuracy=0.8)
    kept = labelled(tiny_project, annotator, [("k1", "k2"), ("k3", "k4")], "a")
    [undone] = labelled(tiny_project, annotator, [("u1", "u2")], "a")
    services.fresh_label_scores_record(
        reward_model=rm, margins={kept[0].pk: 1.0, kept[1].pk: -1.0, undone.pk: 2.0}
    )
    before = health_of(tiny_project, rm)

    label_undo(user=annotator, project=tiny_project)

    after = health_of(tiny_project, rm)
    assert (before.labels, before.agreed) == (3, 2)
    assert (after.labels, after.agreed, after.waiting) == (2, 1, 0)
    assert FreshLabelScore.objects.filter(reward_model=rm).count() == 3  # kept for the record


def planted(project, annotator, margins: list[float], *, heldout_accuracy: float):
    """A reward model of `project` and its scores of fresh labels: one label per margin."""
    rm = reward_model_registered(project, heldout_accuracy=heldout_accuracy)
    texts = [(f"answer {i}", f"other {i}") for i in range(len(margins))]
    labels = labelled(project, annotator, texts, "a")
    services.fresh_label_scores_record(
        reward_model=rm, margins={label.pk: m for label, m in zip(labels, margins, strict=True)}
    )
    return rm


def test_the_alarm_fires_when_people_drift_away_from_the_reward_model(
    project, annotator, trained_on
):
    # 8 of 20 agree: 0.4, Wilson 95% interval 0.219-0.613, all of it below 0.9.
    margins = [0.2, 0.7, 1.5, 3.0] * 2 + [-0.3, -0.8, -1.2, -2.5] * 3
    rm = planted(project, annotator, margins, heldout_accuracy=0.9)

    health = health_of(project, rm)

    assert (health.labels, health.agreed, health.agreement) == (20, 8, 0.4)
    assert (health.low, health.high) == (
        pytest.approx(0.2188, abs=1e-4),
        pytest.approx(0.6134, abs=1e-4),
    )
    assert health.alarm is True
    assert [(b.low, b.high, b.labels, b.agreed) for b in health.calibration] == [
        (0.0, 0.5, 5, 2),
        (0.5, 1.0, 5, 2),
        (1.0, 2.0, 5, 2),
        (2.0, None, 5, 2),
    ]
    assert [(d.day, d.labels, d.agreed) for d in health.by_day] == [(0, 20, 8)]


def test_no_alarm_while_people_agree_with_the_reward_model(project, annotator, trained_on):
    # 20 of 20 agree: Wilson 95% interval 0.839-1.0, which reaches 0.9.
    rm = planted(project, annotator, [0.2, 0.7, 1.5, 3.0] * 5, heldout_accuracy=0.9)

    health = health_of(project, rm)

    assert (health.labels, health.agreed, health.alarm) == (20, 20, False)
    assert health.low == pytest.approx(0.8389, abs=1e-4)
    assert health.high == 1.0


def test_wilson_interval_by_hand():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(8, 20)
    assert (round(low, 4), round(high, 4)) == (0.2188, 0.6134)


def test_scores_of_labels_that_are_no_fresh_evidence_are_refused(project, annotator, trained_on):
    rm = reward_model_registered(project, heldout_accuracy=0.9)
    [tie] = labelled(project, annotator, [("t1", "t2")], "tie")
    [fresh] = labelled(project, annotator, [("f1", "f2")], "b")

    for margins in (
        {trained_on[0].pk: 1.0},  # in the snapshot
        {tie.pk: 1.0},  # no preference
        {fresh.pk: 1.0, tie.pk: -1.0},  # one bad label spoils the batch
        {fresh.pk: float("nan")},
    ):
        with pytest.raises(ValidationError):
            services.fresh_label_scores_record(reward_model=rm, margins=margins)

    assert FreshLabelScore.objects.count() == 0


def test_every_n_labels_queue_the_scoring_on_a_worker(
    project, annotator, trained_on, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.HONE_HEALTH_EVERY_LABELS = 2
    project.trigger_new_labels = 1000  # the project listens to its labels
    project.save()
    reward_model_registered(project, heldout_accuracy=0.9)
    queued: list[int] = []
    monkeypatch.setattr(tasks.reward_health_score_task, "delay", queued.append)

    with django_capture_on_commit_callbacks(execute=True):
        labelled(project, annotator, [(f"a{i}", f"b{i}") for i in range(5)], "a")

    assert queued == [project.pk, project.pk]  # after the 2nd and the 4th
    assert FreshLabelScore.objects.count() == 0  # nothing is scored on the request


def test_the_loop_page_shows_each_reward_model_and_highlights_the_alarm(
    project, annotator, trained_on, admin_member, client
):
    planted(project, annotator, [-1.0] * 6 + [1.0] * 2, heldout_accuracy=0.9)  # 0.25: alarm
    planted(project, annotator, [1.0] * 4, heldout_accuracy=0.7)  # fresh to RM2 only
    client.force_login(admin_member)

    page = client.get(f"/p/{project.slug}/").content.decode()

    section = page[page.index('id="reward-health"') : page.index("Promotion gates</h2>")]
    assert section.count('<tr class="alarm">') == 1
    no_split = "<td>- (0)</td>\n    <td>- (0)</td>\n    <td>- (-)</td>\n    <td>off</td>"
    assert (
        f"<td>RM2 (policy)</td>\n    <td>0.700</td>\n    {no_split}\n    <td>1.000 (0.510–1.000)</td>"
        in section
    )
    assert (
        f"<td>RM1 (policy)</td>\n    <td>0.900</td>\n    {no_split}\n    <td>0.250 (0.071–0.591)</td>"
        in section
    )
    assert section.index("RM2 (policy)") < section.index('<tr class="alarm">')
    assert 'id="health-data"' in section


def test_the_worker_watches_the_latest_of_each_role_and_a_running_iterations(
    project, annotator, trained_on
):
    from training.health import reward_models_to_score
    from training.models import LoopIteration

    rm1, rm2, rm3, rm4 = (reward_model_registered(project) for _ in range(4))
    for judge in (rm2, rm3):
        judge.role = "judge"
        judge.save(update_fields=["role"])
    LoopIteration.objects.create(
        project=project, number=1, trigger="manual", status="ppo", reward_model=rm1
    )

    assert reward_models_to_score(project=project) == [rm1, rm3, rm4]
