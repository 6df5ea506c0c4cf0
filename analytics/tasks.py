"""Nightly analytics jobs; thin wrappers over analytics.services, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from analytics.clv import ClvFitError
from analytics.services import aggregates_refresh, clv_fit
from programs.models import Program

logger = logging.getLogger(__name__)


@shared_task(name="analytics.aggregates_refresh")
def aggregates_refresh_task() -> dict[str, dict[str, int]]:
    """Recompute the days touched since the last run, for every program."""
    return {p.code: aggregates_refresh(program=p) for p in Program.objects.order_by("pk")}


@shared_task(name="analytics.clv_fit")
def clv_fit_task() -> dict[str, int]:
    """Refit every program's CLV model on purchases up to today."""
    fitted: dict[str, int] = {}
    for program in Program.objects.order_by("pk"):
        try:
            fitted[program.code] = clv_fit(program=program).members
        except ClvFitError as exc:  # a young program has too little history: not an error
            logger.info("CLV of %s not fitted: %s", program.code, exc)
    return fitted
