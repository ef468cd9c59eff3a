from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate, post_save


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback"

    def ready(self) -> None:
        post_migrate.connect(_labeling_functions_install, sender=self)
        post_save.connect(
            _user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="feedback-user-saved"
        )


def _user_saved(*, instance, created: bool, **kwargs) -> None:
    """A deactivated user holds no lease and no socket (feedback.services.user_access_end).
    A signal, because users are deactivated where Hone has no service: Django's admin, a
    shell, a script."""
    if created or instance.is_active:
        return
    from feedback.services import user_access_end

    user_access_end(user=instance)


def _labeling_functions_install(*, using: str, **kwargs) -> None:
    """On PostgreSQL: (re)install the labeling functions of this code (feedback/labeling/)
    after every migrate, so that they always match the statements of the code deployed."""
    from django.db import connections, transaction

    from feedback import labeling

    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for statement in labeling.FUNCTIONS_INSTALL:
            cursor.execute(statement)
