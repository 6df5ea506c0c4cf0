"""Ledger test helpers: members with points, going through the services as production does."""

from __future__ import annotations

import datetime
import itertools
from typing import Any

from accounts.models import Member
from ledger.models import Account, Transfer
from ledger.services import points_credit
from programs.models import Program
from tests.accounts.factories import ProgramFactory, UserFactory, member_create

__all__ = ["ProgramFactory", "UserFactory", "credit", "member_create", "member_with_points"]

_refs = itertools.count(1)


def ref(prefix: str = "test") -> str:
    """A fresh unique transfer reference."""
    return f"{prefix}:{next(_refs)}"


def credit(member: Member | Account, amount: int, **kwargs: Any) -> Transfer:
    """Credit spendable base points (kind accrual unless told), expiring per the program."""
    values: dict[str, Any] = {
        "account_or_member": member,
        "amount": amount,
        "kind": Transfer.Kind.BONUS,
        "reference": ref("credit"),
        "source": "base",
    }
    values.update(kwargs)
    return points_credit(**values)


def member_with_points(
    points: int,
    *,
    program: Program | None = None,
    expires_at: datetime.datetime | None = None,
    **kwargs: Any,
) -> Member:
    """A member holding `points` available points in one lot."""
    member = member_create(program or ProgramFactory(), **kwargs)
    if points:
        credit(member, points, expires_at=expires_at)
    return member


def balances(member: Member) -> tuple[int, int, int]:
    """(available, pending, on_hold) as the database has them now."""
    account = Account.objects.filter(member=member).first()
    if account is None:
        return 0, 0, 0
    return account.available, account.pending, account.on_hold
