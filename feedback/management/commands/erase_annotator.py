"""python manage.py erase_annotator USERNAME [--rationales]

A data-protection request: the person's account is anonymised (a pseudonym, no e-mail or
names, no password, no API token, no login) and nothing is deleted. Their labels and
demonstrations stay, under the pseudonym, and keep counting; with --rationales what they wrote
about the items (rationales, flag notes) is blanked too. The audit
log records the erasure under the pseudonym.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from feedback.services import annotator_erase


class Command(BaseCommand):
    help = "Anonymise a person (data-protection request); their labels keep counting."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--rationales",
            action="store_true",
            help="Also blank the rationales of their labels and the notes of their flags.",
        )

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: options["username"]}).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        erasure = annotator_erase(user=user, rationales=options["rationales"])
        self.stdout.write(
            self.style.SUCCESS(
                f"Erased: the account is now {erasure.pseudonym}; {erasure.labels} labels keep "
                f"counting under it, and {erasure.demonstrations} demonstrations stay under it as "
                f"training data; {erasure.rationales_blanked} rationales and "
                f"{erasure.notes_blanked} flag notes blanked."
            )
        )
