"""python manage.py export_demonstrations --project SLUG --out PATH [--style messages|prompt_completion]
[--split train|eval|all]

The project's standing demonstrations as JSONL in TRL's SFT format, which
`python -m training.ml.sft --data PATH` reads as it is. Audited like every export.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from feedback.exports import SFT_SPLITS, SFT_STYLES, demonstrations_export
from feedback.models import Project


class Command(BaseCommand):
    help = "Export a project's demonstrations in TRL's SFT format (JSONL)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--out", required=True, help="The JSONL file to write.")
        parser.add_argument("--style", default="messages", choices=SFT_STYLES)
        parser.add_argument("--split", default="train", choices=SFT_SPLITS)

    def handle(self, *args, **options) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['project']!r}.")
        try:
            payload = demonstrations_export(
                project=project, style=options["style"], split=options["split"]
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        out = Path(options["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.tmp")  # never a half-written file at `out`
        partial.write_bytes(payload)
        partial.replace(out)
        rows = payload.count(b"\n")
        self.stdout.write(self.style.SUCCESS(f"Wrote {rows} demonstrations to {out}."))
