"""The loop page's forms, as an admin posts them."""

from __future__ import annotations

from feedback.models import AuditEvent, Project
from tests.factories import LENGTH_METRICS, labelled, reward_model_registered

GATES = {
    "auto_promote": "on",
    "gate_min_win_rate": "0.55",
    "gate_max_kl": "12",
    "gate_max_empty_rate": "0.1",
    "gate_max_repetition": "0.5",
    "gate_human_min_win_rate": "0.6",
    "gate_human_labels": "40",
    "gate_judge_min_win_rate": "0.5",
    "gate_max_overoptimization": "0.25",
    "judge_min_pairs": "8",
}


def test_an_admin_turns_the_human_gate_on(project, admin_member, client):
    client.force_login(admin_member)

    response = client.post(f"/p/{project.slug}/gates/", GATES, follow=True)

    project.refresh_from_db()
    assert "Gates saved." in response.content.decode()
    assert (project.gate_human_min_win_rate, project.gate_human_labels) == (0.6, 40)
    assert (project.gate_min_win_rate, project.gate_max_kl, project.auto_promote) == (
        0.55,
        12.0,
        True,
    )
    assert "human gate: win probability ≥ 0.6" in response.content.decode()


def test_an_empty_threshold_turns_the_human_gate_off(project, admin_member, client):
    Project.objects.filter(pk=project.pk).update(gate_human_min_win_rate=0.6)
    client.force_login(admin_member)

    client.post(f"/p/{project.slug}/gates/", {**GATES, "gate_human_min_win_rate": ""})

    project.refresh_from_db()
    assert project.gate_human_min_win_rate is None


def test_a_threshold_above_one_is_refused_and_nothing_changes(project, admin_member, client):
    client.force_login(admin_member)

    response = client.post(
        f"/p/{project.slug}/gates/", {**GATES, "gate_human_min_win_rate": "1.5"}, follow=True
    )

    project.refresh_from_db()
    page = response.content.decode()
    assert "Human gate: least human win probability: " in page
    assert "less than or equal to 1.0" in page
    assert (project.gate_human_min_win_rate, project.gate_min_win_rate) == (None, 0.5)


def test_an_annotator_cannot_set_the_gates(project, annotator, client):
    client.force_login(annotator)

    response = client.post(f"/p/{project.slug}/gates/", GATES)

    project.refresh_from_db()
    assert response.status_code == 404
    assert project.gate_human_min_win_rate is None


def test_the_human_gate_is_recommended_once_a_project_has_three_annotators(
    project, admin_member, client, django_user_model
):
    from feedback.services import membership_set

    client.force_login(admin_member)
    for name in ("ann-1", "ann-2"):
        membership_set(
            project=project, user=django_user_model.objects.create(username=name), role="annotator"
        )
    before = client.get(f"/p/{project.slug}/").content.decode()
    membership_set(
        project=project, user=django_user_model.objects.create(username="ann-3"), role="annotator"
    )
    after = client.get(f"/p/{project.slug}/").content.decode()

    assert 'id="human-gate-recommended"' not in before
    assert 'id="human-gate-recommended"' in after
    assert "This project has 3 annotators" in after


def test_an_admin_sets_the_optimizer_and_where_candidates_start(project, admin_member, client):
    client.force_login(admin_member)

    response = client.post(
        f"/p/{project.slug}/training/", {"optimizer": "dpo", "restart_from": "base"}, follow=True
    )

    project.refresh_from_db()
    page = response.content.decode()
    assert (project.optimizer, project.restart_from) == ("dpo", "base")
    assert (
        "Training saved: DPO on the preference pairs, each candidate from the base model, "
        "reward models without length control." in page
    )
    assert (
        '<span id="training-summary">DPO on the preference pairs, each candidate from the base '
        "model, reward models without length control</span>" in page
    )


def test_an_unknown_optimizer_is_refused_on_the_loop_page_and_nothing_changes(
    project, admin_member, client
):
    client.force_login(admin_member)

    response = client.post(
        f"/p/{project.slug}/training/", {"optimizer": "sgd", "restart_from": "base"}, follow=True
    )

    project.refresh_from_db()
    assert (
        "Optimizer: Select a valid choice. sgd is not one of the available choices."
        in response.content.decode()
    )
    assert (project.optimizer, project.restart_from) == ("ppo", "active")


def test_an_annotator_cannot_set_the_optimizer(project, annotator, client):
    client.force_login(annotator)

    response = client.post(
        f"/p/{project.slug}/training/", {"optimizer": "dpo", "restart_from": "base"}
    )

    project.refresh_from_db()
    assert response.status_code == 404
    assert (project.optimizer, project.restart_from) == ("ppo", "active")


# --- Length: the held-out split and length control ----------------------------------------------


def test_a_reward_runs_page_splits_its_heldout_accuracy_by_length(project, reviewer, client):
    from training import services

    run = services.run_create(project=project, kind="reward", config={})
    services.run_start(run=run, worker="w")
    services.run_succeed(run=run, summary=LENGTH_METRICS)
    client.force_login(reviewer)

    page = client.get(f"/p/{project.slug}/runs/{run.pk}/").content.decode()

    assert '<section class="card" id="heldout">' in page
    assert "<td>all (20)</td><td><strong>0.750</strong></td>" in page
    assert "<td>chosen answer shorter (5)</td><td>0.400</td>" in page
    assert "<td>chosen answer longer (10)</td><td>0.900</td>" in page
    assert "<td>same length (5)</td><td>0.800</td>" in page
    assert (
        "The model picks the shorter answer in 0.200 of the held-out pairs of different "
        "lengths; the labels do in 0.333." in page
    )
    assert (
        "Trained with length control: the pairs won by the longer and by the shorter answer "
        "weighed the same, so its 60 training pairs counted as 40.0. Its training labels chose "
        "the shorter answer in 0.250 of the pairs of different lengths." in page
    )


def test_a_reward_run_trained_before_the_split_shows_dashes(project, reviewer, client):
    from training import services

    run = services.run_create(project=project, kind="reward", config={})
    services.run_start(run=run, worker="w")
    services.run_succeed(run=run, summary={"heldout_accuracy": 0.6, "heldout_pairs": 10})
    client.force_login(reviewer)

    page = client.get(f"/p/{project.slug}/runs/{run.pk}/").content.decode()

    assert "<td>chosen answer shorter (0)</td><td>-</td>" in page
    assert "The model picks the shorter answer in - of the held-out pairs" in page
    assert "Trained without length control." in page


def test_a_generation_runs_page_has_no_heldout_section(project, reviewer, client):
    from training import services

    run = services.run_create(project=project, kind="generate", config={})
    client.force_login(reviewer)

    page = client.get(f"/p/{project.slug}/runs/{run.pk}/").content.decode()

    assert 'id="heldout"' not in page


def test_the_loop_page_shows_the_length_split_next_to_heldout_accuracy(
    project, annotator, reviewer, client
):
    labelled(project, annotator, [("a short one", "a longer one")], "a")
    reward_model_registered(project, metrics=LENGTH_METRICS)
    reward_model_registered(project, heldout_accuracy=0.5)  # trained before the split existed
    client.force_login(reviewer)

    page = client.get(f"/p/{project.slug}/").content.decode()

    assert (
        "<td>0.750</td>\n    <td>0.400 (5)</td>\n    <td>0.900 (10)</td>\n"
        "    <td>0.200 (0.333)</td>\n    <td>on (40 of 60 pairs)</td>" in page
    )
    assert (
        "<td>0.500</td>\n    <td>- (0)</td>\n    <td>- (0)</td>\n    <td>- (-)</td>\n"
        "    <td>off</td>" in page
    )


def test_an_admin_turns_reward_length_control_on(project, admin_member, client):
    client.force_login(admin_member)

    response = client.post(
        f"/p/{project.slug}/training/",
        {"optimizer": "ppo", "restart_from": "active", "reward_length_control": "on"},
        follow=True,
    )

    project.refresh_from_db()
    page = response.content.decode()
    assert project.reward_length_control is True
    assert (
        "Training saved: PPO against the policy&#x27;s reward model, each candidate from the "
        "active version&#x27;s adapter, reward models with length control." in page
    )
    assert "reward models with length control</span>" in page
    event = AuditEvent.objects.get(action=AuditEvent.Action.TRAINING_CONFIG_SET)
    assert (event.actor, event.before, event.after) == (
        admin_member,
        {"reward_length_control": False},
        {"reward_length_control": True},
    )


def test_length_control_with_trls_reward_loop_is_refused_and_nothing_changes(
    project, admin_member, client
):
    Project.objects.filter(pk=project.pk).update(
        training_config={"reward": {"max_batch_tokens": None}}
    )
    client.force_login(admin_member)

    response = client.post(
        f"/p/{project.slug}/training/",
        {"optimizer": "dpo", "restart_from": "active", "reward_length_control": "on"},
        follow=True,
    )

    project.refresh_from_db()
    assert (
        "Reward models with length controlled: Length control needs Hone&#x27;s packed reward "
        "loop, but training_config.reward.max_batch_tokens is null" in response.content.decode()
    )
    assert (project.optimizer, project.reward_length_control) == ("ppo", False)
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TRAINING_CONFIG_SET).exists()


def test_an_admin_sets_the_sft_stage_and_an_empty_value_turns_it_off(project, admin_member, client):
    client.force_login(admin_member)
    training = {"optimizer": "ppo", "restart_from": "active"}

    on = client.post(
        f"/p/{project.slug}/training/", {**training, "sft_min_demonstrations": "12"}, follow=True
    )
    project.refresh_from_db()
    stored = project.sft_min_demonstrations
    off = client.post(
        f"/p/{project.slug}/training/", {**training, "sft_min_demonstrations": ""}, follow=True
    )
    project.refresh_from_db()

    assert (stored, project.sft_min_demonstrations) == (12, None)
    assert (
        "SFT first when 12 accepted demonstrations are new to the latest SFT version."
        in on.content.decode()
    )
    assert '<span id="sft-summary">No SFT stage</span>' in off.content.decode()


def test_a_bad_sft_threshold_is_refused_on_the_loop_page_and_nothing_changes(
    project, admin_member, client
):
    client.force_login(admin_member)

    response = client.post(
        f"/p/{project.slug}/training/",
        {"optimizer": "dpo", "restart_from": "base", "sft_min_demonstrations": "0"},
        follow=True,
    )

    project.refresh_from_db()
    assert (
        "SFT first after this many new accepted demonstrations: The SFT stage needs at least 1 "
        "new accepted demonstration; leave it empty for no SFT stage." in response.content.decode()
    )
    assert (project.optimizer, project.sft_min_demonstrations) == ("ppo", None)


def test_the_loop_page_shows_the_lineage_from_demonstrations_to_policy_versions(
    project, admin_member, reviewer, client
):
    from tests.factories import sft_line_registered

    sft, v1 = sft_line_registered(project, reviewer, ["Hello!", "Hi there."])
    client.force_login(admin_member)

    page = client.get(f"/p/{project.slug}/").content.decode()

    snapshot = sft.snapshot
    section = page.split('id="sft-versions"')[1].split("</section>")[0]
    assert "SFT versions and their lineage" in section
    assert (
        f"snapshot {snapshot.pk}: 2 demonstrations on 1 prompts (2 new), sha256 "
        f"{snapshot.sha256[:12]}…" in section
    )
    assert "3.000 → 2.500" in section  # held-out loss before and after
    assert f"<td>v{v1.number}</td>" in section  # the policy versions of its line
    assert "from v0 · PPO run" in page
    assert (
        f"(started from SFT1) · line of SFT1 on demonstration snapshot {snapshot.pk}: 2 "
        "demonstrations" in page
    )
