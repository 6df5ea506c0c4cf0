from __future__ import annotations

from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("optout/<str:token>/", views.optout, name="optout"),
    path("sms/inbound", views.sms_inbound, name="sms_inbound"),
]
