"""Server time of the labeling page's two hot requests, against PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hone_bench_labeling \
        .venv/bin/python bench/labeling_server_time.py --comparisons 10000 --rounds 300

Creates the database if it is missing, migrates it, fills one project with N open comparisons
(once; rerun reuses them while enough stay open), then, for several annotators in turn:
  next item : GET  /p/<slug>/label/item/    (lease the next comparison, render the partial)
  submit    : POST /p/<slug>/label/submit/  (store the label, lease and render the next item)
Each request goes through Django's full stack in-process (middleware, session, auth, ORM,
templates) with Django's test client: server time, no network. Prints p50/p95/max in ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ASSIGNMENT = re.compile(r'data-assignment="(\d+)"')
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hone_bench_labeling")


def ensure_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def seed(n: int, annotators: int):
    from django.contrib.auth import get_user_model

    from feedback.models import Comparison, Completion, Project, Prompt
    from feedback.services import membership_set, project_create
    from training.selectors import policy_active

    project = Project.objects.filter(slug="bench").first()
    if project is None:
        project = project_create(
            slug="bench",
            name="Bench",
            base_model="unused",
            guidelines="Prefer **correct**, then *brief*.",
        )
    open_count = Comparison.objects.filter(project=project, status="open").count()
    if open_count < n:
        policy = policy_active(project=project)
        missing = n - open_count
        prompts = Prompt.objects.bulk_create(
            Prompt(project=project, messages=[{"role": "user", "content": f"Question {i}?"}])
            for i in range(missing)
        )
        completions = Completion.objects.bulk_create(
            Completion(
                prompt=p,
                policy_version=policy,
                text=f"Answer {side} to question {p.pk}.\n\n```python\nprint({p.pk})\n```",
            )
            for p in prompts
            for side in ("one", "two")
        )
        Comparison.objects.bulk_create(
            Comparison(
                project=project,
                prompt=prompts[i],
                completion_a=completions[2 * i],
                completion_b=completions[2 * i + 1],
            )
            for i in range(missing)
        )
    users = []
    for i in range(annotators):
        user, created = get_user_model().objects.get_or_create(username=f"bench-ann-{i}")
        if created:
            user.set_password("pw")
            user.save()
        membership_set(project=project, user=user, role="annotator")
        users.append(user)
    return project, users


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=300, help="labels submitted in all")
    parser.add_argument("--annotators", type=int, default=5)
    parser.add_argument(
        "--submit-via",
        choices=["page", "api"],
        default="page",
        help="page: the htmx endpoint (stores the label AND leases and renders the next item); "
        "api: POST /api/assignments/<id>/label/ (stores the label only)",
    )
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from feedback.models import Comparison

    call_command("migrate", verbosity=0)
    project, users = seed(args.comparisons + args.rounds, args.annotators)
    with connection.cursor() as cursor:  # fresh statistics, as autovacuum keeps them in service
        cursor.execute("VACUUM ANALYZE")
    clients = []
    for user in users:
        client = Client()
        client.force_login(user)
        client.get(f"/p/{project.slug}/label/")  # warm: templates, connection
        clients.append(client)
    open_now = Comparison.objects.filter(project=project, status="open").count()

    timings: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": [], "queries": []} for name in ("next item", "submit")
    }
    queries = [0]

    def count(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    def timed(name: str, send, *args):
        """Wall time (what the annotator waits for, database included), this process's CPU
        time (Django + templates, unaffected by other load on the machine), queries."""
        queries[0] = 0
        wall, cpu = time.perf_counter(), time.process_time()
        with connection.execute_wrapper(count):
            response = send(*args)
        timings[name]["wall"].append((time.perf_counter() - wall) * 1000)
        timings[name]["cpu"].append((time.process_time() - cpu) * 1000)
        timings[name]["queries"].append(queries[0])
        return response

    for i in range(args.rounds):
        client = clients[i % len(clients)]
        response = timed("next item", client.get, f"/p/{project.slug}/label/item/")
        assert response.status_code == 200, response.status_code
        assignment_id = int(ASSIGNMENT.search(response.content.decode()).group(1))
        form = {"assignment_id": assignment_id, "choice": "a", "strength": "2"}
        if args.submit_via == "page":
            url = f"/p/{project.slug}/label/submit/"
            response = timed("submit", client.post, url, {**form, "time_spent_ms": "4000"})
            ok = response.status_code == 200 and 'role="alert"' not in response.content.decode()
        else:
            url = f"/api/assignments/{assignment_id}/label/"
            response = timed("submit", client.post, url, form)
            ok = response.status_code == 201
        assert ok, response.content[:500]

    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        f"open comparisons in the project at the start: {open_now}; rounds: {args.rounds}; "
        f"submit via {args.submit_via}"
    )
    print(f"load average before: {os.getloadavg()}")
    for name, values in timings.items():
        wall, cpu = values["wall"], values["cpu"]
        print(
            f"{name:10s} wall p50 {statistics.median(wall):6.1f} p95 {percentile(wall, 0.95):6.1f}"
            f" max {max(wall):6.1f} ms | cpu p50 {statistics.median(cpu):5.1f}"
            f" p95 {percentile(cpu, 0.95):5.1f} ms | queries p50"
            f" {statistics.median(values['queries']):.0f} (n={len(wall)})"
        )


if __name__ == "__main__":
    main()
