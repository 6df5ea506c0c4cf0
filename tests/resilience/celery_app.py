"""The project's Celery app for the fault tests, told to notice a killed pool process quickly.

Celery waits `worker_lost_wait` (10 s) for a result a killed child might still
send before it reports WorkerLostError and takes the next message; the tests
kill a child a dozen times, so they wait one second instead.
"""

from __future__ import annotations

from loyalty_site.celery import app

app.conf.worker_lost_wait = 1.0

__all__ = ["app"]
