from __future__ import annotations

from django.contrib import admin
from django.urls import path

from analytics import views

app_name = "analytics"

urlpatterns = [
    path("dashboard/", admin.site.admin_view(views.dashboard_view), name="dashboard"),
    path(
        "campaign-report/",
        admin.site.admin_view(views.campaign_report_view),
        name="campaign_report",
    ),
    path("liability/", admin.site.admin_view(views.liability_view), name="liability"),
]
