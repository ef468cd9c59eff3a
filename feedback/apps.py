from django.apps import AppConfig
from django.db.models.signals import post_migrate


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback"

    def ready(self) -> None:
        post_migrate.connect(_labeling_functions_install, sender=self)


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
