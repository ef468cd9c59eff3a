"""The app in a real browser: uvicorn serving the ASGI app (HTTP and websockets) against the
test database, driven by Playwright with Debian's Chromium (`apt-get install chromium`).

Playwright's own browser download does not work on these machines; `/usr/bin/chromium` is
launched through `executable_path`. Without it the browser tests are skipped with the
reason (CI installs it, see .ci/run).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from channels.layers import channel_layers
from django.db import connection

from tests.e2e.conftest import (  # noqa: F401 (fixtures)
    ROOT,
    broker,
    database_url,
    redis_url,
    start_worker,
    worker,
)

CHROMIUM = os.environ.get("HONE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def channel_layer_redis(redis_url, settings):  # noqa: F811
    """This process publishes events through the same Redis as the server process."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    channel_layers.backends.clear()
    yield redis_url
    channel_layers.backends.clear()


@pytest.fixture
def asgi_server(transactional_db, channel_layer_redis, settings, tmp_path):
    """uvicorn with the project's ASGI application, on a free port; yields its base URL."""
    port = _free_port()
    artifacts = Path(settings.ARTIFACT_ROOT)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DEBUG": "1",  # static files through WhiteNoise's finders, no collectstatic
        "DATABASE_URL": database_url(),
        "REDIS_URL": channel_layer_redis,
        "HONE_ARTIFACT_ROOT": str(artifacts),
    }
    log_path = tmp_path / "uvicorn.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed at teardown)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/login/", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError(f"uvicorn did not start:\n{log_path.read_text()}") from None
            time.sleep(0.3)
    yield url
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    print(log_path.read_text()[-3000:])


@pytest.fixture
def chromium():
    """A browser per test (about a second to start). Playwright's sync API keeps an event loop
    current in this thread while it runs: it must stop before anything that runs after the
    test (async_to_sync refuses a thread with a running loop; the e2e worker fixture's
    teardown and the next modules' tests). Meanwhile the ORM calls the tests make between
    browser steps are plain synchronous calls, which Django would refuse under a running
    loop without DJANGO_ALLOW_ASYNC_UNSAFE."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def login(chromium, asgi_server, client):
    """login(user) -> a Playwright page whose session is that user's."""
    contexts = []

    def open_page(user, *, width: int = 1280, height: int = 900):
        client.force_login(user)
        context = chromium.new_context(viewport={"width": width, "height": height})
        context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": asgi_server}]
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


def in_thread(function, *args, **kwargs):
    """Writes that publish events: away from the thread where Playwright runs its loop. The
    thread's database connection goes back to the pool as the thread ends; left open, each call
    would keep one of the pool's few connections from the tests that follow."""

    def call():
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def screenshot(page, name: str) -> None:
    """Save docs/screenshots/<name>.png when HONE_SCREENSHOTS=1 (see README)."""
    if os.environ.get("HONE_SCREENSHOTS") != "1":
        return
    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
