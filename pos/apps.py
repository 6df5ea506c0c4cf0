from __future__ import annotations

import datetime
from typing import Any

from django.apps import AppConfig
from django.db import transaction
from django.utils.translation import gettext_lazy as _


def _hold_expired(hold: Any, now: datetime.datetime) -> bool:
    """The ledger's hold expiry job found a purchase's hold: cancel that purchase instead."""
    from pos import errors, services
    from pos.models import Purchase

    purchase_id = (
        Purchase.objects.filter(hold_id=hold.pk, status=Purchase.Status.PENDING)
        .values_list("id", flat=True)
        .first()
    )
    if purchase_id is None:
        return False
    try:
        # Its own savepoint: settled meanwhile (confirmed at the till, cancelled by the
        # other expiry job), the purchase's refusal must not break the job's transaction.
        with transaction.atomic():
            services.purchase_cancel(terminal=None, purchase_id=purchase_id, now=now)
    except errors.PurchaseNotPending:
        return False  # the hold went with the purchase: the ledger finds it closed
    return True


class PosConfig(AppConfig):
    name = "pos"
    verbose_name = _("Cashier API")

    def ready(self) -> None:
        from ledger.services import register_hold_expiry_handler

        register_hold_expiry_handler(_hold_expired)

        from campaigns import backtest
        from pos.selectors import receipts_for_backtest

        backtest.register_receipts_source(receipts_for_backtest)
