"""Admin for programs, tiers and stores, and the read-only audit trail.

Every save and delete goes through `programs.services`, so what staff change
here is audited exactly like an import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _

from programs import services
from programs.models import TIER_LADDER_START, AuditEntry, Program, Store, Tier, tier_ladder_errors

LOWEST_TIER_MESSAGE = _("The lowest tier must start at 0, so that every member holds a tier.")
SAME_THRESHOLD_MESSAGE = _("Another tier starts at this sum; give each tier its own threshold.")


def _ladder_problems(rows: list[tuple[Any, Any]]) -> list[tuple[Any, str]]:
    """(row key, message) for tiers given as (threshold, key), in any order."""
    rows = sorted(rows, key=lambda row: row[0])
    problems = []
    for index, problem in tier_ladder_errors([threshold for threshold, _key in rows]):
        message = LOWEST_TIER_MESSAGE if problem == TIER_LADDER_START else SAME_THRESHOLD_MESSAGE
        problems.append((rows[index][1], message))
    return problems


class TierInlineFormSet(BaseInlineFormSet):
    """Checks the tiers of the page together: the lowest starts at 0, thresholds differ."""

    def clean(self) -> None:
        rows = []
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or not form.cleaned_data:
                continue  # an empty extra row
            if self.can_delete and self._should_delete_form(form):
                continue
            threshold = form.cleaned_data.get("threshold")
            if threshold is None:
                continue  # the field already carries its own error
            rows.append((threshold, form))
        for form, message in _ladder_problems(rows):
            form.add_error("threshold", message)
        super().clean()


class TierInline(admin.TabularInline):
    model = Tier
    formset = TierInlineFormSet
    fields = ("code", "name", "threshold", "accrual_percent")
    extra = 0
    ordering = ("threshold",)


class StoreInline(admin.TabularInline):
    model = Store
    fields = ("code", "name")
    extra = 0
    ordering = ("code",)
    show_change_link = True


class AuditedAdmin(admin.ModelAdmin):
    """Saves and deletes through the audited services of `programs.services`."""

    save_service: Callable[..., Any]  # staticmethod(services.<entity>_save)
    delete_service: Callable[..., Any]
    object_keyword: str

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        self.save_service(**{self.object_keyword: obj}, by=request.user)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_service(**{self.object_keyword: obj}, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


# Inline objects are saved through the same services as on their own pages.
_INLINE_SERVICES: dict[type, tuple[Callable[..., Any], Callable[..., Any], str]] = {
    Tier: (services.tier_save, services.tier_delete, "tier"),
    Store: (services.store_save, services.store_delete, "store"),
}


@admin.register(Program)
class ProgramAdmin(AuditedAdmin):
    save_service = staticmethod(services.program_save)
    delete_service = staticmethod(services.program_delete)
    object_keyword = "program"

    list_display = (
        "code",
        "name",
        "currency",
        "point_value",
        "accrual_percent",
        "redeem_max_percent",
        "tier_count",
        "store_count",
        "updated_at",
    )
    list_display_links = ("code", "name")
    search_fields = ("code", "name")
    inlines = (TierInline, StoreInline)
    readonly_fields = ("audit_history", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("code", "name", "currency", "default_region", "time_zone")}),
        (
            _("Earning"),
            {
                "fields": (
                    "point_value",
                    "accrual_percent",
                    "accrual_delay_days",
                    "points_expire_days",
                    "accrue_on_redeemed_part",
                )
            },
        ),
        (
            _("Paying with points"),
            {
                "fields": (
                    "redeem_max_percent",
                    "redeem_min_balance",
                    "hold_minutes",
                    "refund_grace_days",
                )
            },
        ),
        (
            _("Goods that earn nothing or cannot be paid with points"),
            {
                "fields": (
                    "excluded_from_accrual_categories",
                    "excluded_from_accrual_skus",
                    "excluded_from_redemption_categories",
                    "excluded_from_redemption_skus",
                )
            },
        ),
        (_("Tiers"), {"fields": ("tier_window_days",)}),
        (_("History"), {"fields": ("audit_history", "created_at", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Program]:
        # Counted in the list query itself: no query per row.
        return (
            super()
            .get_queryset(request)
            .annotate(
                tier_total=Count("tiers", distinct=True), store_total=Count("stores", distinct=True)
            )
        )

    @admin.display(description=_("tiers"), ordering="tier_total")
    def tier_count(self, obj: Program) -> int:
        return obj.tier_total

    @admin.display(description=_("stores"), ordering="store_total")
    def store_count(self, obj: Program) -> int:
        return obj.store_total

    @admin.display(description=_("latest changes"))
    def audit_history(self, obj: Program) -> str:
        if obj.pk is None:
            return "—"
        entries = list(obj.audit_entries.select_related("content_type")[:10])
        if not entries:
            return _("No changes recorded yet.")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}: {}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    entry.created_at.strftime("%Y-%m-%d %H:%M"),
                    entry.user_repr or "—",
                    entry.content_type.name,
                    entry.object_repr,
                    entry.get_action_display(),
                    changes_summary(entry.changes),
                )
                for entry in entries
            ),
        )
        return format_html(
            '<table><tbody>{}</tbody></table><p><a href="{}">{}</a></p>',
            rows,
            audit_url_for(obj),
            _("The whole history of this program"),
        )

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The admin's "History" button shows this program's audit trail (all its
        # fields, tiers and stores, from the admin and from imports).
        program = self.get_object(request, object_id)
        if program is None:
            return super().history_view(request, object_id, extra_context)
        return HttpResponseRedirect(audit_url_for(program))

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        save, delete, keyword = _INLINE_SERVICES[formset.model]
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:  # first: a removed tier may free a threshold
            delete(**{keyword: obj}, by=request.user)
        for obj in instances:
            save(**{keyword: obj}, by=request.user)
        formset.save_m2m()


def _show(value: Any) -> str:
    return "—" if value is None else json.dumps(value, ensure_ascii=False)


def _old_new(value: Any) -> tuple[str, str]:
    """An audit change as (old, new) text; other apps may store a single value."""
    if isinstance(value, list) and len(value) == 2:
        return _show(value[0]), _show(value[1])
    return "", _show(value)


def _change_text(value: Any) -> str:
    old, new = _old_new(value)
    return f"{old} → {new}" if old else new


def audit_url_for(program: Program) -> str:
    url = reverse("admin:programs_auditentry_changelist")
    return f"{url}?{urlencode({'program__id__exact': program.pk})}"


def changes_summary(changes: dict[str, Any], limit: int = 4) -> str:
    """'field: old → new' for the first few fields of an audit row, as plain text."""

    parts = [f"{name}: {_change_text(value)}" for name, value in list(changes.items())[:limit]]
    if len(changes) > limit:
        parts.append("…")
    return "; ".join(parts)


class TierAdminForm(forms.ModelForm):
    class Meta:
        model = Tier
        fields = ("program", "code", "name", "threshold", "accrual_percent")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        program, threshold = cleaned.get("program"), cleaned.get("threshold")
        if program is not None and threshold is not None:
            others = program.tiers.exclude(pk=self.instance.pk).values_list("threshold", flat=True)
            rows = [(t, None) for t in others] + [(threshold, self)]
            # Only the "lowest at 0" rule here: a threshold another tier already has is
            # refused by the unique constraint's own message.
            if any(message == LOWEST_TIER_MESSAGE for _key, message in _ladder_problems(rows)):
                self.add_error("threshold", LOWEST_TIER_MESSAGE)
        return cleaned


@admin.register(Tier)
class TierAdmin(AuditedAdmin):
    save_service = staticmethod(services.tier_save)
    delete_service = staticmethod(services.tier_delete)
    object_keyword = "tier"

    form = TierAdminForm
    list_display = ("name", "code", "program", "threshold", "accrual_percent")
    list_filter = ("program",)
    list_select_related = ("program",)
    search_fields = ("code", "name", "program__code", "program__name")
    ordering = ("program__code", "threshold")


@admin.register(Store)
class StoreAdmin(AuditedAdmin):
    save_service = staticmethod(services.store_save)
    delete_service = staticmethod(services.store_delete)
    object_keyword = "store"

    list_display = ("code", "name", "program")
    list_filter = ("program",)
    list_select_related = ("program",)
    search_fields = ("code", "name")
    ordering = ("program__code", "code")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit trail, read-only: rows are written by `programs.audit.audit_record`."""

    list_display = (
        "created_at",
        "user_repr",
        "action",
        "content_type",
        "object_repr",
        "program",
        "source",
        "changes_short",
    )
    list_filter = (
        "content_type",
        ("user", admin.RelatedOnlyFieldListFilter),
        "created_at",
        "action",
        "program",
        "source",
    )
    list_select_related = ("content_type", "program")
    search_fields = ("object_repr", "object_id", "user_repr")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "user_repr",
        "action",
        "content_type",
        "object_id",
        "object_repr",
        "program",
        "source",
        "changes_table",
    )
    readonly_fields = fields

    @admin.display(description=_("changes"))
    def changes_short(self, obj: AuditEntry) -> str:
        return changes_summary(obj.changes)

    @admin.display(description=_("changes"))
    def changes_table(self, obj: AuditEntry) -> str:
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>→</td><td>{}</td></tr>",
            ((name, *_old_new(value)) for name, value in obj.changes.items()),
        )
        return format_html("<table><tbody>{}</tbody></table>", rows)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
