"""Every API endpoint against callers who should not get in, from a table built off the URL conf.

A new route under /api/v1/ without a row here fails `test_every_api_endpoint_has_a_row`,
so nobody can add an endpoint and forget to say who may call it.

Cashier API rows: no key and a wrong key 401, a blocked terminal 403, a terminal
of another store 404 on this store's purchases, a terminal of another program
404 on this program's members and purchases. Member API (/api/v1/me/) rows: no
token, a wrong token, a terminal key, a blocked member's token 401; another
member's token 404 on this member's purchases. Every refused call changes
nothing (the database is compared before and after), and the rightful caller,
last, gets the answer the row expects, so a refusal is about who calls, not a
malformed request.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Card, Consent, Member
from ledger.models import Account, Lot, OpenHold, Transfer
from portal.models import DeletionRequest, MemberSession
from portal.services import app_session_start
from pos.models import IdempotencyKey, Purchase, Refund
from tests.hostile.factories import World, card_of, receipt

pytestmark = pytest.mark.django_db
_keys = itertools.count(1)
_phones = itertools.count(1)

# --- The endpoints, from the URL conf ---------------------------------------------------

METHODS = ("get", "post", "put", "patch", "delete")


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def api_endpoints() -> set[str]:
    """ "METHOD route" of every view under /api/, e.g. "GET api/v1/members/<str:member_id>"."""
    found = set()
    for route, callback in _walk(get_resolver().url_patterns):
        if not route.startswith("api/"):
            continue
        view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        assert view is not None, f"{route}: not a class-based view, add how to read its methods"
        for method in METHODS:
            if hasattr(view, method):
                found.add(f"{method.upper()} {route}")
    return found


# --- The table ----------------------------------------------------------------------------

Body = Callable[[World], Any]


@dataclass(frozen=True)
class Row:
    """How the rightful caller uses an endpoint, and what the scope rules say about others.

    auth: "terminal" (Authorization: Token), "member" (Bearer) or "public".
    path: the URL with {member} / {purchase} / {pending} filled from the world.
    ok: the rightful caller's status. neighbour / stranger: the status a terminal of
    another store / another program gets (member rows: another member of the same
    program / of another program), None where the row has nothing of theirs to hide.
    """

    auth: str
    path: str
    ok: int
    body: Body | None = None
    query: dict[str, Any] | Callable[[World], dict[str, Any]] | None = None
    neighbour: int | None = None
    stranger: int | None = None
    changes: bool = False  # the rightful call changes data (so it gets an Idempotency-Key)
    extra: dict[str, Any] = field(default_factory=dict)


def _enrolment(world: World) -> dict[str, Any]:
    return {
        "phone": f"+7914{next(_phones):07d}",
        "first_name": "Vera",
        "consents": {"personal_data": True, "marketing_sms": False, "marketing_email": False},
    }


def _sale(world: World) -> dict[str, Any]:
    return receipt("250.00", member={"card": card_of(world.member)}, redeem_points=20)


ROWS: dict[str, Row] = {
    # Cashier API: members are the program's, so another store of it sees them.
    "GET api/v1/members/lookup": Row(
        "terminal",
        "members/lookup",
        200,
        query=lambda w: {"card": card_of(w.member)},
        neighbour=200,
        stranger=404,
    ),
    "POST api/v1/members": Row("terminal", "members", 201, body=_enrolment, changes=True),
    "GET api/v1/members/<str:member_id>": Row(
        "terminal", "members/{member}", 200, neighbour=200, stranger=404
    ),
    "GET api/v1/members/<str:member_id>/transactions": Row(
        "terminal", "members/{member}/transactions", 200, neighbour=200, stranger=404
    ),
    "POST api/v1/purchases/quote": Row(
        "terminal", "purchases/quote", 200, body=_sale, neighbour=200, stranger=404
    ),
    "POST api/v1/purchases": Row(
        "terminal", "purchases", 201, body=_sale, stranger=404, changes=True
    ),
    # Purchases are the store's: another store of the same program gets 404 too.
    "GET api/v1/purchases/<str:purchase_id>": Row(
        "terminal", "purchases/{purchase}", 200, neighbour=404, stranger=404
    ),
    "POST api/v1/purchases/<str:purchase_id>/confirm": Row(
        "terminal", "purchases/{pending}/confirm", 200, neighbour=404, stranger=404, changes=True
    ),
    "POST api/v1/purchases/<str:purchase_id>/cancel": Row(
        "terminal", "purchases/{pending}/cancel", 200, neighbour=404, stranger=404, changes=True
    ),
    "POST api/v1/purchases/<str:purchase_id>/refunds": Row(
        "terminal",
        "purchases/{purchase}/refunds",
        201,
        body=lambda w: {"refund_number": "RF-H", "lines": [{"line_no": 1, "quantity": "1"}]},
        neighbour=404,
        stranger=404,
        changes=True,
    ),
    # The contract itself is public: client teams generate code from it.
    "GET api/v1/schema/": Row("public", "schema/", 200),
    "GET api/v1/docs/": Row("public", "docs/", 200),
    # Member API: everything is the signed-in member's own.
    "GET api/v1/me/": Row("member", "me/", 200),
    "GET api/v1/me/card": Row("member", "me/card", 200),
    "GET api/v1/me/consents": Row("member", "me/consents", 200),
    "PATCH api/v1/me/consents": Row(
        "member", "me/consents", 200, body=lambda w: {"marketing_sms": False}, changes=True
    ),
    "GET api/v1/me/deletion-request": Row("member", "me/deletion-request", 404),
    "POST api/v1/me/deletion-request": Row(
        "member", "me/deletion-request", 201, body=lambda w: {"comment": "x"}, changes=True
    ),
    "GET api/v1/me/offers": Row("member", "me/offers", 200),
    "GET api/v1/me/points": Row("member", "me/points", 200),
    "GET api/v1/me/tier": Row("member", "me/tier", 200),
    "GET api/v1/me/transactions": Row("member", "me/transactions", 200),
    "GET api/v1/me/purchases": Row("member", "me/purchases", 200),
    "GET api/v1/me/purchases/<str:purchase_id>": Row(
        "member", "me/purchases/{purchase}", 200, neighbour=404, stranger=404
    ),
    "POST api/v1/me/sign-out": Row("member", "me/sign-out", 204, changes=True),
    # Signing in needs no token; these answer the same whoever asks.
    "POST api/v1/me/sign-in/code": Row(
        "public",
        "me/sign-in/code",
        202,
        body=lambda w: {"phone": "+79990001122", "program": w.program.code},
    ),
    "POST api/v1/me/sign-in/token": Row(
        "public",
        "me/sign-in/token",
        400,
        body=lambda w: {"phone": w.member.phone, "code": "000000", "program": w.program.code},
    ),
    "POST api/v1/me/token/refresh": Row(
        "public", "me/token/refresh", 401, body=lambda w: {"refresh_token": "forged"}
    ),
}


def test_every_api_endpoint_has_a_row() -> None:
    endpoints = api_endpoints()
    assert endpoints - set(ROWS) == set(), "add a row to ROWS for each new endpoint"
    assert set(ROWS) - endpoints == set(), "remove the rows of endpoints that are gone"


# --- Calling ------------------------------------------------------------------------------


def _path(world: World, row: Row) -> str:
    return "/api/v1/" + row.path.format(
        member=world.member.pk, purchase=world.purchase.pk, pending=world.pending.pk
    )


def _token(member: Member) -> str:
    return app_session_start(member=member, ip="127.0.0.1").access_token


def call(world: World, key: str, row: Row, authorization: str | None) -> Any:
    method = key.split()[0].lower()
    headers: dict[str, str] = {}
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    if row.changes:
        headers["HTTP_IDEMPOTENCY_KEY"] = f"hostile-{next(_keys)}"
    query = row.query(world) if callable(row.query) else row.query
    path = _path(world, row)
    client = Client()
    if method == "get":
        return client.get(path, query or {}, **headers)
    data = json.dumps(row.body(world)) if row.body else ""
    return getattr(client, method)(path, data=data, content_type="application/json", **headers)


def db_state() -> dict[str, Any]:
    """What a refused call must leave as it was (timestamps of last use aside)."""
    return {
        "counts": {
            model.__name__: model.objects.count()
            for model in (
                Member,
                Card,
                Consent,
                Purchase,
                Refund,
                Transfer,
                Lot,
                OpenHold,
                IdempotencyKey,
                DeletionRequest,
            )
        },
        "members": sorted(
            Member.objects.values_list(
                "pk", "status", "tier_id", "first_name", "phone", "qualifying_spend"
            )
        ),
        "accounts": sorted(Account.objects.values_list("pk", "available", "pending", "on_hold")),
        "purchases": sorted(Purchase.objects.values_list("pk", "status")),
        "consents": sorted(Consent.objects.values_list("pk", "granted")),
        "revoked_sessions": sorted(
            MemberSession.objects.filter(revoked_at__isnull=False).values_list("pk", flat=True)
        ),
    }


# --- The attacks --------------------------------------------------------------------------


def _attacks(world: World, row: Row) -> list[tuple[str, str | None, int]]:
    """(what, Authorization header, expected status) of every caller who must not get in."""
    if row.auth == "terminal":
        attacks: list[tuple[str, str | None, int]] = [
            ("no key", None, 401),
            ("a wrong key", "Token not-a-real-key-0123456789", 401),
            ("a malformed header", "Token", 401),
            ("a member's token", f"Bearer {_token(world.member)}", 401),
            ("a blocked terminal", f"Token {world.blocked.key}", 403),
        ]
        if row.neighbour is not None and row.neighbour >= 400:
            attacks.append(("a terminal of another store", f"Token {world.neighbour.key}", 404))
        if row.stranger is not None:
            attacks.append(("a terminal of another program", f"Token {world.stranger.key}", 404))
        return attacks
    if row.auth == "member":
        attacks = [
            ("no token", None, 401),
            ("a wrong token", "Bearer not-a-real-token", 401),
            ("a terminal key", f"Token {world.till.key}", 401),
            ("a blocked member's token", f"Bearer {world.blocked_member_token}", 401),
        ]
        if row.neighbour is not None:
            attacks.append(("another member's token", f"Bearer {_token(world.other_member)}", 404))
        if row.stranger is not None:
            attacks.append(
                ("a member of another program", f"Bearer {_token(world.stranger_member)}", 404)
            )
        return attacks
    return []  # public: the rightful caller below is anyone


@pytest.mark.parametrize("key", sorted(ROWS))
def test_only_the_rightful_caller_gets_in_and_refusals_change_nothing(
    world: World, key: str
) -> None:
    row = ROWS[key]
    attacks = _attacks(world, row)
    before = db_state()
    for what, authorization, expected in attacks:
        response = call(world, key, row, authorization)
        assert response.status_code == expected, (what, response.status_code, response.content)
        if expected >= 400 and response["Content-Type"].startswith("application/json"):
            assert response.json()["code"], what
        if expected == 401:
            assert response.has_header("WWW-Authenticate"), what
        if expected == 404:
            # No existence leak: the answer does not name what was asked for.
            assert str(world.member.pk) not in response.content.decode(), what
        if row.auth != "public":
            assert db_state() == before, f"{what} changed the database"
    # Another store of the same program may see the program's members.
    if row.auth == "terminal" and row.neighbour is not None and row.neighbour < 400:
        response = call(world, key, row, f"Token {world.neighbour.key}")
        assert response.status_code == row.neighbour, response.content
    authorization = {
        "terminal": f"Token {world.till.key}",
        "member": f"Bearer {_token(world.member)}",
        "public": None,
    }[row.auth]
    response = call(world, key, row, authorization)
    assert response.status_code == row.ok, response.content


def test_enrolling_a_phone_known_in_another_program_reveals_nothing(world: World) -> None:
    body = {**_enrolment(world), "phone": world.member.phone}
    response = _post(world, "members", body, authorization=f"Token {world.stranger.key}")
    assert response.status_code == 201, response.content
    assert response.json()["id"] != str(world.member.pk)
    # Program A's own till is told the member exists, with its id (API.md).
    response = _post(world, "members", body, authorization=f"Token {world.till.key}")
    assert response.status_code == 409, response.content
    assert response.json()["id"] == str(world.member.pk)


# --- Mass assignment ----------------------------------------------------------------------

SERVER_SIDE = {
    "balance": {"available": 10**6, "pending": 0, "on_hold": 0},
    "tier": {"code": "silver", "name": "Silver"},
    "status": "blocked",
    "id": "00000000-0000-4000-8000-000000000001",
    "points": 10**6,
    "purchase_count": 99,
    "qualifying_spend": "1000000.00",
    "program": 1,
    "store": 1,
}
PURCHASE_SIDE = {
    "status": "completed",
    "id": "00000000-0000-4000-8000-000000000002",
    "balance_after": {"available": 10**6, "pending": 0, "on_hold": 0},
    "earn": {"points": 10**6, "breakdown": []},
    "total": "0.01",
    "payable": "0.00",
    "terminal": "x",
    "store": 1,
    "created_at": "2020-01-01T00:00:00Z",
}


def _post(world: World, path: str, body: Any, *, authorization: str, method: str = "post") -> Any:
    return getattr(Client(), method)(
        f"/api/v1/{path}",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=authorization,
        HTTP_IDEMPOTENCY_KEY=f"mass-{next(_keys)}",
    )


MASS_ASSIGNMENT = [("members", _enrolment, name, value) for name, value in SERVER_SIDE.items()] + [
    ("purchases", _sale, name, value) for name, value in PURCHASE_SIDE.items()
]


@pytest.mark.parametrize(
    ("path", "body", "name", "value"),
    MASS_ASSIGNMENT,
    ids=[f"{path}.{name}" for path, _b, name, _v in MASS_ASSIGNMENT],
)
def test_enrolment_and_purchase_refuse_server_side_fields(
    world: World, path: str, body: Body, name: str, value: Any
) -> None:
    before = db_state()
    response = _post(
        world, path, {**body(world), name: value}, authorization=f"Token {world.till.key}"
    )
    assert response.status_code == 400, response.content
    assert name in response.json()["errors"]
    assert db_state() == before


@pytest.mark.parametrize(
    ("where", "body"),
    [
        ("member.balance", {"member": {"id": "MEMBER", "balance": 10**6}}),
        ("member.status", {"member": {"id": "MEMBER", "status": "active"}}),
        ("lines[0].earned_points", {"lines": [{"amount": "10.00", "earned_points": 10**6}]}),
        ("lines[0].redeemed_amount", {"lines": [{"amount": "10.00", "redeemed_amount": "10.00"}]}),
    ],
)
def test_a_purchase_refuses_server_side_fields_inside_its_parts(
    world: World, where: str, body: dict[str, Any]
) -> None:
    sale = _sale(world)
    if "member" in body:
        sale["member"] = {
            k: (str(world.member.pk) if v == "MEMBER" else v) for k, v in body["member"].items()
        }
    else:
        sale["lines"] = body["lines"]
    before = db_state()
    for path in ("purchases/quote", "purchases"):
        response = _post(world, path, sale, authorization=f"Token {world.till.key}")
        assert response.status_code == 400, response.content
        assert where in response.json()["errors"], response.json()
    assert db_state() == before


@pytest.mark.parametrize(
    "extra",
    [
        {"points_reversed": 0},
        {"points_returned": 10**6},
        {"cash_refund": "1000000.00"},
        {"shortfall_points": 0},
        {"amount": "1000000.00"},
    ],
)
def test_a_refund_refuses_server_side_fields(world: World, extra: dict[str, Any]) -> None:
    body = {"refund_number": "RF-M", **extra}
    before = db_state()
    response = _post(
        world,
        f"purchases/{world.purchase.pk}/refunds",
        body,
        authorization=f"Token {world.till.key}",
    )
    assert response.status_code == 400, response.content
    assert db_state() == before


@pytest.mark.parametrize("action", ["confirm", "cancel"])
def test_confirm_and_cancel_take_no_fields(world: World, action: str) -> None:
    before = db_state()
    response = _post(
        world,
        f"purchases/{world.pending.pk}/{action}",
        {"status": "completed", "redeem_points": 0},
        authorization=f"Token {world.till.key}",
    )
    assert response.status_code == 400, response.content
    assert db_state() == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", "me/consents", {"status": "blocked"}),
        ("patch", "me/consents", {"balance": {"available": 10**6}}),
        ("patch", "me/consents", {"tier": "silver"}),
        ("patch", "me/consents", {"personal_data": True, "marketing_sms": True}),
        ("post", "me/deletion-request", {"status": "done"}),
        ("post", "me/deletion-request", {"member": "00000000-0000-4000-8000-000000000003"}),
    ],
)
def test_the_member_api_refuses_fields_it_does_not_take(
    world: World, method: str, path: str, body: dict[str, Any]
) -> None:
    before = db_state()
    response = _post(
        world, path, body, authorization=f"Bearer {_token(world.member)}", method=method
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert db_state() == before
