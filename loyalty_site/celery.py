"""The Celery app. Tasks live in each app's tasks.py; the schedule is in settings."""

from __future__ import annotations

import os

from celery import Celery, Task, signals

from loyalty_site import metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty_site.settings")

app = Celery("loyalty_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_success.connect
def _count_success(sender: Task | None = None, **kwargs: object) -> None:
    metrics.JOB_RUNS.labels(task=getattr(sender, "name", "?"), outcome="success").inc()


@signals.task_failure.connect
def _count_failure(sender: Task | None = None, **kwargs: object) -> None:
    metrics.JOB_RUNS.labels(task=getattr(sender, "name", "?"), outcome="failure").inc()


@signals.task_retry.connect
def _count_retry(sender: Task | None = None, **kwargs: object) -> None:
    metrics.JOB_RUNS.labels(task=getattr(sender, "name", "?"), outcome="retry").inc()
