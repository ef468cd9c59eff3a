"""Seed the demo project: accounts, prompts, and the base policy's first comparisons."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from feedback.models import Comparison, Membership, Project
from feedback.services import membership_set, project_create, prompts_import
from training.jobs import generation_queue
from training.models import TrainingRun

DEMO_PROMPTS = Path(__file__).resolve().parents[2] / "fixtures" / "demo_prompts.jsonl"

GUIDELINES = """\
# How to judge

Read the user's message, then both answers. Pick the answer you would rather receive.

- **Correct and helpful** first: an answer that is wrong or off-topic loses.
- Between two helpful answers, prefer the **clear and concise** one.
- **Tie** when neither is better; **both bad** when neither helps at all.
- Strength: *slight*, *clear* or *strong*, by how sure you are.
"""

# Small enough for a 2-core CPU: one iteration takes a few minutes on SmolLM2-135M.
DEMO_TRAINING_CONFIG = {
    "reward": {"epochs": 2, "batch_size": 4, "max_length": 384},
    "ppo": {
        "total_episodes": 32,
        "rollout_batch_size": 8,
        "num_mini_batches": 2,
        "response_length": 48,
    },
    "generate": {"batch_size": 8},
}


class Command(BaseCommand):
    help = "Create the demo project, an admin and an annotator, and queue first comparisons."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--base-model", default=settings.HONE_DEFAULT_BASE_MODEL)
        parser.add_argument("--prompts", default=str(DEMO_PROMPTS))
        parser.add_argument("--slug", default="demo")

    def handle(self, *args, base_model: str, prompts: str, slug: str, **options) -> None:
        records = _read_jsonl(Path(prompts))
        User = get_user_model()
        credentials = {}
        with transaction.atomic():
            project = Project.objects.filter(slug=slug).first()
            if project is None:
                project = project_create(
                    slug=slug,
                    name="Demo: concise answers",
                    base_model=base_model,
                    guidelines=GUIDELINES,
                    max_new_tokens=64,
                    trigger_new_labels=16,
                    comparisons_per_iteration=16,
                    # the write mode (w) on the labeling page: one answer per train prompt
                    demonstrations_per_prompt=1,
                    training_config=DEMO_TRAINING_CONFIG,
                )
                prompts_import(project=project, records=records, source=Path(prompts).name)
                self.stdout.write(f"Created project {slug} with {len(records)} prompts.")
            for username, role in (("admin", Membership.Role.ADMIN), ("annotator", "annotator")):
                user, _ = User.objects.get_or_create(username=username)
                password = secrets.token_urlsafe(9)
                user.set_password(password)
                user.is_staff = user.is_superuser = role == Membership.Role.ADMIN
                user.save()
                membership_set(project=project, user=user, role=role)
                credentials[username] = password

        has_work = (
            Comparison.objects.filter(project=project).exists()
            or TrainingRun.objects.filter(
                project=project,
                kind=TrainingRun.Kind.GENERATE,
                status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING],
            ).exists()
        )
        if not has_work:
            run = generation_queue(project=project)
            self.stdout.write(f"Queued generation run {run.pk}: the first comparisons.")
        for username, password in credentials.items():
            self.stdout.write(self.style.SUCCESS(f"  {username:<10} password: {password}"))


def _read_jsonl(path: Path) -> list:
    if not path.exists():
        raise CommandError(f"Prompts file not found: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise CommandError(f"{path} line {number}: invalid JSON ({error.msg}).") from None
    return records
