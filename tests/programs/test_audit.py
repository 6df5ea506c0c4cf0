from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from programs.audit import audit_record, diff, snapshot
from programs.models import AuditEntry, Program, Tier

pytestmark = pytest.mark.django_db


def test_a_snapshot_reads_decimals_typed_differently_as_the_same_value() -> None:
    program = Program.objects.create(code="p", name="P", accrual_percent=Decimal("5.00"))
    typed = Program(code="p", name="P", accrual_percent=Decimal("5"))
    assert diff(snapshot(program), snapshot(typed)) == {}


def test_diff_names_each_changed_field_with_its_old_and_new_value() -> None:
    before = snapshot(Program(code="p", name="Old", redeem_max_percent=Decimal("30")))
    after = snapshot(Program(code="p", name="New", redeem_max_percent=Decimal("25.5")))
    assert diff(before, after) == {
        "name": ["Old", "New"],
        "redeem_max_percent": ["30.00", "25.50"],
    }


def test_audit_record_stores_who_what_and_the_program_of_a_tier() -> None:
    user = get_user_model().objects.create_user("maria", password="x")
    program = Program.objects.create(code="p", name="P")
    tier = Tier.objects.create(program=program, code="gold", name="Gold", accrual_percent=10)

    entry = audit_record(
        user=user,
        action=AuditEntry.Action.UPDATE,
        obj=tier,
        changes={"accrual_percent": [Decimal("7.00"), Decimal("10.00")]},
    )

    entry.refresh_from_db()
    assert entry.user == user and entry.user_repr == "maria"
    assert entry.program == program
    assert entry.object_id == str(tier.pk) and entry.object_repr == "Gold"
    assert entry.changes == {"accrual_percent": ["7.00", "10.00"]}


def test_audit_record_refuses_an_unknown_action() -> None:
    program = Program.objects.create(code="p", name="P")
    with pytest.raises(ValueError, match="Unknown audit action"):
        audit_record(user=None, action="rename", obj=program, changes={})


def test_an_import_audits_each_object_it_creates_with_its_author() -> None:
    from programs.services import program_import_data
    from tests.programs.factories import program_file

    user = get_user_model().objects.create_user("ivan", password="x")
    program_import_data(program_file(), by=user)

    rows = AuditEntry.objects.order_by("id")
    assert [(r.action, r.object_repr, r.user_repr, r.source) for r in rows] == [
        ("create", "Main (main)", "ivan", "import"),
        ("create", "Base", "ivan", "import"),
        ("create", "Silver", "ivan", "import"),
        ("create", "Store 1 (S1)", "ivan", "import"),
    ]
    assert rows[0].changes["point_value"] == [None, "1.00"]
    assert rows[0].changes["excluded_from_accrual_categories"] == [None, ["tobacco"]]
    assert "program" not in rows[1].changes  # the row's program says it already
    assert {r.program_id for r in rows} == {int(rows[0].object_id)}


def test_an_import_update_audits_only_the_fields_that_changed_from_old_to_new() -> None:
    from programs.services import program_import_data
    from tests.programs.factories import program_file

    program_import_data(program_file())
    first = AuditEntry.objects.count()
    data = program_file(points_expire_days=None)
    data["tiers"][1]["threshold"] = "12000"
    program_import_data(data)

    new = list(AuditEntry.objects.order_by("id")[first:])
    assert [(r.action, r.object_repr, r.changes) for r in new] == [
        ("update", "Main (main)", {"points_expire_days": [365, None]}),
        ("update", "Silver", {"threshold": ["10000.00", "12000.00"]}),
    ]
    assert all(r.program.code == "main" for r in new)
