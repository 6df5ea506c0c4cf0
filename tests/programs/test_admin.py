"""The admin pages of programs, tiers, stores and the audit trail, as a superuser sees them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from programs.models import AuditEntry, Program, Store, Tier
from programs.services import program_import_data
from tests.programs.factories import program_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user() -> Any:
    return get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-Secret-1")


@pytest.fixture
def client_(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def program() -> Program:
    return program_import_data(program_file())


def program_form(program: Program, **overrides: Any) -> dict[str, Any]:
    """The POST data of the program change page as it stands, with `overrides`."""
    data: dict[str, Any] = {
        "code": program.code,
        "name": program.name,
        "currency": program.currency,
        "default_region": program.default_region,
        "time_zone": program.time_zone,
        "point_value": program.point_value,
        "accrual_percent": program.accrual_percent,
        "accrual_delay_days": program.accrual_delay_days,
        "points_expire_days": program.points_expire_days or "",
        "redeem_max_percent": program.redeem_max_percent,
        "redeem_min_balance": program.redeem_min_balance,
        "hold_minutes": program.hold_minutes,
        "refund_grace_days": program.refund_grace_days,
        "excluded_from_accrual_categories": ",".join(program.excluded_from_accrual_categories),
        "excluded_from_accrual_skus": ",".join(program.excluded_from_accrual_skus),
        "excluded_from_redemption_categories": ",".join(
            program.excluded_from_redemption_categories
        ),
        "excluded_from_redemption_skus": ",".join(program.excluded_from_redemption_skus),
        "tier_window_days": program.tier_window_days or "",
    }
    if program.accrue_on_redeemed_part:
        data["accrue_on_redeemed_part"] = "on"
    tiers = list(program.tiers.order_by("threshold")) if program.pk else []
    stores = list(program.stores.order_by("code")) if program.pk else []
    for prefix, objects, fields in (
        ("tiers", tiers, ("code", "name", "threshold", "accrual_percent")),
        ("stores", stores, ("code", "name")),
    ):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": len(objects),
                f"{prefix}-INITIAL_FORMS": len(objects),
                f"{prefix}-MIN_NUM_FORMS": 0,
                f"{prefix}-MAX_NUM_FORMS": 1000,
            }
        )
        for i, obj in enumerate(objects):
            data[f"{prefix}-{i}-id"] = obj.pk
            data[f"{prefix}-{i}-program"] = program.pk
            for name in fields:
                data[f"{prefix}-{i}-{name}"] = getattr(obj, name)
    data.update(overrides)
    return data


def change_url(obj: Any) -> str:
    return reverse(f"admin:programs_{obj._meta.model_name}_change", args=[obj.pk])


@pytest.mark.parametrize("model", ["program", "tier", "store", "auditentry"])
def test_the_list_pages_render(client_: Client, program: Program, model: str) -> None:
    response = client_.get(reverse(f"admin:programs_{model}_changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize("model", ["program", "tier", "store"])
def test_the_add_pages_render(client_: Client, model: str) -> None:
    assert client_.get(reverse(f"admin:programs_{model}_add")).status_code == 200


def test_the_change_pages_render_with_tiers_stores_and_history(
    client_: Client, program: Program
) -> None:
    response = client_.get(change_url(program))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Up to this share of a receipt can be paid with points" in page
    assert 'value="silver"' in page and 'value="S1"' in page
    assert "The whole history of this program" in page
    for obj in (program.tiers.first(), program.stores.first(), AuditEntry.objects.first()):
        assert client_.get(change_url(obj)).status_code == 200


def test_the_program_list_counts_tiers_without_a_query_per_row(
    client_: Client, django_assert_max_num_queries: Any
) -> None:
    for code in ("a", "b", "c", "d"):
        program_import_data(program_file(code=code))
    client_.get(reverse("admin:programs_program_changelist"))  # warm the session
    with django_assert_max_num_queries(12):
        response = client_.get(reverse("admin:programs_program_changelist"))
    assert response.status_code == 200


def test_the_admin_refuses_a_percentage_above_100_with_a_message(
    client_: Client, program: Program
) -> None:
    response = client_.post(change_url(program), program_form(program, redeem_max_percent="120"))
    assert response.status_code == 200
    assert "A percentage cannot be above 100." in response.content.decode()
    program.refresh_from_db()
    assert program.redeem_max_percent == Decimal("30")


def test_the_admin_refuses_a_zero_point_value(client_: Client, program: Program) -> None:
    response = client_.post(change_url(program), program_form(program, point_value="0"))
    assert "A point must be worth more than zero, e.g. 1.00." in response.content.decode()


def test_a_change_in_the_admin_is_audited_with_who_and_from_what_to_what(
    client_: Client, program: Program, admin_user: Any
) -> None:
    response = client_.post(change_url(program), program_form(program, redeem_max_percent="25"))
    assert response.status_code == 302

    entry = AuditEntry.objects.filter(action="update").get()
    assert entry.user == admin_user and entry.source == "admin"
    assert entry.object_repr == "Main (main)" and entry.program == program
    assert entry.changes == {"redeem_max_percent": ["30.00", "25.00"]}


def test_tier_edits_on_the_program_page_are_audited(client_: Client, program: Program) -> None:
    data = program_form(program, **{"tiers-1-accrual_percent": "8"})
    data.update(
        {
            "tiers-TOTAL_FORMS": 3,
            "tiers-2-code": "gold",
            "tiers-2-name": "Gold",
            "tiers-2-threshold": "50000",
            "tiers-2-accrual_percent": "10",
            "tiers-2-program": program.pk,
        }
    )
    before = AuditEntry.objects.count()

    response = client_.post(change_url(program), data)

    assert response.status_code == 302
    new = AuditEntry.objects.order_by("id")[before:]
    assert [(e.action, e.object_repr, e.changes.get("accrual_percent")) for e in new] == [
        ("update", "Silver", ["7.00", "8.00"]),
        ("create", "Gold", [None, "10.00"]),
    ]


def test_deleting_a_store_on_the_program_page_is_audited(client_: Client, program: Program) -> None:
    response = client_.post(change_url(program), program_form(program, **{"stores-0-DELETE": "on"}))
    assert response.status_code == 302
    assert not Store.objects.exists()
    assert AuditEntry.objects.filter(action="delete", object_repr="Store 1 (S1)").exists()


def test_the_program_page_refuses_tiers_without_one_at_zero(
    client_: Client, program: Program
) -> None:
    response = client_.post(
        change_url(program), program_form(program, **{"tiers-0-threshold": "5"})
    )
    assert response.status_code == 200
    assert "The lowest tier must start at 0" in response.content.decode()
    assert program.tiers.get(code="base").threshold == 0


def test_the_program_page_refuses_two_tiers_at_the_same_threshold(
    client_: Client, program: Program
) -> None:
    data = program_form(program)
    data.update(
        {
            "tiers-TOTAL_FORMS": 3,
            "tiers-2-code": "gold",
            "tiers-2-name": "Gold",
            "tiers-2-threshold": "10000",
            "tiers-2-accrual_percent": "10",
        }
    )
    response = client_.post(change_url(program), data)
    assert response.status_code == 200
    assert "Another tier starts at this sum" in response.content.decode()
    assert not program.tiers.filter(code="gold").exists()


def test_the_tier_page_refuses_raising_the_lowest_tier_above_zero(
    client_: Client, program: Program
) -> None:
    base = program.tiers.get(code="base")
    response = client_.post(
        change_url(base),
        {
            "program": program.pk,
            "code": "base",
            "name": "Base",
            "threshold": "20000",
            "accrual_percent": "5",
        },
    )
    assert response.status_code == 200
    assert "The lowest tier must start at 0" in response.content.decode()


def test_adding_a_program_with_its_tiers_in_the_admin_audits_each(client_: Client) -> None:
    data = program_form(Program(code="new", name="New"))
    data.update(
        {
            "tiers-TOTAL_FORMS": 1,
            "tiers-0-code": "base",
            "tiers-0-name": "Base",
            "tiers-0-threshold": "0",
            "tiers-0-accrual_percent": "5",
        }
    )
    response = client_.post(reverse("admin:programs_program_add"), data)
    assert response.status_code == 302
    program = Program.objects.get(code="new")
    assert set(AuditEntry.objects.filter(program=program).values_list("action", "object_repr")) == {
        ("create", "New (new)"),
        ("create", "Base"),
    }


def test_deleting_a_program_audits_it_and_keeps_its_history(
    client_: Client, program: Program
) -> None:
    url = reverse("admin:programs_program_delete", args=[program.pk])
    response = client_.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Program.objects.exists() and not Tier.objects.exists()
    deleted = AuditEntry.objects.filter(action="delete")
    assert sorted(deleted.values_list("object_repr", flat=True)) == [
        "Base",
        "Main (main)",
        "Silver",
        "Store 1 (S1)",
    ]
    assert AuditEntry.objects.filter(action="create").count() == 4  # kept, program now empty


def test_the_history_button_shows_the_programs_audit_trail(
    client_: Client, program: Program
) -> None:
    response = client_.get(reverse("admin:programs_program_history", args=[program.pk]))
    assert response.status_code == 302
    listing = client_.get(response.url)
    assert listing.status_code == 200
    assert "Silver" in listing.content.decode()


def test_the_audit_trail_cannot_be_edited_in_the_admin(client_: Client, program: Program) -> None:
    entry = AuditEntry.objects.first()
    assert client_.get(reverse("admin:programs_auditentry_add")).status_code == 403
    url = reverse("admin:programs_auditentry_delete", args=[entry.pk])
    assert client_.post(url, {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_the_audit_list_filters_by_object_type_and_searches(
    client_: Client, program: Program
) -> None:
    url = reverse("admin:programs_auditentry_changelist")
    from django.contrib.contenttypes.models import ContentType

    tier_type = ContentType.objects.get_for_model(Tier)
    response = client_.get(url, {"content_type__id__exact": tier_type.pk, "q": "Silver"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1


def test_the_program_page_speaks_russian(client_: Client, program: Program) -> None:
    response = client_.get(change_url(program), HTTP_ACCEPT_LANGUAGE="ru")
    page = response.content.decode()
    assert "Максимальный процент оплаты бонусами" in page
    assert "Такую долю чека можно оплатить бонусами" in page
    assert "Вся история изменений программы" in page


def test_the_admin_refuses_a_bad_value_in_russian_too(client_: Client, program: Program) -> None:
    response = client_.post(
        change_url(program),
        program_form(program, accrual_percent="150"),
        HTTP_ACCEPT_LANGUAGE="ru",
    )
    assert "Процент не может быть больше 100." in response.content.decode()


def test_a_tier_members_hold_cannot_be_deleted_in_the_admin(
    client_: Client, program: Program
) -> None:
    from accounts.models import Member

    silver = program.tiers.get(code="silver")
    Member.objects.create(program=program, phone="+79123456789", tier=silver)

    page = client_.get(reverse("admin:programs_tier_delete", args=[silver.pk]))
    assert page.status_code == 200
    assert "Cannot delete tier" in page.content.decode()
    inline = client_.post(change_url(program), program_form(program, **{"tiers-1-DELETE": "on"}))
    assert inline.status_code == 200
    assert Tier.objects.filter(pk=silver.pk).exists()
    assert not AuditEntry.objects.filter(action="delete").exists()
