"""The loop page's forms, as an admin posts them."""

from __future__ import annotations

from feedback.models import Project

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
        "Training saved: DPO on the preference pairs, each candidate from the base model." in page
    )
    assert (
        '<span id="training-summary">DPO on the preference pairs, each candidate from the base '
        "model</span>" in page
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
