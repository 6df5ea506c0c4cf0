"""/api/v1/me/ routes: the member's own data for apps."""

from __future__ import annotations

from django.urls import path

from portal.api import views

app_name = "portal_api"

urlpatterns = [
    path("", views.MeView.as_view(), name="me"),
    path("sign-in/code", views.CodeRequestView.as_view(), name="sign-in-code"),
    path("sign-in/token", views.TokenView.as_view(), name="sign-in-token"),
    path("token/refresh", views.RefreshView.as_view(), name="token-refresh"),
    path("sign-out", views.SignOutView.as_view(), name="sign-out"),
    path("points", views.PointsView.as_view(), name="points"),
    path("tier", views.TierView.as_view(), name="tier"),
    path("transactions", views.TransactionsView.as_view(), name="transactions"),
    path("purchases", views.PurchasesView.as_view(), name="purchases"),
    path("purchases/<str:purchase_id>", views.PurchaseView.as_view(), name="purchase"),
    path("offers", views.OffersView.as_view(), name="offers"),
    path("card", views.CardView.as_view(), name="card"),
    path("consents", views.ConsentsView.as_view(), name="consents"),
    path("deletion-request", views.DeletionRequestView.as_view(), name="deletion-request"),
]
