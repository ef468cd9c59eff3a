"""The labeling load benchmark, short: 16 annotators for 10 seconds against uvicorn and
PostgreSQL, through config.asgi as production serves it (on PostgreSQL: the fast path of
api/fastpath.py in front of Django). It asserts the invariants, never the speed (speed:
docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="the load benchmark runs against PostgreSQL (row locks with SKIP LOCKED)",
)


@pytest.mark.timeout(300)
def test_sixteen_annotators_for_ten_seconds_keep_every_invariant_through_a_database_restart():
    db = settings.DATABASES["default"]
    server = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/postgres"
    env = {**os.environ, "DATABASE_URL": server}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "bench/labeling_load.py", "--concurrency", "16", "--seconds", "10",
         "--workers", "2", "--end-connections-at", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])

    # Halfway, every connection of the server ends, as when PostgreSQL restarts: the pools
    # find them dead and no request fails.
    assert result["connections_ended"] >= 2
    assert result["errors"] == 0, result["error_samples"]
    assert result["submits"] > 0
    # Each annotator's one connection, found in one of the two workers.
    assert len(result["connections_per_worker"]) == 2
    assert sum(result["connections_per_worker"]) == 16
    assert result["invariants"] == {
        "every_submit_stored_exactly_once": True,
        "labels_stored": result["submits"],
        "no_comparison_over_k": True,
        "label_count_matches_labels": True,
        "no_annotator_twice_on_a_comparison": True,
        "no_item_leased_beyond_need": True,
        "violations": {"over_k": [], "count_mismatch": [], "twice": [], "over_leased": []},
    }
    assert done.returncode == 0
