"""Labeling under load: N simulated annotators against the real ASGI server and PostgreSQL.

    python bench/labeling_load.py --concurrency 64 --seconds 30

By itself it creates a fresh PostgreSQL database on the server DATABASE_URL names (default:
this machine's), migrates it, seeds a project with enough comparisons and one user per
annotator, starts uvicorn with several worker processes as production does, and runs: each
annotator, logged in with their own session, asks for the next item
(POST /api/projects/<slug>/comparisons/next/) and submits a label for it
(POST /api/assignments/<id>/label/), in a loop. Afterwards it checks the invariants against
the database, stops the server and drops the database. With --url it drives a running server
instead; DATABASE_URL must then name that server's database (the project, users and sessions
are seeded there, and the checks read it).

With --rate R the annotators pace themselves to R submits per second together, as people
who read before they click do: each starts an item every N/R seconds. Without it they do not
pause, which measures the most the server can do; a closed loop without pauses cannot also
show low latencies (N annotators each waiting for the server: latency = N / throughput).

It prints one JSON line: submits per second, p50/p95/p99 latency (ms) of next and of submit
(both after the first --warmup seconds, whose calls are reported apart), errors, how fast the
machine ran Python at the start (calibration_ms), and the invariants, which cover the whole
run:
- every successful submit stored exactly once (the label ids the server answered are exactly
  the labels of these annotators in the database, each once);
- no comparison with more than k regular labels (gold items are shown to every annotator by
  design: they are checked by the next rule only);
- no annotator twice on a comparison (regular labels; a consistency repeat is the one
  allowed second look, at most one per annotator and comparison);
- no item leased to more annotators at once than it needed: at every lease's start, the
  comparison's labels plus unexpired leases never exceed k.

Login: sessions are written the way django.contrib.auth.login writes them (user id, backend,
session auth hash), so that 128 annotators do not each pay a password hash at start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64, help="Simulated annotators.")
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of the run.")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="Target submits per second of all annotators together, each pacing itself "
        "evenly (0: no pause between items, as fast as the server answers).",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="Seconds at the start left out of the rates and latencies (reported apart): "
        "every annotator's first call opens connections and fills caches.",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=1.0,
        help="Without --rate, each annotator starts at a random moment within the first RAMP "
        "seconds (0: all at once, a burst of connections that the kernel may hand to one "
        "worker). With --rate they start within their first period.",
    )
    parser.add_argument(
        "--end-connections-at",
        type=float,
        default=0.0,
        metavar="S",
        help="S seconds into the run, end every other connection to the run's database (with "
        "--url, whoever holds it), as a restart of PostgreSQL does (0: never). `errors` then "
        "counts the requests it failed.",
    )
    parser.add_argument("--url", default="", help="A running server (else one is started).")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="uvicorn worker processes (default 2, this machine's cores). Each annotator keeps "
        "one connection, and the kernel hands a burst of new connections to the workers "
        "unevenly (46/18/0 of 64 seen with 3): connections_per_worker in the output says how "
        "they fell.",
    )
    parser.add_argument(
        "--user-rate",
        default="1000000/minute",
        help="The server's HONE_API_USER_RATE. The production default, 6000/minute per user "
        "and process, throttles a single annotator who does not pause.",
    )
    parser.add_argument("--k", type=int, default=3, help="Labels per comparison.")
    parser.add_argument(
        "--comparisons", type=int, default=0, help="Comparisons to seed (0: enough for the run)."
    )
    parser.add_argument("--gold-rate", type=float, default=0.05, help="Project gold rate.")
    parser.add_argument("--repeat-rate", type=float, default=0.05, help="Project repeat rate.")
    parser.add_argument("--keep-db", action="store_true", help="Do not drop the database.")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.seconds <= 0 or args.workers < 1 or args.k < 1:
        parser.error("--concurrency, --seconds, --workers and --k must be positive.")
    if args.ramp < 0:
        parser.error("--ramp must be at least 0.")
    if not 0 <= args.end_connections_at < args.seconds:
        parser.error("--end-connections-at must be at least 0 and shorter than --seconds.")
    if not 0 <= args.warmup < args.seconds:
        parser.error("--warmup must be at least 0 and shorter than --seconds.")
    if args.rate < 0:
        parser.error("--rate must be 0 (no pause) or a positive number of submits per second.")
    return args


# --- Database and seed ------------------------------------------------------------------


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def database_create(server_url: str) -> str:
    """A fresh database on the server of `server_url`; returns its URL."""
    import psycopg

    name = f"hone_load_{int(time.time())}_{secrets.token_hex(3)}"
    with psycopg.connect(_with_db(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(server_url, name)


def database_drop(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_with_db(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_setup(database_url: str) -> None:
    """Django in this process, on the bench's database. Sessions are signed with SECRET_KEY:
    the server started here gets the same one (with --url, set the server's)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(40))
    import django

    django.setup()


def seed(*, args: argparse.Namespace, migrate: bool) -> dict:
    """Project, prompts, completions, comparisons, annotators and their sessions."""
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import connections

    from feedback.models import Completion, Membership, Prompt
    from feedback.services import comparison_set_gold, comparisons_create, project_create
    from training.selectors import policy_active

    if migrate:
        call_command("migrate", verbosity=0)
    tag = secrets.token_hex(3)
    comparisons = args.comparisons or max(1000, int(args.seconds * 250))
    project = project_create(
        slug=f"load-{tag}",
        name=f"Load test {tag}",
        base_model="unused",
        labels_per_comparison=args.k,
        gold_rate=args.gold_rate,
        repeat_rate=args.repeat_rate,
    )
    prompts = Prompt.objects.bulk_create(
        Prompt(project=project, messages=[{"role": "user", "content": f"Question {i}?"}])
        for i in range(200)
    )
    policy = policy_active(project=project)
    completions = Completion.objects.bulk_create(
        Completion(
            prompt=prompts[i // 2 % len(prompts)],
            policy_version=policy,
            text=f"Answer {i}: " + "word " * random.randint(5, 60),
        )
        for i in range(4 * comparisons)
    )
    pairs = [(completions[2 * i], completions[2 * i + 1]) for i in range(2 * comparisons)]
    pairs, history_pairs = pairs[:comparisons], pairs[comparisons:]
    created = []
    for start in range(0, len(pairs), 2000):
        created += comparisons_create(project=project, pairs=pairs[start : start + 2000])
    User = get_user_model()
    admin = User.objects.create_user(username=f"load-{tag}-admin")
    Membership.objects.create(user=admin, project=project, role=Membership.Role.ADMIN)
    for comparison in created[: max(1, comparisons // 100)] if args.gold_rate else []:
        comparison_set_gold(admin=admin, comparison_id=comparison.pk, choice="a")
    password = make_password(secrets.token_hex(8))
    users = User.objects.bulk_create(
        User(username=f"load-{tag}-{i}", password=password) for i in range(args.concurrency)
    )
    Membership.objects.bulk_create(
        Membership(user=user, project=project, role=Membership.Role.ANNOTATOR) for user in users
    )
    history_seed(project=project, pairs=history_pairs, k=args.k, tag=tag, password=password)
    backend = settings.AUTHENTICATION_BACKENDS[0]
    sessions = []
    for user in users:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = backend
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        sessions.append(session.session_key)
    # A production database has planner statistics (autovacuum analyzes after bulk inserts);
    # a database seeded a second ago has none yet.
    with connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE")
    connections.close_all()
    return {
        "project_id": project.pk,
        "slug": project.slug,
        "user_ids": [u.pk for u in users],
        "sessions": sessions,
        "comparisons": comparisons,
    }


def history_seed(*, project, pairs: list, k: int, tag: str, password: str) -> None:
    """As many comparisons again, labelled k times by earlier annotators: a project under way,
    as in production. (With the assignment and label tables empty when the planner's
    statistics are taken, the server's cached plans scan them whole, and the run measures
    that instead of labeling.)"""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from feedback.models import Assignment, Comparison, PreferenceLabel
    from feedback.services import comparisons_create

    earlier = get_user_model().objects.bulk_create(
        get_user_model()(username=f"load-{tag}-earlier-{i}", password=password)
        for i in range(max(8, k))
    )
    done = []
    for start in range(0, len(pairs), 2000):
        done += comparisons_create(project=project, pairs=pairs[start : start + 2000])
    Comparison.objects.filter(pk__in=[c.pk for c in done]).update(
        status=Comparison.Status.COMPLETE, label_count=k
    )
    now = timezone.now()
    slots = [(c, earlier[(i + j) % len(earlier)]) for i, c in enumerate(done) for j in range(k)]
    assignments = Assignment.objects.bulk_create(
        Assignment(
            comparison=c,
            annotator=user,
            a_shown_left=True,
            status=Assignment.Status.SUBMITTED,
            expires_at=now,
        )
        for c, user in slots
    )
    PreferenceLabel.objects.bulk_create(
        PreferenceLabel(comparison=c, annotator=user, assignment=a, choice="a", a_shown_left=True)
        for (c, user), a in zip(slots, assignments, strict=True)
    )


# --- Server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_start(
    *, database_url: str, workers: int, user_rate: str
) -> tuple[subprocess.Popen, str]:
    """uvicorn with `workers` processes, production settings (DEBUG off, a connection pool
    per process), no access log."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DEBUG": "0",
        "SECRET_KEY": os.environ["SECRET_KEY"],
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback: no proxy ends TLS in front
        "LOG_LEVEL": "WARNING",
        "HONE_API_USER_RATE": user_rate,
    }
    env.pop("REDIS_URL", None)
    command = [
        sys.executable, "-m", "uvicorn", "config.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning", "--lifespan", "off",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode} at start.")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        server_stop(process)
        raise RuntimeError("uvicorn did not listen within 60 s.")
    return process, url


def server_stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- CPU accounting: the machine may be shared, so say what this run itself used ----------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc (Linux); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(child) for task in tasks for child in (task / "children").read_text().split()]
    except OSError:
        return []


def cpu_snapshot(*, server: subprocess.Popen | None, database: str) -> dict[str, float]:
    """CPU seconds so far of the server's processes and the database's backends."""
    from django.db import connection

    server_pids = [server.pid, *_children(server.pid)] if server is not None else []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )
        backends = [row[0] for row in cursor.fetchall()]
    return {
        "server": sum(_cpu_seconds(pid) for pid in server_pids),
        "database": {pid: _cpu_seconds(pid) for pid in backends},
    }


def cpu_used(before: dict, after: dict, client: float) -> dict[str, float]:
    database = sum(cpu - before["database"].get(pid, 0.0) for pid, cpu in after["database"].items())
    return {
        "server_s": round(after["server"] - before["server"], 2),
        "database_s": round(database, 2),
        "load_generator_s": round(client, 2),
    }


def connections_per_worker(server: subprocess.Popen, workers: int) -> list[int]:
    """Open client connections each uvicorn worker holds, most first (Linux /proc). A worker
    is a process of the server that holds the listening socket."""
    sockets: dict[str, str] = {}  # inode: "listen" or "open", sockets of the server's port
    port = int(server.args[server.args.index("--port") + 1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            sockets[fields[9]] = "listen" if fields[3] == "0A" else "open"
    counts = []
    for pid in _children(server.pid) if workers > 1 else [server.pid]:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        held = Counter(sockets.get(link[8:-1]) for link in links if link.startswith("socket:["))
        if held["listen"]:
            counts.append(held["open"])
    return sorted(counts, reverse=True)


def connections_ender():
    """A function that ends every connection to the run's database but this process's own, as
    a restart of PostgreSQL does to the server's (each is found dead at its next query), and
    returns how many it ended."""
    import psycopg
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own,) = cursor.fetchone()
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)

    def end() -> int:
        with psycopg.connect(**params, autocommit=True) as other:
            return other.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
                [own],
            ).fetchone()[0]

    return end


# --- Load ---------------------------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that POSTs and reads answers with a Content-Length,
    all this benchmark needs. (aiohttp, used first, spent 1.4 ms of the machine's CPU per
    next + submit pair, a fifth of the whole, on cookie jars and header objects: CPU the
    server it measures then did not get.)"""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        lines = [f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
        self.headers = "".join(line + "\r\n" for line in lines).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: dict | None = None) -> tuple[int, bytes]:
        """The status and body of POST `path` (a JSON body if `payload`); OSError or
        ValueError when the connection fails, which closes it (the next call reopens it)."""
        body = b"" if payload is None else json.dumps(payload).encode()
        head = f"POST {path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n".encode()
        if payload is not None:
            head += b"Content-Type: application/json\r\n"
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(head + self.headers + b"\r\n" + body)
            status = int((await self.reader.readline()).split(b" ", 2)[1])
            length = 0
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"transfer-encoding":
                    raise ValueError("an answer without a Content-Length")
            return status, await self.reader.readexactly(length) if length else b""
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            self.close()
            raise OSError(f"POST {path}: the connection failed") from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def annotator_loop(
    *,
    url: str,
    slug: str,
    session_key: str,
    measure_from: float,
    deadline: float,
    period: float,
    ramp: float,
    stats: dict,
) -> None:
    """One annotator: next item, then submit, in a loop. With a `period` (seconds per item),
    an item starts every `period` seconds from a random phase (a late item starts at once,
    and the missed starts are dropped, not caught up in a burst); without one, the first item
    starts at a random moment within `ramp` seconds."""
    csrf = secrets.token_hex(16)  # any 32-character secret: the cookie and the header match
    http = HttpConnection(
        url,
        {
            "Cookie": f"sessionid={session_key}; csrftoken={csrf}",
            "X-CSRFToken": csrf,
            "Referer": url + "/",
        },
    )
    rng = random.Random(session_key)
    start_at = time.monotonic() + rng.uniform(0, period or ramp)
    try:
        while time.monotonic() < deadline:
            if period or start_at > time.monotonic():
                await asyncio.sleep(max(0.0, start_at - time.monotonic()))
                start_at = max(start_at + period, time.monotonic())
                if time.monotonic() >= deadline:
                    break
            measured = time.monotonic() >= measure_from
            started = time.perf_counter()
            try:
                status, body = await http.post(f"/api/projects/{slug}/comparisons/next/")
            except OSError as error:
                stats["errors"].append(f"next: {error}")
                continue
            stats["next_ms" if measured else "warmup_ms"].append(
                (time.perf_counter() - started) * 1000
            )
            if status == 204:
                stats["exhausted"] += 1
                return
            if status != 200:
                stats["errors"].append(f"next: HTTP {status} {body[:200]!r}")
                continue
            item = json.loads(body)
            choice = rng.choice(["a", "a", "b", "b", "tie", "both_bad"])
            payload = {"choice": choice, "strength": rng.randint(1, 3), "time_spent_ms": 1500}
            started = time.perf_counter()
            try:
                status, body = await http.post(
                    f"/api/assignments/{item['assignment_id']}/label/", payload
                )
            except OSError as error:
                stats["errors"].append(f"submit: {error}")
                continue
            stats["submit_ms" if measured else "warmup_ms"].append(
                (time.perf_counter() - started) * 1000
            )
            if status != 201:
                stats["errors"].append(f"submit: HTTP {status} {body[:200]!r}")
                continue
            stats["submitted"].append((item["assignment_id"], json.loads(body)["label_id"]))
            stats["measured_submits"] += time.monotonic() >= measure_from
    finally:
        http.close()


async def load(
    *,
    url: str,
    seeded: dict,
    seconds: float,
    warmup: float,
    rate: float,
    ramp: float = 0.0,
    at: dict | None = None,
) -> dict:
    """Runs the annotators. `at`: {name: (seconds, function)}, each function called in a
    thread that many seconds into the run, its answer kept as stats[name]."""
    stats: dict = {
        "next_ms": [],
        "submit_ms": [],
        "warmup_ms": [],
        "errors": [],
        "submitted": [],
        "measured_submits": 0,
        "exhausted": 0,
    }
    started = time.monotonic()
    deadline = started + seconds
    period = len(seeded["sessions"]) / rate if rate else 0.0

    async def call_at(name: str, seconds: float, function) -> None:
        await asyncio.sleep(seconds)
        stats[name] = await asyncio.to_thread(function)

    await asyncio.gather(
        *(call_at(name, seconds, function) for name, (seconds, function) in (at or {}).items()),
        *(
            annotator_loop(
                url=url,
                slug=seeded["slug"],
                session_key=key,
                measure_from=started + warmup,
                deadline=deadline,
                period=period,
                ramp=ramp,
                stats=stats,
            )
            for key in seeded["sessions"]
        ),
    )
    stats["elapsed"] = time.monotonic() - started
    stats["measured_seconds"] = stats["elapsed"] - warmup
    return stats


def _event_loop_run(coroutine):
    """uvloop where installed, as the server runs: the load generator shares the machine's
    CPU with the server, so it should not spend more than it must."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def calibration_ms() -> float:
    """How fast this machine runs Python now: milliseconds for a fixed loop (lower is faster).
    A shared virtual machine's speed varies by the hour; figures taken at different speeds
    compare only with this beside them."""
    started = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i
    return round((time.perf_counter() - started) * 1000, 1)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index], 2)


# --- Invariants ---------------------------------------------------------------------------


def invariants_check(*, seeded: dict, submitted: list[tuple[int, int]]) -> dict:
    """Every rule of the module docstring, read from the database after the run."""
    from django.utils import timezone

    from feedback.models import Assignment, Comparison, PreferenceLabel

    project_id = seeded["project_id"]
    labels = list(
        PreferenceLabel.objects.filter(
            comparison__project_id=project_id, annotator_id__in=seeded["user_ids"]
        ).values_list("pk", "assignment_id", "comparison_id", "annotator_id", "is_repeat")
    )
    answered = Counter(label_id for _, label_id in submitted)
    stored = {pk: assignment_id for pk, assignment_id, *_ in labels}
    exactly_once = (
        all(n == 1 for n in answered.values())
        and set(answered) == set(stored)
        and all(stored[label_id] == assignment_id for assignment_id, label_id in submitted)
    )

    comparisons = {
        pk: (kind, required, count)
        for pk, kind, required, count in Comparison.objects.filter(
            project_id=project_id
        ).values_list("pk", "kind", "required_labels", "label_count")
    }
    regular_counts = Counter(c for _, _, c, _, repeat in labels if not repeat)
    over_k = [
        pk
        for pk, n in regular_counts.items()
        if comparisons[pk][0] != Comparison.Kind.GOLD and n > comparisons[pk][1]
    ]
    count_mismatch = [pk for pk, n in regular_counts.items() if comparisons[pk][2] != n]
    twice = [key for key, n in Counter((c, a, r) for _, _, c, a, r in labels).items() if n > 1]

    # Lease occupancy at each lease's start: leases already submitted hold their slot for
    # good (their label), the others until they expire.
    now = timezone.now()
    leases = defaultdict(list)
    rows = Assignment.objects.filter(
        comparison__project_id=project_id, is_repeat=False, comparison__kind="regular"
    ).values_list("comparison_id", "created_at", "expires_at", "status")
    for comparison_id, created, expires, status in rows:
        end = None if status == Assignment.Status.SUBMITTED else min(expires, now)
        leases[comparison_id].append((created, end))
    over_leased = []
    for comparison_id, spans in leases.items():
        required = comparisons[comparison_id][1]
        for start, _ in spans:
            holding = sum(1 for s, e in spans if s <= start and (e is None or e > start))
            if holding > required:
                over_leased.append(comparison_id)
                break
    return {
        "every_submit_stored_exactly_once": exactly_once,
        "labels_stored": len(labels),
        "no_comparison_over_k": not over_k,
        "label_count_matches_labels": not count_mismatch,
        "no_annotator_twice_on_a_comparison": not twice,
        "no_item_leased_beyond_need": not over_leased,
        "violations": {
            "over_k": over_k[:10],
            "count_mismatch": count_mismatch[:10],
            "twice": [list(t) for t in twice[:10]],
            "over_leased": over_leased[:10],
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not server_url.startswith(("postgres://", "postgresql://")):
        print("DATABASE_URL must name a PostgreSQL server.", file=sys.stderr)
        return 2
    own_database = not args.url
    database_url = database_create(server_url) if own_database else server_url
    process = None
    try:
        django_setup(database_url)
        seeded = seed(args=args, migrate=own_database)
        if own_database:
            process, url = server_start(
                database_url=database_url, workers=args.workers, user_rate=args.user_rate
            )
        else:
            url = args.url.rstrip("/")
        database = urlsplit(database_url).path.lstrip("/")
        calibration = calibration_ms()
        timed = {}
        if process is not None:
            timed["connections_per_worker"] = (
                args.warmup,
                lambda: connections_per_worker(process, args.workers),
            )
        if args.end_connections_at:
            timed["connections_ended"] = (args.end_connections_at, connections_ender())
        before = cpu_snapshot(server=process, database=database)
        client_before = time.process_time()
        stats = _event_loop_run(
            load(
                url=url,
                seeded=seeded,
                seconds=args.seconds,
                warmup=args.warmup,
                rate=args.rate,
                ramp=args.ramp,
                at=timed,
            )
        )
        client = time.process_time() - client_before
        # Backends that served the run are still open in the pools: read them now.
        after = cpu_snapshot(server=process, database=database)
        cpu = cpu_used(before, after, client)
        if process is not None:
            server_stop(process)
            process = None
        invariants = invariants_check(seeded=seeded, submitted=stats["submitted"])
    finally:
        if process is not None:
            server_stop(process)
        if own_database and not args.keep_db:
            from django.db import connections

            connections.close_all()
            database_drop(database_url)
    held = all(value for key, value in invariants.items() if isinstance(value, bool))
    result = {
        "concurrency": args.concurrency,
        "seconds": round(stats["elapsed"], 2),
        "workers": args.workers if own_database else None,
        "connections_per_worker": stats.get("connections_per_worker"),
        "connections_ended": stats.get("connections_ended"),
        "k": args.k,
        "target_rate": args.rate or None,
        "submits": len(stats["submitted"]),
        "warmup_s": args.warmup,
        "submits_per_s": round(stats["measured_submits"] / stats["measured_seconds"], 1),
        "next_ms": {f"p{q}": percentile(stats["next_ms"], q) for q in (50, 95, 99)},
        "submit_ms": {f"p{q}": percentile(stats["submit_ms"], q) for q in (50, 95, 99)},
        "warmup_ms": {
            "calls": len(stats["warmup_ms"]),
            "p99": percentile(stats["warmup_ms"], 99),
            "max": percentile(stats["warmup_ms"], 100),
        },
        "errors": len(stats["errors"]),
        "cpu": cpu,
        "cpu_ms_per_submit": round(1000 * sum(cpu.values()) / max(1, len(stats["submitted"])), 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "calibration_ms": calibration,
        "error_samples": stats["errors"][:5],
        "annotators_out_of_items": stats["exhausted"],
        "invariants": invariants,
        "invariants_held": held,
    }
    print(json.dumps(result))
    return 0 if held and not stats["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
