"""Manual adjustments (maker–checker) and opening balances, and that expiry sees their lots."""

from __future__ import annotations

import datetime

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import Card
from ledger.models import AdjustmentRequest, Lot, Transfer
from ledger.services import (
    AdjustmentNotAllowed,
    InsufficientPoints,
    adjustment_approve,
    adjustment_reject,
    adjustment_request,
    hold_post,
    ledger_reconcile,
    lots_expire,
    points_hold,
    transfer_reverse,
)
from programs.models import AuditEntry
from tests.ledger.factories import (
    ProgramFactory,
    UserFactory,
    balances,
    credit,
    member_create,
    member_with_points,
    ref,
)

pytestmark = pytest.mark.django_db
DAY = datetime.timedelta(days=1)


def test_an_approved_adjustment_credits_the_member_from_the_adjustments_account():
    support, finance = UserFactory(), UserFactory()
    member = member_create(ProgramFactory())
    request = adjustment_request(
        member=member, points=250, reason="goodwill", comment="late delivery", by=support
    )
    assert balances(member) == (0, 0, 0)  # nothing moves before the decision
    approved = adjustment_approve(request=request, by=finance)
    assert approved.status == AdjustmentRequest.Status.APPROVED
    assert approved.transfer.debit_account.source == "adjustments"
    assert balances(member) == (250, 0, 0)
    assert AuditEntry.objects.filter(object_id=str(request.pk)).count() == 2


def test_nobody_approves_their_own_adjustment_request():
    user = UserFactory()
    member = member_create(ProgramFactory())
    request = adjustment_request(member=member, points=10, reason="other", by=user)
    with pytest.raises(AdjustmentNotAllowed):
        adjustment_approve(request=request, by=user)
    request.refresh_from_db()
    assert request.status == AdjustmentRequest.Status.REQUESTED
    assert not Transfer.objects.filter(kind="adjustment").exists()


def test_a_decided_adjustment_cannot_be_decided_again():
    support, finance = UserFactory(), UserFactory()
    member = member_create(ProgramFactory())
    request = adjustment_request(member=member, points=10, reason="other", by=support)
    adjustment_reject(request=request, by=finance, comment="no receipt")
    with pytest.raises(AdjustmentNotAllowed):
        adjustment_approve(request=request, by=finance)
    assert balances(member) == (0, 0, 0)


def test_a_negative_adjustment_takes_points_and_cannot_take_more_than_there_are():
    support, finance = UserFactory(), UserFactory()
    member = member_with_points(40)
    too_much = adjustment_request(member=member, points=-50, reason="fraud", by=support)
    with pytest.raises(InsufficientPoints):
        adjustment_approve(request=too_much, by=finance)
    fine = adjustment_request(member=member, points=-30, reason="correction", by=support)
    adjustment_approve(request=fine, by=finance)
    assert balances(member) == (10, 0, 0)
    assert ledger_reconcile() == []


def test_opening_balances_import_once_per_row_in_cp1251_with_semicolons(tmp_path):
    program = ProgramFactory(code="opening")
    by_phone = member_create(program, phone="+79121112233")
    by_card = member_create(program)
    card = Card.objects.get(member=by_card).number
    path = tmp_path / "balances.csv"
    path.write_bytes(
        (
            "телефон;карта;баллы;срок\n"
            "8 (912) 111-22-33;;150;31.12.2099\n"
            f";{card};70;\n"
            "+79990000000;;10;\n"
        ).encode("cp1251")
    )
    with pytest.raises(CommandError):
        call_command("balances_import", str(path), "--program", "opening")
    assert balances(by_phone) == (150, 0, 0)
    assert balances(by_card) == (70, 0, 0)
    lot = Lot.objects.get(account__member=by_phone)
    assert timezone.localtime(lot.expires_at, datetime.UTC).date() >= datetime.date(2099, 12, 31)
    with pytest.raises(CommandError):  # the unknown phone is still reported
        call_command("balances_import", str(path), "--program", "opening")
    assert balances(by_phone) == (150, 0, 0)
    assert Transfer.objects.filter(kind="opening").count() == 2


def test_every_write_path_leaves_lots_that_expiry_and_reconciliation_see(tmp_path):
    program = ProgramFactory(code="paths", refund_grace_days=5)
    member = member_create(program, phone="+79125550000")
    now = timezone.now()
    support, finance = UserFactory(), UserFactory()
    credit(member, 10, now=now)  # a service credit
    adjustment_approve(
        request=adjustment_request(member=member, points=20, reason="other", by=support),
        by=finance,
        now=now,
    )
    path = tmp_path / "b.csv"
    path.write_text("phone,points\n+79125550000,30\n", encoding="utf-8")
    call_command("balances_import", str(path), "--program", "paths")
    earned = credit(member, 40, kind="accrual", now=now, expires_at=now + DAY)
    hold = points_hold(account_or_member=member, amount=40, reference=ref(), now=now)
    posted = hold_post(hold=hold, reference=ref(), now=now)
    lots_expire(now=now + 2 * DAY)
    transfer_reverse(transfer=posted, amount=40, reference=ref(), now=now + 2 * DAY)  # new lot
    assert Lot.objects.filter(account__member=member).count() == 5
    assert ledger_reconcile() == []
    total = sum(balances(member))
    assert total == 100 - 40 + 40 - 0  # the expired lot was spent before it expired
    result = lots_expire(now=now + 1000 * DAY)
    assert result.points == total
    assert balances(member) == (0, 0, 0)
    assert ledger_reconcile() == []
    assert earned.kind == "accrual"
