"""People's accounts: API tokens."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework.authtoken.models import Token

from feedback.models import AuditEvent
from feedback.services.audit import audit_record


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
