"""Throughput of prompt import and preference export (feedback/imports/, training/exports.py).

    .venv/bin/python bench/data_io.py [--prompts 20000] [--pairs 5000]

Uses a fresh SQLite database in a temporary folder (DATABASE_URL to measure another one).
Prints one line per measurement: what, how many, seconds, rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("DEBUG", "1")
_TMP = tempfile.mkdtemp(prefix="hone-bench-io-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{_TMP}/bench.sqlite3")
os.environ.setdefault("HONE_ARTIFACT_ROOT", f"{_TMP}/artifacts")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402


def timed(label: str, count: int, fn):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<48} {count:>7}  {seconds:7.2f} s  {count / seconds:9.0f} /s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=5_000)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    from feedback.imports import prompts_import_file
    from feedback.models import Comparison, Completion, PreferenceLabel, Prompt
    from feedback.services import project_create
    from training.exports import export_to_path
    from training.selectors import policy_active

    project = project_create(slug="bench-io", name="Bench IO", base_model="unused")
    lines = [
        json.dumps({"prompt": f"Question number {i}: explain topic {i % 97}.", "split": "train"})
        for i in range(args.prompts)
    ]
    data = ("\n".join(lines) + "\n").encode()
    print(f"file: {len(data) / 1e6:.1f} MB of JSONL")
    timed(
        "import prompts (validate + duplicates + write)",
        args.prompts,
        lambda: prompts_import_file(project=project, data=data, name="bench.jsonl"),
    )
    timed(
        "re-import, every line a duplicate (skip)",
        args.prompts,
        lambda: prompts_import_file(
            project=project, data=data, name="bench.jsonl", duplicates="skip"
        ),
    )

    # Labelled comparisons, written in bulk (not what is measured).
    policy = policy_active(project=project)
    prompts = list(Prompt.objects.filter(project=project)[: args.pairs])
    completions = Completion.objects.bulk_create(
        [
            Completion(prompt=p, policy_version=policy, text=f"answer {side} to {p.pk}")
            for p in prompts
            for side in ("a", "b")
        ]
    )
    comparisons = Comparison.objects.bulk_create(
        [
            Comparison(
                project=project,
                prompt=prompts[i],
                completion_a=completions[2 * i],
                completion_b=completions[2 * i + 1],
                status="complete",
            )
            for i in range(len(prompts))
        ]
    )
    user_model = get_user_model()
    annotator, _ = user_model.objects.get_or_create(username="bench-io-annotator")
    PreferenceLabel.objects.bulk_create(
        [
            PreferenceLabel(
                comparison=c, annotator=annotator, choice="ab"[i % 2], a_shown_left=True
            )
            for i, c in enumerate(comparisons)
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        timed(
            "export preferences, JSONL",
            args.pairs,
            lambda: export_to_path(
                project=project, what="preferences", file_format="jsonl", out=out / "p.jsonl"
            ),
        )
        timed(
            "export preferences, datasets folder",
            args.pairs,
            lambda: export_to_path(
                project=project, what="preferences", file_format="hf", out=out / "hf"
            ),
        )
        timed(
            "export votes, CSV",
            args.pairs,
            lambda: export_to_path(
                project=project, what="votes", file_format="csv", out=out / "v.csv"
            ),
        )
    shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
