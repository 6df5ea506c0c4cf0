"""Analytics in the admin: CLV models, members by lifetime value, and the member page summary.

All read-only: these rows are derived by the nightly jobs.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Member
from analytics.models import CampaignStats, ClvModel, MemberClv
from analytics.services import AT_RISK_P_ALIVE


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ClvModel)
class ClvModelAdmin(ReadOnlyAdmin):
    list_display = (
        "program",
        "until",
        "fitted_at",
        "members",
        "repeat_members",
        "r",
        "alpha",
        "a",
        "b",
        "p",
        "q",
        "gamma",
        "seconds",
    )
    list_filter = ("program",)
    list_select_related = ("program",)


@admin.register(MemberClv)
class MemberClvAdmin(ReadOnlyAdmin):
    """Members ranked by predicted value; every column sorts."""

    list_display = (
        "member_link",
        "program",
        "value",
        "p_alive_pct",
        "expected_purchases_12m",
        "expected_spend",
        "spend_12m",
        "x",
    )
    list_filter = ("program",)
    list_select_related = ("member", "program")
    ordering = ("-value",)
    search_fields = ("member__phone", "member__last_name")
    show_full_result_count = False  # counting a million rows on every page is not worth it

    @admin.display(description=_("member"), ordering="member__last_name")
    def member_link(self, obj: MemberClv) -> str:
        url = reverse("admin:accounts_member_change", args=[obj.member_id])
        return format_html('<a href="{}">{}</a>', url, obj.member)

    @admin.display(description=_("P(alive)"), ordering="p_alive")
    def p_alive_pct(self, obj: MemberClv) -> str:
        return f"{number_format(obj.p_alive * 100, 0)} %"

    @admin.display(description=_("expected purchases, 12 months"), ordering="expected_purchases")
    def expected_purchases_12m(self, obj: MemberClv) -> str:
        return number_format(obj.expected_purchases, 2)


@admin.register(CampaignStats)
class CampaignStatsAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "program",
        "cost_points",
        "cost",
        "reached",
        "receipts",
        "revenue",
        "holdout_members",
        "uplift",
        "uplift_low",
        "uplift_high",
        "computed_at",
    )
    list_filter = ("program",)
    list_select_related = ("program",)


def member_clv_summary(member: Member) -> str:
    """The CLV line of the member page (plain text)."""
    row = MemberClv.objects.filter(member=member).first()
    if row is None:
        return gettext("Not estimated yet (the nightly CLV fit has not covered this member).")
    return gettext(
        "%(value)s predicted over 12 months: %(purchases)s purchases × %(spend)s; "
        "P(alive) %(alive)s %%"
    ) % {
        "value": number_format(row.value, 2, force_grouping=True),
        "purchases": number_format(row.expected_purchases, 2),
        "spend": number_format(row.expected_spend, 2, force_grouping=True),
        "alive": number_format(row.p_alive * 100, 0),
    }


def member_clv_panel(member: Member) -> str:
    """The member page's lifetime value section (accounts.admin.member_panel_register)."""
    row = MemberClv.objects.filter(member=member).first()
    lost = ""
    if row is not None and row.p_alive < AT_RISK_P_ALIVE:
        lost = format_html(
            ' <strong id="clv-lost">{}</strong>',
            gettext("Probably lost: P(alive) under %(limit)s %%")
            % {"limit": number_format(AT_RISK_P_ALIVE * 100, 0)},
        )
    return format_html(
        '<h3>{}</h3><p id="clv-line">{}{}</p>',
        gettext("Lifetime value"),
        member_clv_summary(member),
        lost,
    )
