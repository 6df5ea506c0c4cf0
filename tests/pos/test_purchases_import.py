"""Purchase history from another system: recorded for tiers and facts, no points moved."""

from __future__ import annotations

import csv
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ledger.models import Transfer
from pos.models import Purchase, PurchaseLine, TierChange
from tests.pos.factories import StoreFactory, card_of, member_create, program_create, tiers_create

pytestmark = pytest.mark.django_db


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def test_receipts_and_their_lines_are_recorded_once_and_move_no_points(tmp_path) -> None:
    program = program_create(tier_window_days=None)
    _base, silver = tiers_create(program)
    store = StoreFactory(program=program, code="S1")
    anna = member_create(program=program, phone="+79123450001")
    boris = member_create(program=program)
    rows = [
        [
            "Phone",
            " card_number ",
            "store",
            "receipt_number",
            "purchased_at",
            "total",
            "sku",
            "category",
            "quantity",
            "price",
            "amount",
        ],
        ["8 912 345-00-01", "", "S1", "H1", "2025-01-10", "", "A", "dairy", "2", "80.00", "160.00"],
        ["8 912 345-00-01", "", "S1", "H1", "2025-01-10", "", "B", "", "0.5", "100.00", ""],
        ["", card_of(boris), "S1", "H2", "11.02.2025 18:30", "9900.00", "", "", "", "", ""],
        ["", card_of(boris), "S1", "H3", "2025-03-01T10:00", "200.00", "", "", "", "", ""],
        ["", "", "S1", "H4", "2025-03-02", "15.00", "", "", "", "", ""],
        ["+79990000000", "", "S1", "H5", "2025-03-02", "15.00", "", "", "", "", ""],
        ["", "", "NOPE", "H6", "2025-03-02", "15.00", "", "", "", "", ""],
        ["", "", "S1", "H7", "yesterday", "15.00", "", "", "", "", ""],
        ["", "", "S1", "H8", "2025-03-02", "1.001", "", "", "", "", ""],
    ]
    path = _write(tmp_path / "history.csv", rows)
    out = StringIO()
    call_command("purchases_import", str(path), "--program", program.code, stdout=out, verbosity=0)
    assert "imported: 4" in out.getvalue() and "refused rows: 4" in out.getvalue()
    h1 = Purchase.objects.get(store=store, receipt_number="H1")
    assert h1.member == anna and h1.total == Decimal("210.00") and h1.source == "import"
    assert list(
        PurchaseLine.objects.filter(purchase=h1)
        .values_list("amount", flat=True)
        .order_by("line_no")
    ) == [
        Decimal("160.00"),
        Decimal("50.00"),
    ]
    assert Purchase.objects.get(receipt_number="H4").member is None
    boris.refresh_from_db()
    assert boris.purchase_count == 2 and boris.qualifying_spend == Decimal("10100.00")
    assert boris.tier == silver
    assert TierChange.objects.get(member=boris).reason == "import"
    assert not Transfer.objects.filter(account__member__in=[anna, boris]).exists()
    report = (tmp_path / "history.csv.refused.csv").read_text()
    assert "+79990000000" in report and "NOPE" in report and "yesterday" in report
    assert report.count("\n") == 5  # header + 4 refused rows

    call_command("purchases_import", str(path), "--program", program.code, stdout=out, verbosity=0)
    assert "imported: 0, already there: 4" in out.getvalue()
    assert Purchase.objects.filter(program=program).count() == 4
    boris.refresh_from_db()
    assert boris.purchase_count == 2


def test_a_file_without_the_needed_columns_is_refused(tmp_path) -> None:
    program = program_create()
    path = _write(tmp_path / "bad.csv", [["phone", "total"], ["1", "2"]])
    with pytest.raises(CommandError, match="Missing columns"):
        call_command("purchases_import", str(path), "--program", program.code, verbosity=0)
