"""Campaigns, promo codes and segments in the admin, for marketers.

Every change goes through campaigns.services; this module turns forms and
buttons into service calls and messages.
"""

from __future__ import annotations

import csv
import re
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from campaigns import backtest as backtests
from campaigns import messaging, services
from campaigns import segments as segment_jobs
from campaigns.models import (
    Backtest,
    Campaign,
    CampaignVersion,
    Channel,
    MessageTemplate,
    OutboxMessage,
    PromoCode,
    PromoCodeBatch,
    Referral,
    Segment,
    SegmentSize,
    Status,
    StatusChange,
    Trigger,
)
from campaigns.validation import campaign_errors


class CampaignForm(forms.ModelForm):
    # The admin builds the fields from CampaignAdmin.fieldsets (modelform_factory).

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        # The model's clean() has checked the fields; the audience lists are only
        # known here, before they are saved.
        self.instance.audience = data.get("audience", self.instance.audience)
        errors = campaign_errors(
            self.instance,
            tier_ids=[t.pk for t in data.get("tiers") or []],
            segment_ids=[s.pk for s in data.get("segments") or []],
        )
        for field in ("tiers", "segments"):
            for message in errors.get(field, []):
                self.add_error(field, message)
        return data


class StatusChangeInline(admin.TabularInline):
    model = StatusChange
    extra = 0
    fields = ("changed_at", "old_status", "new_status", "changed_by")
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = gettext_lazy("status history")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class VersionInline(admin.TabularInline):
    model = CampaignVersion
    extra = 0
    fields = ("number", "created_at", "created_by")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PromoCodeInline(admin.TabularInline):
    model = PromoCode
    extra = 0
    fields = ("code", "max_uses", "uses", "per_member_limit", "valid_from", "valid_until")
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = gettext_lazy("shared promo codes")
    max_num = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromoCode]:
        return super().get_queryset(request).filter(batch__isnull=True)


class BacktestStartForm(forms.Form):
    days = forms.IntegerField(
        label=gettext_lazy("Backtest over the last"),
        min_value=1,
        max_value=backtests.DAYS_MAX,
        initial=backtests.DAYS_DEFAULT,
        help_text=gettext_lazy("days of recorded purchases"),
        widget=forms.NumberInput(attrs={"style": "width: 5em"}),
    )


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    change_form_template = "campaigns/admin/campaign_change_form.html"
    list_display = (
        "name",
        "program",
        "status",
        "starts_at",
        "ends_at",
        "priority",
        "exclusive",
        "budget_points",
    )
    list_filter = ("status", "program", "exclusive", "audience")
    list_select_related = ("program",)
    search_fields = ("name",)
    date_hierarchy = "starts_at"
    readonly_fields = (
        "status",
        "current_version",
        "status_changed_at",
        "status_changed_by",
        "spent",
    )
    filter_horizontal = ("stores", "tiers", "segments")
    inlines = (PromoCodeInline, StatusChangeInline, VersionInline)
    actions = ("launch", "pause", "resume", "finish", "back_to_draft", "backtest")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "program",
                    "name",
                    "description",
                    ("starts_at", "ends_at"),
                    ("status", "status_changed_at", "status_changed_by"),
                    "current_version",
                    ("priority", "exclusive"),
                    "stores",
                )
            },
        ),
        (
            gettext_lazy("Who"),
            {"fields": ("audience", "tiers", "segments", "new_member_days", "holdout_percent")},
        ),
        (
            gettext_lazy("When it applies (every condition filled in must hold)"),
            {
                "fields": (
                    "min_total",
                    ("line_categories", "line_skus"),
                    ("line_min_quantity", "line_min_amount"),
                    "weekdays",
                    ("hour_from", "hour_to"),
                    ("first_purchase", "every_nth"),
                    "birthday_days",
                    "requires_code",
                )
            },
        ),
        (
            gettext_lazy("What it gives (everything filled in adds up)"),
            {
                "fields": (
                    "extra_percent",
                    "multiplier",
                    "fixed_points",
                    ("unit_points", "unit_skus"),
                    "expire_days",
                    "receipt_message",
                )
            },
        ),
        (
            gettext_lazy("Budget and limits"),
            {"fields": ("budget_points", "spent", ("limit_times", "limit_points", "limit_period"))},
        ),
    )

    @admin.display(description=gettext_lazy("points given"))
    def spent(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "—"
        from campaigns.selectors import campaign_cost

        cost = campaign_cost(obj)
        return _("%(points)d points on %(purchases)d purchases") % cost

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        try:
            services.campaign_save(
                campaign=obj,
                by=request.user,
                stores=form.cleaned_data.get("stores"),
                tiers=form.cleaned_data.get("tiers"),
                segments=form.cleaned_data.get("segments"),
            )
        except services.CampaignRefused as exc:  # checked by the form already; belt and braces
            raise forms.ValidationError(str(exc)) from exc

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The campaign's own lists were saved by campaign_save (audited, versioned).
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def has_delete_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        # A campaign that ever ran is part of the books: finish it instead.
        if obj is not None and obj.status != Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def _move(self, request: HttpRequest, queryset: QuerySet[Campaign], to: str) -> None:
        for campaign in queryset:
            try:
                services.campaign_status_change(campaign=campaign, to=to, by=request.user)
            except services.CampaignRefused as exc:
                self.message_user(request, f"{campaign}: {exc}", messages.ERROR)
            else:
                campaign.refresh_from_db()
                self.message_user(
                    request,
                    _("%(name)s is now %(status)s.")
                    % {"name": campaign, "status": campaign.get_status_display()},
                )

    @admin.action(
        description=gettext_lazy("Launch (active, or scheduled until it starts)"),
        permissions=["change_status"],
    )
    def launch(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> TemplateResponse | None:
        confirmed = request.POST.get("confirm_overlap") == "yes"
        overlapping: list[tuple[Campaign, list[Campaign]]] = []
        for campaign in queryset:
            try:
                services.campaign_status_change(
                    campaign=campaign, to=Status.ACTIVE, by=request.user, allow_overlap=confirmed
                )
            except services.CampaignOverlap as exc:
                overlapping.append((campaign, exc.overlaps))
            except services.CampaignRefused as exc:
                self.message_user(request, f"{campaign}: {exc}", messages.ERROR)
            else:
                campaign.refresh_from_db()
                self.message_user(
                    request,
                    _("%(name)s is now %(status)s.")
                    % {"name": campaign, "status": campaign.get_status_display()},
                )
        if overlapping:
            # Show the overlap first; the marketer launches anyway or goes back.
            return TemplateResponse(
                request,
                "campaigns/admin/confirm_overlap.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _("These campaigns overlap exclusive ones"),
                    "overlapping": overlapping,
                    "ids": [c.pk for c, _o in overlapping],
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                    "opts": self.model._meta,
                },
            )
        return None

    @admin.action(description=gettext_lazy("Pause"), permissions=["change_status"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._move(request, queryset, Status.PAUSED)

    @admin.action(description=gettext_lazy("Resume"), permissions=["change_status"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._move(request, queryset, Status.ACTIVE)

    @admin.action(description=gettext_lazy("Finish"), permissions=["change_status"])
    def finish(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._move(request, queryset, Status.FINISHED)

    @admin.action(
        description=gettext_lazy("Back to draft (scheduled only)"), permissions=["change_status"]
    )
    def back_to_draft(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._move(request, queryset, Status.DRAFT)

    def has_change_status_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.change_campaign_status")

    @admin.action(
        description=gettext_lazy("Backtest over the last 30 days of purchases"),
        permissions=["backtest"],
    )
    def backtest(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            backtests.backtest_start(campaign=campaign, days=30, by=request.user)
        self.message_user(
            request,
            _("The backtest is running; its progress and result are under Backtests."),
        )

    def has_backtest_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.backtest_campaign")

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/backtest/",
                self.admin_site.admin_view(self.backtest_start_view),
                name="campaigns_campaign_backtest",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        if self.has_backtest_permission(request) and str(object_id).isdigit():
            extra["backtest_form"] = BacktestStartForm(prefix="backtest")
            extra["backtests"] = Backtest.objects.filter(campaign_id=int(object_id))[:5]
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def backtest_start_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The Backtest button of the campaign's page: start the job, show its page."""
        if not self.has_backtest_permission(request):
            raise PermissionDenied  # a 403, not a redirect: the user is signed in
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        campaign = get_object_or_404(Campaign, pk=pk)
        form = BacktestStartForm(request.POST, prefix="backtest")
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    self.message_user(request, error, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        run = backtests.backtest_start(
            campaign=campaign, days=form.cleaned_data["days"], by=request.user
        )
        return HttpResponseRedirect(reverse("admin:campaigns_backtest_change", args=[run.pk]))


@admin.register(Backtest)
class BacktestAdmin(admin.ModelAdmin):
    list_display = ("campaign", "days", "state", "progress", "summary", "created_at")
    list_select_related = ("campaign",)
    list_filter = ("state",)
    readonly_fields = (
        "campaign",
        "days",
        "state",
        "progress",
        "summary",
        "result",
        "error",
        "created_at",
    )

    @admin.display(description=gettext_lazy("result"))
    def summary(self, obj: Backtest) -> str:
        r = obj.result or {}
        if obj.state != Backtest.State.DONE:
            return "—"
        return _(
            "%(receipts)s of %(all)s receipts, %(members)s members, %(points)s points "
            "(%(money)s); budget runs out: %(day)s"
        ) % {
            "receipts": r.get("receipts_matched"),
            "all": r.get("receipts"),
            "members": r.get("members_matched"),
            "points": r.get("points"),
            "money": r.get("money"),
            "day": r.get("budget_runs_out_on") or pgettext("a budget runs out", "never"),
        }

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever may start a backtest may read its result.
        return super().has_view_permission(request, obj) or request.user.has_perm(
            "campaigns.backtest_campaign"
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The backtest's page: its progress while it runs, its result when done."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            backtest = (
                Backtest.objects.select_related("campaign__program")
                .filter(pk=int(unquote(object_id)))
                .first()
            )
        except ValueError:
            backtest = None
        if backtest is None:
            raise Http404
        campaign = backtest.campaign
        context = {
            **self.admin_site.each_context(request),
            **backtests.backtest_report(backtest),
            "title": _("Backtest of %(name)s over the last %(days)d days")
            % {"name": campaign.name, "days": backtest.days},
            "opts": self.model._meta,
            "campaign_opts": Campaign._meta,
            "backtest": backtest,
            "campaign": campaign,
            "currency": campaign.program.currency,
            "backtest_form": (
                BacktestStartForm(prefix="backtest", initial={"days": backtest.days})
                if request.user.has_perm("campaigns.backtest_campaign")
                else None
            ),
        }
        return TemplateResponse(request, "campaigns/admin/backtest_result.html", context)


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin):
    list_display = ("kind", "program", "is_active", "points", "days", "expire_days")
    list_filter = ("program", "kind", "is_active")
    list_select_related = ("program",)


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ("program", "kind", "channel", "language", "subject", "body")
        help_texts = {
            "body": gettext_lazy(
                "Filled in: {name}, {balance}, {points}, {expiring_points}, {expiring_date}, "
                "{tier}, {code}, {optout_url}. {balance_text}, {points_text} and "
                "{expiring_points_text} give the number with its word, in the form the number "
                "needs (1 бонус, 3 бонуса, 5 бонусов)."
            )
        }


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm
    list_display = ("kind", "channel", "language", "program", "subject")
    list_filter = ("program", "channel", "language", "kind")
    list_select_related = ("program",)
    search_fields = ("kind", "subject", "body")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "channel", "to", "state_shown", "attempts", "sent_at")
    list_filter = ("state", "channel", "kind")
    search_fields = ("to", "reference")
    date_hierarchy = "created_at"
    readonly_fields = (
        "program",
        "member",
        "channel",
        "kind",
        "reference",
        "to",
        "subject",
        "body",
        "state",
        "attempts",
        "next_attempt_at",
        "provider_answer",
        "created_at",
        "sent_at",
    )
    raw_id_fields = ("member",)

    @admin.display(description=gettext_lazy("state"), ordering="state")
    def state_shown(self, obj: OutboxMessage) -> str:
        # Handed to the provider, answer not stored yet (see messaging.is_sending).
        return _("sending") if messaging.is_sending(obj) else obj.get_state_display()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Referral)
class ReferralAdmin(admin.ModelAdmin):
    list_display = ("referrer", "referred", "created_at", "rewarded_at")
    list_select_related = ("referrer", "referred")
    readonly_fields = ("referrer", "referred", "created_at", "rewarded_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(CampaignVersion)
class CampaignVersionAdmin(admin.ModelAdmin):
    list_display = ("campaign", "number", "created_at", "created_by")
    list_select_related = ("campaign", "created_by")
    readonly_fields = ("campaign", "number", "rules", "created_at", "created_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _csv_response(rows: list[list[str]], filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.write("\ufeff")  # so that Excel reads UTF-8
    csv.writer(response).writerows(rows)
    return response


def _may_export_members(request: HttpRequest) -> bool:
    """Personal codes' phones and cards are member data: marketers export codes without
    them; whoever may export the member list gets them (to send the codes out)."""
    return request.user.has_perm("accounts.export_members")


class PromoCodeBatchForm(forms.ModelForm):
    max_uses = forms.IntegerField(
        label=gettext_lazy("uses of each code"), initial=1, min_value=1, required=False
    )
    per_member_limit = forms.IntegerField(
        label=gettext_lazy("uses per member"), initial=1, min_value=1, required=False
    )
    valid_from = forms.DateTimeField(label=gettext_lazy("valid from"), required=False)
    valid_until = forms.DateTimeField(label=gettext_lazy("valid until"), required=False)

    class Meta:
        model = PromoCodeBatch
        fields = ("campaign", "prefix", "count")


class PersonalCodesForm(forms.Form):
    """Issue personal codes: one for each member of a campaign's audience."""

    campaign = forms.ModelChoiceField(
        label=gettext_lazy("campaign"),
        queryset=Campaign.objects.exclude(status=Status.FINISHED).select_related("program"),
    )
    segment = forms.ModelChoiceField(
        label=gettext_lazy("segment"),
        queryset=Segment.objects.select_related("program"),
        required=False,
        help_text=gettext_lazy("Only the members of this segment. Empty: the whole audience."),
    )
    prefix = forms.CharField(label=gettext_lazy("prefix"), max_length=20, required=False)
    max_uses = forms.IntegerField(
        label=gettext_lazy("uses of each code"), initial=1, min_value=1, required=False
    )
    valid_from = forms.DateTimeField(label=gettext_lazy("valid from"), required=False)
    valid_until = forms.DateTimeField(label=gettext_lazy("valid until"), required=False)
    message_kind = forms.CharField(
        label=gettext_lazy("send with the message template"),
        max_length=20,
        required=False,
        help_text=gettext_lazy(
            "A message template kind; {code} in it becomes the member's code. Empty: no message."
        ),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        campaign, segment = data.get("campaign"), data.get("segment")
        if campaign and segment and segment.program_id != campaign.program_id:
            self.add_error("segment", _("The segment is of another program."))
        kind = data.get("message_kind")
        if campaign and kind:
            templates = MessageTemplate.objects.filter(program_id=campaign.program_id, kind=kind)
            if not templates.exists():
                self.add_error("message_kind", _("There is no message template of this kind."))
        return data


@admin.register(PromoCodeBatch)
class PromoCodeBatchAdmin(admin.ModelAdmin):
    form = PromoCodeBatchForm
    change_list_template = "campaigns/admin/promocodebatch_change_list.html"
    list_display = (
        "__str__",
        "campaign",
        "count",
        "personal",
        "segment",
        "created_at",
        "created_by",
        "export_link",
    )
    list_filter = ("personal",)
    list_select_related = ("campaign", "segment", "created_by")
    actions = ("export_csv",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("campaign", "prefix", "count", "personal", "segment") if obj else ()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "can_issue_personal": self.has_add_permission(request)}
        return super().changelist_view(request, extra_context=extra)

    def issue_view(self, request: HttpRequest) -> HttpResponse:
        """Issue personal codes: checked like generating a batch (may add batches)."""
        from django.core.exceptions import PermissionDenied

        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PersonalCodesForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                batch = services.promo_codes_issue(
                    campaign=data["campaign"],
                    segment=data.get("segment"),
                    prefix=data.get("prefix") or "",
                    max_uses=data.get("max_uses"),
                    valid_from=data.get("valid_from"),
                    valid_until=data.get("valid_until"),
                    by=request.user,
                )
            except services.CampaignRefused as exc:
                for field, errors in exc.errors.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                self.message_user(
                    request,
                    _("%(count)d personal codes issued for %(campaign)s.")
                    % {"count": batch.count, "campaign": batch.campaign},
                )
                kind = data.get("message_kind")
                if kind:
                    from django.db import transaction

                    from campaigns.tasks import promo_codes_notify_task

                    transaction.on_commit(lambda: promo_codes_notify_task.delay(batch.pk, kind))
                    self.message_user(request, _("Each member's message is being queued."))
                return HttpResponseRedirect(reverse("admin:campaigns_promocodebatch_changelist"))
        return TemplateResponse(
            request,
            "campaigns/admin/personal_codes_issue.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Issue personal codes"),
                "form": form,
                "opts": self.model._meta,
            },
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(
        self, request: HttpRequest, obj: PromoCodeBatch, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        batch = services.code_batch_generate(
            campaign=data["campaign"],
            count=data["count"],
            prefix=data.get("prefix") or "",
            max_uses=data.get("max_uses"),
            per_member_limit=data.get("per_member_limit"),
            valid_from=data.get("valid_from"),
            valid_until=data.get("valid_until"),
            by=request.user,
        )
        obj.pk = batch.pk
        obj.created_at = batch.created_at

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/export/",
                self.admin_site.admin_view(self.export_view),
                name="campaigns_promocodebatch_export",
            ),
            path(
                "issue/",
                self.admin_site.admin_view(self.issue_view),
                name="campaigns_promocodebatch_issue",
            ),
            *super().get_urls(),
        ]

    @admin.display(description=gettext_lazy("codes"))
    def export_link(self, obj: PromoCodeBatch) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:campaigns_promocodebatch_export", args=[obj.pk]),
            _("Download CSV"),
        )

    def export_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("campaigns.export_promocodebatch"):
            raise PermissionDenied  # signed in but not allowed: 403, not a redirect
        batch = get_object_or_404(PromoCodeBatch, pk=pk)
        rows = services.codes_csv_rows(
            PromoCode.objects.filter(batch=batch), with_members=_may_export_members(request)
        )
        return _csv_response(rows, f"codes-{batch.pk}.csv")

    @admin.action(description=gettext_lazy("Export codes as CSV"), permissions=["export"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[PromoCodeBatch]) -> HttpResponse:
        rows = services.codes_csv_rows(
            PromoCode.objects.filter(batch__in=queryset), with_members=_may_export_members(request)
        )
        return _csv_response(rows, "codes.csv")

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.export_promocodebatch")


class PromoCodeForm(forms.ModelForm):
    class Meta:
        model = PromoCode
        fields = (
            "campaign",
            "code",
            "member",
            "max_uses",
            "per_member_limit",
            "valid_from",
            "valid_until",
            "is_active",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        campaign, member = data.get("campaign"), data.get("member")
        if campaign and member and member.program_id != campaign.program_id:
            self.add_error("member", _("The member is not in the campaign's program."))
        return data


@admin.register(PromoCode)
class PromoCodeAdmin(admin.ModelAdmin):
    form = PromoCodeForm
    list_display = (
        "code",
        "campaign",
        "batch",
        "member",
        "max_uses",
        "uses",
        "valid_until",
        "is_active",
    )
    list_filter = ("is_active", "campaign")
    list_select_related = ("campaign", "batch", "member")
    search_fields = ("code", "member__phone")
    raw_id_fields = ("member",)
    actions = ("export_csv",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("campaign", "code", "member", "uses", "batch") if obj else ()

    def save_model(self, request: HttpRequest, obj: PromoCode, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)  # validity and limits only
            return
        data = form.cleaned_data
        created = services.code_create(
            campaign=data["campaign"],
            code=data["code"],
            max_uses=data.get("max_uses"),
            per_member_limit=data.get("per_member_limit"),
            valid_from=data.get("valid_from"),
            valid_until=data.get("valid_until"),
            member=data.get("member"),
            by=request.user,
        )
        obj.pk = created.pk

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        # Who holds a personal code is member data: shown to those who may see members.
        shown = tuple(self.list_display)
        if request.user.has_perm("accounts.view_member"):
            return shown
        return tuple("is_personal" if f == "member" else f for f in shown)

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        if request.user.has_perm("accounts.view_member"):
            return tuple(self.search_fields)
        return ("code",)

    @admin.display(description=gettext_lazy("personal"), boolean=True)
    def is_personal(self, obj: PromoCode) -> bool:
        return obj.member_id is not None

    @admin.action(description=gettext_lazy("Export codes as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[PromoCode]) -> HttpResponse:
        rows = services.codes_csv_rows(queryset, with_members=_may_export_members(request))
        return _csv_response(rows, "codes.csv")


class SegmentSizeInline(admin.TabularInline):
    model = SegmentSize
    extra = 0
    fields = ("computed_at", "size")
    readonly_fields = fields
    can_delete = False
    max_num = 0
    verbose_name_plural = gettext_lazy("size history")

    def get_queryset(self, request: HttpRequest) -> QuerySet[SegmentSize]:
        return super().get_queryset(request).order_by("-computed_at")


class SegmentUploadForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("CSV file"),
        help_text=gettext_lazy(
            "One member per row, in a column named phone, card_number or member_id "
            "(телефон, номер карты)."
        ),
    )


class SegmentSendForm(forms.Form):
    message = forms.ChoiceField(label=gettext_lazy("Message"))

    def __init__(
        self, *args: Any, templates: dict[tuple[str, str], list[MessageTemplate]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["message"].choices = [
            (
                f"{kind}|{channel}",
                f"{kind} — {Channel(channel).label} ({', '.join(t.language for t in found)})",
            )
            for (kind, channel), found in templates.items()
        ]


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ("name", "program", "kind", "size", "computed_at")
    list_filter = ("program", "kind")
    list_select_related = ("program",)
    search_fields = ("name",)
    readonly_fields = ("size", "computed_at", "upload_link")
    inlines = (SegmentSizeInline,)
    actions = ("recalculate",)

    @admin.display(description=gettext_lazy("static list"))
    def upload_link(self, obj: Segment) -> str:
        if obj.pk is None or obj.kind != Segment.Kind.STATIC:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:campaigns_segment_upload", args=[obj.pk]),
            _("Upload members from CSV"),
        )

    @admin.action(description=gettext_lazy("Recalculate now"), permissions=["recalculate"])
    def recalculate(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        for segment in queryset:
            size = segment_jobs.segment_recalculate(segment=segment)
            self.message_user(
                request, _("%(name)s: %(size)d members.") % {"name": segment, "size": size}
            )

    def has_recalculate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.recalculate_segment")

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/upload/",
                self.admin_site.admin_view(self.upload_view),
                name="campaigns_segment_upload",
            ),
            path(
                "<int:pk>/send/",
                self.admin_site.admin_view(self.send_view),
                name="campaigns_segment_send",
            ),
            *super().get_urls(),
        ]

    def may_send(self, request: HttpRequest) -> bool:
        # Queuing messages is adding to the outbox: that permission, no new one.
        return self.has_view_permission(request) and request.user.has_perm(
            "campaigns.add_outboxmessage"
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        return (*fields, "send_link") if obj is not None and self.may_send(request) else fields

    @admin.display(description=gettext_lazy("messages"))
    def send_link(self, obj: Segment) -> str:
        return format_html(
            '<a href="{}" id="segment-send">{}</a>',
            reverse("admin:campaigns_segment_send", args=[obj.pk]),
            _("Send a message to this segment"),
        )

    def send_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Pick a template, see who would get it, confirm: the job queues it per member."""
        if not self.may_send(request):
            raise PermissionDenied
        segment = get_object_or_404(Segment.objects.select_related("program"), pk=pk)
        templates = messaging.segment_templates(segment)
        form = SegmentSendForm(request.POST or None, templates=templates)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": _("Send a message to %(name)s") % {"name": segment},
            "form": form,
            "segment": segment,
            "has_templates": bool(templates),
            "opts": self.model._meta,
        }
        if request.method == "POST" and form.is_valid():
            choice = form.cleaned_data["message"]
            kind, channel = choice.split("|", 1)
            token = request.POST.get("token", "")
            if request.POST.get("confirm") == "yes" and re.fullmatch(r"[0-9a-f]{32}", token):
                messaging.segment_send_start(
                    segment=segment, kind=kind, channel=channel, token=token, by=request.user
                )
                self.message_user(
                    request,
                    _(
                        "The message to %(name)s is being queued member by member; "
                        "follow it in the Outbox."
                    )
                    % {"name": segment},
                )
                return HttpResponseRedirect(reverse("admin:campaigns_segment_change", args=[pk]))
            context.update(
                preview=messaging.segment_send_preview(segment=segment, channel=channel),
                chosen=templates[(kind, channel)],
                choice=choice,
                token=uuid.uuid4().hex,
            )
        return TemplateResponse(request, "campaigns/admin/segment_send.html", context)

    def upload_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied  # signed in but not allowed: 403, not a redirect
        segment = get_object_or_404(Segment, pk=pk, kind=Segment.Kind.STATIC)
        if not self.has_change_permission(request, segment):
            raise PermissionDenied
        form = SegmentUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            raw = form.cleaned_data["file"].read().decode("utf-8-sig", errors="replace")
            result = segment_jobs.segment_upload(segment=segment, text=raw, by=request.user)
            self.message_user(
                request,
                _("%(found)d members in the segment; %(missing)d rows found nobody.")
                % {"found": result.found, "missing": result.missing},
            )
            return HttpResponseRedirect(reverse("admin:campaigns_segment_change", args=[pk]))
        return TemplateResponse(
            request,
            "campaigns/admin/segment_upload.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Upload members to %(name)s") % {"name": segment},
                "form": form,
                "segment": segment,
                "opts": self.model._meta,
            },
        )
