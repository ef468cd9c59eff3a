"""Demonstrations: writing, editing on the labeling page, review, and what the loop sees of
them (docs/demonstrations.md). Services against the real database."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from feedback.models import (
    MAX_DEMONSTRATION_CHARS,
    Assignment,
    Comparison,
    Completion,
    Demonstration,
    DemonstrationAudit,
    LabelAudit,
    PreferenceLabel,
    Prompt,
)
from feedback.quality import project_quality, review_queue
from feedback.rendering import text_diff
from feedback.selectors import annotator_progress, prompt_to_write
from feedback.services import (
    assignment_next,
    comparison_set_gold,
    demonstration_correct,
    demonstration_edit,
    demonstration_review,
    demonstration_write,
    label_submit,
    label_undo,
    membership_set,
    project_settings_set,
)
from tests.factories import make_comparisons
from training.exports import vote_rows
from training.leaderboard import version_games
from training.services import comparison_verdicts


def rows() -> dict[str, int]:
    """How many rows of each kind exist: a refused request changes none of them."""
    return {
        "demonstrations": Demonstration.objects.count(),
        "audits": DemonstrationAudit.objects.count(),
        "completions": Completion.objects.count(),
        "comparisons": Comparison.objects.count(),
        "labels": PreferenceLabel.objects.count(),
        "label_audits": LabelAudit.objects.count(),
        "submitted": Assignment.objects.filter(status=Assignment.Status.SUBMITTED).count(),
    }


@pytest.fixture
def writing(project):
    project.demonstrations_per_prompt = 2
    project.save(update_fields=["demonstrations_per_prompt"])
    return project


def train_prompts(project) -> list[Prompt]:
    return list(Prompt.objects.filter(project=project, split="train").order_by("id"))


def edit(project, user, *, side="a", text="A better answer.", choice="a", **fields):
    assignment = assignment_next(project=project, user=user)
    return assignment, demonstration_edit(
        user=user, assignment_id=assignment.pk, choice=choice, side=side, text=text, **fields
    )


# --- Writing ------------------------------------------------------------------------------


def test_a_written_demonstration_is_stored_with_its_audit_row(writing, annotator):
    prompt = train_prompts(writing)[0]

    demonstration = demonstration_write(
        user=annotator,
        project=writing,
        prompt_id=prompt.pk,
        text="  Hello there!\n",
        time_spent_ms=900,
    )

    stored = Demonstration.objects.get()
    assert (stored.pk, stored.prompt_id, stored.author_id, stored.text, stored.origin) == (
        demonstration.pk,
        prompt.pk,
        annotator.pk,
        "Hello there!",
        "written",
    )
    assert (stored.review_status, stored.time_spent_ms, stored.completion_id) == (
        "unreviewed",
        900,
        None,
    )
    audit = DemonstrationAudit.objects.get()
    assert (audit.actor_id, audit.action, audit.before, audit.after) == (
        annotator.pk,
        "created",
        None,
        {"text": "Hello there!", "review_status": "unreviewed", "reviewed_by": None},
    )


def test_writing_the_same_prompt_again_returns_the_stored_answer(writing, annotator):
    prompt = train_prompts(writing)[0]
    first = demonstration_write(user=annotator, project=writing, prompt_id=prompt.pk, text="One")

    again = demonstration_write(user=annotator, project=writing, prompt_id=prompt.pk, text="Two")

    assert again.pk == first.pk
    assert list(Demonstration.objects.values_list("text", flat=True)) == ["One"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "The demonstration is empty: write an answer."),
        ("   \n\t ", "The demonstration is empty: write an answer."),
        (
            "x" * (MAX_DEMONSTRATION_CHARS + 1),
            f"The demonstration may have at most {MAX_DEMONSTRATION_CHARS} characters "
            f"(it has {MAX_DEMONSTRATION_CHARS + 1}).",
        ),
        (
            "bell\x07",
            "The demonstration contains a control character; tabs and line breaks are the only "
            "ones allowed.",
        ),
        (
            "nul\x00",
            "The demonstration contains a control character; tabs and line breaks are the only "
            "ones allowed.",
        ),
    ],
)
def test_a_bad_written_demonstration_is_refused_and_nothing_stored(
    writing, annotator, text, message
):
    prompt = train_prompts(writing)[0]
    before = rows()

    with pytest.raises(ValidationError) as error:
        demonstration_write(user=annotator, project=writing, prompt_id=prompt.pk, text=text)

    assert error.value.message_dict == {"text": [message]}
    assert rows() == before


def test_the_longest_demonstration_is_taken(writing, annotator):
    prompt = train_prompts(writing)[0]

    demonstration_write(
        user=annotator, project=writing, prompt_id=prompt.pk, text="x" * MAX_DEMONSTRATION_CHARS
    )

    assert len(Demonstration.objects.get().text) == MAX_DEMONSTRATION_CHARS


def test_writing_is_refused_for_eval_prompts_other_projects_and_projects_without_it(
    writing, annotator, project
):
    eval_prompt = Prompt.objects.get(project=writing, split="eval")
    before = rows()

    with pytest.raises(ValidationError) as error:
        demonstration_write(user=annotator, project=writing, prompt_id=eval_prompt.pk, text="Hi")
    assert error.value.message_dict == {
        "prompt": [
            f"Prompt {eval_prompt.pk} is an eval prompt: demonstrations are written for train "
            "prompts (the others judge candidates and stay unseen)."
        ]
    }
    with pytest.raises(ValidationError) as error:
        demonstration_write(user=annotator, project=writing, prompt_id=10**9, text="Hi")
    assert error.value.message_dict == {"prompt": ["No such prompt in this project."]}
    project_settings_set(project=writing, values={"demonstrations_per_prompt": 0})
    with pytest.raises(ValidationError) as error:
        demonstration_write(
            user=annotator, project=writing, prompt_id=train_prompts(writing)[0].pk, text="Hi"
        )
    assert error.value.messages == [
        "This project does not collect written demonstrations (its demonstrations per prompt is 0)."
    ]
    assert rows() == before


def test_the_write_queue_serves_prompts_below_the_quota_fewest_first(writing, annotator, make_user):
    first, second, third = train_prompts(writing)
    other = make_user("other")
    membership_set(project=writing, user=other, role="annotator")

    assert prompt_to_write(project=writing, user=annotator) == (first, 3)
    demonstration_write(user=other, project=writing, prompt_id=first.pk, text="Hi")
    # first has one now: the others, with none, come first
    assert prompt_to_write(project=writing, user=annotator) == (second, 3)
    demonstration_write(user=annotator, project=writing, prompt_id=second.pk, text="Hi")
    # the annotator's own prompt is never offered to them again
    assert prompt_to_write(project=writing, user=annotator) == (third, 2)
    assert prompt_to_write(project=writing, user=other) == (third, 2)  # none before second's one
    demonstration_write(user=other, project=writing, prompt_id=second.pk, text="Hey")
    # second is full (2 of 2): other's next and last is third
    assert prompt_to_write(project=writing, user=other) == (third, 1)


def test_a_rejected_demonstration_leaves_its_place_in_the_quota(writing, annotator, reviewer):
    writing.demonstrations_per_prompt = 1
    prompts = train_prompts(writing)
    for prompt in prompts[:2]:
        demonstration_write(user=reviewer, project=writing, prompt_id=prompt.pk, text="Meh")
    assert prompt_to_write(project=writing, user=annotator) == (prompts[2], 1)

    demonstration_review(
        reviewer=reviewer,
        demonstration_id=Demonstration.objects.get(prompt=prompts[0]).pk,
        decision="rejected",
    )

    assert prompt_to_write(project=writing, user=annotator) == (prompts[0], 2)


def test_no_write_queue_without_the_setting(project, annotator):
    assert prompt_to_write(project=project, user=annotator) == (None, 0)


# --- Editing on the labeling page ---------------------------------------------------------


def test_an_edit_stores_the_label_a_demonstration_and_a_comparison_preferring_it(
    project, annotator
):
    (comparison,) = make_comparisons(project, [("Paris is in Frnace.", "Lyon.")])

    assignment, demonstration = edit(
        project, annotator, side="a", text="Paris is in France.", choice="a", strength=3,
        rationale="A typo.", time_spent_ms=1500,
    )  # fmt: skip

    label = PreferenceLabel.objects.get(assignment=assignment)
    assert (label.comparison_id, label.choice, label.strength, label.rationale) == (
        comparison.pk,
        "a",
        3,
        "A typo.",
    )
    assert (demonstration.origin, demonstration.text, demonstration.author_id) == (
        "edited",
        "Paris is in France.",
        annotator.pk,
    )
    assert (demonstration.original_id, demonstration.label_id, demonstration.prompt_id) == (
        comparison.completion_a_id,
        label.pk,
        comparison.prompt_id,
    )
    edited = Completion.objects.get(pk=demonstration.completion_id)
    assert (edited.kind, edited.policy_version_id, edited.text, edited.prompt_id) == (
        "human",
        None,
        "Paris is in France.",
        comparison.prompt_id,
    )
    pair = Comparison.objects.get(pk=demonstration.comparison_id)
    assert (pair.kind, pair.status, pair.completion_a_id, pair.completion_b_id) == (
        "edit",
        "complete",
        edited.pk,
        comparison.completion_a_id,
    )
    (preference,) = pair.labels.all()
    assert (preference.annotator_id, preference.choice, preference.a_shown_left) == (
        annotator.pk,
        "a",
        True,
    )
    assert list(preference.audits.values_list("action", "after")) == [
        ("created", {"choice": "a", "strength": 2, "rationale": "", "review_status": "unreviewed",
                     "edit_of": comparison.completion_a_id}),
    ]  # fmt: skip


def test_an_edit_joins_the_preference_data_as_edit_over_original(project, annotator):
    make_comparisons(project, [("Four.", "2 + 2 = 4.")])

    _, demonstration = edit(project, annotator, side="b", text="2 + 2 = 4, always.", choice="b")

    pairs, _ = comparison_verdicts(project=project)
    by_kind = {p.comparison.kind: (p.chosen, p.rejected) for p in pairs}
    assert by_kind == {
        "regular": ("2 + 2 = 4.", "Four."),
        "edit": ("2 + 2 = 4, always.", "2 + 2 = 4."),
    }
    # no version's game, no figure of the annotator's judgement, nothing to review as a vote
    assert version_games(project=project) == []
    quality = project_quality(project=project)
    assert quality["labels"] == 1
    assert quality["annotators"][0]["position_bias"]["decisive_labels"] == 1
    assert demonstration.comparison_id not in [
        c.pk for c in review_queue(project=project)["no_majority"]
    ]
    assert annotator_progress(project=project, user=annotator)["done_total"] == 1
    votes = {row["comparison_kind"]: row for row in vote_rows(project=project)}
    assert (votes["edit"]["policy_version_a"], votes["edit"]["policy_version_b"]) == (None, 0)


def test_an_edit_is_never_leased_nor_served_as_a_repeat(project, annotator):
    project.repeat_rate = 1.0
    project.save(update_fields=["repeat_rate"])
    texts = [(f"answer {i}", f"other {i}") for i in range(12)]
    make_comparisons(project, texts)
    edit(project, annotator, text="answer 0, edited")
    for _ in range(11):
        assignment = assignment_next(project=project, user=annotator)
        label_submit(user=annotator, assignment_id=assignment.pk, choice="b")

    served = []
    while (assignment := assignment_next(project=project, user=annotator)) is not None:
        served.append(assignment.comparison.kind)
        label_submit(user=annotator, assignment_id=assignment.pk, choice="a")

    assert "edit" not in served
    assert Comparison.objects.filter(kind="edit").get().assignments.count() == 0


def test_sending_an_edit_again_returns_what_was_stored(project, annotator):
    make_comparisons(project, [("One.", "Two.")])
    assignment, first = edit(project, annotator, text="One, edited.")
    before = rows()

    again = demonstration_edit(
        user=annotator, assignment_id=assignment.pk, choice="a", side="a", text="One, edited."
    )

    assert again.pk == first.pk
    assert rows() == before


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"text": ""}, {"edit_text": ["The demonstration is empty: write an answer."]}),
        (
            {"text": "y" * (MAX_DEMONSTRATION_CHARS + 1)},
            {
                "edit_text": [
                    f"The demonstration may have at most {MAX_DEMONSTRATION_CHARS} characters "
                    f"(it has {MAX_DEMONSTRATION_CHARS + 1})."
                ]
            },
        ),
        (
            {"text": " Old answer. "},
            {
                "edit_text": [
                    "The edit is the same as the answer: change it, or cancel the edit (Esc) "
                    "and submit your choice alone."
                ]
            },
        ),
        ({"side": "left"}, {"edit_side": ["Unknown side 'left': edit answer 'a' or 'b' of the comparison."]}),
        ({"choice": "maybe"}, {"choice": ["Unknown choice 'maybe'; use one of ['a', 'b', 'tie', 'both_bad']."]}),
    ],
)  # fmt: skip
def test_a_bad_edit_stores_neither_the_edit_nor_the_label(project, annotator, fields, errors):
    make_comparisons(project, [("Old answer.", "Other.")])
    assignment = assignment_next(project=project, user=annotator)
    before = rows()
    values = {"side": "a", "text": "New answer.", "choice": "a", **fields}

    with pytest.raises(ValidationError) as error:
        demonstration_edit(user=annotator, assignment_id=assignment.pk, **values)

    assert error.value.message_dict == errors
    assert rows() == before


def test_edits_are_refused_where_the_project_turned_them_off(project, annotator):
    project_settings_set(project=project, values={"answer_edits": False})
    make_comparisons(project, [("Old.", "Other.")])
    assignment = assignment_next(project=project, user=annotator)
    before = rows()

    with pytest.raises(ValidationError) as error:
        demonstration_edit(
            user=annotator, assignment_id=assignment.pk, choice="a", side="a", text="New."
        )

    assert error.value.message_dict == {
        "edit_text": ["This project does not take edits of answers: choose, then submit."]
    }
    assert rows() == before


def test_an_edit_of_someone_elses_lease_is_refused(project, annotator, reviewer):
    make_comparisons(project, [("Old.", "Other.")])
    assignment = assignment_next(project=project, user=annotator)
    before = rows()

    with pytest.raises(ValidationError) as error:
        demonstration_edit(
            user=reviewer, assignment_id=assignment.pk, choice="a", side="a", text="New."
        )

    assert error.value.message_dict == {"assignment": ["This comparison is not assigned to you."]}
    assert rows() == before


def test_undoing_the_label_withdraws_the_edit_and_its_label(project, annotator):
    make_comparisons(project, [("Old.", "Other.")])
    assignment, demonstration = edit(project, annotator, text="New.")

    label_undo(user=annotator, project=project)

    demonstration.refresh_from_db()
    assert demonstration.withdrawn_at is not None
    pair = Comparison.objects.get(pk=demonstration.comparison_id)
    assert (pair.status, pair.label_count) == ("closed", 0)
    assert pair.labels.get().withdrawn_at is not None
    assert list(demonstration.audits.values_list("action", flat=True)) == ["created", "withdrawn"]
    assert comparison_verdicts(project=project) == ([], 0)
    # the item comes back; a new edit stands beside the withdrawn one
    again = assignment_next(project=project, user=annotator)
    assert again.pk == assignment.pk
    _, second = edit(project, annotator, text="Newer.")
    assert Demonstration.objects.filter(withdrawn_at__isnull=True).get().pk == second.pk


def test_an_edit_cannot_become_a_gold_item(project, annotator, admin_member):
    make_comparisons(project, [("Old.", "Other.")])
    _, demonstration = edit(project, annotator, text="New.")

    with pytest.raises(ValidationError) as error:
        comparison_set_gold(
            admin=admin_member, comparison_id=demonstration.comparison_id, choice="a"
        )

    assert error.value.message_dict == {
        "gold_choice": [
            "An edit's comparison (the edit against the answer it edits) cannot be a gold item: "
            "review the demonstration instead."
        ]
    }
    assert Comparison.objects.get(pk=demonstration.comparison_id).kind == "edit"


# --- Review -------------------------------------------------------------------------------


def test_review_decisions_are_audited_and_apply_to_the_edits_label(project, annotator, reviewer):
    make_comparisons(project, [("Old.", "Other.")])
    _, demonstration = edit(project, annotator, text="New.")
    preference = PreferenceLabel.objects.get(comparison_id=demonstration.comparison_id)

    demonstration_review(reviewer=reviewer, demonstration_id=demonstration.pk, decision="rejected")

    demonstration.refresh_from_db()
    preference.refresh_from_db()
    assert (demonstration.review_status, demonstration.reviewed_by_id) == ("rejected", reviewer.pk)
    assert preference.review_status == "rejected"
    assert [p.comparison.kind for p in comparison_verdicts(project=project)[0]] == ["regular"]

    demonstration_review(reviewer=reviewer, demonstration_id=demonstration.pk, decision="accepted")

    preference.refresh_from_db()
    assert preference.review_status == "accepted"
    audits = list(demonstration.audits.order_by("id").values_list("actor_id", "action"))
    assert audits == [
        (annotator.pk, "created"),
        (reviewer.pk, "review_rejected"),
        (reviewer.pk, "review_accepted"),
    ]
    assert list(preference.audits.order_by("id").values_list("action", flat=True)) == [
        "created",
        "review_rejected",
        "review_accepted",
    ]


def test_a_correction_replaces_the_text_everywhere_and_keeps_both_in_the_audit(
    project, annotator, reviewer
):
    make_comparisons(project, [("The sun is cold.", "Other.")])
    _, demonstration = edit(project, annotator, text="The sun is hot.")

    demonstration_correct(
        reviewer=reviewer, demonstration_id=demonstration.pk, text="The sun is very hot."
    )

    demonstration.refresh_from_db()
    assert (demonstration.text, demonstration.review_status) == (
        "The sun is very hot.",
        "corrected",
    )
    assert Completion.objects.get(pk=demonstration.completion_id).text == "The sun is very hot."
    audit = demonstration.audits.get(action="corrected")
    assert (audit.before["text"], audit.after["text"], audit.after["review_status"]) == (
        "The sun is hot.",
        "The sun is very hot.",
        "corrected",
    )
    chosen = {p.comparison.kind: p.chosen for p in comparison_verdicts(project=project)[0]}
    assert chosen["edit"] == "The sun is very hot."
    assert PreferenceLabel.objects.get(comparison_id=demonstration.comparison_id).review_status == (
        "accepted"
    )


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("", {"text": ["The demonstration is empty: write an answer."]}),
        ("The sun is hot.", {"text": ["The correction is the text as it is: change it, or accept it."]}),
        ("The sun is cold.", {"text": ["The correction is the answer that was edited: reject the edit."]}),
        ("z" * (MAX_DEMONSTRATION_CHARS + 1), {"text": [
            f"The demonstration may have at most {MAX_DEMONSTRATION_CHARS} characters "
            f"(it has {MAX_DEMONSTRATION_CHARS + 1})."]}),
    ],
)  # fmt: skip
def test_a_bad_correction_changes_nothing(project, annotator, reviewer, text, errors):
    make_comparisons(project, [("The sun is cold.", "Other.")])
    _, demonstration = edit(project, annotator, text="The sun is hot.")
    before = rows()

    with pytest.raises(ValidationError) as error:
        demonstration_correct(reviewer=reviewer, demonstration_id=demonstration.pk, text=text)

    assert error.value.message_dict == errors
    assert rows() == before
    demonstration.refresh_from_db()
    assert (demonstration.text, demonstration.review_status) == ("The sun is hot.", "unreviewed")


def test_a_withdrawn_demonstration_takes_no_review_and_a_reviewed_edit_no_undo(
    project, annotator, reviewer
):
    make_comparisons(project, [("Old.", "Other."), ("Old 2.", "Other 2.")])
    _, first = edit(project, annotator, text="New.")
    label_undo(user=annotator, project=project)
    with pytest.raises(ValidationError) as error:
        demonstration_review(reviewer=reviewer, demonstration_id=first.pk, decision="accepted")
    assert error.value.messages == [
        "This demonstration was withdrawn by its author; it takes no review."
    ]

    _, second = edit(project, annotator, text="Newer.")
    demonstration_review(reviewer=reviewer, demonstration_id=second.pk, decision="accepted")
    with pytest.raises(ValidationError) as error:
        label_undo(user=annotator, project=project)
    assert error.value.messages == ["The edit you made with your last label was already reviewed."]
    assert Demonstration.objects.get(pk=second.pk).withdrawn_at is None


def test_text_diff_marks_what_changed_word_by_word():
    assert text_diff("The sun is cold today.", "The sun is very hot today!") == [
        ("equal", "The sun is "),
        ("delete", "cold"),
        ("insert", "very hot"),
        ("equal", " today"),
        ("delete", "."),
        ("insert", "!"),
    ]
    assert text_diff("", "New.") == [("insert", "New.")]
