"""The dashboard, the campaign report and the liability report, inside the admin.

Views only read a form and call selectors; exports go through analytics.exports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from analytics import selectors
from analytics.exports import table_response
from programs.models import Program, Store, Tier

# Groups whose work starts from the numbers: /admin/ opens the dashboard for
# them. "Home" in the admin then leads back to the dashboard too, which is what
# they come for; the full list of admin sections stays in the navigation
# sidebar and at /admin/?index=1 (linked from the dashboard).
DASHBOARD_FIRST_GROUPS = ("marketing", "finance")

PERIODS = [(1, _("1 month")), (3, _("3 months")), (6, _("6 months")), (12, _("12 months"))]


class PeriodForm(forms.Form):
    program = forms.ModelChoiceField(Program.objects.all(), label=_("program"))
    month = forms.DateField(
        label=_("period ends with month"),
        input_formats=["%Y-%m"],
        widget=forms.DateInput(format="%Y-%m", attrs={"type": "month"}),
        required=False,
    )
    months = forms.TypedChoiceField(
        label=_("period"), choices=PERIODS, coerce=int, initial=1, required=False
    )
    store = forms.ModelChoiceField(
        Store.objects.all(), label=_("store"), required=False, empty_label=_("all stores")
    )
    tier = forms.ModelChoiceField(
        Tier.objects.all(), label=_("tier"), required=False, empty_label=_("all tiers")
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        program = data.get("program")
        for name in ("store", "tier"):
            value = data.get(name)
            if program and value and value.program_id != program.pk:
                self.add_error(name, _("It belongs to another program."))
        data["month"] = data.get("month") or timezone.localdate().replace(day=1)
        data["months"] = data.get("months") or 1
        return data


def _form(request: HttpRequest) -> PeriodForm:
    params = request.GET.copy()
    if "program" not in params:
        first = Program.objects.order_by("pk").first()
        if first is not None:
            params["program"] = str(first.pk)
    return PeriodForm(params)


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(f"analytics.{permission}"):
        raise PermissionDenied


def _export(request: HttpRequest, table: selectors.Table) -> HttpResponse:
    _require(request, "export_reports")
    fmt = "xlsx" if request.GET.get("format") == "xlsx" else "csv"
    return table_response(table.columns, table.rows, name=table.key, fmt=fmt)


def _summary_table(board: selectors.Dashboard) -> selectors.Table:
    rows = [
        [str(section), str(m.label), m.value, m.previous]
        for section, metrics in board.sections
        for m in metrics
    ]
    columns = [_("section"), _("figure"), _("this period"), _("previous period")]
    return selectors.Table("summary", _("Summary"), columns, rows)


def admin_home(request: HttpRequest) -> HttpResponse:
    """/admin/: the dashboard for marketing and finance, the usual index for everyone else."""
    user = request.user
    if (
        "index" not in request.GET
        and not user.is_superuser
        and user.has_perm("analytics.view_dashboard")
        and user.groups.filter(name__in=DASHBOARD_FIRST_GROUPS).exists()
    ):
        return redirect("analytics:dashboard")
    return admin.site.index(request)


def dashboard_view(request: HttpRequest) -> HttpResponse:
    _require(request, "view_dashboard")
    form = _form(request)
    context: dict[str, Any] = {**admin.site.each_context(request), "form": form}
    context["title"] = _("Analytics dashboard")
    if form.is_valid():
        board = selectors.dashboard(
            program=form.cleaned_data["program"],
            month=form.cleaned_data["month"],
            months=form.cleaned_data["months"],
            store=form.cleaned_data["store"],
            tier=form.cleaned_data["tier"],
        )
        export = request.GET.get("export")
        if export:
            tables = {t.key: t for t in [*board.tables, _summary_table(board)]}
            if export not in tables:
                raise PermissionDenied
            return _export(request, tables[export])
        context["board"] = board
        context["charts"] = {t.key: t.chart for t in board.tables if t.chart}
        query = request.GET.copy()
        query.pop("export", None)
        query.pop("format", None)
        context["query"] = query.urlencode()
        context["can_export"] = request.user.has_perm("analytics.export_reports")
    return render(request, "analytics/dashboard.html", context)


def _report(
    request: HttpRequest, title: Any, table: Callable[[dict[str, Any]], selectors.Table]
) -> HttpResponse:
    """A report page: the form, one table, its CSV/XLSX download."""
    _require(request, "view_dashboard")
    form = _form(request)
    context: dict[str, Any] = {**admin.site.each_context(request), "form": form, "title": title}
    if form.is_valid():
        data = form.cleaned_data
        found = table(data)
        if request.GET.get("export"):
            return _export(request, found)
        context["table"] = found
        context["query"] = f"program={data['program'].pk}&month={data['month']:%Y-%m}"
        context["can_export"] = request.user.has_perm("analytics.export_reports")
    return render(request, "analytics/report.html", context)


def campaign_report_view(request: HttpRequest) -> HttpResponse:
    return _report(
        request,
        _("Campaign report"),
        lambda data: selectors.campaigns_table(program=data["program"]),
    )


def liability_view(request: HttpRequest) -> HttpResponse:
    return _report(
        request,
        _("Points liability report"),
        lambda data: selectors.liability_report(
            program=data["program"], months=12, until=data["month"]
        ),
    )
