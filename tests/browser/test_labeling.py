"""The labeling page in Chromium: keyboard only, safe rendering, leases, undo, live notices."""

from __future__ import annotations

import pytest

from feedback.models import Assignment, LabelAudit, PreferenceLabel
from tests.browser.conftest import in_thread, screenshot
from tests.factories import make_comparisons
from training.models import PolicyVersion
from training.services import policy_promote

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GUIDELINES = """Prefer the answer that is **correct**, then the one that is *clear and brief*.

- Wrong facts outweigh style.
- Choose *both bad* when neither would help the user.
"""

ANSWERS = [
    (
        "Use `sorted()` with a key:\n\n```python\nnames = sorted(people, key=lambda p: p.age)\n```\n"
        "It returns a new list and leaves `people` as it was.",
        "You can call `people.sort()`, which sorts in place.\n\n1. Define the key.\n"
        "2. Call `sort(key=...)`.",
    ),
    ("Paris is the capital of France.", "The capital of France is Lyon."),
    ("Hello! How can I help you today?", "Hi."),
]


def current_assignment(page) -> int:
    return int(page.locator("#item").get_attribute("data-assignment"))


def wait_for_new_item(page, old: int) -> int:
    page.wait_for_function(
        "old => { const el = document.getElementById('item');"
        " return el && el.dataset.assignment && el.dataset.assignment !== String(old); }",
        arg=old,
    )
    return current_assignment(page)


def expected(assignment: Assignment, position: str) -> str:
    """Which completion the annotator picked when they chose the `position` answer."""
    return "a" if (position == "left") == assignment.a_shown_left else "b"


def test_three_labels_with_the_keyboard_only(login, asgi_server, project, annotator):
    project.guidelines = GUIDELINES
    project.save(update_fields=["guidelines"])
    make_comparisons(project, ANSWERS)
    page = login(annotator)
    page.goto(f"{asgi_server}/p/demo/label/")
    assert page.locator("#guidelines").get_attribute("open") is not None  # open the first time
    first = current_assignment(page)
    screenshot(page, "labeling")

    page.keyboard.press("1")  # left is better, clear (default)
    page.keyboard.press("Enter")
    second = wait_for_new_item(page, first)
    page.keyboard.press("Shift+2")  # right is better, strong
    page.keyboard.press("Enter")
    third = wait_for_new_item(page, second)
    page.keyboard.press("3")  # tie
    page.keyboard.press("z")  # slight
    page.keyboard.press("r")
    page.keyboard.type("Both are fine.")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.wait_for_selector("#item .empty")

    labels = {label.assignment_id: label for label in PreferenceLabel.objects.all()}
    assignments = {a.pk: a for a in Assignment.objects.all()}
    assert sorted(labels) == sorted([first, second, third])
    assert [labels[a].a_shown_left for a in (first, second, third)] == [
        assignments[a].a_shown_left for a in (first, second, third)
    ]
    assert (labels[first].choice, labels[first].strength) == (
        expected(assignments[first], "left"),
        2,
    )
    assert (labels[second].choice, labels[second].strength) == (
        expected(assignments[second], "right"),
        3,
    )
    assert (labels[third].choice, labels[third].strength, labels[third].rationale) == (
        "tie",
        1,
        "Both are fine.",
    )
    assert all(label.time_spent_ms > 0 for label in labels.values())
    assert page.locator("[data-testid=done-today]").inner_text() == "3"


def test_html_in_model_output_is_shown_as_text_and_runs_nothing(
    login, asgi_server, project, annotator
):
    make_comparisons(
        project,
        [
            (
                "<script>window.__pwned = 'script'</script> done",
                '<img src="x" onerror="window.__pwned = \'img\'"> and **bold**',
            )
        ],
    )
    page = login(annotator)
    page.goto(f"{asgi_server}/p/demo/label/")
    texts = page.locator(".answer-text").all_inner_texts()

    assert sorted(texts) == sorted(
        [
            "<script>window.__pwned = 'script'</script> done",
            '<img src="x" onerror="window.__pwned = \'img\'"> and bold',
        ]
    )
    assert page.locator(".answer-text strong").inner_text() == "bold"  # markdown still works
    assert page.locator(".answers script, .answers img").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned === undefined")


def test_reload_mid_item_shows_the_same_item(login, asgi_server, project, annotator):
    make_comparisons(project, ANSWERS[:2])
    page = login(annotator)
    page.goto(f"{asgi_server}/p/demo/label/")
    before = current_assignment(page)
    page.keyboard.press("2")

    page.reload()

    assert current_assignment(page) == before
    assert Assignment.objects.filter(annotator=annotator).count() == 1
    assert PreferenceLabel.objects.count() == 0


def test_undo_withdraws_the_last_label_with_an_audit_and_shows_its_item_again(
    login, asgi_server, project, annotator
):
    make_comparisons(project, ANSWERS[:2])
    page = login(annotator)
    page.goto(f"{asgi_server}/p/demo/label/")
    first = current_assignment(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    wait_for_new_item(page, first)

    page.keyboard.press("u")
    page.wait_for_function(
        f"() => document.getElementById('item').dataset.assignment === '{first}'"
    )

    label = PreferenceLabel.objects.get()
    assert label.withdrawn_at is not None
    assert label.assignment_id is None
    assert list(LabelAudit.objects.filter(label=label).values_list("action", flat=True)) == [
        "created",
        "withdrawn",
    ]
    assert Assignment.objects.get(pk=first).status == "active"
    assert page.locator("[data-testid=done-today]").inner_text() == "0"

    page.keyboard.press("4")  # label it again: both bad
    page.keyboard.press("Enter")
    wait_for_new_item(page, first)
    labels = list(PreferenceLabel.objects.order_by("id"))
    assert [(x.choice, x.withdrawn_at is None) for x in labels] == [
        (label.choice, False),
        ("both_bad", True),
    ]


def test_notice_when_the_loop_promotes_a_policy(login, asgi_server, project, annotator):
    page = login(annotator)
    page.goto(f"{asgi_server}/p/demo/label/")
    page.wait_for_function("() => document.body.dataset.events === 'open'")
    candidate = PolicyVersion.objects.create(project=project, number=1, status="candidate")

    in_thread(policy_promote, policy=candidate)

    notice = page.locator("#notices .notice")
    notice.wait_for()
    assert notice.inner_text() == "New policy live: v1"


def test_new_items_swap_in_while_the_queue_is_empty(login, asgi_server, project, annotator):
    page = login(annotator)
    page.goto(f"{asgi_server}/p/demo/label/")
    page.wait_for_selector("#item .empty")
    page.wait_for_function("() => document.body.dataset.events === 'open'")

    in_thread(make_comparisons, project, ANSWERS[:1])

    page.wait_for_selector("#item[data-assignment]")
    assert current_assignment(page) == Assignment.objects.get(annotator=annotator).pk


RECORD_ALERTS = """() => {
  window.honeAlerts = [];
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === 1 && node.matches(".flash.error")) {
          window.honeAlerts.push(node.textContent);
        }
      }
    }
  }).observe(document.body, { childList: true, subtree: true });
}"""


def test_a_lost_response_is_retried_and_stores_one_label(login, asgi_server, project, annotator):
    make_comparisons(project, ANSWERS[:2])
    page = login(annotator)
    page.goto(f"{asgi_server}/p/demo/label/")
    first = current_assignment(page)
    lost = []

    def reach_server_then_drop_the_answer(route):
        if not lost:  # the first try reaches the server, its answer never comes back
            route.fetch()
            lost.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/label/submit/", reach_server_then_drop_the_answer)
    # the flash lives until the retry swaps the item (about a second): record every alert as it
    # is added, so that a slow test process cannot miss it
    page.evaluate(RECORD_ALERTS)
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_function("window.honeAlerts.length > 0")
    assert page.evaluate("window.honeAlerts")[0].startswith("Connection lost.")
    second = wait_for_new_item(page, first)

    label = PreferenceLabel.objects.get()
    assert len(lost) == 1
    assert (label.assignment_id, label.choice) == (
        first,
        expected(Assignment.objects.get(pk=first), "right"),
    )
    assert second != first
    assert LabelAudit.objects.count() == 1
