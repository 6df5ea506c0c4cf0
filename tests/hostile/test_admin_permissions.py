"""Each staff group against every admin page and action: the matrix follows GROUP_PERMISSIONS.

Expectations are derived, not copied from the code under test: a group may open a
model's list and change page when GROUP_PERMISSIONS gives it that model's view or
change permission, its add page with the add permission, and an action when it
holds the permissions the action needs (ACTION_NEEDS below, declared here) - in
each case only if the admin allows it at all (what a superuser is offered). The
answers are read over HTTP: the status of each page, and the actions the list
page offers in its drop-down. A few key rules are pinned by hand besides, and
custom admin pages (dashboard, reports, imports, exports) have their own table.

Login lockout after failed passwords is tested in tests/accounts/test_lockout.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.contrib.auth.models import Permission
from django.db import models
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import Member
from campaigns.models import Campaign, PromoCodeBatch, Segment
from ledger.models import AdjustmentRequest
from loyalty_site.groups import GROUP_PERMISSIONS, patterns_match
from tests.hostile.admin_world import GROUPS, admin_rows_create, staff_create
from tests.hostile.factories import World

pytestmark = pytest.mark.django_db

# What each action's `allowed_permissions` entry means, where it is not one of Django's
# own add/change/delete/view (those are the model's permission of that name). A new
# custom permission on an action fails test_every_action_permission_is_declared.
CUSTOM_PERMISSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("accounts.member", "block"): ("accounts.block_member",),
    ("accounts.member", "anonymise"): ("accounts.anonymise_member",),
    ("accounts.member", "replace_card"): ("accounts.replace_card",),
    ("ledger.adjustmentrequest", "approve"): ("ledger.approve_adjustmentrequest",),
    ("campaigns.campaign", "change_status"): ("campaigns.change_campaign_status",),
    ("campaigns.campaign", "backtest"): ("campaigns.backtest_campaign",),
    ("campaigns.promocodebatch", "export"): ("campaigns.export_promocodebatch",),
    ("campaigns.segment", "recalculate"): ("campaigns.recalculate_segment",),
    # Performing a deletion request anonymises the member: both rights are needed.
    ("portal.deletionrequest", "perform"): (
        "portal.perform_deletionrequest",
        "accounts.anonymise_member",
    ),
}


# --- The world and the staff ----------------------------------------------------------


@dataclass
class Staff:
    world: World
    users: dict[str, Any]
    rows: dict[str, Any]
    clients: dict[str, Client]


@pytest.fixture(scope="module")
def staff(module_world: World, django_db_blocker: Any) -> Iterator[Staff]:
    with django_db_blocker.unblock():
        users = staff_create()
        rows = admin_rows_create(module_world, users)
        clients = {}
        for name, user in users.items():
            client = Client()
            client.force_login(user)
            clients[name] = client
        yield Staff(module_world, users, rows, clients)


@pytest.fixture
def team(staff: Staff, db: None) -> Staff:
    return staff


def group_permissions(group: str) -> set[str]:
    every = Permission.objects.values_list("content_type__app_label", "codename")
    return {
        f"{app}.{code}"
        for app, code in every
        if patterns_match(GROUP_PERMISSIONS[group], f"{app}.{code}")
    }


def _perm(model: type[models.Model], action: str) -> str:
    opts = model._meta
    return f"{opts.app_label}.{get_permission_codename(action, opts)}"


def _as_superuser(team: Staff) -> Any:
    request = RequestFactory().get("/admin/")
    request.user = team.users["superuser"]
    return request


def _call_perm(method: Any, request: Any) -> bool:
    try:
        return bool(method(request))
    except TypeError:  # some take (request, obj)
        return bool(method(request, None))


# --- Model pages ------------------------------------------------------------------------

MODELS = sorted(admin.site._registry, key=lambda m: m._meta.label_lower)


def _urls(model: type[models.Model], obj: Any) -> dict[str, str | None]:
    info = (model._meta.app_label, model._meta.model_name)
    return {
        "changelist": reverse("admin:{}_{}_changelist".format(*info)),
        "add": reverse("admin:{}_{}_add".format(*info)),
        "change": reverse("admin:{}_{}_change".format(*info), args=[obj.pk]) if obj else None,
    }


def expected_pages(team: Staff, model: type[models.Model], group: str) -> dict[str, int]:
    model_admin = admin.site._registry[model]
    su = _as_superuser(team)
    perms = group_permissions(group)
    may_view = bool(perms & {_perm(model, "view"), _perm(model, "change")})
    may_add = _perm(model, "add") in perms
    seen = model_admin.has_view_or_change_permission(su)
    addable = _call_perm(model_admin.has_add_permission, su)
    return {
        "changelist": 200 if seen and may_view else 403,
        "add": 200 if addable and may_add else 403,
        "change": 200 if seen and may_view else 403,
    }


# --- Actions ----------------------------------------------------------------------------

_OPTION = re.compile(r'<option value="([^"]+)"')
_ACTION_SELECT = re.compile(r'<select name="action"[^>]*>(.*?)</select>', re.S)


def offered_actions(response: Any) -> set[str]:
    """The actions a list page offers in its drop-down."""
    found = _ACTION_SELECT.search(response.content.decode())
    return set(_OPTION.findall(found.group(1))) if found else set()


def action_needs(model: type[models.Model], function: Any) -> set[str]:
    needs: set[str] = set()
    for name in getattr(function, "allowed_permissions", None) or ():
        if name in ("add", "change", "delete", "view"):
            needs.add(_perm(model, name))
        else:
            needs.update(CUSTOM_PERMISSIONS[(model._meta.label_lower, name)])
    return needs


def test_every_action_permission_is_declared(team: Staff) -> None:
    request = _as_superuser(team)
    for model, model_admin in admin.site._registry.items():
        for function, _name, _text in model_admin.get_actions(request).values():
            action_needs(model, function)  # raises KeyError for an undeclared one


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.label_lower)
def test_each_group_gets_the_pages_and_actions_its_permissions_give(
    team: Staff, model: type[models.Model]
) -> None:
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"add a {model._meta.label} row to tests/hostile/admin_world.py"
    urls = _urls(model, obj)
    possible = admin.site._registry[model].get_actions(_as_superuser(team))
    wrong = []
    for group in GROUPS:
        client = team.clients[group]
        for page, expected in expected_pages(team, model, group).items():
            response = client.get(urls[page])
            if response.status_code != expected:
                wrong.append(f"{group} {page}: {response.status_code}, expected {expected}")
            if page != "changelist" or response.status_code != 200:
                continue
            perms = group_permissions(group)
            wanted = {
                name
                for name, (function, *_rest) in possible.items()
                if action_needs(model, function) <= perms
            }
            offered = offered_actions(response)
            if offered != wanted:
                wrong.append(f"{group} actions: {sorted(offered)}, expected {sorted(wanted)}")
    # Anonymous callers are sent to the login page.
    anonymous = Client().get(urls["changelist"])
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert wrong == []


# --- Key rules, pinned by hand ----------------------------------------------------------


def test_support_may_read_a_program_but_not_change_it(team: Staff) -> None:
    program = team.world.program
    url = reverse("admin:programs_program_change", args=[program.pk])
    client = team.clients["support"]
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "Hijacked"})
    assert response.status_code == 403
    program.refresh_from_db()
    assert program.name != "Hijacked"
    assert team.clients["marketing"].get(url).status_code == 200


def test_support_asks_for_adjustments_but_cannot_approve_them(team: Staff) -> None:
    adjustment = team.rows["adjustment"]
    changelist = reverse("admin:ledger_adjustmentrequest_changelist")
    assert "approve_selected" not in offered_actions(team.clients["support"].get(changelist))
    # Support's try changes nothing; finance, the checker, does approve it.
    requested, approved = AdjustmentRequest.Status.REQUESTED, AdjustmentRequest.Status.APPROVED
    for group, status in (("support", requested), ("finance", approved)):
        response = team.clients[group].post(
            changelist, {"action": "approve_selected", "_selected_action": [adjustment.pk]}
        )
        assert response.status_code in (200, 302)
        adjustment.refresh_from_db()
        assert adjustment.status == status, group


def test_finance_reads_members_but_cannot_change_them(team: Staff) -> None:
    member = team.world.member
    url = reverse("admin:accounts_member_change", args=[member.pk])
    client = team.clients["finance"]
    assert client.get(url).status_code == 200
    assert client.post(url, {"first_name": "Changed"}).status_code == 403
    for action in ("block", "anonymise", "replace-card"):
        path = reverse(f"admin:accounts_member_{action.replace('-', '_')}", args=[member.pk])
        assert client.post(path).status_code == 403, action
    member.refresh_from_db()
    assert member.first_name == "Alice" and member.status == Member.Status.ACTIVE


def test_marketing_does_not_see_points_adjustments_or_member_data(team: Staff) -> None:
    client = team.clients["marketing"]
    for name in ("ledger_adjustmentrequest", "ledger_transfer", "accounts_member", "pos_purchase"):
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 403, name


def test_only_administrators_manage_staff_and_jobs(team: Staff) -> None:
    for name in (
        "auth_user",
        "auth_group",
        "django_celery_beat_periodictask",
        "axes_accessattempt",
    ):
        url = reverse(f"admin:{name}_changelist")
        for group in ("marketing", "support", "finance"):
            assert team.clients[group].get(url).status_code == 403, (group, name)
        assert team.clients["administrators"].get(url).status_code == 200, name


# --- Custom admin pages -----------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A custom admin page: who may open it (all of `needs`), and how others are refused."""

    url: Any  # (Staff) -> str
    needs: tuple[str, ...]
    method: str = "get"
    refused: int = 403
    ok: int = 200


def _analytics(name: str, export: bool = False) -> Any:
    def url(team: Staff) -> str:
        query = f"?program={team.world.program.pk}&month=2026-10"
        return reverse(f"analytics:{name}") + query + ("&export=1" if export else "")

    return url


def _member_page(name: str) -> Any:
    return lambda team: reverse(f"admin:accounts_member_{name}", args=[team.world.member.pk])


PAGES: dict[str, Page] = {
    "analytics:dashboard": Page(_analytics("dashboard"), ("analytics.view_dashboard",)),
    "analytics:campaign_report": Page(_analytics("campaign_report"), ("analytics.view_dashboard",)),
    "analytics:campaign_report export": Page(
        _analytics("campaign_report", export=True),
        ("analytics.view_dashboard", "analytics.export_reports"),
    ),
    "analytics:liability": Page(_analytics("liability"), ("analytics.view_dashboard",)),
    "analytics:liability export": Page(
        _analytics("liability", export=True),
        ("analytics.view_dashboard", "analytics.export_reports"),
    ),
    "admin:accounts_member_replace_card": Page(
        _member_page("replace_card"), ("accounts.replace_card",)
    ),
    "admin:accounts_member_anonymise": Page(
        _member_page("anonymise"), ("accounts.anonymise_member",)
    ),
    # Block is a POST from the member page; it answers with a redirect back to it.
    "admin:accounts_member_block": Page(
        _member_page("block"), ("accounts.block_member",), method="post", ok=302
    ),
    "admin:accounts_member_import": Page(
        lambda t: reverse("admin:accounts_member_import"), ("accounts.import_members",)
    ),
    "admin:accounts_member_process_import": Page(
        lambda t: reverse("admin:accounts_member_process_import"),
        ("accounts.import_members",),
        method="post",  # with nothing to confirm: the import page again
    ),
    "admin:accounts_member_import_large": Page(
        lambda t: reverse("admin:accounts_member_import_large"), ("accounts.import_members",)
    ),
    "admin:accounts_member_import_job": Page(
        lambda t: reverse("admin:accounts_member_import_job", args=["no-such-job"]),
        ("accounts.import_members",),
        ok=404,
    ),
    "admin:accounts_member_csv_report": Page(
        lambda t: reverse("admin:accounts_member_csv_report", args=["no-such-job"]),
        ("accounts.import_members",),
        ok=404,
    ),
    "admin:accounts_member_export": Page(
        lambda t: reverse("admin:accounts_member_export"), ("accounts.export_members",)
    ),
    # The Backtest button of a campaign's page; posted empty, it goes back to that page.
    "admin:campaigns_campaign_backtest": Page(
        lambda t: reverse(
            "admin:campaigns_campaign_backtest", args=[Campaign.objects.order_by("pk").first().pk]
        ),
        ("campaigns.backtest_campaign",),
        method="post",
        ok=302,
    ),
    "admin:campaigns_promocodebatch_export": Page(
        lambda t: reverse(
            "admin:campaigns_promocodebatch_export", args=[PromoCodeBatch.objects.first().pk]
        ),
        ("campaigns.export_promocodebatch",),
    ),
    "admin:campaigns_promocodebatch_issue": Page(
        lambda t: reverse("admin:campaigns_promocodebatch_issue"),
        ("campaigns.add_promocodebatch",),
    ),
    "admin:campaigns_segment_upload": Page(
        lambda t: reverse(
            "admin:campaigns_segment_upload",
            args=[Segment.objects.filter(kind=Segment.Kind.STATIC).first().pk],
        ),
        ("campaigns.change_segment",),
    ),
    # A message to a segment: adding to the outbox is what it takes.
    "admin:campaigns_segment_send": Page(
        lambda t: reverse("admin:campaigns_segment_send", args=[Segment.objects.first().pk]),
        ("campaigns.view_segment", "campaigns.add_outboxmessage"),
    ),
    "admin:campaigns_segment_send post": Page(
        lambda t: reverse("admin:campaigns_segment_send", args=[Segment.objects.first().pk]),
        ("campaigns.view_segment", "campaigns.add_outboxmessage"),
        method="post",  # nothing chosen: the form again, nothing queued
    ),
    # Posting the upload form is refused the same way (nothing is read from the file).
    "admin:campaigns_segment_upload post": Page(
        lambda t: reverse(
            "admin:campaigns_segment_upload",
            args=[Segment.objects.filter(kind=Segment.Kind.STATIC).first().pk],
        ),
        ("campaigns.change_segment",),
        method="post",  # with no file: the form again
    ),
}

# Django's own admin pages that every staff user may open (or that are no one's data).
STANDARD_VIEWS = {
    "admin:index",
    "admin:login",
    "admin:logout",
    "admin:password_change",
    "admin:password_change_done",
    "admin:autocomplete",
    "admin:jsi18n",
    "admin:view_on_site",
    "admin:app_list",
    "admin_home",
}
_STANDARD_SUFFIXES = ("_changelist", "_add", "_change", "_delete", "_history")


def custom_admin_views() -> set[str]:
    """Names of admin URLs that are not a model's standard pages nor Django's own."""

    def walk(patterns: list[Any], prefix: str, namespace: str) -> Iterator[tuple[str, str]]:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                ns = entry.namespace or namespace
                yield from walk(entry.url_patterns, prefix + str(entry.pattern), ns)
            elif isinstance(entry, URLPattern):
                name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
                yield prefix + str(entry.pattern), name or ""

    found = set()
    for route, name in walk(get_resolver().url_patterns, "", ""):
        if not route.startswith("admin/") or not name:
            continue  # unnamed: the model's old-style redirect and the catch-all
        if name in STANDARD_VIEWS or name.endswith(_STANDARD_SUFFIXES):
            continue
        found.add(name)
    return found


def test_every_custom_admin_page_has_a_row() -> None:
    declared = {key.split(" ")[0] for key in PAGES}
    assert custom_admin_views() - declared == set(), "add a row to PAGES for each new page"
    assert declared - custom_admin_views() == set(), "remove the rows of pages that are gone"


@pytest.mark.parametrize("key", sorted(PAGES))
def test_custom_admin_pages_follow_the_group_permissions(team: Staff, key: str) -> None:
    page = PAGES[key]
    url = page.url(team)
    wrong = []
    for group in GROUPS:
        allowed = set(page.needs) <= group_permissions(group)
        expected = page.ok if allowed else page.refused
        got = getattr(team.clients[group], page.method)(url).status_code
        if got != expected:
            wrong.append(f"{group}: {got}, expected {expected}")
    anonymous = getattr(Client(), page.method)(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert wrong == []
