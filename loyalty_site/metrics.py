"""Counters a monitoring system scrapes at /metrics (Prometheus text format).

This module imports no app, so any app may call it. Under gunicorn and Celery
the counters of all processes are summed through PROMETHEUS_MULTIPROC_DIR,
which `run_all` sets; request latency per view comes from django-prometheus.
"""

from __future__ import annotations

from prometheus_client import Counter

PURCHASES = Counter(
    "loyalty_purchases", "Purchases taken by the cashier API, by outcome.", ["status"]
)
POINTS_MOVED = Counter(
    "loyalty_points_moved", "Points moved by ledger transfers, by transfer kind.", ["kind"]
)
JOB_RUNS = Counter(
    "loyalty_job_runs", "Celery task runs, by task and outcome.", ["task", "outcome"]
)


def purchase_recorded(status: str) -> None:
    PURCHASES.labels(status=status).inc()


def points_moved(kind: str, amount: int) -> None:
    POINTS_MOVED.labels(kind=kind).inc(amount)
