"""python manage.py drf_create_token USERNAME [-r]

DRF's command of the same name, through feedback.services.api_token_create so that every new
key is audited. It takes the place of DRF's because `feedback` comes before
`rest_framework.authtoken` in INSTALLED_APPS (Django's rule for overriding a command).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from feedback.services import api_token_create


class Command(BaseCommand):
    help = "Create the API token of a user (audited); -r replaces it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "-r",
            "--reset",
            action="store_true",
            dest="reset_token",
            help="Replace the user's token with a new one (the old key stops working).",
        )

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: options["username"]}).first()
        if user is None:
            raise CommandError(
                f"Cannot create the token: user {options['username']!r} does not exist."
            )
        token = api_token_create(user=user, replace=options["reset_token"])
        self.stdout.write(f"Generated token {token.key} for user {options['username']}")
