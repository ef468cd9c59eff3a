"""What the loop is waiting for, at every moment: one selector, read by the loop page, the API
and the annotator's empty queue."""

from __future__ import annotations

from feedback.services import assignment_next, label_submit
from tests.factories import make_comparisons
from training import jobs, services
from training.models import LoopIteration, TrainingRun
from training.selectors import loop_waiting_for

PAIRS = [("a", "b"), ("c", "d"), ("e", "f"), ("g", "h")]


def waiting(project) -> tuple[str, str]:
    wait = loop_waiting_for(project=project)
    return wait.code, wait.message


def label(project, user, count: int) -> None:
    for _ in range(count):
        assignment = assignment_next(project=project, user=user)
        label_submit(user=user, assignment_id=assignment.pk, choice="a")


def iteration(project, status: str, **fields) -> LoopIteration:
    return LoopIteration.objects.create(
        project=project, number=3, trigger="labels", status=status, **fields
    )


def test_labels_before_the_next_iteration(project, annotator):
    project.trigger_new_labels = 16
    project.save()
    make_comparisons(project, PAIRS)
    label(project, annotator, 3)

    assert waiting(project) == ("labels", "13 more labels before the next iteration")


def test_the_next_label_when_the_trigger_was_lowered(project, annotator):
    make_comparisons(project, PAIRS)
    label(project, annotator, 2)
    project.trigger_new_labels = 2
    project.save()

    assert waiting(project) == ("labels", "the next label, which starts an iteration")


def test_nothing_to_label_and_nothing_generated(project):
    project.trigger_new_labels = 16
    project.save()

    assert waiting(project) == (
        "comparisons",
        "an admin to generate comparisons: none is open (16 more labels before the next iteration)",
    )


def test_an_admin_without_a_trigger(project):
    make_comparisons(project, PAIRS)

    assert waiting(project) == ("admin", "an admin to start an iteration (no trigger set)")


def test_the_schedule(project):
    make_comparisons(project, PAIRS)
    services.loop_schedule_set(project=project, cron="0 3 * * *")

    assert waiting(project) == (
        "schedule",
        "the schedule (0 3 * * *) or an admin to start an iteration",
    )


def test_a_queued_generation_run_with_nothing_to_label(project):
    project.trigger_new_labels = 16
    project.save()
    run = jobs.generation_queue(project=project)

    assert waiting(project) == (
        "generation_queued",
        f"a worker to take generation run {run.pk} (nothing to label until it has run)",
    )


def test_a_running_generation_run(project):
    make_comparisons(project, PAIRS)
    run = TrainingRun.objects.create(
        project=project, kind="generate", status="running", worker="gpu-1:42"
    )

    assert waiting(project) == (
        "generation_running",
        f"generation run {run.pk} to finish on gpu-1:42",
    )


def test_an_admins_approval(project):
    iteration(project, "awaiting_approval")
    jobs.generation_queue(project=project)  # the iteration comes first

    assert waiting(project) == ("approval", "an admin's approval of iteration 3")


def test_human_labels(project):
    iteration(
        project, "awaiting_humans", evaluation={"human_gate": {"labels": 12, "labels_needed": 30}}
    )

    assert waiting(project) == ("human_labels", "human labels for iteration 3 (12 of 30)")


def test_a_worker_on_a_step(project):
    running = iteration(project, "ppo")
    run = TrainingRun.objects.create(
        project=project, iteration=running, kind="ppo", status="running", worker="gpu-1:42"
    )

    assert waiting(project) == (
        "worker",
        f"iteration 3 (PPO): ppo run {run.pk} to finish on gpu-1:42",
    )


def test_a_worker_to_take_a_step(project):
    iteration(project, "reward")

    assert waiting(project) == (
        "worker",
        "a worker to carry on iteration 3 (training the reward model)",
    )


# --- Where people read it ----------------------------------------------------------------


def test_the_loop_page_says_it(project, admin_member, client):
    project.trigger_new_labels = 16
    project.save()
    make_comparisons(project, PAIRS)
    client.force_login(admin_member)

    page = client.get(f"/p/{project.slug}/").content.decode()

    assert (
        '<p id="loop-waiting" data-code="labels"><strong>Waiting for</strong> 16 more labels '
        "before the next iteration.</p>" in page
    )


def test_the_api_says_it(project, admin_member, client):
    running = iteration(project, "awaiting_approval")
    client.force_login(admin_member)

    body = client.get(f"/api/projects/{project.slug}/loop/").json()

    assert (body["waiting_for"], body["message"]) == (
        "approval",
        "an admin's approval of iteration 3",
    )
    assert (body["iteration"]["number"], body["iteration"]["status"]) == (
        running.number,
        "awaiting_approval",
    )


def test_the_api_without_a_running_iteration(project, admin_member, client):
    client.force_login(admin_member)

    body = client.get(f"/api/projects/{project.slug}/loop/").json()

    assert body == {
        "waiting_for": "admin",
        "message": "an admin to start an iteration (no trigger set)",
        "iteration": None,
    }


def test_the_api_is_for_staff(project, annotator, client):
    client.force_login(annotator)

    response = client.get(f"/api/projects/{project.slug}/loop/")

    assert response.status_code == 403


def test_the_annotators_empty_queue_says_it(project, annotator, client):
    run = jobs.generation_queue(project=project)
    client.force_login(annotator)

    page = client.get(f"/p/{project.slug}/label/").content.decode()

    assert "Nothing to label right now." in page
    assert (
        f'<p class="hint" id="loop-waiting">The loop is waiting for a worker to take generation '
        f"run {run.pk} (nothing to label until it has run).</p>" in page
    )
