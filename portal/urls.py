"""The member pages, mounted at /my/."""

from __future__ import annotations

from django.urls import path

from portal import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("sign-in/", views.sign_in, name="sign_in"),
    path("sign-in/code/", views.sign_in_code, name="sign_in_code"),
    path("sign-out/", views.sign_out, name="sign_out"),
    path("points/", views.points, name="points"),
    path("purchases/", views.purchases, name="purchases"),
    path("purchases/<str:purchase_id>/", views.purchase_detail, name="purchase"),
    path("offers/", views.offers, name="offers"),
    path("card/", views.card, name="card"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/delete/", views.deletion_request, name="deletion"),
]
