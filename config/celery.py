"""Celery application. Two queues: `default` (light work) and `gpu` (generation, training).

Start a GPU worker on any machine that shares the database, Redis and the artifact root:
    celery -A config worker -Q gpu --concurrency 1
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("hone")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
