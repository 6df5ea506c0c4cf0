"""Ledger jobs on Celery beat: thin wrappers around the services, safe to run twice.

Each job works on everything due by the time it runs, so a missed run is caught
up by the next one; unique references (``expire:<lot>``, ``activate:<lot>``,
``hold-expire:<hold>``) and row claims (SKIP LOCKED, the open-hold row) make two
runs at once do the work once. The schedule (UTC) is in settings.CELERY_BEAT_SCHEDULE.
"""

from __future__ import annotations

from celery import shared_task

from ledger import services


@shared_task(name="ledger.points_activate_task")
def points_activate_task() -> dict[str, int]:
    result = services.points_activate()
    return {"lots": result.lots, "points": result.points, "busy": result.skipped_busy}


@shared_task(name="ledger.holds_expire_task")
def holds_expire_task() -> int:
    return services.holds_expire()


@shared_task(name="ledger.lots_expire_task")
def lots_expire_task() -> dict[str, int]:
    result = services.lots_expire()
    return {"lots": result.lots, "points": result.points, "busy": result.skipped_busy}


@shared_task(name="ledger.ledger_reconcile_task")
def ledger_reconcile_task() -> int:
    return len(services.ledger_reconcile())
