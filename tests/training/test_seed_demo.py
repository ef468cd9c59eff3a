"""manage.py seed_demo: the demo project, its people and its first generation run."""

from __future__ import annotations

import io

from django.core.management import call_command

from feedback.models import Membership, Project, Prompt
from training.models import TrainingRun


def test_seed_demo_creates_the_project_and_queues_the_first_comparisons(
    db, django_capture_on_commit_callbacks
):
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        call_command("seed_demo", "--base-model", "unused-here", stdout=out)

    project = Project.objects.get(slug="demo")
    assert Prompt.objects.filter(project=project).count() == 40
    assert (project.demonstrations_per_prompt, project.answer_edits) == (1, True)
    assert sorted(Membership.objects.filter(project=project).values_list("role", flat=True)) == [
        "admin",
        "annotator",
    ]
    assert list(TrainingRun.objects.filter(project=project).values_list("kind", "status")) == [
        ("generate", "queued")
    ]
    assert "Created project demo with 40 prompts." in out.getvalue()
