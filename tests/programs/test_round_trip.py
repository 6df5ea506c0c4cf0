"""Export gives the API.md shape; import → export → import changes nothing."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from programs.models import AuditEntry, Program
from programs.services import (
    program_export_data,
    program_file_dumps,
    program_import,
    program_import_data,
)
from tests.programs.factories import DEMO_FILE, program_file

pytestmark = pytest.mark.django_db


def export_text(code: str) -> str:
    out = StringIO()
    call_command("program_export", code, stdout=out)
    return out.getvalue()


def import_file(path: Path, *args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("program_import", str(path), *args, stdout=out, stderr=err)
    return out.getvalue()


def test_export_gives_the_api_shape_with_decimals_as_strings() -> None:
    program_import_data(program_file(point_value="2", accrual_percent="7.50"))

    data = program_export_data("main")

    assert data["program"]["point_value"] == "2.00"
    assert data["program"]["accrual_percent"] == "7.5"
    assert data["program"]["redeem_max_percent"] == "30"
    assert data["program"]["excluded_from_accrual"] == {"categories": ["tobacco"], "skus": []}
    assert data["program"]["points_expire_days"] == 365
    assert data["tiers"] == [
        {"code": "base", "name": "Base", "threshold": "0", "accrual_percent": "5"},
        {"code": "silver", "name": "Silver", "threshold": "10000", "accrual_percent": "7"},
    ]
    assert data["stores"] == [{"code": "S1", "name": "Store 1"}]
    expected = program_file(point_value="2.00", accrual_percent="7.5")
    expected["program"]["time_zone"] = "Europe/Moscow"
    assert data == expected


def test_the_demo_file_is_exactly_what_export_prints_after_importing_it(tmp_path: Path) -> None:
    import_file(DEMO_FILE)
    assert export_text("demo") == DEMO_FILE.read_text(encoding="utf-8")


def test_import_export_import_is_a_no_op_byte_for_byte(tmp_path: Path) -> None:
    # A file written loosely: numbers as JSON numbers, odd decimal places.
    loose = program_file(point_value=0.5, accrual_percent=5, redeem_max_percent="30.00")
    loose["tiers"][1]["threshold"] = 10000.0
    first = tmp_path / "first.json"
    first.write_text(json.dumps(loose), encoding="utf-8")
    import_file(first)
    exported = export_text("main")
    second = tmp_path / "second.json"
    second.write_text(exported, encoding="utf-8")
    rows = AuditEntry.objects.count()
    updated_at = Program.objects.get().updated_at

    output = import_file(second)

    assert export_text("main") == exported
    assert AuditEntry.objects.count() == rows
    assert Program.objects.get().updated_at == updated_at
    assert 'Program "main" is up to date; nothing changed.' in output


def test_a_second_import_of_the_same_data_writes_no_audit_rows() -> None:
    program_import_data(program_file())
    rows = AuditEntry.objects.count()
    result = program_import(program_export_data("main"))
    assert result.changes == []
    assert AuditEntry.objects.count() == rows


def test_export_keeps_cyrillic_as_it_is_and_indents_by_two() -> None:
    program_import_data(program_file(name="Главная"))
    text = export_text("main")
    assert '  "program": {\n    "code": "main",\n    "name": "Главная",' in text
    assert text == program_file_dumps(program_export_data("main"))


def test_export_of_an_unknown_program_fails_with_a_message() -> None:
    with pytest.raises(CommandError, match="No program with code 'nope'"):
        call_command("program_export", "nope")


def test_the_import_command_lists_each_error_with_its_path_and_fails(tmp_path: Path) -> None:
    data = program_file(point_value="-1")
    data["tiers"][1]["threshold"] = "0"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    err = StringIO()

    with pytest.raises(CommandError, match="2 error\\(s\\); nothing was changed"):
        call_command("program_import", str(path), stderr=err)

    assert err.getvalue().splitlines() == [
        "program.point_value: A point must be worth more than zero, e.g. 1.00.",
        "tiers[1].threshold: must be greater than tiers[0].threshold",
    ]
    assert not Program.objects.exists()


def test_the_import_command_refuses_malformed_json_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"program": {\n  "code": "main",\n  "name": "Main"\n  "point_value": "1"}}')
    with pytest.raises(CommandError, match=r"not valid JSON at line 4, column 3"):
        call_command("program_import", str(path))


def test_the_import_command_refuses_a_key_given_twice(tmp_path: Path) -> None:
    path = tmp_path / "twice.json"
    path.write_text('{"program": {"code": "a", "code": "b"}}')
    with pytest.raises(CommandError, match='the key "code" appears twice'):
        call_command("program_import", str(path))


def test_the_import_command_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read the file"):
        call_command("program_import", str(tmp_path / "none.json"))


def test_a_dry_run_through_the_command_saves_nothing(tmp_path: Path) -> None:
    output = import_file(DEMO_FILE, "--dry-run")
    assert 'Dry run: program "demo" would be created; nothing was saved.' in output
    assert '  tier "gold": created' in output
    assert not Program.objects.exists() and not AuditEntry.objects.exists()


def test_the_import_command_records_the_user_it_is_given(tmp_path: Path) -> None:
    get_user_model().objects.create_user("olga", password="x")
    import_file(DEMO_FILE, "--user", "olga")
    assert set(AuditEntry.objects.values_list("user_repr", "source").distinct()) == {
        ("olga", "import")
    }
