"""program_import: a good file, each kind of bad file, dry runs, removals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from programs.models import AuditEntry, Program, Store, Tier
from programs.services import ProgramFileError, program_import, program_import_data
from tests.programs.factories import program_file

pytestmark = pytest.mark.django_db


def errors_of(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ProgramFileError) as caught:
        program_import_data(data)
    return caught.value.errors


def test_a_good_file_creates_the_program_its_tiers_and_stores() -> None:
    program = program_import_data(program_file())

    program.refresh_from_db()
    assert program.code == "main"
    assert program.point_value == Decimal("1.00")
    assert program.redeem_max_percent == Decimal("30")
    assert program.excluded_from_accrual_categories == ["tobacco"]
    assert program.points_expire_days == 365
    assert [(t.code, t.threshold, t.accrual_percent) for t in program.tiers.all()] == [
        ("base", Decimal("0"), Decimal("5")),
        ("silver", Decimal("10000"), Decimal("7")),
    ]
    assert [s.code for s in program.stores.all()] == ["S1"]


def test_numbers_may_be_given_as_json_numbers_too() -> None:
    program = program_import_data(program_file(point_value=Decimal("0.5"), accrual_percent=3))
    program.refresh_from_db()
    assert program.point_value == Decimal("0.50")
    assert program.accrual_percent == Decimal("3")


def test_points_that_never_expire_are_written_as_null() -> None:
    program = program_import_data(program_file(points_expire_days=None))
    program.refresh_from_db()
    assert program.points_expire_days is None


def test_a_second_import_updates_matched_by_code() -> None:
    program_import_data(program_file())
    data = program_file(name="Main chain", redeem_max_percent="25")
    data["tiers"][1]["accrual_percent"] = "8"
    data["stores"][0]["name"] = "Store One"

    result = program_import(data)

    assert not result.created
    assert Program.objects.count() == 1
    program = Program.objects.get(code="main")
    assert program.name == "Main chain" and program.redeem_max_percent == Decimal("25")
    assert Tier.objects.get(program=program, code="silver").accrual_percent == Decimal("8")
    assert Store.objects.get(program=program, code="S1").name == "Store One"
    assert result.changes == [
        'program "main": name "Main" → "Main chain"; redeem_max_percent "30.00" → "25.00"',
        'tier "silver": accrual_percent "7.00" → "8.00"',
        'store "S1": name "Store 1" → "Store One"',
    ]


def test_tiers_may_swap_their_thresholds_in_one_import() -> None:
    data = program_file()
    data["tiers"].append(
        {"code": "gold", "name": "Gold", "threshold": "50000", "accrual_percent": "10"}
    )
    program_import_data(data)
    # silver takes gold's threshold while gold moves up: fine at commit.
    data["tiers"][1]["threshold"] = "50000"
    data["tiers"][2]["threshold"] = "90000"
    program = program_import_data(data)
    assert dict(program.tiers.values_list("code", "threshold")) == {
        "base": Decimal("0"),
        "silver": Decimal("50000"),
        "gold": Decimal("90000"),
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"point_value": "-1"},
            ("program.point_value", "A point must be worth more than zero, e.g. 1.00."),
        ),
        (
            {"point_value": "0"},
            ("program.point_value", "A point must be worth more than zero, e.g. 1.00."),
        ),
        (
            {"accrual_percent": "101"},
            ("program.accrual_percent", "A percentage cannot be above 100."),
        ),
        (
            {"redeem_max_percent": "-5"},
            ("program.redeem_max_percent", "A percentage cannot be below 0."),
        ),
        (
            {"point_value": "one"},
            ("program.point_value", 'must be a number such as "1.00", not "one"'),
        ),
        (
            {"point_value": True},
            (
                "program.point_value",
                'must be a number, preferably written as a string such as "1.00"',
            ),
        ),
        (
            {"redeem_min_balance": "10"},
            ("program.redeem_min_balance", "must be a whole number, 0 or more"),
        ),
        (
            {"redeem_min_balance": -1},
            ("program.redeem_min_balance", "must be a whole number, 0 or more"),
        ),
        ({"hold_minutes": 1.5}, ("program.hold_minutes", "must be a whole number, 0 or more")),
        (
            {"hold_minutes": 0},
            ("program.hold_minutes", "The hold time must be at least one minute."),
        ),
        (
            {"accrue_on_redeemed_part": "no"},
            ("program.accrue_on_redeemed_part", "must be true or false"),
        ),
        ({"name": 7}, ("program.name", "must be a string")),
        (
            {"currency": "rub"},
            ("program.currency", "Use the three-letter currency code in capitals, e.g. RUB."),
        ),
        (
            {"default_region": "XX"},
            (
                "program.default_region",
                "XX is not a country code; use two capital letters, e.g. RU or KZ.",
            ),
        ),
        (
            {"time_zone": "Mars/Olympus"},
            (
                "program.time_zone",
                "Mars/Olympus is not a time zone; use a name such as Europe/Moscow.",
            ),
        ),
        (
            {"code": "main program"},
            ("program.code", "Use Latin letters, digits, '-', '_' and '.' only."),
        ),
        (
            {"accrual_percent": "5.125"},
            ("program.accrual_percent", "Ensure that there are no more than 2 decimal places."),
        ),
        (
            {"excluded_from_accrual": ["tobacco"]},
            (
                "program.excluded_from_accrual",
                'must be an object like {"categories": [], "skus": []}',
            ),
        ),
        (
            {"excluded_from_accrual": {"categories": "tobacco"}},
            ("program.excluded_from_accrual.categories", "must be a list of strings"),
        ),
        (
            {"excluded_from_accrual": {"categories": ["tobacco", 5]}},
            ("program.excluded_from_accrual.categories[1]", "must be a string"),
        ),
        (
            {"excluded_from_redemption": {"categories": ["tobacco", "tobacco"]}},
            (
                "program.excluded_from_redemption.categories",
                "tobacco is listed twice; name it once.",
            ),
        ),
        (
            {"excluded_from_accrual": {"brands": []}},
            ("program.excluded_from_accrual.brands", "unknown key"),
        ),
        ({"accrual_precent": "5"}, ("program.accrual_precent", "unknown key")),
    ],
)
def test_a_bad_program_value_is_refused_with_its_json_path(
    change: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert errors_of(program_file(**change)) == [expected]
    assert not Program.objects.exists()


def test_missing_required_keys_are_each_named() -> None:
    data = program_file()
    del data["program"]["name"]
    del data["program"]["point_value"]
    del data["tiers"][1]["threshold"]
    del data["stores"][0]["code"]

    assert errors_of(data) == [
        ("program.name", "required key is missing"),
        ("program.point_value", "required key is missing"),
        ("tiers[1].threshold", "required key is missing"),
        ("stores[0].code", "required key is missing"),
    ]


def test_a_file_without_a_program_or_not_an_object_is_refused() -> None:
    assert errors_of({"tiers": []}) == [("program", "required key is missing")]
    assert errors_of([1, 2]) == [("$", 'must be an object with "program", "tiers" and "stores"')]
    assert errors_of({"program": "main"}) == [("program", "must be an object ({...})")]
    assert errors_of({**program_file(), "campaigns": []}) == [("campaigns", "unknown key")]


def test_thresholds_that_do_not_ascend_are_refused() -> None:
    data = program_file()
    data["tiers"].append(
        {"code": "gold", "name": "Gold", "threshold": "5000", "accrual_percent": "10"}
    )
    assert errors_of(data) == [
        ("tiers[2].threshold", "must be greater than tiers[1].threshold"),
    ]


def test_the_lowest_tier_must_start_at_zero() -> None:
    data = program_file()
    data["tiers"][0]["threshold"] = "100"
    assert errors_of(data) == [
        (
            "tiers[0].threshold",
            "the lowest tier must start at 0, so that every member holds a tier",
        ),
    ]


def test_bad_tier_values_are_named_by_index() -> None:
    data = program_file()
    data["tiers"][1]["accrual_percent"] = "150"
    data["tiers"][0]["name"] = ""
    data["tiers"][1]["threshold"] = "-10"
    errors = errors_of(data)
    assert ("tiers[1].accrual_percent", "A percentage cannot be above 100.") in errors
    assert ("tiers[0].name", "This field cannot be blank.") in errors
    assert ("tiers[1].threshold", "The qualifying spend cannot be below 0.") in errors
    assert len(errors) == 3


def test_duplicate_codes_are_refused() -> None:
    data = program_file()
    data["tiers"][1]["code"] = "base"
    data["stores"].append({"code": "S1", "name": "Another"})
    assert errors_of(data) == [
        ("tiers[1].code", '"base" is already used by tiers[0]'),
        ("stores[1].code", '"S1" is already used by stores[0]'),
    ]


def test_every_error_of_a_file_is_reported_at_once_and_nothing_is_written() -> None:
    data = program_file(point_value="-1", accrual_percent="200")
    data["tiers"] = "base"
    data["stores"][0]["name"] = None
    errors = errors_of(data)
    assert [path for path, _ in errors] == [
        "program.point_value",
        "program.accrual_percent",
        "tiers",
        "stores[0].name",
    ]
    assert not Program.objects.exists() and not AuditEntry.objects.exists()


def test_a_dry_run_writes_nothing_but_reports_what_would_change() -> None:
    result = program_import(program_file(), dry_run=True)

    assert result.dry_run and result.created
    assert result.changes[:2] == ['program "main": created', 'tier "base": created']
    assert not Program.objects.exists()
    assert not Tier.objects.exists() and not Store.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_dry_run_of_an_update_leaves_the_program_as_it_was() -> None:
    program_import_data(program_file())
    audit_rows = AuditEntry.objects.count()

    result = program_import(program_file(redeem_max_percent="10"), dry_run=True)

    assert result.changes == ['program "main": redeem_max_percent "30.00" → "10.00"']
    assert Program.objects.get().redeem_max_percent == Decimal("30")
    assert AuditEntry.objects.count() == audit_rows


def test_a_tier_left_out_of_the_file_is_removed() -> None:
    program_import_data(program_file())
    data = program_file()
    del data["tiers"][1]

    result = program_import(data)

    assert list(Tier.objects.values_list("code", flat=True)) == ["base"]
    assert result.changes == ['tier "silver": removed']
    entry = AuditEntry.objects.get(action="delete")
    assert entry.object_repr == "Silver" and entry.changes["code"] == ["silver", None]


def test_a_tier_members_hold_is_not_removed_and_the_error_names_it() -> None:
    from accounts.models import Member

    program = program_import_data(program_file())
    Member.objects.create(
        program=program, phone="+79123456789", tier=program.tiers.get(code="silver")
    )
    data = program_file()
    del data["tiers"][1]

    assert errors_of(data) == [
        (
            "tiers",
            'tier "silver" is not in the file but is still used by members: 1; '
            "keep it in the file, or move them to another tier first",
        )
    ]
    assert program.tiers.filter(code="silver").exists()


def test_a_store_left_out_of_the_file_is_kept() -> None:
    program_import_data(program_file())
    data = program_file()
    data["stores"] = [{"code": "S2", "name": "Store 2"}]

    result = program_import(data)

    assert sorted(Store.objects.values_list("code", flat=True)) == ["S1", "S2"]
    assert 'store "S1": not in the file, kept' in result.changes


def test_a_file_without_tiers_or_stores_leaves_them_as_they_are() -> None:
    program_import_data(program_file())
    data = program_file(name="Renamed")
    del data["tiers"]
    del data["stores"]

    program_import_data(data)

    assert Tier.objects.count() == 2 and Store.objects.count() == 1


def test_keys_left_out_keep_their_current_values() -> None:
    program_import_data(program_file(hold_minutes=20))
    data = program_file()
    del data["program"]["hold_minutes"]

    program = program_import_data(data)

    program.refresh_from_db()
    assert program.hold_minutes == 20


def test_the_summary_names_changed_exclusions_by_their_key_in_the_file() -> None:
    program_import_data(program_file())
    result = program_import(
        program_file(excluded_from_accrual={"categories": ["tobacco", "alcohol"], "skus": []})
    )
    assert result.changes == [
        'program "main": excluded_from_accrual.categories ["tobacco"] → ["tobacco", "alcohol"]'
    ]
