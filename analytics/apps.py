from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = _("Analytics")

    def ready(self) -> None:
        # The member page (accounts) shows the CLV line without importing analytics.
        from accounts.admin import member_panel_register
        from analytics.admin import member_clv_panel

        member_panel_register(member_clv_panel)

        # The "probably lost" segment condition of campaigns reads analytics' CLV table.
        from analytics.selectors import probably_lost_condition
        from campaigns import segments

        segments.segment_source_register("probably_lost", probably_lost_condition)
