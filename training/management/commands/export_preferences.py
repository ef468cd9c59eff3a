"""python manage.py export_preferences --project SLUG --out PATH [--format jsonl|hf] [--votes]

Preference pairs in TRL's explicit-prompt format (JSONL, or a Hugging Face `datasets` folder
with --format hf), or with --votes every label with pseudonymous annotators (JSONL or CSV).
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from feedback.models import Project
from training.exports import STYLES, export_to_path


class Command(BaseCommand):
    help = "Export a project's preference pairs (TRL format) or raw votes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--out", required=True, help="A file, or a folder for --format hf.")
        parser.add_argument(
            "--format", default="jsonl", choices=("jsonl", "hf", "csv"), dest="file_format"
        )
        parser.add_argument("--style", default="auto", choices=STYLES)
        parser.add_argument("--votes", action="store_true", help="Every vote, not pairs.")

    def handle(self, *args, **options) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['project']!r}.")
        what = "votes" if options["votes"] else "preferences"
        out = Path(options["out"])
        try:
            count = export_to_path(
                project=project,
                what=what,
                file_format=options["file_format"],
                out=out,
                style=options["style"],
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(self.style.SUCCESS(f"Wrote {count} {what} rows to {out}."))
