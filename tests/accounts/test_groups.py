from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from loyalty_site.groups import GROUP_PERMISSIONS, groups_sync, patterns_match

from .factories import UserFactory, member_create

pytestmark = pytest.mark.django_db


def _user_in(group: str):  # type: ignore[no-untyped-def]
    user = UserFactory()
    user.groups.add(Group.objects.get(name=group))
    return type(user).objects.get(pk=user.pk)  # fresh: permission caches are per instance


def _client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def test_the_migration_creates_the_four_staff_groups() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "marketing",
        "support",
        "finance",
        "administrators",
    }


def test_support_works_with_members_but_not_with_programs_or_points() -> None:
    support = _user_in("support")

    assert support.has_perms(
        [
            "accounts.view_member",
            "accounts.change_member",
            "accounts.block_member",
            "accounts.replace_card",
            "accounts.view_consent",
        ]
    )
    assert not support.has_perm("programs.change_program")
    assert not support.has_perm("accounts.delete_member")
    # Support may ask for a manual adjustment (finance approves it), never move points itself.
    point_changes = [
        p
        for p in support.get_all_permissions()
        if p.startswith("ledger.")
        and not p.startswith("ledger.view_")
        and p != "ledger.add_adjustmentrequest"
    ]
    assert point_changes == []


def test_marketing_runs_programs_but_does_not_see_members() -> None:
    marketing = _user_in("marketing")

    assert marketing.has_perms(["programs.change_program", "programs.add_tier"])
    assert not marketing.has_perm("accounts.view_member")
    assert not marketing.has_perm("accounts.change_member")


def test_finance_reads_but_does_not_change_members() -> None:
    finance = _user_in("finance")

    assert finance.has_perm("accounts.view_member")
    assert not finance.has_perm("accounts.change_member")
    assert not finance.has_perm("programs.change_program")
    member_rights = {p for p in finance.get_all_permissions() if p.startswith("accounts.")}
    assert {p for p in member_rights if "view_" not in p} <= {"accounts.export_members"}


def test_administrators_have_every_permission() -> None:
    admin = _user_in("administrators")
    everything = {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Permission.objects.select_related("content_type")
    }
    assert admin.get_all_permissions() == everything


def test_support_opens_the_member_pages_and_marketing_is_turned_away() -> None:
    member = member_create()
    support = _client_for(_user_in("support"))
    marketing = _client_for(_user_in("marketing"))

    assert support.get(reverse("admin:accounts_member_changelist")).status_code == 200
    assert support.get(reverse("admin:accounts_member_change", args=[member.pk])).status_code == 200
    assert marketing.get(reverse("admin:accounts_member_changelist")).status_code == 403
    assert (
        marketing.get(reverse("admin:accounts_member_change", args=[member.pk])).status_code == 403
    )


def test_finance_sees_a_member_but_cannot_block_or_anonymise() -> None:
    member = member_create()
    finance = _client_for(_user_in("finance"))

    assert finance.get(reverse("admin:accounts_member_change", args=[member.pk])).status_code == 200
    assert finance.post(reverse("admin:accounts_member_block", args=[member.pk])).status_code == 403
    response = finance.post(
        reverse("admin:accounts_member_anonymise", args=[member.pk]), {"confirmed": "yes"}
    )
    assert response.status_code == 403
    member.refresh_from_db()
    assert member.status == "active"


def test_the_sync_gives_exactly_the_listed_permissions_and_skips_missing_ones(settings) -> None:  # type: ignore[no-untyped-def]
    support = Group.objects.get(name="support")
    support.permissions.add(Permission.objects.get(codename="delete_member"))

    groups_sync()

    codenames = set(support.permissions.values_list("codename", flat=True))
    assert "delete_member" not in codenames
    assert "view_member" in codenames


def test_patterns_take_wildcards() -> None:
    assert patterns_match(["ledger.view_*"], "ledger.view_transfer")
    assert not patterns_match(["ledger.view_*"], "ledger.change_transfer")
    assert patterns_match(GROUP_PERMISSIONS["administrators"], "anything.at_all")
