"""The points book in the admin: read-only transfers and lots, adjustments, liability.

Ledger rows are never edited here: points move only through the services
(approving an adjustment calls ``adjustment_approve``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Member
from ledger import selectors, services
from ledger.models import AdjustmentRequest, Lot, Mismatch, ProgramLiability, Transfer

HISTORY_ROWS = 20


class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is append-only: nobody adds, changes or deletes its rows in the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "member_link",
        "kind",
        "amount",
        "debit_account",
        "credit_account",
        "reference",
        "purchase_ref",
        "created_by",
    )
    list_select_related = (
        "account",
        "account__member",
        "debit_account",
        "credit_account",
        "created_by",
    )
    list_filter = ("kind", ("created_at", admin.DateFieldListFilter), "account__program")
    search_fields = ("=reference", "=purchase_ref", "=account__member__id")
    search_help_text = gettext_lazy("Exact reference, purchase or member id.")
    show_full_result_count = False
    date_hierarchy = "created_at"
    list_per_page = 100

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The member page links here filtered by the member's account.
        return lookup in ("account__id__exact", "account") or super().lookup_allowed(
            lookup, value, request
        )

    @admin.display(description=gettext_lazy("member"), ordering="account__member")
    def member_link(self, obj: Transfer) -> SafeString:
        member = obj.account.member
        if member is None:
            return format_html("{}", "—")
        url = reverse("admin:accounts_member_change", args=[member.pk])
        return format_html('<a href="{}">{}</a>', url, member)


@admin.register(Lot)
class LotAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "member_link",
        "source",
        "amount",
        "remaining",
        "pending",
        "available_at",
        "expires_at",
        "created_at",
    )
    list_select_related = ("account", "account__member")
    list_filter = (
        "pending",
        ("expires_at", admin.DateFieldListFilter),
        "source",
        "account__program",
    )
    search_fields = ("=account__member__id",)
    show_full_result_count = False
    list_per_page = 100

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup in (
            "account__id__exact",
            "remaining__gt",
            "account",
        ) or super().lookup_allowed(lookup, value, request)

    @admin.display(description=gettext_lazy("member"))
    def member_link(self, obj: Lot) -> SafeString:
        member = obj.account.member
        url = reverse("admin:accounts_member_change", args=[member.pk])
        return format_html('<a href="{}">{}</a>', url, member)


@admin.register(Mismatch)
class MismatchAdmin(ReadOnlyAdmin):
    list_display = ("found_at", "program", "account", "check_name", "actual", "expected")
    list_select_related = ("program", "account")
    list_filter = ("check_name", "program", ("found_at", admin.DateFieldListFilter))


@admin.register(AdjustmentRequest)
class AdjustmentRequestAdmin(admin.ModelAdmin):
    list_display = (
        "requested_at",
        "member",
        "points",
        "reason",
        "status",
        "requested_by",
        "decided_by",
        "decided_at",
    )
    list_select_related = ("member", "requested_by", "decided_by")
    list_filter = ("status", "reason", ("requested_at", admin.DateFieldListFilter))
    search_fields = ("=member__id", "=member__phone")
    autocomplete_fields = ("member",)
    fields = ("member", "points", "reason", "comment")
    actions = ("approve_selected", "reject_selected")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return (
            "member",
            "points",
            "reason",
            "comment",
            "status",
            "requested_by",
            "requested_at",
            "decided_by",
            "decided_at",
            "decision_comment",
            "transfer",
        )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields if obj is None else self.get_readonly_fields(request, obj)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if "member" in request.GET:
            initial["member"] = request.GET["member"]
        return initial

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing is the view permission; a request is never edited after it is made.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.approve_adjustmentrequest")

    def save_model(
        self, request: HttpRequest, obj: AdjustmentRequest, form: Any, change: bool
    ) -> None:
        created = services.adjustment_request(
            member=obj.member,
            points=obj.points,
            reason=obj.reason,
            comment=obj.comment,
            by=request.user,
        )
        obj.pk = created.pk
        obj.status = created.status

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[AdjustmentRequest], approve: bool
    ) -> None:
        if not self.has_approve_permission(request):
            raise PermissionDenied
        done = 0
        for adjustment in queryset.filter(status=AdjustmentRequest.Status.REQUESTED):
            try:
                if approve:
                    services.adjustment_approve(request=adjustment, by=request.user)
                else:
                    services.adjustment_reject(request=adjustment, by=request.user)
                done += 1
            except services.LedgerError as exc:
                self.message_user(request, f"{adjustment.member}: {exc}", messages.ERROR)
        if done:
            text = _("%(n)d adjustments approved.") if approve else _("%(n)d adjustments rejected.")
            self.message_user(request, text % {"n": done}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Approve selected adjustments"), permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[AdjustmentRequest]) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description=gettext_lazy("Reject selected adjustments"), permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[AdjustmentRequest]) -> None:
        self._decide(request, queryset, approve=False)


@admin.register(ProgramLiability)
class ProgramLiabilityAdmin(ReadOnlyAdmin):
    """One page: what each program owes its members in points and money."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("ledger.view_transfer")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": _("Points liability"),
            "opts": self.model._meta,
            "rows": selectors.liability_summary(),
            "now": timezone.now(),
        }
        return TemplateResponse(request, "admin/ledger/liability.html", context)


def member_points_panel(member: Member) -> str:
    """The member page's points section: balances, open lots, latest history, links."""
    balance = selectors.member_balance(member)
    lots = list(selectors.member_open_lots(member)[:50])
    history = list(selectors.member_history(member).select_related("created_by")[:HISTORY_ROWS])
    account_id = lots[0].account_id if lots else (history[0].account_id if history else None)
    links = [
        format_html(
            '<a href="{}?{}">{}</a>',
            reverse("admin:ledger_adjustmentrequest_add"),
            urlencode({"member": str(member.pk)}),
            _("Request a points adjustment"),
        )
    ]
    if account_id is not None:
        query = urlencode({"account__id__exact": account_id})
        links += [
            format_html(
                '<a href="{}?{}">{}</a>',
                reverse("admin:ledger_transfer_changelist"),
                query,
                _("Full history"),
            ),
            format_html(
                '<a href="{}?{}">{}</a>',
                reverse("admin:ledger_lot_changelist"),
                query,
                _("All lots"),
            ),
        ]
    lot_rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                lot.remaining,
                (lot.expires_at and timezone.localtime(lot.expires_at).date()) or _("never"),
                _("pending until %(d)s") % {"d": timezone.localtime(lot.available_at).date()}
                if lot.pending
                else "",
                lot.source,
            )
            for lot in lots
        ),
    )
    history_rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                timezone.localtime(t.created_at).strftime("%Y-%m-%d %H:%M"),
                t.get_kind_display(),
                f"{t.points:+d}" if t.points else "±0",
                t.purchase_ref,
                t.description,
            )
            for t in history
        ),
    )
    return format_html(
        "<div class='ledger-points'>"
        "<p><strong>{}</strong> {} · <strong>{}</strong> {} · <strong>{}</strong> {}</p>"
        "<h4>{}</h4><table><tr><th>{}</th><th>{}</th><th></th><th>{}</th></tr>{}</table>"
        "<h4>{}</h4><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>"
        "{}</table><p>{}</p></div>",
        _("Available:"),
        balance.available,
        _("Pending:"),
        balance.pending,
        _("On hold:"),
        balance.on_hold,
        _("Open lots"),
        _("points left"),
        _("expires"),
        _("source"),
        lot_rows,
        _("Latest points history"),
        _("time"),
        _("operation"),
        _("points"),
        _("purchase"),
        _("description"),
        history_rows,
        format_html_join(" · ", "{}", ((link,) for link in links)),
    )
