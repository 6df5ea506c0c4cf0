"""Admin of the cashier API: terminals (keys, block, rotate), purchases and refunds (read-only).

Purchases and refunds are written by the API and the import only: here they are
looked at, searched by receipt number, member and store, never edited. Actions
call the services; list pages select their related rows in the same query.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Member
from accounts.selectors import members_typed
from pos import services
from pos.models import Purchase, PurchaseLine, Refund, RefundLine, Terminal, TierChange


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Terminal)
class TerminalAdmin(admin.ModelAdmin):
    list_display = ("name", "store", "program", "is_blocked", "last_seen_at", "key_prefix")
    list_select_related = ("store", "program")
    list_filter = ("is_blocked", "program", "store")
    search_fields = ("name", "store__code", "store__name")
    readonly_fields = (
        "id",
        "program",
        "key_prefix",
        "created_at",
        "key_rotated_at",
        "last_seen_at",
    )
    actions = ("block_selected", "unblock_selected", "rotate_selected")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["store", "name"]
        return [
            "id",
            "name",
            "store",
            "program",
            "is_blocked",
            "key_prefix",
            "created_at",
            "key_rotated_at",
            "last_seen_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # Blocking goes through the actions (they also clear the key cache).
        return (*self.readonly_fields, "store", "is_blocked")

    def save_model(self, request: HttpRequest, obj: Terminal, form: Any, change: bool) -> None:
        if change:
            Terminal.objects.filter(pk=obj.pk).update(name=obj.name)
            return
        terminal, key = services.terminal_create(store=obj.store, name=obj.name)
        obj.pk = terminal.pk
        obj.__dict__.update({k: v for k, v in terminal.__dict__.items() if k != "_state"})
        obj._state.adding = False
        messages.warning(
            request,
            format_html(
                "{} <code>{}</code>",
                gettext("The terminal's key (shown only now; copy it into the till):"),
                key,
            ),
        )

    @admin.action(description=_("Block the selected terminals"), permissions=["change"])
    def block_selected(self, request: HttpRequest, queryset: QuerySet[Terminal]) -> None:
        for terminal in queryset:
            services.terminal_block(terminal=terminal)
        self.message_user(request, gettext("Blocked: %(n)s.") % {"n": len(queryset)})

    @admin.action(description=_("Unblock the selected terminals"), permissions=["change"])
    def unblock_selected(self, request: HttpRequest, queryset: QuerySet[Terminal]) -> None:
        for terminal in queryset:
            services.terminal_block(terminal=terminal, blocked=False)
        self.message_user(request, gettext("Unblocked: %(n)s.") % {"n": len(queryset)})

    @admin.action(
        description=_("Issue new keys for the selected terminals"), permissions=["change"]
    )
    def rotate_selected(self, request: HttpRequest, queryset: QuerySet[Terminal]) -> None:
        for terminal in queryset:
            key = services.terminal_rotate(terminal=terminal)
            messages.warning(
                request,
                format_html(
                    "{}: <code>{}</code> ({})",
                    terminal.name,
                    key,
                    gettext("the old key no longer works; this one is shown only now"),
                ),
            )


class PurchaseLineInline(ReadOnlyMixin, admin.TabularInline):
    model = PurchaseLine
    extra = 0
    fields = (
        "line_no",
        "sku",
        "name",
        "category",
        "quantity",
        "amount",
        "redeemed_amount",
        "redeemed_points",
        "earned_points",
        "refunded_quantity",
        "refunded_amount",
    )
    readonly_fields = fields
    can_delete = False


class RefundInline(ReadOnlyMixin, admin.TabularInline):
    model = Refund
    extra = 0
    fields = (
        "refund_number",
        "created_at",
        "amount",
        "points_reversed",
        "points_returned",
        "shortfall_points",
        "cash_refund",
    )
    readonly_fields = fields
    show_change_link = True
    can_delete = False


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "receipt_number",
        "purchased_at",
        "store",
        "member",
        "status",
        "total",
        "redeemed_points",
        "earned_points",
        "refunded_amount",
    )
    list_select_related = ("store", "member")
    list_filter = ("status", "source", "program", "store")
    search_fields = ("=receipt_number", "=store__code")
    search_help_text = _(
        "Exact receipt number or store code, or the member's phone (any form) or card number."
    )
    date_hierarchy = "purchased_at"
    show_full_result_count = False
    raw_id_fields = ("member",)
    inlines = (PurchaseLineInline, RefundInline)

    fields = (
        "id",
        "receipt_number",
        "status",
        "source",
        "program",
        "store",
        "terminal",
        "member",
        "tier",
        "purchased_at",
        "completed_at",
        "cancelled_at",
        "hold_expires_at",
        "total",
        "payable",
        "redeemed_amount",
        "redeem_requested",
        "redeemed_points",
        "max_allowed",
        "earned_points",
        "earn_breakdown",
        "campaigns",
        "messages",
        "refunded_amount",
    )
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Purchase], search_term: str
    ) -> tuple[QuerySet[Purchase], bool]:
        """The receipt or the store as typed; the member as the customer says it."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if not search_term.strip():
            return found, may_have_duplicates
        # Not by a phone's last digits: a receipt number of digits would bring in strangers.
        typed = members_typed(search_term, last_digits=False)
        members = Member.objects.filter(typed).values("pk")
        return found | queryset.filter(member__in=members), may_have_duplicates


class RefundLineInline(ReadOnlyMixin, admin.TabularInline):
    model = RefundLine
    extra = 0
    fields = (
        "line_no",
        "quantity",
        "amount",
        "redeemed_amount",
        "points_reversed",
        "points_returned",
        "shortfall_points",
    )
    readonly_fields = fields


@admin.register(Refund)
class RefundAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "refund_number",
        "purchase",
        "created_at",
        "amount",
        "points_reversed",
        "points_returned",
        "shortfall_points",
        "cash_refund",
    )
    list_select_related = ("purchase",)
    search_fields = ("=refund_number", "=purchase__receipt_number")
    fields = (
        "id",
        "purchase",
        "refund_number",
        "terminal",
        "created_at",
        "amount",
        "redeemed_amount",
        "points_reversed",
        "points_returned",
        "shortfall_points",
        "shortfall_amount",
        "cash_refund",
    )
    readonly_fields = fields
    inlines = (RefundLineInline,)


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("member", "from_tier", "to_tier", "qualifying_spend", "reason", "created_at")
    list_select_related = ("member", "from_tier", "to_tier")
    list_filter = ("reason", "to_tier")
    raw_id_fields = ("member", "purchase")


# --- the member page (accounts' hook: accounts does not import pos) -----------


class MemberPurchaseInline(ReadOnlyMixin, admin.TabularInline):
    model = Purchase
    fk_name = "member"
    extra = 0
    max_num = 0
    verbose_name_plural = _("purchases (latest 20)")
    fields = (
        "receipt_number",
        "purchased_at",
        "store",
        "status",
        "total",
        "redeemed_points",
        "earned_points",
        "refunded_amount",
    )
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Purchase]:
        # The inline cannot slice its queryset (Django filters it afterwards), so it
        # shows the member's last year: enough for support, bounded for the page.
        import datetime

        from django.utils import timezone

        since = timezone.now() - datetime.timedelta(days=365)
        return (
            super()
            .get_queryset(request)
            .filter(purchased_at__gte=since)
            .select_related("store")
            .order_by("-purchased_at")
        )


class MemberTierChangeInline(ReadOnlyMixin, admin.TabularInline):
    model = TierChange
    fk_name = "member"
    extra = 0
    max_num = 0
    fields = ("created_at", "from_tier", "to_tier", "qualifying_spend", "reason")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[TierChange]:
        return super().get_queryset(request).select_related("from_tier", "to_tier")


def member_purchases_panel(member: Any) -> str:
    """The member page's purchases and tier changes (accounts.admin.member_panel_register)."""
    from django.urls import reverse
    from django.utils.html import format_html_join

    purchases = list(
        Purchase.objects.filter(member=member)
        .select_related("store")
        .order_by("-purchased_at")[:10]
    )
    changes = list(
        TierChange.objects.filter(member=member)
        .select_related("from_tier", "to_tier")
        .order_by("-created_at")[:5]
    )
    rows = format_html_join(
        "",
        '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
        "<td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                reverse("admin:pos_purchase_change", args=[p.pk]),
                p.receipt_number,
                p.purchased_at.strftime("%Y-%m-%d %H:%M"),
                p.store.code,
                p.get_status_display(),
                p.total,
                p.redeemed_points,
                p.earned_points,
                p.refunded_amount,
            )
            for p in purchases
        ),
    )
    tiers = format_html_join(
        "",
        "<li>{}: {} → {} ({}, {})</li>",
        (
            (
                c.created_at.strftime("%Y-%m-%d"),
                c.from_tier or "—",
                c.to_tier or "—",
                c.get_reason_display(),
                c.qualifying_spend,
            )
            for c in changes
        ),
    )
    link = reverse("admin:pos_purchase_changelist") + f"?member__id__exact={member.pk}"
    return format_html(
        "<h3>{}</h3><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>"
        "<th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>"
        '<p><a href="{}">{}</a></p><h3>{}</h3><ul>{}</ul>',
        gettext("Latest purchases"),
        gettext("receipt"),
        gettext("time"),
        gettext("store"),
        gettext("status"),
        gettext("total"),
        gettext("points redeemed"),
        gettext("points earned"),
        gettext("refunded"),
        rows,
        link,
        gettext("All purchases of this member"),
        gettext("Tier changes"),
        tiers or format_html("<li>{}</li>", gettext("none")),
    )


def _register_member_page_hook() -> None:
    from accounts import admin as accounts_admin

    register = getattr(accounts_admin, "member_panel_register", None)
    if register is not None:
        register(member_purchases_panel)
        return
    inlines = getattr(accounts_admin, "MEMBER_PAGE_INLINES", None)
    if inlines is not None:
        for inline in (MemberPurchaseInline, MemberTierChangeInline):
            if inline not in inlines:
                inlines.append(inline)


_register_member_page_hook()
