"""Demonstrations on the labeling page in Chromium, keyboard only: writing answers (w) and
editing one of the two answers (e)."""

from __future__ import annotations

import pytest

from feedback.models import Assignment, Comparison, Demonstration, PreferenceLabel, Prompt
from tests.browser.conftest import screenshot
from tests.browser.test_labeling import current_assignment, wait_for_new_item
from tests.factories import make_comparisons

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def focused(page, selector: str) -> bool:
    return page.evaluate("s => document.activeElement === document.querySelector(s)", selector)


def shown_prompt(page) -> int:
    page.wait_for_selector("#item[data-mode=write][data-prompt]")
    return int(page.locator("#item").get_attribute("data-prompt"))


def test_writing_answers_with_the_keyboard_only(login, asgi_server, project, annotator):
    project.demonstrations_per_prompt = 1
    project.save(update_fields=["demonstrations_per_prompt"])
    make_comparisons(project, [("One answer.", "Another answer.")])
    train = list(Prompt.objects.filter(project=project, split="train").order_by("id"))
    page = login(annotator)
    page.goto(f"{asgi_server}/p/demo/label/")
    labeling = current_assignment(page)

    page.keyboard.press("w")  # to writing: the box has the focus
    first = shown_prompt(page)
    assert page.evaluate("document.activeElement.id") == "write-text"
    page.keyboard.type("Hello! How can I help?")
    screenshot(page, "writing")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(f"document.getElementById('item').dataset.prompt !== '{first}'")
    second = shown_prompt(page)
    assert "Saved." in page.locator("#item .flash.ok").inner_text()
    page.keyboard.press("Control+Enter")  # an empty box is not sent
    assert page.locator("#item .flash.error").inner_text() == (
        "Write an answer first: the box is empty."
    )
    page.keyboard.type("Blue.")
    page.keyboard.press("Shift+Enter")  # a line break, not a submit
    page.keyboard.type("Or green.")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(f"document.getElementById('item').dataset.prompt !== '{second}'")
    third = shown_prompt(page)
    page.keyboard.type("A draft I leave.")
    page.keyboard.press("Escape")  # back to labeling, nothing sent
    page.wait_for_selector(f"#item[data-assignment='{labeling}']")
    page.keyboard.press("w")  # the draft is still there
    assert shown_prompt(page) == third
    assert page.locator("#write-text").input_value() == "A draft I leave."
    page.keyboard.press("Escape")
    page.wait_for_selector(f"#item[data-assignment='{labeling}']")

    stored = list(Demonstration.objects.order_by("id"))
    assert [(d.prompt_id, d.text, d.origin, d.author_id) for d in stored] == [
        (train[0].pk, "Hello! How can I help?", "written", annotator.pk),
        (train[1].pk, "Blue.\nOr green.", "written", annotator.pk),
    ]
    assert [first, second, third] == [p.pk for p in train]
    assert all(d.time_spent_ms > 0 for d in stored)
    assert PreferenceLabel.objects.count() == 0


def test_editing_answers_with_the_keyboard_only(login, asgi_server, project, annotator):
    make_comparisons(project, [("Paris is in Frnace.", "Lyon."), ("Red.", "The sky is bleu.")])
    page = login(annotator)
    page.goto(f"{asgi_server}/p/demo/label/")
    first = current_assignment(page)

    page.keyboard.press("e")  # no choice yet: says what to do first
    assert "then e to edit an answer" in page.locator("#item .flash.error").inner_text()
    page.keyboard.press("1")  # left is better
    page.keyboard.press("e")  # edit it: the left box opens with its text, focused
    left = page.locator(".answer[data-position=left] textarea.edit-text")
    assert left.is_visible() and focused(page, ".answer[data-position=left] textarea.edit-text")
    left_text = left.input_value()
    page.keyboard.press("Control+A")
    page.keyboard.type("Typo fixed.")
    page.keyboard.press("Escape")  # cancel: the answer as it was, the box closed
    assert not left.is_visible()
    assert left.input_value() == left_text
    assert page.locator(".answer[data-position=left] .answer-text").is_visible()
    page.keyboard.press("e")
    page.keyboard.press("Control+End")
    page.keyboard.type(" Fixed.")
    screenshot(page, "editing")
    page.keyboard.press("Control+Enter")  # the choice with the edit
    second = wait_for_new_item(page, first)
    assert "Saved, with your edit." in page.locator("#item .flash.ok").inner_text()

    page.keyboard.press("4")  # both bad
    page.keyboard.press("e")  # which one? 2: the right
    page.wait_for_selector("#edit-dialog[open]")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    right = page.locator(".answer[data-position=right] textarea.edit-text")
    assert focused(page, ".answer[data-position=right] textarea.edit-text")
    right_text = right.input_value()
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{right_text} (rewritten)")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#item .empty")

    assignments = {a.pk: a for a in Assignment.objects.all()}
    labels = {
        label.assignment_id: label for label in PreferenceLabel.objects.exclude(assignment=None)
    }
    edits = {
        d.label.assignment_id: d for d in Demonstration.objects.select_related("label", "original")
    }
    assert sorted(edits) == sorted(labels) == sorted([first, second])
    left_side = "a" if assignments[first].a_shown_left else "b"
    assert labels[first].choice == left_side
    assert (edits[first].original.text, edits[first].text) == (left_text, f"{left_text} Fixed.")
    assert labels[second].choice == "both_bad"
    assert (edits[second].original.text, edits[second].text) == (
        right_text,
        f"{right_text} (rewritten)",
    )
    for demonstration in edits.values():
        pair = Comparison.objects.get(pk=demonstration.comparison_id)
        assert (pair.kind, pair.completion_a.text, pair.completion_b_id) == (
            "edit",
            demonstration.text,
            demonstration.original_id,
        )
        assert pair.labels.get().choice == "a"
    assert page.locator("[data-testid=done-today]").inner_text() == "2"
