"""The arena in Chromium, against a real Celery worker generating with the tiny model."""

from __future__ import annotations

import pytest

from feedback.models import ArenaBattle, Comparison, Membership, PreferenceLabel
from feedback.services import membership_set, project_create
from tests.browser.conftest import screenshot
from training.models import PolicyVersion
from training.selectors import labels_for_training

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Every websocket message the page receives, in order, for the assertions below.
RECORD_SOCKET = """
window.__messages = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const socket = new NativeWebSocket(url, protocols);
  socket.addEventListener("message", (m) => window.__messages.push(JSON.parse(m.data)));
  return socket;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
"""


@pytest.fixture
def arena_project(worker, tiny_model_dir, settings, make_user):
    """A project on the tiny model with two versions: v0 (base) and v1 (a LoRA adapter)."""
    from training.ml.loading import LoraSettings, attach_lora, load_causal_lm

    project = project_create(
        slug="arena", name="Arena", base_model=tiny_model_dir, max_new_tokens=24
    )
    model, _ = load_causal_lm(tiny_model_dir)
    relative = f"projects/{project.pk}/policies/1"
    attach_lora(model, LoraSettings(r=4, alpha=8)).save_pretrained(
        settings.ARTIFACT_ROOT / relative
    )
    base = PolicyVersion.objects.get(project=project, number=0)
    PolicyVersion.objects.create(
        project=project, number=1, parent=base, adapter_path=relative, status="candidate"
    )
    user = make_user("arena-ann")
    membership_set(project=project, user=user, role=Membership.Role.ANNOTATOR)
    return project, user


def test_arena_streams_two_answers_and_records_the_vote(arena_project, login, asgi_server):
    project, user = arena_project
    page = login(user)
    page.add_init_script(RECORD_SOCKET)
    page.set_default_timeout(90_000)  # the worker loads two models on a shared CPU
    page.goto(f"{asgi_server}/p/arena/arena/")
    page.wait_for_selector("#arena-send:not([disabled])")

    page.locator("#arena-prompt").focus()
    page.keyboard.type("Tell me about rivers.")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "() => window.__messages.some(m => m.event === 'arena_token')"
    )  # streaming has begun
    page.keyboard.press("1")  # left is better, whether or not both answers are done
    page.locator("#arena-result").filter(has_text="Vote recorded").wait_for()
    page.wait_for_function(
        "() => ['left', 'right'].every(s => document.getElementById('arena-' + s).dataset.done)"
    )
    screenshot(page, "arena")

    battle = ArenaBattle.objects.select_related(
        "policy_a", "policy_b", "completion_a", "completion_b", "comparison"
    ).get()
    left, right = (
        (battle.policy_a, battle.policy_b)
        if battle.a_shown_left
        else (battle.policy_b, battle.policy_a)
    )
    assert page.locator("#arena-left-name").inner_text() == f"(v{left.number})"
    assert page.locator("#arena-right-name").inner_text() == f"(v{right.number})"
    assert {battle.policy_a.number, battle.policy_b.number} == {0, 1}

    messages = page.evaluate("window.__messages")
    streamed = {
        side: "".join(
            m["data"]["text"]
            for m in messages
            if m["event"] == "arena_token" and m["data"]["side"] == side
        )
        for side in ("left", "right")
    }
    shown_left = battle.completion_a if battle.a_shown_left else battle.completion_b
    shown_right = battle.completion_b if battle.a_shown_left else battle.completion_a
    assert streamed == {"left": shown_left.text, "right": shown_right.text}
    assert all(
        sum(m["event"] == "arena_token" and m["data"]["side"] == s for m in messages) >= 2
        for s in ("left", "right")
    )  # pieces, not one final message

    label = PreferenceLabel.objects.get()
    assert battle.status == "done"
    assert battle.comparison.kind == Comparison.Kind.ARENA
    assert (label.comparison_id, label.choice, label.a_shown_left) == (
        battle.comparison_id,
        "a" if battle.a_shown_left else "b",
        battle.a_shown_left,
    )
    assert list(labels_for_training(project=project)) == []  # arena votes rank versions only


@pytest.fixture
def arena_without_worker(make_user):
    """Two versions and no worker: every battle stays generating."""
    project = project_create(slug="arena", name="Arena", base_model="unused")
    base = PolicyVersion.objects.get(project=project, number=0)
    PolicyVersion.objects.create(project=project, number=1, parent=base, status="candidate")
    user = make_user("arena-ann")
    membership_set(project=project, user=user, role=Membership.Role.ANNOTATOR)
    return project, user


def test_past_the_arena_limit_the_page_says_why_and_when_to_send_again(
    arena_without_worker, login, asgi_server
):
    _, user = arena_without_worker
    page = login(user)
    page.goto(f"{asgi_server}/p/arena/arena/")
    for n in range(3):
        page.wait_for_selector("#arena-send:not([disabled])")
        page.locator("#arena-prompt").fill(f"Prompt {n}")
        page.locator("#arena-send").click()
        if n < 2:
            page.locator("#arena-status").filter(has_text="Answering").wait_for()

    page.locator("#arena-status").filter(has_text="Send is back in").wait_for()
    status = page.locator("#arena-status").inner_text()
    assert status.startswith(
        "You have 2 arena battles still generating, the most the arena runs at once for one "
        "person; send this prompt again when one is answered. (Send is back in "
    )
    assert page.locator("#arena-send").is_disabled()
    assert ArenaBattle.objects.count() == 2
    page.wait_for_selector("#arena-send:not([disabled])", timeout=15_000)  # after retry_after
    assert page.locator("#arena-status").inner_text() == "Ready."
