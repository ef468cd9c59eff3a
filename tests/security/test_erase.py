"""Erasing a person (a data-protection request): the account is anonymised and nothing is
deleted; their labels keep counting under a pseudonym, and neither the user row, the audit
log nor an export keeps their name or e-mail."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from feedback.models import AuditEvent, ComparisonFlag, LabelAudit, PreferenceLabel
from feedback.services import assignment_next, comparison_flag, label_submit, membership_set
from tests.factories import make_comparisons
from training import exports
from training.services import comparison_verdicts, snapshot_create

NAME, EMAIL = "alice.liddell", "alice@example.org"


@pytest.fixture
def alice(make_user, project):
    user = make_user(NAME, email=EMAIL, first_name="Alice", last_name="Liddell")
    membership_set(project=project, user=user, role="annotator")
    Token.objects.create(user=user)
    return user


@pytest.fixture
def labelled(project, alice, annotator):
    """Alice labels two comparisons with rationales and flags a third; `ann` labels one."""
    make_comparisons(project, [("x", "y"), ("p", "q"), ("m", "n")])
    for choice in ("a", "b"):
        assignment = assignment_next(project=project, user=alice)
        label_submit(
            user=alice,
            assignment_id=assignment.pk,
            choice=choice,
            rationale=f"Written by {NAME}.",
        )
    assignment = assignment_next(project=project, user=alice)
    comparison_flag(user=alice, assignment_id=assignment.pk, reason="other", note="Hi, Alice")
    assignment = assignment_next(project=project, user=annotator)
    label_submit(user=annotator, assignment_id=assignment.pk, choice="a")
    return project


def _verdicts(project) -> list[tuple[int, str, float, list[int]]]:
    pairs, _ = comparison_verdicts(project=project)
    return [(p.comparison.pk, p.winner, p.margin, [x.pk for x in p.labels]) for p in pairs]


def _exported(project) -> str:
    votes = exports.vote_rows(project=project)
    return (exports.jsonl_bytes(votes) + exports.csv_bytes(votes)).decode() + json.dumps(
        exports.preference_rows(project=project)
    )


def _traces(text: str) -> list[str]:
    return [word for word in (NAME, EMAIL, "Liddell") if word in text]


def test_the_command_anonymises_the_account_and_keeps_the_labels_counting(labelled, alice, capsys):
    project = labelled
    verdicts = _verdicts(project)
    votes = exports.vote_rows(project=project)
    labels = list(PreferenceLabel.objects.order_by("id").values("id", "annotator_id", "choice"))
    users = get_user_model().objects.count()

    call_command("erase_annotator", NAME)

    alice.refresh_from_db()
    pseudonym = alice.username
    assert pseudonym.startswith("erased-") and len(pseudonym) == len("erased-") + 16
    assert f"Erased: the account is now {pseudonym}; 2 labels keep counting" in (
        capsys.readouterr().out
    )
    assert (alice.email, alice.first_name, alice.last_name) == ("", "", "")
    assert (alice.is_active, alice.has_usable_password()) == (False, False)
    assert not Token.objects.filter(user=alice).exists()
    assert get_user_model().objects.count() == users
    # Nothing deleted, nothing recounted: the same labels give the same pairs and votes.
    assert list(PreferenceLabel.objects.order_by("id").values("id", "annotator_id", "choice")) == (
        labels
    )
    assert _verdicts(project) == verdicts
    assert exports.vote_rows(project=project) == votes
    snapshot = snapshot_create(project=project, name="after-erasure")
    assert (snapshot.pair_count, sorted(snapshot.label_ids)) == (
        3,
        sorted(label for verdict in verdicts for label in verdict[3]),
    )
    # Without --rationales, what they wrote stays.
    assert set(
        PreferenceLabel.objects.filter(annotator=alice).values_list("rationale", flat=True)
    ) == {f"Written by {NAME}."}


def test_the_erasure_is_audited_under_the_pseudonym(labelled, alice, admin_member):
    from feedback.services import annotator_erase

    erasure = annotator_erase(user=alice, actor=admin_member)

    event = AuditEvent.objects.get(action="user.erase")
    assert (event.actor, event.project, event.target_type, event.target_id) == (
        admin_member,
        None,
        "auth.user",
        alice.pk,
    )
    assert event.before is None
    assert event.after == {
        "user": alice.pk,
        "username": erasure.pseudonym,
        "labels": 2,
        "demonstrations": 0,
        "rationales_blanked": 0,
        "notes_blanked": 0,
    }


def test_rationales_and_notes_are_blanked_on_request(labelled, alice):
    call_command("erase_annotator", NAME, "--rationales")

    assert list(
        PreferenceLabel.objects.filter(annotator=alice).values_list("rationale", flat=True)
    ) == ["", ""]
    assert ComparisonFlag.objects.get(annotator=alice).note == ""
    audited = json.dumps(list(LabelAudit.objects.values("before", "after")))
    assert "Written by" not in audited
    assert AuditEvent.objects.get(action="user.erase").after["rationales_blanked"] == 2
    assert AuditEvent.objects.get(action="user.erase").after["notes_blanked"] == 1


def test_no_trace_of_the_name_is_left_in_the_user_row_the_audit_log_or_exports(
    labelled, alice, admin_member, token_client
):
    # Prompts sent through the API carry the sender's name in their source.
    membership_set(project=labelled, user=alice, role="admin", actor=admin_member)
    token_client(alice).post(
        "/api/projects/demo/prompts/", {"prompts": [{"prompt": "From Alice"}]}, format="json"
    )

    call_command("erase_annotator", NAME, "--rationales")

    alice.refresh_from_db()
    row = json.dumps(get_user_model().objects.filter(pk=alice.pk).values().get(), default=str)
    audit_log = json.dumps(
        list(AuditEvent.objects.values("before", "after")), default=str
    ) + json.dumps(list(LabelAudit.objects.values("before", "after")), default=str)
    assert _traces(row) == []
    assert _traces(audit_log) == []
    assert _traces(_exported(labelled)) == []
    assert _traces(json.dumps(list(labelled.prompts.values_list("source", flat=True)))) == []


def test_the_admin_action_erases_and_ends_the_session(labelled, alice, admin_client, client):
    client.force_login(alice)
    assert client.get("/p/demo/label/").status_code == 200

    response = admin_client.post(
        "/admin/auth/user/",
        {"action": "erase", "_selected_action": [alice.pk]},
    )

    alice.refresh_from_db()
    assert response.status_code == 302
    assert alice.username.startswith("erased-")
    assert client.get("/p/demo/label/").status_code == 302  # back to the login page
    assert AuditEvent.objects.get(action="user.erase").actor.username == "admin"
    assert PreferenceLabel.objects.filter(annotator=alice).count() == 2


def test_an_unknown_username_is_a_clear_error(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No user 'nobody'."):
        call_command("erase_annotator", "nobody")


def test_their_demonstrations_stay_as_training_data_under_the_pseudonym(labelled, alice):
    from feedback.models import Demonstration
    from feedback.services import demonstration_write

    labelled.demonstrations_per_prompt = 1
    labelled.save(update_fields=["demonstrations_per_prompt"])
    prompt = labelled.prompts.filter(split="train").first()
    demonstration_write(user=alice, project=labelled, prompt_id=prompt.pk, text="Alice's answer.")

    call_command("erase_annotator", NAME, "--rationales")

    alice.refresh_from_db()
    kept = Demonstration.objects.get(author=alice)
    assert (kept.text, kept.author.username) == ("Alice's answer.", alice.username)
    assert alice.username.startswith("erased-")
    assert AuditEvent.objects.get(action="user.erase").after["demonstrations"] == 1
