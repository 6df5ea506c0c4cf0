"""Two programs, their stores and tills, members with points, and purchases: a world to attack.

Everything is made through the services production uses (terminal_create,
member_enroll, points_credit, the cashier API itself for purchases), so the
hostile tests see the same rows a real install has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accounts.models import Member
from accounts.services import member_block
from ledger.services import points_credit
from portal.services import app_session_start
from pos.models import Purchase
from pos.services import terminal_block
from programs.models import Program, Store
from tests.pos.factories import (
    StoreFactory,
    Till,
    card_of,
    member_create,
    program_create,
    receipt,
    tiers_create,
    till_create,
)

__all__ = ["World", "card_of", "receipt", "world_create"]


@dataclass
class World:
    """Program A with two stores; program B with one. `till` is the caller under test."""

    program: Program
    store: Store
    till: Till  # store A1: the terminal whose data the others try to reach
    neighbour: Till  # store A2 of the same program
    blocked: Till  # store A1, blocked
    stranger: Till  # program B
    member: Member  # program A, 500 points
    other_member: Member  # program A, no points
    blocked_member: Member  # program A, blocked (a token made before the block)
    blocked_member_token: str
    stranger_member: Member  # program B, 500 points
    purchase: Purchase  # completed at store A1 by `member`
    pending: Purchase  # pending (commit=false) at store A1 by `member`
    stranger_purchase: Purchase  # completed in program B


def _buy(till: Till, member: Member | None, *amounts: str, **extra: Any) -> Purchase:
    body = receipt(*amounts, **extra)
    if member is not None:
        body["member"] = {"card": card_of(member)}
    response = till.post("purchases", body)
    assert response.status_code == 201, response.content
    return Purchase.objects.get(pk=response.json()["id"])


def _points(member: Member, amount: int) -> None:
    points_credit(
        account_or_member=member,
        amount=amount,
        kind="bonus",
        reference=f"hostile:{member.pk}",
        source="base",
    )


def world_create() -> World:
    program = program_create()
    tiers_create(program)
    store = StoreFactory(program=program)
    till = till_create(store=store, name="Till A1")
    neighbour = till_create(store=StoreFactory(program=program), name="Till A2")
    blocked = till_create(store=store, name="Till A1 blocked")
    terminal_block(terminal=blocked.terminal)

    other_program = program_create()
    tiers_create(other_program)
    stranger = till_create(program=other_program, name="Till B1")

    member = member_create(program=program, first_name="Alice")
    other_member = member_create(program=program, first_name="Bob")
    blocked_member = member_create(program=program, first_name="Dmitry")
    blocked_member_token = app_session_start(member=blocked_member, ip="127.0.0.1").access_token
    member_block(member=blocked_member)
    stranger_member = member_create(program=other_program, first_name="Carol")
    _points(member, 500)
    _points(stranger_member, 500)

    purchase = _buy(till, member, "1000.00", "200.00")
    pending = _buy(till, member, "300.00", redeem_points=10, commit=False)
    stranger_purchase = _buy(stranger, stranger_member, "400.00")
    for m in (member, other_member, stranger_member):
        m.refresh_from_db()
    return World(
        program=program,
        store=store,
        till=till,
        neighbour=neighbour,
        blocked=blocked,
        stranger=stranger,
        member=member,
        other_member=other_member,
        blocked_member=blocked_member,
        blocked_member_token=blocked_member_token,
        stranger_member=stranger_member,
        purchase=purchase,
        pending=pending,
        stranger_purchase=stranger_purchase,
    )
