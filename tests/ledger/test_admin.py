"""The points book in the admin: what support and finance see and can do."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from ledger.models import Account, AdjustmentRequest
from ledger.services import adjustment_request, points_debit
from tests.ledger.factories import UserFactory, member_with_points, ref

pytestmark = pytest.mark.django_db


def _staff(*codenames: str):
    user = UserFactory()
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_the_member_page_shows_balances_open_lots_and_history(admin_client):
    member = member_with_points(120)
    points_debit(account_or_member=member, amount=20, reference=ref(), purchase_ref="R-77")
    page = admin_client.get(reverse("admin:accounts_member_change", args=[member.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Available:</strong> 100" in text
    assert "Open lots" in text and "R-77" in text and "-20" in text


def test_transfer_and_lot_lists_are_read_only_and_filter_by_member(admin_client):
    member = member_with_points(50)
    other = member_with_points(70)
    account = Account.objects.get(member=member)
    url = reverse("admin:ledger_transfer_changelist") + f"?account__id__exact={account.pk}"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert str(member) in page.content.decode()
    assert Account.objects.get(member=other).pk != account.pk
    assert admin_client.get(reverse("admin:ledger_lot_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:ledger_transfer_add")).status_code == 403


def test_the_liability_page_values_outstanding_points(admin_client):
    member_with_points(300)
    page = admin_client.get(reverse("admin:ledger_programliability_changelist"))
    assert page.status_code == 200
    assert "300" in page.content.decode()


def test_support_requests_an_adjustment_and_finance_approves_it_in_the_admin(client):
    member = member_with_points(0)
    support = _staff("add_adjustmentrequest", "view_adjustmentrequest", "view_member")
    client.force_login(support)
    response = client.post(
        reverse("admin:ledger_adjustmentrequest_add"),
        {"member": member.pk, "points": 75, "reason": "goodwill", "comment": "sorry"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    request = AdjustmentRequest.objects.get()
    assert request.requested_by == support

    changelist = reverse("admin:ledger_adjustmentrequest_changelist")
    action = {"action": "approve_selected", "_selected_action": [request.pk]}
    client.post(changelist, action)  # support may not approve: the action is not offered
    request.refresh_from_db()
    assert request.status == AdjustmentRequest.Status.REQUESTED

    finance = _staff("view_adjustmentrequest", "approve_adjustmentrequest")
    client.force_login(finance)
    client.post(changelist, action)
    request.refresh_from_db()
    assert request.status == AdjustmentRequest.Status.APPROVED
    assert Account.objects.get(member=member).available == 75


def test_a_finance_user_cannot_approve_their_own_request_in_the_admin(client):
    member = member_with_points(0)
    finance = _staff("view_adjustmentrequest", "approve_adjustmentrequest")
    request = adjustment_request(member=member, points=5, reason="other", by=finance)
    client.force_login(finance)
    client.post(
        reverse("admin:ledger_adjustmentrequest_changelist"),
        {"action": "approve_selected", "_selected_action": [request.pk]},
    )
    request.refresh_from_db()
    assert request.status == AdjustmentRequest.Status.REQUESTED
