"""The data page in a real browser: an admin uploads a prompt file and sees the result; a bad
file shows every problem by line and field and imports nothing."""

from __future__ import annotations

import shutil

import pytest

from feedback.models import Prompt

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt: chromium)")


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run
    # inside one unless told that this test does so on purpose.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        yield page
        browser.close()


@pytest.fixture
def server_url(transactional_db):
    """A server for this test only (pytest-django's live_server lives for the whole session
    and keeps a database connection open past the test database's teardown)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    thread = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


def test_admin_uploads_prompts_with_progress(server_url, browser_page, tmp_path):
    from django.contrib.auth import get_user_model
    from django.db import connection

    from feedback.services import membership_set, project_create

    project = project_create(slug="demo", name="Demo", base_model="unused")
    admin = get_user_model().objects.create_user(username="boss", password="pw-boss-123")
    membership_set(project=project, user=admin, role="admin")
    good = tmp_path / "prompts.jsonl"
    good.write_text('{"prompt": "From the browser"}\n{"prompt": "Second", "split": "eval"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": ""}\n')
    page = browser_page

    page.goto(f"{server_url}/login/")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "pw-boss-123")
    page.click("button[type=submit]")
    page.goto(f"{server_url}/p/demo/data/")
    form = page.locator("#import-prompts form")
    form.locator("input[type=file]").set_input_files(str(good))
    form.locator("button[type=submit]").click()
    result = form.locator(".result.good")
    result.wait_for(timeout=60_000)  # generous: a loaded CI machine
    ok_text = result.inner_text()
    progress = form.locator("progress").get_attribute("value")
    form.locator("input[type=file]").set_input_files(str(bad))
    form.locator("button[type=submit]").click()
    problems = form.locator(".result.error")
    problems.wait_for(timeout=60_000)  # generous: a loaded CI machine

    assert ok_text == "2 prompts imported."
    assert progress == "100"
    splits = sorted(Prompt.objects.filter(project=project).values_list("split", flat=True))
    # Inside Playwright's event loop the ORM got its own connection: close it, or it outlives
    # the test database.
    connection.close()

    assert problems.inner_text() == "line 2, prompt: Empty."
    assert splits == ["eval", "train"]
