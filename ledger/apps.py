from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LedgerConfig(AppConfig):
    name = "ledger"
    verbose_name = _("Points ledger")

    def ready(self) -> None:
        # The member page (accounts) shows the points section without importing ledger.
        from accounts.admin import member_panel_register
        from ledger.admin import member_points_panel

        member_panel_register(member_points_panel)
