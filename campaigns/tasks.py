"""Thin Celery tasks: take ids, call a service, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from campaigns import messaging, segments, services, triggers


@shared_task(name="campaigns.triggers_run_task")
def triggers_run_task() -> dict[str, int]:
    return triggers.triggers_run()


@shared_task(name="campaigns.outbox_send_task")
def outbox_send_task() -> dict[str, int]:
    return messaging.outbox_send()


@shared_task(name="campaigns.segments_recalculate_task")
def segments_recalculate_task() -> dict[int, int]:
    return segments.segments_recalculate_all()


@shared_task(name="campaigns.statuses_update_task")
def statuses_update_task() -> int:
    return services.campaigns_finish_due()


@shared_task(name="campaigns.backtest_run_task")
def backtest_run_task(backtest_id: int) -> None:
    from campaigns import backtest

    backtest.backtest_run(backtest_id=backtest_id)


@shared_task(name="campaigns.promo_codes_notify_task")
def promo_codes_notify_task(batch_id: int, kind: str) -> int:
    from campaigns.models import PromoCodeBatch

    batch = PromoCodeBatch.objects.select_related("campaign__program").get(pk=batch_id)
    return services.promo_codes_notify(batch=batch, kind=kind)


@shared_task(name="campaigns.segment_send_task")
def segment_send_task(segment_id: int, kind: str, channel: str, token: str) -> dict[str, int]:
    from campaigns.models import Segment

    segment = Segment.objects.select_related("program").get(pk=segment_id)
    return messaging.segment_send(segment=segment, kind=kind, channel=channel, token=token)
