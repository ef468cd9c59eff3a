"""People's accounts: API tokens, and erasing a person on a data-protection request."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework.authtoken.models import Token

from feedback.models import (
    AuditEvent,
    ComparisonFlag,
    Demonstration,
    LabelAudit,
    PreferenceLabel,
    Prompt,
)
from feedback.services.audit import audit_record

ERASED_PREFIX = "erased-"


def api_token_create(
    *, user: AbstractBaseUser, actor: AbstractBaseUser | None = None, replace: bool = False
) -> Token:
    """The user's API token: a new one when they have none, or with `replace` (the old key
    stops working). Each new key is audited; the key itself is never recorded."""
    with transaction.atomic():
        existing = Token.objects.select_for_update().filter(user=user).first()
        if existing is not None and not replace:
            return existing
        if existing is not None:
            existing.delete()
        token = Token.objects.create(user=user)
        audit_record(
            actor=actor,
            project=None,
            action=AuditEvent.Action.TOKEN_CREATE,
            target=user,
            before={"user": user.pk, "token_created": existing.created} if existing else None,
            after={"user": user.pk, "token_created": token.created},
        )
    return token


def api_token_delete(*, user: AbstractBaseUser, actor: AbstractBaseUser | None = None) -> bool:
    """Delete the user's API token (its key stops working at once); audited. False when they
    had none."""
    with transaction.atomic():
        token = Token.objects.select_for_update().filter(user=user).first()
        if token is None:
            return False
        token.delete()
        audit_record(
            actor=actor,
            project=None,
            action=AuditEvent.Action.TOKEN_DELETE,
            target=user,
            before={"user": user.pk, "token_created": token.created},
            after=None,
        )
    return True


def erased_username(user_id: int) -> str:
    """The pseudonym of an erased person: stable (erasing twice gives the same name), and
    not reversible without SECRET_KEY."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"hone-erased:{user_id}".encode(), hashlib.sha256
    ).hexdigest()
    return f"{ERASED_PREFIX}{digest[:16]}"


@dataclass(frozen=True)
class Erasure:
    pseudonym: str
    labels: int  # labels that keep counting under the pseudonym
    demonstrations: int  # answers they wrote or edited, kept as training data under it
    rationales_blanked: int
    notes_blanked: int


def annotator_erase(
    *, user: AbstractBaseUser, actor: AbstractBaseUser | None = None, rationales: bool = False
) -> Erasure:
    """Anonymise a person without deleting a row: the account gets a pseudonym, loses its
    e-mail, names, password, API token and the right to log in; prompts sent through the API
    under their name name the pseudonym. Their labels stay, under the pseudonym, and keep
    counting in snapshots and exports; so do the demonstrations they wrote or edited (answers
    to prompts, training data that SFT versions were trained on; a reviewer who must take one
    out rejects it). With `rationales`, what they wrote about the items is blanked too (their
    labels' rationales, in the labels and in the labels' audit trail, and their flag notes).
    The audit event names the pseudonym, never the old name."""
    pseudonym = erased_username(user.pk)
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        old_username = user.get_username()
        user.username = pseudonym
        user.email = user.first_name = user.last_name = ""
        user.set_unusable_password()  # also ends their sessions: the session hash changes
        user.is_active = user.is_staff = user.is_superuser = False
        user.save()
        Token.objects.filter(user=user).delete()
        Prompt.objects.filter(source=f"api:{old_username}").update(source=f"api:{pseudonym}")
        labels = PreferenceLabel.objects.filter(annotator=user)
        audits = LabelAudit.objects.filter(label__annotator=user)
        rationales_blanked = notes_blanked = 0
        if rationales:
            rationales_blanked = labels.exclude(rationale="").update(rationale="")
            notes_blanked = (
                ComparisonFlag.objects.filter(annotator=user).exclude(note="").update(note="")
            )
        for audit in audits:
            before = _erased_state(audit.before, rationales)
            after = _erased_state(audit.after, rationales)
            if (before, after) != (audit.before, audit.after):
                audit.before, audit.after = before, after
                audit.save(update_fields=["before", "after"])
        erasure = Erasure(
            pseudonym=pseudonym,
            labels=labels.count(),
            demonstrations=Demonstration.objects.filter(author=user).count(),
            rationales_blanked=rationales_blanked,
            notes_blanked=notes_blanked,
        )
        audit_record(
            actor=actor,
            project=None,
            action=AuditEvent.Action.USER_ERASE,
            target=user,
            before=None,
            after={
                "user": user.pk,
                "username": pseudonym,
                "labels": erasure.labels,
                "demonstrations": erasure.demonstrations,
                "rationales_blanked": rationales_blanked,
                "notes_blanked": notes_blanked,
            },
        )
    return erasure


def _erased_state(state: dict | None, rationales: bool) -> dict | None:
    """A label's audited state without what identifies its author: the external annotator
    of an imported label, and with `rationales` what they wrote."""
    if not state:
        return state
    state = dict(state)
    if "external_annotator" in state:
        state["external_annotator"] = ""
    if rationales and state.get("rationale"):
        state["rationale"] = ""
    return state
