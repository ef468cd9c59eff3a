"""python manage.py import_prompts FILE --project SLUG [--format jsonl|csv|json] [--duplicates skip]

All or nothing: a file with any problem is rejected, every problem printed by line and field.
With --labels, FILE is a Label Studio JSON export of a pairwise project instead; with
--demonstrations, demonstrations in TRL's SFT formats (JSONL or a JSON list).
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from feedback.imports import (
    DUPLICATES,
    FORMATS,
    FileRejected,
    LabelStudioMapping,
    demonstrations_import_file,
    labels_import_file,
    prompts_import_file,
)
from feedback.models import Project


class Command(BaseCommand):
    help = "Import prompts (JSONL, CSV, JSON list) or pairwise labels (--labels) into a project."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--format", choices=FORMATS, help="Default: from the file name.")
        parser.add_argument(
            "--duplicates",
            choices=DUPLICATES,
            default="error",
            help="error: a duplicate rejects the file; skip: leave them out; keep: import.",
        )
        parser.add_argument(
            "--labels", action="store_true", help="FILE is a Label Studio pairwise export."
        )
        parser.add_argument(
            "--demonstrations",
            action="store_true",
            help="FILE holds demonstrations in TRL's SFT formats (messages, or prompt and "
            "completion).",
        )
        parser.add_argument("--prompt-field", default="prompt")
        parser.add_argument("--answer-a-field", default="answer1")
        parser.add_argument("--answer-b-field", default="answer2")

    def handle(self, *args, **options) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['project']!r}.")
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        data = path.read_bytes()
        self.stdout.write(f"Read {len(data)} bytes from {path}; validating the whole file...")
        try:
            if options["demonstrations"]:
                demonstrations = demonstrations_import_file(
                    project=project,
                    data=data,
                    name=path.name,
                    file_format=options["format"],
                    duplicates=options["duplicates"],
                )
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Imported {len(demonstrations.demonstrations)} demonstrations "
                        f"({demonstrations.prompts_created} new prompts) into {project.slug}."
                    )
                )
                self._skipped(demonstrations.skipped)
                return
            if options["labels"]:
                result = labels_import_file(
                    project=project,
                    data=data,
                    name=path.name,
                    mapping=LabelStudioMapping(
                        prompt=options["prompt_field"],
                        answer_a=options["answer_a_field"],
                        answer_b=options["answer_b_field"],
                    ),
                )
                summary = result.as_dict()
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Imported {summary['labels']} labels on {summary['comparisons']} "
                        f"comparisons ({summary['prompts_created']} new prompts, "
                        f"{len(summary['annotators'])} annotators) into {project.slug}."
                    )
                )
                for skipped in summary["skipped"]:
                    self.stdout.write(f"  skipped line {skipped['line']}: {skipped['reason']}")
                return
            result = prompts_import_file(
                project=project,
                data=data,
                name=path.name,
                file_format=options["format"],
                duplicates=options["duplicates"],
            )
        except FileRejected as error:
            for problem in error.problems:
                self.stderr.write(f"{path.name} {problem}")
            raise CommandError(
                f"{path.name} rejected: {len(error.problems)} problem(s); nothing was imported."
            ) from None
        self.stdout.write(
            self.style.SUCCESS(f"Imported {len(result.prompts)} prompts into {project.slug}.")
        )
        self._skipped(result.skipped)

    def _skipped(self, skipped_lines: list[dict]) -> None:
        for skipped in skipped_lines:
            where = skipped.get("duplicate_of_line", "the project")
            self.stdout.write(f"  skipped line {skipped['line']}: duplicate of {where}")
