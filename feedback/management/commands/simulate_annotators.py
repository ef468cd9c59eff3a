"""Label comparisons with simulated annotators whose taste is fixed and known.

They go through the same services as the web UI (assignment_next, label_submit), so the
loop cannot tell them from people. Used by the demo, the end-to-end tests and benchmarks.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from feedback.models import Membership, Project
from feedback.preferences import PREFERENCES, judge
from feedback.services import assignment_next, label_submit, membership_set


class Command(BaseCommand):
    help = "Label N comparisons of a project with simulated annotators of a chosen taste."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--labels", type=int, required=True, help="How many labels to give.")
        parser.add_argument(
            "--preference", default="concise", choices=sorted(PREFERENCES), help="Their taste."
        )
        parser.add_argument(
            "--annotators", type=int, default=1, help="How many distinct simulated people."
        )

    def handle(self, *args, project: str, labels: int, preference: str, annotators: int, **kw):
        if labels < 1 or annotators < 1:
            raise CommandError("--labels and --annotators must be at least 1.")
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug {project!r}.")
        User = get_user_model()
        people = []
        for i in range(1, annotators + 1):
            user, _ = User.objects.get_or_create(username=f"sim-{preference}-{i}")
            membership_set(project=target, user=user, role=Membership.Role.ANNOTATOR)
            people.append(user)

        given, turn, exhausted = 0, 0, set()
        while given < labels and len(exhausted) < len(people):
            user = people[turn % len(people)]
            turn += 1
            if user.pk in exhausted:
                continue
            assignment = assignment_next(project=target, user=user)
            if assignment is None:
                exhausted.add(user.pk)
                continue
            comparison = assignment.comparison
            choice, strength = judge(
                preference, comparison.completion_a.text, comparison.completion_b.text
            )
            label_submit(user=user, assignment_id=assignment.pk, choice=choice, strength=strength)
            given += 1
            if given % 10 == 0 or given == labels:
                self.stdout.write(f"labelled {given}/{labels}")
        if given < labels:
            self.stdout.write(f"Only {given} comparisons were open for these annotators.")
        self.stdout.write(self.style.SUCCESS(f"{given} labels given ({preference})."))
