"""Cashier jobs on Celery beat: thin wrappers around the services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from pos import idempotency, services


@shared_task(name="pos.holds_expire_task")
def holds_expire_task() -> int:
    """Cancel pending purchases whose hold_minutes ran out (their holds are released)."""
    return services.holds_expire()


@shared_task(name="pos.tiers_recalculate_task")
def tiers_recalculate_task() -> int:
    """Move qualifying spend with the sliding tier window; tiers follow (downgrades too)."""
    from programs.models import Program

    return sum(
        services.tiers_recalculate(program_id=pk)
        for pk in Program.objects.values_list("pk", flat=True)
    )


@shared_task(name="pos.idempotency_keys_prune_task")
def idempotency_keys_prune_task() -> int:
    return idempotency.keys_prune()
