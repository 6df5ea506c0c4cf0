"""/api/v1/ routes of the cashier API (API.md)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from pos.api import views

app_name = "pos_api"

urlpatterns = [
    path("members/lookup", views.MemberLookupView.as_view(), name="member-lookup"),
    path("members", views.MemberCreateView.as_view(), name="member-create"),
    path("members/<str:member_id>", views.MemberDetailView.as_view(), name="member-detail"),
    path(
        "members/<str:member_id>/transactions",
        views.MemberTransactionsView.as_view(),
        name="member-transactions",
    ),
    path("purchases/quote", views.QuoteView.as_view(), name="purchase-quote"),
    path("purchases", views.PurchaseCreateView.as_view(), name="purchase-create"),
    path("purchases/<str:purchase_id>", views.PurchaseDetailView.as_view(), name="purchase-detail"),
    path(
        "purchases/<str:purchase_id>/confirm",
        views.PurchaseConfirmView.as_view(),
        name="purchase-confirm",
    ),
    path(
        "purchases/<str:purchase_id>/cancel",
        views.PurchaseCancelView.as_view(),
        name="purchase-cancel",
    ),
    path(
        "purchases/<str:purchase_id>/refunds",
        views.RefundCreateView.as_view(),
        name="refund-create",
    ),
    path("schema/", SpectacularAPIView.as_view(api_version="v1"), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="pos_api:schema"), name="docs"),
]
