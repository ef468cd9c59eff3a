"""Celery application. Two queues: `default` (light work) and `gpu` (generation, training).

Start a GPU worker on any machine that shares the database, Redis and the artifact root:
    celery -A config worker -Q gpu --concurrency 1
"""

import logging
import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("hone")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def loop_recover_on_worker_ready(**kwargs) -> None:
    """A worker that starts takes over the work that died with the last one (README, "Workers
    that die"). Here rather than in a task: which workers are gone is a question about this
    machine's processes. A failure is logged, and the worker starts anyway."""
    from training import services
    from training.tasks import STALE_AFTER_SECONDS

    try:
        services.loop_recover_at_worker_start(stale_after_seconds=STALE_AFTER_SECONDS)
    except Exception:
        logging.getLogger(__name__).exception("Recovery at the start of the worker failed")
