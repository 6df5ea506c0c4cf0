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


def test_a_windows_1251_file_with_semicolons_is_read_and_its_refusals_written_alike(
    tmp_path,
) -> None:
    """What a 1C or Excel export looks like in Russia: cp1251, `;`, Cyrillic, decimal points."""
    program = program_create(tier_window_days=None)
    StoreFactory(program=program, code="МАГ1")
    anna = member_create(program=program, phone="+79123450002")
    text = (
        "phone;store;receipt_number;purchased_at;sku;category;quantity;price;amount\r\n"
        "8 912 345-00-02;МАГ1;Ч-1;10.01.2025 18:30;Молоко;молочка;2;80.00;160.00\r\n"
        "8 912 345-00-02;МАГ1;Ч-1;10.01.2025 18:30;Хлеб;выпечка;1;45.50;45.50\r\n"
        ";Склад;Ч-2;10.01.2025;Сыр;;1;100.00;100.00\r\n"
        ";МАГ1;Ч-3;11.01.2025;Телевизор;техника;1;;1\xa0234,50\r\n"
    )
    path = tmp_path / "история.csv"
    path.write_bytes(text.encode("cp1251"))
    out = StringIO()
    call_command("purchases_import", str(path), "--program", program.code, stdout=out, verbosity=0)
    assert "imported: 2" in out.getvalue() and "refused rows: 1" in out.getvalue()
    # Excel's Russian numbers: a decimal comma, a non-breaking space between thousands
    assert Purchase.objects.get(program=program, receipt_number="Ч-3").total == Decimal("1234.50")
    receipt = Purchase.objects.get(program=program, receipt_number="Ч-1")
    assert receipt.member == anna and receipt.total == Decimal("205.50")
    assert list(receipt.lines.order_by("line_no").values_list("sku", "category")) == [
        ("Молоко", "молочка"),
        ("Хлеб", "выпечка"),
    ]
    # The refused row comes back in the file's own separator, readable in Excel (UTF-8 with BOM).
    report = (tmp_path / "история.csv.refused.csv").read_bytes()
    assert report.startswith(b"\xef\xbb\xbf")
    lines = report.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("row;phone;store;receipt_number")
    assert ";Склад;Ч-2;" in lines[1]


def test_a_file_that_changes_encoding_midway_is_refused_and_the_mended_file_goes_in(
    tmp_path,
) -> None:
    program = program_create()
    StoreFactory(program=program, code="S1")
    # The first megabyte is UTF-8 (a long note); a line pasted from a Windows-1251 file follows.
    head = "store,receipt_number,purchased_at,total,note\r\n"
    head += "".join(f"S1,H{i},2025-01-10,100.00,{'x' * 110_000}\r\n" for i in range(10))
    tail = "S1,Ч-9,2025-01-10,5.00,\r\n"
    path = tmp_path / "mixed.csv"
    path.write_bytes(head.encode() + tail.encode("cp1251"))
    with pytest.raises(CommandError, match=r"mixes encodings.*run the mended file again"):
        call_command("purchases_import", str(path), "--program", program.code, verbosity=0)

    path.write_bytes((head + tail).encode())
    call_command("purchases_import", str(path), "--program", program.code, verbosity=0)
    numbers = Purchase.objects.filter(program=program).values_list("receipt_number", flat=True)
    assert sorted(numbers) == [*(f"H{i}" for i in range(10)), "Ч-9"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), ("store,total\r\n".encode("utf-16"), "UTF-16")],
    ids=["empty", "utf-16"],
)
def test_an_unreadable_file_is_refused_with_the_reason(tmp_path, content, message) -> None:
    program = program_create()
    path = tmp_path / "history.csv"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        call_command("purchases_import", str(path), "--program", program.code, verbosity=0)
    assert not (tmp_path / "history.csv.refused.csv").exists()  # no report of nothing


def test_a_quote_never_closed_is_refused_with_the_line_it_opens_on(tmp_path) -> None:
    program = program_create()
    StoreFactory(program=program, code="S1")
    text = "store,receipt_number,purchased_at,total,sku\r\nS1,H1,2025-01-10,1.00,A\r\n"
    text += 'S1,H2,2025-01-10,1.00,"Cheese\r\n' + "S1,H3,2025-01-10,1.00,B\r\n" * 6000
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(CommandError, match=r"Line 3 is not valid CSV.*quote mark"):
        call_command("purchases_import", str(path), "--program", program.code, verbosity=0)


def test_a_russian_operator_reads_the_summary_and_the_reasons_in_russian(tmp_path) -> None:
    from django.utils import translation

    program = program_create()
    StoreFactory(program=program, code="S1")
    path = _write(
        tmp_path / "history.csv",
        [["store", "receipt_number", "purchased_at", "total"], ["S1", "H1", "вчера", "1.00"]],
    )
    out = StringIO()
    with translation.override("ru"):
        call_command("purchases_import", str(path), "--program", program.code, stdout=out)
    assert "отклонено строк: 1" in out.getvalue()
    report = (tmp_path / "history.csv.refused.csv").read_text(encoding="utf-8-sig")
    assert "purchased_at: 'вчера' — не ГГГГ-ММ-ДД" in report


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1 234,50", Decimal("1234.50")),  # Excel in Russian, a non-breaking space too
        ("1\u00a0234,5", Decimal("1234.50")),
        ("0", Decimal("0.00")),
        ("", None),
        ("12,345", "has more than 2 decimal places"),
        ("abc", "is not a number"),
        ("-1", "is out of range"),
        ("1e20", "is out of range"),
    ],
)
def test_money_cells_are_read_as_operators_write_them(cell: str, expected: object) -> None:
    from pos.history_import import RowError, _money

    if isinstance(expected, str):
        with pytest.raises(RowError, match=expected):
            _money(cell, "amount")
    else:
        assert _money(cell, "amount") == expected


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("", Decimal(1)),
        ("1,234", Decimal("1.234")),
        ("0", "is out of range"),
        ("0,0001", "has more than 3 decimal places"),
    ],
)
def test_quantity_cells_default_to_one_and_are_above_zero(cell: str, expected: object) -> None:
    from pos.history_import import RowError, _quantity

    if isinstance(expected, str):
        with pytest.raises(RowError, match=expected):
            _quantity(cell)
    else:
        assert _quantity(cell) == expected
