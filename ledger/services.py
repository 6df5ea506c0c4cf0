"""Points ledger operations: the only write path for points (see ledger/models.py).

Calling conventions (for pos, campaigns, the admin and the jobs)
---------------------------------------------------------------
- Every function is keyword-only and atomic. Called outside a transaction it
  opens one; called inside the caller's ``transaction.atomic()`` it runs in that
  transaction *without* a savepoint (a savepoint costs two round trips on the
  hottest path). Consequently, after ``LedgerBusy`` or any database error the
  caller's transaction is unusable and must be rolled back (let it propagate).
  Domain errors (``InsufficientPoints``, ``HoldNotOpen``, ``ReversalExceeds``,
  ``DuplicateReference`` found before writing) are raised *before* anything is
  written, so the caller may catch them and carry on.
- ``account_or_member``: a ``Member`` or an ``Account``. Pass the ``Account``
  returned by ``account_lock`` inside the same transaction to skip the lock round
  trip: a purchase calls ``account_lock`` once, then debit/credit/hold.
- Lock order: the member account row (``SELECT … FOR UPDATE``) before anything
  else; lots are only changed under that lock. Waiting for a lock is bounded by
  ``settings.LEDGER_LOCK_TIMEOUT_MS`` (default 2000, ``SET LOCAL lock_timeout``);
  past it ``LedgerBusy`` is raised (the API answers 409 with ``Retry-After``).
- ``reference`` is unique across the ledger. Calling a service again with a
  reference it already used for the same operation returns the transfer that
  was recorded and changes nothing (a replay); using it for a different
  operation raises ``DuplicateReference``.
- The returned ``Transfer.account`` is the member ``Account`` with its
  ``available``/``pending``/``on_hold`` as they are after the operation.
- ``now`` defaults to ``timezone.now()``; tests and imports pass their own.
- Each credit/debit is a constant number of SQL statements, whatever the
  member's history, in one round trip: the lock and one data-modifying
  statement sent together (a debit plans which lots to take inside that
  statement); with an account from ``account_lock``, just the write statement.
  Its cost grows with the member's *open* lots only (partial index), never
  with their history.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Member
from ledger.models import (
    Account,
    AdjustmentRequest,
    Mismatch,
    OpenHold,
    Transfer,
)
from loyalty_site import metrics
from loyalty_site.db import lock_conflict, prepared_cursor
from programs.models import Program

__all__ = [
    "AdjustmentNotAllowed",
    "DuplicateReference",
    "HoldNotOpen",
    "ImportResult",
    "ImportRow",
    "InsufficientPoints",
    "JobResult",
    "LedgerBusy",
    "LedgerError",
    "Reversal",
    "ReversalExceeds",
    "account_lock",
    "account_mark_locked",
    "adjustment_approve",
    "adjustment_reject",
    "adjustment_request",
    "balances_import",
    "hold_post",
    "hold_void",
    "holds_expire",
    "ledger_reconcile",
    "lots_expire",
    "points_activate",
    "points_credit",
    "points_debit",
    "points_hold",
    "register_hold_expiry_handler",
    "system_account",
    "transfer_reverse",
]

logger = logging.getLogger(__name__)

Kind = Transfer.Kind
AccountOrMember = Account | Member

# Funding sources every program has; campaigns add "campaign:<id>".
STANDARD_SOURCES = ("base", "adjustments", "opening")
# What a refund can undo: earned points are taken back, spent points returned.
_EARN_KINDS = frozenset({Kind.ACCRUAL, Kind.BONUS, Kind.ADJUSTMENT, Kind.OPENING})
_SPEND_KINDS = frozenset({Kind.REDEMPTION, Kind.ADJUSTMENT})
_BATCH = 10_000  # rows per job batch: big enough to be set-based, short enough to hold locks


# --- Errors -------------------------------------------------------------------------------


class LedgerError(Exception):
    """Base of the ledger's domain errors."""


class InsufficientPoints(LedgerError):
    """Fewer spendable points than asked for; ``.available`` is what could be spent now."""

    def __init__(self, *, available: int, requested: int) -> None:
        super().__init__(
            _("Not enough points: %(available)d available, %(requested)d requested.")
            % {"available": available, "requested": requested}
        )
        self.available = available
        self.requested = requested


class LedgerBusy(LedgerError):
    """The member's account is locked by another operation for longer than the lock timeout."""

    retry_after = 1  # seconds, for the API's Retry-After

    def __init__(self) -> None:
        super().__init__(_("The member's points are being changed by another operation; retry."))


class DuplicateReference(LedgerError):
    """The reference was already used for a different operation (``.transfer``)."""

    def __init__(self, transfer: Transfer | None, reference: str) -> None:
        super().__init__(_("Reference %(ref)s is already used.") % {"ref": reference})
        self.transfer = transfer
        self.reference = reference


class HoldNotOpen(LedgerError):
    """The hold was already posted, voided or expired (``.resolution``, may be None)."""

    def __init__(self, hold: Transfer, resolution: Transfer | None) -> None:
        super().__init__(_("The hold is no longer open."))
        self.hold = hold
        self.resolution = resolution


class ReversalExceeds(LedgerError):
    """A refund asked to take back or return more than the transfer has left (I7)."""

    def __init__(self, *, remaining: int, requested: int) -> None:
        super().__init__(
            _("Only %(remaining)d points of this transfer can still be reversed.")
            % {"remaining": remaining}
        )
        self.remaining = remaining
        self.requested = requested


class AdjustmentNotAllowed(LedgerError):
    """A maker–checker rule refused the decision (own request, already decided...)."""


@dataclass
class Reversal:
    """What ``transfer_reverse`` did: points moved, the shortfall, and the transfers."""

    points: int
    shortfall: int
    transfers: list[Transfer] = field(default_factory=list)
    account: Account | None = None


# --- Plumbing -----------------------------------------------------------------------------


def _lock_timeout() -> str:
    return f"{int(getattr(settings, 'LEDGER_LOCK_TIMEOUT_MS', 2000))}ms"


@contextmanager
def _atomic() -> Iterator[None]:
    """The caller's transaction if there is one (no savepoint round trips), else a new one."""
    if connection.in_atomic_block:
        yield
    else:
        with transaction.atomic():
            yield


def _fetch(sql: str, params: dict[str, Any] | Sequence[Any]) -> list[tuple[Any, ...]]:
    try:
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    except OperationalError as exc:
        if lock_conflict(exc):
            raise LedgerBusy() from exc
        raise


def _system_id_sql(name: str) -> str:
    """A scalar subquery for a system account id, so no extra round trip is needed."""
    return (
        "(SELECT id FROM ledger_account WHERE program_id = %(program)s AND member_id IS NULL"
        f" AND kind = %({name}_kind)s AND source = %({name}_source)s)"
    )


def _system_params(name: str, kind: str, source: str = "") -> dict[str, str]:
    return {f"{name}_kind": kind, f"{name}_source": source}


def _ensure_system_accounts(program_id: int, sources: Sequence[str] = ()) -> None:
    """Create the program's system accounts that do not exist yet (one statement)."""
    rows: list[tuple[str, str]] = [
        (kind, "")
        for kind in (
            Account.Kind.REDEEMED,
            Account.Kind.EXPIRED,
            Account.Kind.REVERSED,
            Account.Kind.PENDING,
            Account.Kind.HOLDS,
        )
    ]
    rows += [(Account.Kind.ISSUED, s) for s in (*STANDARD_SOURCES, *sources)]
    kinds = [k for k, _s in rows]
    srcs = [s for _k, s in rows]
    _fetch(
        "INSERT INTO ledger_account (program_id, kind, source, member_id, available, pending,"
        " on_hold, created_at) SELECT %s, k, s, NULL, 0, 0, 0, now()"
        " FROM unnest(%s::text[], %s::text[]) AS v(k, s)"
        " ON CONFLICT (program_id, kind, source) WHERE member_id IS NULL DO NOTHING",
        [program_id, kinds, srcs],
    )


def system_account(*, program: Program, kind: str, source: str = "") -> Account:
    """The program's system account of this kind (and funding source), created if missing."""
    _ensure_system_accounts(program.pk, [source] if kind == Account.Kind.ISSUED and source else [])
    return Account.objects.get(program=program, kind=kind, source=source, member__isnull=True)


def _account_from_row(row: tuple[Any, ...], member: Member | None) -> Account:
    account = Account(
        id=row[0],
        program_id=row[1],
        member_id=row[2],
        kind=Account.Kind.MEMBER,
        source="",
        available=row[3],
        pending=row[4],
        on_hold=row[5],
    )
    account._state.adding = False
    account._state.db = "default"
    if member is not None:
        account.member = member
    return account_mark_locked(account)


_LOCK_SQL = (
    "SELECT a.id, a.program_id, a.member_id, a.available, a.pending, a.on_hold"
    " FROM ledger_account a, (SELECT set_config('lock_timeout', %(lock_timeout)s, true)) AS cfg"
    " WHERE a.{column} = %(lock_key)s FOR UPDATE OF a"
)
# In a statement sent together with the lock, before its result is known.
_ACCOUNT_OF_MEMBER = "(SELECT id FROM ledger_account WHERE member_id = %(lock_key)s)"


def account_lock(account_or_member: AccountOrMember) -> Account:
    """Lock the member's points account for the rest of the transaction and return it.

    Creates the account (and the program's system accounts) on first use. Must be
    called inside ``transaction.atomic()``; raises ``LedgerBusy`` after the lock
    timeout. Pass the result to the other services to skip their own lock.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("account_lock() must be called inside transaction.atomic()")
    return _lock(account_or_member)


def _lock(account_or_member: AccountOrMember) -> Account:
    return _lock_and_run(account_or_member, None, {})[0]


def _transaction_mark() -> object:
    """An object that lives as long as the row locks taken so far in this transaction.

    Django gives the connection a new ``run_on_commit`` list when the transaction
    commits or rolls back, and when a savepoint rolls back (which releases the row
    locks taken after it), so the list itself marks "these locks are still held".
    """
    return connection.run_on_commit


def account_mark_locked(account: Account) -> Account:
    """Note that this transaction holds the row lock of ``account`` (the services skip theirs).

    For callers that lock the account row in their own SQL. The note is void once the
    transaction ends: an ``Account`` kept beyond it is locked again on its next use.
    """
    account._ledger_locked = _transaction_mark()  # type: ignore[attr-defined]
    return account


def _is_locked(account_or_member: AccountOrMember) -> bool:
    return (
        isinstance(account_or_member, Account)
        and connection.in_atomic_block
        and getattr(account_or_member, "_ledger_locked", None) is _transaction_mark()
    )


def _lock_and_run(
    account_or_member: AccountOrMember, sql: str | None, params: dict[str, Any]
) -> tuple[Account, list[tuple[Any, ...]]]:
    """Lock the member's account row, then run ``sql`` (which says ``%(account)s``).

    Both go in one round trip: two statements in one simple query, so the second
    one's snapshot is taken after the lock is granted (it sees every change the
    previous holder of the lock committed). An account that is already locked
    (from ``account_lock``) is not locked again. Creates a missing member account.
    """
    if _is_locked(account_or_member):
        account = account_or_member
        rows = _fetch(sql, {**params, "account": account.pk}) if sql else []
        return account, rows  # type: ignore[return-value]
    by_member = isinstance(account_or_member, Member)
    lock_params = {
        **params,
        "lock_timeout": _lock_timeout(),
        "lock_key": account_or_member.pk,
    }
    lock_sql = _LOCK_SQL.format(column="member_id" if by_member else "id")
    follow = ""
    if sql:
        follow = sql.replace("%(account)s", _ACCOUNT_OF_MEMBER if by_member else "%(lock_key)s")
    if follow and _MULTI_STATEMENT:
        lock_rows, rows = _fetch_two(f"{lock_sql};\n{follow}", lock_params)
    else:
        lock_rows = _fetch(lock_sql, lock_params)
        rows = _fetch(follow, lock_params) if follow and lock_rows else []
    if not lock_rows:
        if not by_member:
            raise Account.DoesNotExist(account_or_member.pk)
        # First points of this member: create the account, then start again.
        _ensure_system_accounts(account_or_member.program_id)
        _fetch(
            "INSERT INTO ledger_account (program_id, kind, source, member_id, available, pending,"
            " on_hold, created_at) VALUES (%s, 'member', '', %s, 0, 0, 0, now())"
            " ON CONFLICT (member_id) DO NOTHING",
            [account_or_member.program_id, account_or_member.pk],
        )
        return _lock_and_run(account_or_member, sql, params)
    member = account_or_member if by_member else None
    if not by_member and "member" in account_or_member._state.fields_cache:
        member = account_or_member.member
    return _account_from_row(lock_rows[0], member), rows


# Two statements in one execute need client-side binding (Django's default with psycopg 3).
_MULTI_STATEMENT = not settings.DATABASES["default"].get("OPTIONS", {}).get("server_side_binding")


def _fetch_two(
    sql: str, params: dict[str, Any]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            first = cursor.fetchall()
            cursor.nextset()
            second = cursor.fetchall() if cursor.description else []
            return first, second
    except OperationalError as exc:
        if lock_conflict(exc):
            raise LedgerBusy() from exc
        raise


def _program_for(account_or_member: AccountOrMember) -> Program:
    if isinstance(account_or_member, Member):
        return account_or_member.program
    return _program_of(account_or_member)


def _program_of(account: Account) -> Program:
    member = account._state.fields_cache.get("member")
    if member is not None and "program" in member._state.fields_cache:
        return member.program
    return Program.objects.get(pk=account.program_id)


def _make_transfer(
    *,
    id: int,
    account: Account,
    reference: str,
    kind: str,
    amount: int,
    debit_account_id: int,
    credit_account_id: int,
    created_at: datetime.datetime,
    by: Any = None,
    description: str = "",
    purchase_ref: str = "",
    resolves_id: int | None = None,
    reverses_id: int | None = None,
    hold_expires_at: datetime.datetime | None = None,
) -> Transfer:
    transfer = Transfer(
        id=id,
        reference=reference,
        kind=kind,
        amount=amount,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        account=account,
        resolves_id=resolves_id,
        reverses_id=reverses_id,
        hold_expires_at=hold_expires_at,
        purchase_ref=purchase_ref,
        description=description,
        created_by_id=getattr(by, "pk", None),
        created_at=created_at,
    )
    transfer._state.adding = False
    transfer._state.db = "default"
    transaction.on_commit(partial(metrics.points_moved, kind, amount))
    return transfer


def _replay(account: Account, reference: str, kind: str, amount: int | None) -> Transfer:
    """The transfer already recorded under ``reference`` if it is the same operation."""
    existing = Transfer.objects.filter(reference=reference).first()
    if (
        existing is None
        or existing.kind != kind
        or existing.account_id != account.pk
        or (amount is not None and existing.amount != amount)
    ):
        raise DuplicateReference(existing, reference)
    existing.account = account
    return existing


def _user_id(by: Any) -> int | None:
    if by is None or not getattr(by, "is_authenticated", False):
        return None
    return by.pk


_INSERT_TRANSFER = (
    "INSERT INTO ledger_transfer (reference, kind, amount, debit_account_id, credit_account_id,"
    " account_id, resolves_id, reverses_id, hold_expires_at, purchase_ref, description,"
    " created_by_id, created_at)"
)


# --- Credit -------------------------------------------------------------------------------

_CREDIT_SQL = f"""
WITH t AS (
    {_INSERT_TRANSFER}
    SELECT %(reference)s, %(kind)s, %(amount)s, {_system_id_sql("src")},
           CASE WHEN %(pending)s THEN {_system_id_sql("pend")} ELSE %(account)s END,
           %(account)s, NULL, %(reverses)s, NULL, %(purchase_ref)s, %(description)s,
           %(by)s, %(now)s
    WHERE %(account)s IS NOT NULL
    ON CONFLICT ON CONSTRAINT ledger_transfer_unique_reference DO NOTHING
    RETURNING id, debit_account_id, credit_account_id
), l AS (
    INSERT INTO ledger_lot (account_id, transfer_id, amount, remaining, source, pending,
                            available_at, expires_at, created_at)
    SELECT %(account)s, t.id, %(amount)s, %(amount)s, %(source)s, %(pending)s,
           %(available_at)s, %(expires_at)s, %(now)s
    FROM t
), a AS (
    UPDATE ledger_account SET
        available = available + CASE WHEN %(pending)s THEN 0 ELSE %(amount)s END,
        pending = pending + CASE WHEN %(pending)s THEN %(amount)s ELSE 0 END
    FROM t WHERE ledger_account.id = %(account)s
    RETURNING available, pending, on_hold
)
SELECT t.id, t.debit_account_id, t.credit_account_id, a.available, a.pending, a.on_hold
FROM t, a
"""


def points_credit(
    *,
    account_or_member: AccountOrMember,
    amount: int,
    kind: str,
    reference: str,
    source: str,
    expires_at: datetime.datetime | None = None,
    available_at: datetime.datetime | None = None,
    never_expires: bool = False,
    description: str = "",
    by: Any = None,
    purchase_ref: str = "",
    now: datetime.datetime | None = None,
) -> Transfer:
    """Credit ``amount`` points to the member from the ``issued:<source>`` funding account.

    Creates one lot. ``source``: "base", "campaign:<id>", "adjustments", "opening".
    ``kind``: accrual, bonus, adjustment, opening. Defaults from the program:
    ``expires_at`` = now + ``points_expire_days`` (never when the program has none,
    or with ``never_expires=True``); ``available_at`` = now, or for accruals now +
    ``accrual_delay_days``. A lot whose ``available_at`` is in the future is *pending*
    (counted in ``pending``, not spendable) until ``points_activate`` runs.
    """
    if amount <= 0:
        raise ValueError("amount must be a positive number of points")
    if kind not in (Kind.ACCRUAL, Kind.BONUS, Kind.ADJUSTMENT, Kind.OPENING):
        raise ValueError(f"{kind!r} is not a credit kind")
    now = now or timezone.now()
    with _atomic():
        program: Program | None = None
        if available_at is None:
            available_at = now
            if kind == Kind.ACCRUAL:
                program = _program_for(account_or_member)
                available_at = now + datetime.timedelta(days=program.accrual_delay_days)
        if expires_at is None and not never_expires:
            program = program or _program_for(account_or_member)
            if program.points_expire_days:
                expires_at = now + datetime.timedelta(days=program.points_expire_days)
        program_id = account_or_member.program_id
        if source not in STANDARD_SOURCES:
            _ensure_system_accounts(program_id, [source])
        pending = available_at > now
        account, rows = _lock_and_run(
            account_or_member,
            _CREDIT_SQL,
            {
                "reference": reference,
                "kind": kind,
                "amount": amount,
                "program": program_id,
                **_system_params("src", Account.Kind.ISSUED, source),
                **_system_params("pend", Account.Kind.PENDING),
                "pending": pending,
                "reverses": None,
                "purchase_ref": purchase_ref,
                "description": description,
                "by": _user_id(by),
                "now": now,
                "source": source,
                "available_at": available_at,
                "expires_at": expires_at,
            },
        )
        if not rows:
            return _replay(account, reference, kind, amount)
        tid, debit_id, credit_id, account.available, account.pending, account.on_hold = rows[0]
        return _make_transfer(
            id=tid,
            account=account,
            reference=reference,
            kind=kind,
            amount=amount,
            debit_account_id=debit_id,
            credit_account_id=credit_id,
            created_at=now,
            by=by,
            description=description,
            purchase_ref=purchase_ref,
        )


# --- Debit and hold -----------------------------------------------------------------------

# Open lots read per spend before asking again for all of them (see _SPEND_SQL).
SPEND_LOT_WINDOW = 32

# Spendable lots in spending order (soonest expiry first, never an expired or pending
# lot), as many as cover the amount, planned and written in one statement. Nothing is
# written when they do not cover it; the last column says how much was spendable.
# Only the first %(lot_window)s open lots are read (an index range scan that stops
# there), so a member with a long history costs what a new one costs; when they do
# not cover the amount, the caller asks again with no limit (LIMIT NULL).
_SPEND_SQL = f"""
WITH lots AS MATERIALIZED (
    SELECT id, remaining, sum(remaining) OVER (ORDER BY expires_at, id) AS running
    FROM (
        SELECT id, remaining, expires_at FROM ledger_lot
        WHERE account_id = %(account)s AND remaining > 0 AND NOT pending
          AND (expires_at IS NULL OR expires_at > %(now)s)
        ORDER BY expires_at, id
        LIMIT %(lot_window)s
    ) AS open_lots
), spendable AS (
    SELECT COALESCE(max(running), 0) AS total FROM lots
), v AS MATERIALIZED (
    SELECT id AS lot_id, LEAST(remaining, %(amount)s - (running - remaining)) AS take
    FROM lots, spendable
    WHERE running - remaining < %(amount)s AND spendable.total >= %(amount)s
), t AS (
    {_INSERT_TRANSFER}
    SELECT %(reference)s, %(kind)s, %(amount)s, %(account)s, {_system_id_sql("to")},
           %(account)s, NULL, NULL, %(hold_expires_at)s, %(purchase_ref)s, %(description)s,
           %(by)s, %(now)s
    FROM spendable WHERE spendable.total >= %(amount)s
    ON CONFLICT ON CONSTRAINT ledger_transfer_unique_reference DO NOTHING
    RETURNING id, credit_account_id
), al AS (
    INSERT INTO ledger_allocation (transfer_id, lot_id, amount)
    SELECT t.id, v.lot_id, v.take FROM t, v
), lu AS (
    UPDATE ledger_lot SET remaining = remaining - v.take
    FROM v, t WHERE ledger_lot.id = v.lot_id
), oh AS (
    INSERT INTO ledger_openhold (transfer_id, account_id, expires_at)
    SELECT t.id, %(account)s, %(hold_expires_at)s FROM t WHERE %(is_hold)s
), a AS (
    UPDATE ledger_account SET
        available = available - %(amount)s,
        on_hold = on_hold + CASE WHEN %(is_hold)s THEN %(amount)s ELSE 0 END
    FROM t WHERE ledger_account.id = %(account)s
    RETURNING available, pending, on_hold
)
SELECT t.id, t.credit_account_id, a.available, a.pending, a.on_hold, spendable.total
FROM spendable LEFT JOIN (t CROSS JOIN a) ON true
"""


def _spend(
    *,
    account_or_member: AccountOrMember,
    amount: int,
    kind: str,
    reference: str,
    to_kind: str,
    to_source: str,
    hold_expires_at: datetime.datetime | None,
    description: str,
    by: Any,
    purchase_ref: str,
    now: datetime.datetime | None,
) -> Transfer:
    if amount <= 0:
        raise ValueError("amount must be a positive number of points")
    now = now or timezone.now()
    is_hold = kind == Kind.HOLD
    params = {
        "reference": reference,
        "kind": kind,
        "amount": amount,
        "program": account_or_member.program_id,
        **_system_params("to", to_kind, to_source),
        "hold_expires_at": hold_expires_at,
        "purchase_ref": purchase_ref,
        "description": description,
        "by": _user_id(by),
        "now": now,
        "is_hold": is_hold,
        "lot_window": SPEND_LOT_WINDOW,
    }
    with _atomic():
        account, rows = _lock_and_run(account_or_member, _SPEND_SQL, params)
        tid, credit_id, available, pending, on_hold, spendable = rows[0]
        if tid is None and spendable < amount:
            # The first lots did not cover it: all of them might (the account is locked now).
            rows = _fetch(_SPEND_SQL, {**params, "account": account.pk, "lot_window": None})
            tid, credit_id, available, pending, on_hold, spendable = rows[0]
        if tid is None:
            # Nothing written: either a replay of this reference, or not enough points.
            if Transfer.objects.filter(reference=reference).exists():
                return _replay(account, reference, kind, amount)
            raise InsufficientPoints(available=int(spendable), requested=amount)
        account.available, account.pending, account.on_hold = available, pending, on_hold
        return _make_transfer(
            id=tid,
            account=account,
            reference=reference,
            kind=kind,
            amount=amount,
            debit_account_id=account.pk,
            credit_account_id=credit_id,
            created_at=now,
            by=by,
            description=description,
            purchase_ref=purchase_ref,
            hold_expires_at=hold_expires_at,
        )


def points_debit(
    *,
    account_or_member: AccountOrMember,
    amount: int,
    kind: str = Kind.REDEMPTION,
    reference: str,
    to: str = Account.Kind.REDEEMED,
    to_source: str = "",
    description: str = "",
    by: Any = None,
    purchase_ref: str = "",
    now: datetime.datetime | None = None,
) -> Transfer:
    """Spend ``amount`` available points: oldest expiry first, never from an expired lot.

    ``to`` is the system account credited: ``redeemed`` (a purchase), ``reversed``,
    or ``issued`` with ``to_source="adjustments"`` (a negative adjustment).
    Raises ``InsufficientPoints`` (``.available``: what is spendable now) before
    writing anything.
    """
    return _spend(
        account_or_member=account_or_member,
        amount=amount,
        kind=kind,
        reference=reference,
        to_kind=to,
        to_source=to_source,
        hold_expires_at=None,
        description=description,
        by=by,
        purchase_ref=purchase_ref,
        now=now,
    )


def points_hold(
    *,
    account_or_member: AccountOrMember,
    amount: int,
    reference: str,
    expires_at: datetime.datetime | None = None,
    description: str = "",
    by: Any = None,
    purchase_ref: str = "",
    now: datetime.datetime | None = None,
) -> Transfer:
    """Reserve ``amount`` points (phase one): they leave ``available`` for ``on_hold``.

    The points are taken from lots now (so expiry cannot burn them while held).
    ``expires_at`` defaults to now + the program's ``hold_minutes``; after it,
    ``holds_expire`` voids the hold (or lets a registered handler resolve it).
    Resolve with ``hold_post`` or ``hold_void``.
    """
    now = now or timezone.now()
    if expires_at is None:
        if isinstance(account_or_member, Member):
            program = account_or_member.program
        else:
            program = _program_of(account_or_member)
        expires_at = now + datetime.timedelta(minutes=program.hold_minutes)
    return _spend(
        account_or_member=account_or_member,
        amount=amount,
        kind=Kind.HOLD,
        reference=reference,
        to_kind=Account.Kind.HOLDS,
        to_source="",
        hold_expires_at=expires_at,
        description=description,
        by=by,
        purchase_ref=purchase_ref,
        now=now,
    )


# --- Post and void ------------------------------------------------------------------------

# Whether the expiry job already burned lot `l` (its transfer `expire:<lot>` exists).
_BURNED = "EXISTS (SELECT 1 FROM ledger_transfer x WHERE x.reference = 'expire:' || l.id)"

_POST_SQL = f"""
WITH c AS (
    DELETE FROM ledger_openhold WHERE transfer_id = %(hold)s RETURNING transfer_id
), t AS (
    {_INSERT_TRANSFER}
    SELECT %(reference)s, %(kind)s, %(amount)s, {_system_id_sql("holds")}, %(credit)s,
           %(account)s, c.transfer_id, NULL, NULL, %(purchase_ref)s, %(description)s,
           %(by)s, %(now)s
    FROM c
    RETURNING id, debit_account_id, credit_account_id
), x AS (
    {_INSERT_TRANSFER}
    SELECT %(exp_reference)s, 'expiry', %(expired)s, %(account)s, {_system_id_sql("exp")},
           %(account)s, NULL, NULL, NULL, %(purchase_ref)s, '', %(by)s, %(now)s
    FROM t WHERE %(expired)s > 0
), v AS (
    SELECT * FROM unnest(%(lots)s::bigint[], %(gives)s::bigint[]) AS v(lot_id, give)
), al AS (
    INSERT INTO ledger_allocation (transfer_id, lot_id, amount)
    SELECT t.id, v.lot_id, v.give FROM t, v
), lu AS (
    UPDATE ledger_lot SET remaining = remaining + v.give
    FROM v, t WHERE ledger_lot.id = v.lot_id
), a AS (
    UPDATE ledger_account SET
        on_hold = on_hold - %(amount)s,
        available = available + %(back)s
    FROM t WHERE ledger_account.id = %(account)s
    RETURNING available, pending, on_hold
)
SELECT t.id, t.debit_account_id, t.credit_account_id, a.available, a.pending, a.on_hold
FROM t, a
"""


def _resolve(
    *,
    hold: Transfer,
    reference: str,
    void: bool,
    description: str,
    by: Any,
    now: datetime.datetime | None,
) -> Transfer:
    if hold.kind != Kind.HOLD:
        raise ValueError("only a hold can be posted or voided")
    now = now or timezone.now()
    kind = Kind.HOLD_RELEASE if void else Kind.REDEMPTION
    with _atomic():
        account = _lock(
            hold.account if "account" in hold._state.fields_cache else Account(pk=hold.account_id)
        )
        lots: list[int] = []
        gives: list[int] = []
        expired = 0
        if void:
            # Points go back to the lots they were taken from, except lots that expired
            # meanwhile: a lot past its expiry never gains points (I6); that part burns.
            # A lot the expiry job already burned counts as expired whatever `now` says:
            # this call may have read the clock before waiting for the job's lock.
            for lot_id, amount, expires_at, burned in _fetch(
                f"SELECT al.lot_id, al.amount, l.expires_at, {_BURNED}"
                " FROM ledger_allocation al JOIN ledger_lot l ON l.id = al.lot_id"
                " WHERE al.transfer_id = %s",
                [hold.pk],
            ):
                if burned or (expires_at is not None and expires_at <= now):
                    expired += amount
                else:
                    lots.append(lot_id)
                    gives.append(amount)
        params = {
            "hold": hold.pk,
            "reference": reference,
            "kind": kind,
            "amount": hold.amount,
            "program": account.program_id,
            **_system_params("holds", Account.Kind.HOLDS),
            **_system_params("exp", Account.Kind.EXPIRED),
            "account": account.pk,
            "purchase_ref": hold.purchase_ref,
            "description": description,
            "by": _user_id(by),
            "now": now,
            "exp_reference": f"expire:hold:{hold.pk}",
            "expired": expired,
            "lots": lots,
            "gives": gives,
            "back": hold.amount - expired if void else 0,
        }
        if void:
            params["credit"] = account.pk
        else:
            params["credit"] = None
        sql = _POST_SQL
        if not void:
            sql = sql.replace("%(credit)s", _system_id_sql("red"))
            params.update(_system_params("red", Account.Kind.REDEEMED))
        try:
            rows = _fetch(sql, params)
        except IntegrityError as exc:
            # The transaction is aborted now: no further query to say which transfer.
            raise DuplicateReference(None, reference) from exc
        if not rows:
            resolution = Transfer.objects.filter(resolves=hold).first()
            if resolution is not None and resolution.reference == reference:
                resolution.account = account
                return resolution  # a replay of this very resolution
            raise HoldNotOpen(hold, resolution)
        tid, debit_id, credit_id, account.available, account.pending, account.on_hold = rows[0]
        return _make_transfer(
            id=tid,
            account=account,
            reference=reference,
            kind=kind,
            amount=hold.amount,
            debit_account_id=debit_id,
            credit_account_id=credit_id,
            created_at=now,
            by=by,
            description=description,
            purchase_ref=hold.purchase_ref,
            resolves_id=hold.pk,
        )


def hold_post(
    *,
    hold: Transfer,
    reference: str,
    description: str = "",
    by: Any = None,
    now: datetime.datetime | None = None,
) -> Transfer:
    """Phase two: the held points are spent (holds → redeemed, kind ``redemption``).

    Raises ``HoldNotOpen`` when the hold was already voided or expired; posting
    again with the same reference returns the first posting.
    """
    return _resolve(
        hold=hold, reference=reference, void=False, description=description, by=by, now=now
    )


def hold_void(
    *,
    hold: Transfer,
    reference: str,
    description: str = "",
    by: Any = None,
    now: datetime.datetime | None = None,
) -> Transfer:
    """Release the held points back to ``available`` (kind ``hold_release``).

    Points return to the lots they were taken from; the part whose lot expired
    while held is burned (an ``expiry`` transfer ``expire:hold:<hold id>``).
    Raises ``HoldNotOpen`` when the hold was already posted or voided.
    """
    return _resolve(
        hold=hold, reference=reference, void=True, description=description, by=by, now=now
    )


# Handlers that resolve an expired hold themselves (pos cancels its pending purchase).
_HOLD_EXPIRY_HANDLERS: list[Callable[[Transfer, datetime.datetime], bool]] = []


def register_hold_expiry_handler(handler: Callable[[Transfer, datetime.datetime], bool]) -> None:
    """Let an app to the right (pos) resolve expired holds: ``handler(hold, now) -> handled``.

    ``holds_expire`` calls each handler, in registration order, inside the
    transaction for that hold; a handler that returns True must have resolved the
    hold (e.g. cancelled the purchase, which calls ``hold_void``). If none does,
    the ledger voids the hold itself with reference ``hold-expire:<hold id>``.
    """
    if handler not in _HOLD_EXPIRY_HANDLERS:
        _HOLD_EXPIRY_HANDLERS.append(handler)


def holds_expire(*, now: datetime.datetime | None = None, limit: int = 1000) -> int:
    """Resolve every hold whose time ran out; returns how many this run resolved.

    Catches up on missed runs (every hold due by ``now``). Safe to run twice or
    concurrently: the hold's open row is deleted by whoever resolves it first and
    the other gets ``HoldNotOpen``, which is skipped.
    """
    now = now or timezone.now()
    done = 0
    while True:
        due = list(
            OpenHold.objects.filter(expires_at__lte=now)
            .order_by("expires_at", "transfer_id")
            .values_list("transfer_id", flat=True)[:limit]
        )
        progressed = 0
        for hold_id in due:
            try:
                with transaction.atomic():
                    hold = Transfer.objects.select_related("account").get(pk=hold_id)
                    if not any(handler(hold, now) for handler in _HOLD_EXPIRY_HANDLERS):
                        hold_void(hold=hold, reference=f"hold-expire:{hold_id}", now=now)
                done += 1
                progressed += 1
            except HoldNotOpen:
                progressed += 1
            except LedgerBusy:
                logger.info("hold %s is busy; the next run retries it", hold_id)
        if len(due) < limit or progressed == 0:
            return done


# --- Refunds ------------------------------------------------------------------------------


def transfer_reverse(
    *,
    transfer: Transfer,
    amount: int,
    reference: str,
    grace_days: int | None = None,
    description: str = "",
    by: Any = None,
    now: datetime.datetime | None = None,
) -> Reversal:
    """Undo ``amount`` points of a transfer, for a refund.

    - A credit (accrual, bonus...): take back earned points, from the credit's own
      lot first (pending or not), then from other available lots in spending
      order; never below zero. What cannot be taken is ``Reversal.shortfall``
      (kind ``refund_reversal``: pending → reversed, member → reversed; the second
      transfer's reference is ``<reference>:2``).
    - A debit (a posted hold or a direct redemption): give spent points back to
      the lots they came from (latest expiry first); where a lot has expired
      meanwhile, to a new lot expiring ``grace_days`` (default the program's
      ``refund_grace_days``) from now (kind ``refund_return``, one transfer).
    Raises ``ReversalExceeds`` when earlier reversals plus ``amount`` exceed the
    transfer (I7). A replay with the same reference returns what was recorded.
    """
    if amount <= 0:
        raise ValueError("amount must be a positive number of points")
    now = now or timezone.now()
    with _atomic():
        account = _lock(
            transfer.account
            if "account" in transfer._state.fields_cache
            else Account(pk=transfer.account_id)
        )
        earlier = list(
            Transfer.objects.filter(reference__in=[reference, f"{reference}:2"]).order_by("id")
        )
        if earlier:
            if any(t.reverses_id != transfer.pk for t in earlier):
                raise DuplicateReference(earlier[0], reference)
            points = sum(t.amount for t in earlier)
            for t in earlier:
                t.account = account
            return Reversal(
                points=points, shortfall=max(amount - points, 0), transfers=earlier, account=account
            )
        if transfer.kind in _SPEND_KINDS and (
            transfer.debit_account_id == account.pk or transfer.resolves_id is not None
        ):
            return _return_spent(
                transfer, account, amount, reference, grace_days, description, by, now
            )
        if (
            transfer.kind not in _EARN_KINDS
            or transfer.credit_account_id == transfer.debit_account_id
        ):
            raise ValueError(f"a {transfer.kind} transfer cannot be reversed; void or post holds")
        return _take_back(transfer, account, amount, reference, description, by, now)


_TAKE_BACK_READ = """
WITH done AS (
    SELECT COALESCE(sum(amount), 0) AS n FROM ledger_transfer
    WHERE reverses_id = %(transfer)s AND kind = 'refund_reversal'
)
SELECT done.n, l.id, l.remaining, l.pending FROM done LEFT JOIN LATERAL (
    SELECT id, remaining, pending, transfer_id, expires_at FROM ledger_lot
    WHERE account_id = %(account)s AND remaining > 0
      AND (transfer_id = %(transfer)s
           OR (NOT pending AND (expires_at IS NULL OR expires_at > %(now)s)))
) l ON true
ORDER BY (l.transfer_id = %(transfer)s) DESC, l.pending DESC, l.expires_at, l.id
"""

_TAKE_BACK_SQL = f"""
WITH v AS (
    SELECT * FROM unnest(%(lots)s::bigint[], %(takes)s::bigint[], %(pend)s::boolean[])
        AS v(lot_id, take, pending)
), t AS (
    {_INSERT_TRANSFER}
    SELECT %(reference)s
           || CASE WHEN s.pending AND %(both)s THEN '' WHEN %(both)s THEN ':2' ELSE '' END,
           'refund_reversal', s.n,
           CASE WHEN s.pending THEN {_system_id_sql("pend")} ELSE %(account)s END,
           {_system_id_sql("rev")}, %(account)s, NULL, %(transfer)s, NULL, %(purchase_ref)s,
           %(description)s, %(by)s, %(now)s
    FROM (SELECT pending, sum(take) AS n FROM v GROUP BY pending) s
    RETURNING id, reference, amount, debit_account_id, credit_account_id
), al AS (
    INSERT INTO ledger_allocation (transfer_id, lot_id, amount)
    SELECT t.id, v.lot_id, v.take FROM v JOIN t
        ON (t.debit_account_id = %(account)s) = (NOT v.pending)
), lu AS (
    UPDATE ledger_lot SET remaining = remaining - v.take FROM v WHERE ledger_lot.id = v.lot_id
), a AS (
    UPDATE ledger_account SET
        available = available - (SELECT COALESCE(sum(take), 0) FROM v WHERE NOT pending),
        pending = pending - (SELECT COALESCE(sum(take), 0) FROM v WHERE pending)
    WHERE id = %(account)s
    RETURNING available, pending, on_hold
)
SELECT t.id, t.reference, t.amount, t.debit_account_id, t.credit_account_id,
       a.available, a.pending, a.on_hold
FROM t, a ORDER BY t.id
"""


def _take_back(
    transfer: Transfer,
    account: Account,
    amount: int,
    reference: str,
    description: str,
    by: Any,
    now: datetime.datetime,
) -> Reversal:
    rows = _fetch(_TAKE_BACK_READ, {"transfer": transfer.pk, "account": account.pk, "now": now})
    done = int(rows[0][0])
    if done + amount > transfer.amount:
        raise ReversalExceeds(remaining=transfer.amount - done, requested=amount)
    lots: list[int] = []
    takes: list[int] = []
    pend: list[bool] = []
    left = amount
    for _done, lot_id, remaining, pending in rows:
        if lot_id is None or left == 0:
            break
        take = min(remaining, left)
        lots.append(lot_id)
        takes.append(take)
        pend.append(pending)
        left -= take
    taken = amount - left
    if taken == 0:
        return Reversal(points=0, shortfall=amount, transfers=[], account=account)
    out = _fetch(
        _TAKE_BACK_SQL,
        {
            "lots": lots,
            "takes": takes,
            "pend": pend,
            "reference": reference,
            "both": len(set(pend)) == 2,
            "program": account.program_id,
            **_system_params("pend", Account.Kind.PENDING),
            **_system_params("rev", Account.Kind.REVERSED),
            "account": account.pk,
            "transfer": transfer.pk,
            "purchase_ref": transfer.purchase_ref,
            "description": description,
            "by": _user_id(by),
            "now": now,
        },
    )
    transfers = []
    for tid, ref, amt, debit_id, credit_id, available, pending_, on_hold in out:
        account.available, account.pending, account.on_hold = available, pending_, on_hold
        transfers.append(
            _make_transfer(
                id=tid,
                account=account,
                reference=ref,
                kind=Kind.REFUND_REVERSAL,
                amount=amt,
                debit_account_id=debit_id,
                credit_account_id=credit_id,
                created_at=now,
                by=by,
                description=description,
                purchase_ref=transfer.purchase_ref,
                reverses_id=transfer.pk,
            )
        )
    return Reversal(points=taken, shortfall=amount - taken, transfers=transfers, account=account)


_RETURN_READ = f"""
WITH done AS (
    SELECT COALESCE(sum(amount), 0) AS n FROM ledger_transfer
    WHERE reverses_id = %(transfer)s AND kind = 'refund_return'
)
SELECT done.n, s.lot_id, s.amount, s.expires_at, s.burned FROM done LEFT JOIN LATERAL (
    SELECT al.lot_id, sum(al.amount) AS amount, l.expires_at, {_BURNED} AS burned
    FROM ledger_allocation al JOIN ledger_lot l ON l.id = al.lot_id
    WHERE al.transfer_id = %(source)s
    GROUP BY al.lot_id, l.id, l.expires_at
) s ON true
ORDER BY s.expires_at DESC NULLS FIRST, s.lot_id DESC
"""

_RETURN_SQL = f"""
WITH t AS (
    {_INSERT_TRANSFER}
    VALUES (%(reference)s, 'refund_return', %(amount)s, %(from)s, %(account)s, %(account)s,
            NULL, %(transfer)s, NULL, %(purchase_ref)s, %(description)s, %(by)s, %(now)s)
    RETURNING id
), v AS (
    SELECT * FROM unnest(%(lots)s::bigint[], %(gives)s::bigint[]) AS v(lot_id, give)
), al AS (
    INSERT INTO ledger_allocation (transfer_id, lot_id, amount)
    SELECT t.id, v.lot_id, v.give FROM t, v
), lu AS (
    UPDATE ledger_lot SET remaining = remaining + v.give FROM v WHERE ledger_lot.id = v.lot_id
), nl AS (
    INSERT INTO ledger_lot (account_id, transfer_id, amount, remaining, source, pending,
                            available_at, expires_at, created_at)
    SELECT %(account)s, t.id, %(fresh)s, %(fresh)s, 'refund', false, %(now)s,
           %(fresh_expires_at)s, %(now)s
    FROM t WHERE %(fresh)s > 0
), a AS (
    UPDATE ledger_account SET available = available + %(amount)s
    WHERE id = %(account)s
    RETURNING available, pending, on_hold
)
SELECT t.id, a.available, a.pending, a.on_hold FROM t, a
"""


def _return_spent(
    transfer: Transfer,
    account: Account,
    amount: int,
    reference: str,
    grace_days: int | None,
    description: str,
    by: Any,
    now: datetime.datetime,
) -> Reversal:
    # A posted hold took its points from lots at hold time: its allocations are the hold's.
    source_id = transfer.resolves_id or transfer.pk
    rows = _fetch(_RETURN_READ, {"transfer": transfer.pk, "source": source_id})
    done = int(rows[0][0])
    if done + amount > transfer.amount:
        raise ReversalExceeds(remaining=transfer.amount - done, requested=amount)
    # Returns walk the allocations in one fixed order, so "done" points are the first
    # ones in that order and this return continues right after them.
    skip = done
    left = amount
    lots: list[int] = []
    gives: list[int] = []
    fresh = 0
    for _done, lot_id, allocated, expires_at, burned in rows:
        if lot_id is None or left == 0:
            break
        usable = allocated - min(skip, allocated)
        skip -= allocated - usable
        give = min(usable, left)
        if give <= 0:
            continue
        left -= give
        if burned or (expires_at is not None and expires_at <= now):  # see _resolve
            fresh += give
        else:
            lots.append(lot_id)
            gives.append(give)
    fresh += left  # a debit without allocations (none today) returns as a new lot
    if grace_days is None:
        grace_days = _program_of(account).refund_grace_days
    out = _fetch(
        _RETURN_SQL,
        {
            "reference": reference,
            "amount": amount,
            "from": transfer.credit_account_id,
            "account": account.pk,
            "transfer": transfer.pk,
            "purchase_ref": transfer.purchase_ref,
            "description": description,
            "by": _user_id(by),
            "now": now,
            "lots": lots,
            "gives": gives,
            "fresh": fresh,
            "fresh_expires_at": now + datetime.timedelta(days=grace_days),
        },
    )
    tid, account.available, account.pending, account.on_hold = out[0]
    returned = _make_transfer(
        id=tid,
        account=account,
        reference=reference,
        kind=Kind.REFUND_RETURN,
        amount=amount,
        debit_account_id=transfer.credit_account_id,
        credit_account_id=account.pk,
        created_at=now,
        by=by,
        description=description,
        purchase_ref=transfer.purchase_ref,
        reverses_id=transfer.pk,
    )
    return Reversal(points=amount, shortfall=0, transfers=[returned], account=account)


# --- Batch jobs: expiry and activation ----------------------------------------------------

_CLAIM_SQL = """
SELECT a.id FROM ledger_account a
WHERE a.id IN (SELECT account_id FROM unnest(%s::bigint[]) AS c(account_id))
ORDER BY a.id
FOR UPDATE SKIP LOCKED
"""

_EXPIRE_CANDIDATES = """
SELECT account_id, expires_at, id FROM ledger_lot
WHERE remaining > 0 AND expires_at <= %(now)s AND (expires_at, id) > (%(after_at)s, %(after_id)s)
ORDER BY expires_at, id
LIMIT %(limit)s
"""

_EXPIRE_SQL = """
WITH x AS MATERIALIZED (
    SELECT l.id, l.account_id, l.remaining, l.pending, a.program_id
    FROM ledger_lot l JOIN ledger_account a ON a.id = l.account_id
    WHERE l.account_id = ANY(%(accounts)s) AND l.remaining > 0 AND l.expires_at <= %(now)s
), s AS (
    SELECT program_id, kind, id FROM ledger_account
    WHERE member_id IS NULL AND source = '' AND kind IN ('expired', 'pending')
), t AS (
    INSERT INTO ledger_transfer (reference, kind, amount, debit_account_id, credit_account_id,
        account_id, purchase_ref, description, created_at)
    SELECT 'expire:' || x.id, 'expiry', x.remaining,
           CASE WHEN x.pending THEN p.id ELSE x.account_id END, e.id, x.account_id, '', '',
           %(now)s
    FROM x JOIN s e ON e.program_id = x.program_id AND e.kind = 'expired'
           JOIN s p ON p.program_id = x.program_id AND p.kind = 'pending'
    RETURNING id, reference
), al AS (
    INSERT INTO ledger_allocation (transfer_id, lot_id, amount)
    SELECT t.id, x.id, x.remaining FROM t JOIN x ON t.reference = 'expire:' || x.id
), lu AS (
    UPDATE ledger_lot SET remaining = 0 FROM x WHERE ledger_lot.id = x.id
), au AS (
    UPDATE ledger_account SET
        available = available - g.burned_available,
        pending = pending - g.burned_pending
    FROM (SELECT account_id,
                 COALESCE(sum(remaining) FILTER (WHERE NOT pending), 0) AS burned_available,
                 COALESCE(sum(remaining) FILTER (WHERE pending), 0) AS burned_pending
          FROM x GROUP BY account_id) g
    WHERE ledger_account.id = g.account_id
)
SELECT count(*), COALESCE(sum(remaining), 0) FROM x
"""

_ACTIVATE_CANDIDATES = """
SELECT account_id, available_at, id FROM ledger_lot
WHERE pending AND available_at <= %(now)s AND (available_at, id) > (%(after_at)s, %(after_id)s)
ORDER BY available_at, id
LIMIT %(limit)s
"""

_ACTIVATE_SQL = """
WITH x AS MATERIALIZED (
    SELECT l.id, l.account_id, l.remaining, a.program_id
    FROM ledger_lot l JOIN ledger_account a ON a.id = l.account_id
    WHERE l.account_id = ANY(%(accounts)s) AND l.pending AND l.available_at <= %(now)s
), t AS (
    INSERT INTO ledger_transfer (reference, kind, amount, debit_account_id, credit_account_id,
        account_id, purchase_ref, description, created_at)
    SELECT 'activate:' || x.id, 'activation', x.remaining, p.id, x.account_id, x.account_id,
           '', '', %(now)s
    FROM x JOIN ledger_account p ON p.program_id = x.program_id AND p.member_id IS NULL
                                AND p.kind = 'pending' AND p.source = ''
    WHERE x.remaining > 0
), lu AS (
    UPDATE ledger_lot SET pending = false FROM x WHERE ledger_lot.id = x.id
), au AS (
    UPDATE ledger_account SET available = available + g.n, pending = pending - g.n
    FROM (SELECT account_id, sum(remaining) AS n FROM x GROUP BY account_id) g
    WHERE ledger_account.id = g.account_id
)
SELECT count(*), COALESCE(sum(remaining), 0) FROM x
"""

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass
class JobResult:
    lots: int = 0
    points: int = 0
    skipped_busy: int = 0


def _run_lot_job(
    candidates_sql: str, work_sql: str, kind: str, now: datetime.datetime, batch: int
) -> JobResult:
    """Claim the accounts of due lots batch by batch (SKIP LOCKED) and treat them set-wise.

    Keyset over the due lots so each batch starts where the last ended; accounts
    busy with a purchase are skipped and picked up by the next run. Each batch is
    its own short transaction, so the job holds few locks at a time.
    """
    for program_id in Program.objects.values_list("pk", flat=True):
        _ensure_system_accounts(program_id)
    result = JobResult()
    after_at, after_id = _EPOCH, 0
    while True:
        candidates = _fetch(
            candidates_sql, {"now": now, "after_at": after_at, "after_id": after_id, "limit": batch}
        )
        if not candidates:
            return result
        _acc, after_at, after_id = candidates[-1]
        wanted = sorted({row[0] for row in candidates})
        with transaction.atomic():
            claimed = [row[0] for row in _fetch(_CLAIM_SQL, [wanted])]
            result.skipped_busy += len(wanted) - len(claimed)
            if claimed:
                lots, points = _fetch(work_sql, {"accounts": claimed, "now": now})[0]
                result.lots += lots
                result.points += points
                transaction.on_commit(partial(metrics.points_moved, kind, int(points)))
        if len(candidates) < batch:
            return result


def lots_expire(*, now: datetime.datetime | None = None, batch: int = _BATCH) -> JobResult:
    """Burn what is left in every lot whose expiry time has passed (reference expire:<lot>).

    Set-based, in batches of accounts claimed with SKIP LOCKED; catches up on any
    missed runs (everything due by ``now``). Running it twice or concurrently
    burns each lot once: a burned lot has nothing left and the reference is unique.
    """
    return _run_lot_job(_EXPIRE_CANDIDATES, _EXPIRE_SQL, Kind.EXPIRY, now or timezone.now(), batch)


def points_activate(*, now: datetime.datetime | None = None, batch: int = _BATCH) -> JobResult:
    """Make pending lots whose ``available_at`` has come spendable (reference activate:<lot>)."""
    return _run_lot_job(
        _ACTIVATE_CANDIDATES, _ACTIVATE_SQL, Kind.ACTIVATION, now or timezone.now(), batch
    )


# --- Reconciliation -----------------------------------------------------------------------

_RECONCILE_MEMBERS = """
WITH tr AS (
    SELECT t.account_id,
        sum(CASE WHEN t.credit_account_id = t.account_id THEN t.amount ELSE 0 END)
          - sum(CASE WHEN t.debit_account_id = t.account_id THEN t.amount ELSE 0 END) AS available,
        sum(CASE WHEN c.kind = 'pending' THEN t.amount ELSE 0 END)
          - sum(CASE WHEN d.kind = 'pending' THEN t.amount ELSE 0 END) AS pending,
        sum(CASE WHEN c.kind = 'holds' THEN t.amount ELSE 0 END)
          - sum(CASE WHEN d.kind = 'holds' THEN t.amount ELSE 0 END) AS on_hold
    FROM ledger_transfer t
    JOIN ledger_account c ON c.id = t.credit_account_id
    JOIN ledger_account d ON d.id = t.debit_account_id
    GROUP BY t.account_id
), lo AS (
    SELECT account_id, sum(remaining) AS total,
           COALESCE(sum(remaining) FILTER (WHERE pending), 0) AS pending
    FROM ledger_lot WHERE remaining > 0 GROUP BY account_id
)
SELECT a.id, a.program_id, a.available, a.pending, a.on_hold,
       COALESCE(tr.available, 0), COALESCE(tr.pending, 0), COALESCE(tr.on_hold, 0),
       COALESCE(lo.total, 0), COALESCE(lo.pending, 0)
FROM ledger_account a
LEFT JOIN tr ON tr.account_id = a.id
LEFT JOIN lo ON lo.account_id = a.id
WHERE a.kind = 'member' AND (
    a.available <> COALESCE(tr.available, 0) OR a.pending <> COALESCE(tr.pending, 0)
    OR a.on_hold <> COALESCE(tr.on_hold, 0)
    OR a.available + a.pending <> COALESCE(lo.total, 0) OR a.pending <> COALESCE(lo.pending, 0)
)
"""

_RECONCILE_TOTAL = """
SELECT program_id, sum(n) FROM (
    SELECT a.program_id, t.amount AS n FROM ledger_transfer t
    JOIN ledger_account a ON a.id = t.credit_account_id
    UNION ALL
    SELECT a.program_id, -t.amount FROM ledger_transfer t
    JOIN ledger_account a ON a.id = t.debit_account_id
) s GROUP BY program_id HAVING sum(n) <> 0
"""


def ledger_reconcile() -> list[Mismatch]:
    """Check I1 (per program, all accounts sum to zero) and I4 (every member account).

    Records each mismatch as a ``Mismatch`` row for the admin and e-mails the
    administrators (``ADMIN_EMAILS``). Read-only otherwise: it never "fixes" a
    balance, because a mismatch means something wrote around the services.
    """
    found: list[Mismatch] = []
    for program_id, total in _fetch(_RECONCILE_TOTAL, []):
        found.append(
            Mismatch(
                program_id=program_id, check_name=Mismatch.Check.TOTAL, expected=0, actual=total
            )
        )
    for row in _fetch(_RECONCILE_MEMBERS, []):
        account_id, program_id, available, pending, on_hold = row[:5]
        t_available, t_pending, t_on_hold, lots_total, lots_pending = row[5:]
        checks = [
            (Mismatch.Check.AVAILABLE, t_available, available),
            (Mismatch.Check.PENDING, t_pending, pending),
            (Mismatch.Check.ON_HOLD, t_on_hold, on_hold),
            (Mismatch.Check.LOTS, lots_total, available + pending),
            (Mismatch.Check.PENDING_LOTS, lots_pending, pending),
        ]
        for check, expected, actual in checks:
            if expected != actual:
                found.append(
                    Mismatch(
                        program_id=program_id,
                        account_id=account_id,
                        check_name=check,
                        expected=expected,
                        actual=actual,
                    )
                )
    if found:
        Mismatch.objects.bulk_create(found)
        lines = [
            f"{m.get_check_name_display()}: account {m.account_id or '-'} "
            f"(program {m.program_id}) cached {m.actual}, expected {m.expected}"
            for m in found[:200]
        ]
        mail_admins(
            _("Points ledger: %(n)d reconciliation mismatches") % {"n": len(found)},
            "\n".join(lines),
            fail_silently=True,
        )
        logger.error("ledger reconciliation found %d mismatches", len(found))
    return found


# --- Manual adjustments (maker–checker) ----------------------------------------------------


def _audit(*, user: Any, action: str, obj: Any, changes: dict[str, Any], program: Program) -> None:
    from programs.audit import audit_record

    audit_record(
        user=user, action=action, obj=obj, changes=changes, program=program, source="ledger"
    )


def adjustment_request(
    *, member: Member, points: int, reason: str, comment: str = "", by: Any
) -> AdjustmentRequest:
    """Support asks for a manual change of a member's points; finance decides later."""
    if points == 0:
        raise ValueError(_("An adjustment must add or take away at least one point."))
    with transaction.atomic():
        request = AdjustmentRequest.objects.create(
            member=member, points=points, reason=reason, comment=comment, requested_by=by
        )
        _audit(
            user=by,
            action="create",
            obj=request,
            changes={
                "points": [None, points],
                "reason": [None, reason],
                "comment": [None, comment],
            },
            program=member.program,
        )
    return request


def _decide(request: AdjustmentRequest, by: Any) -> AdjustmentRequest:
    locked = AdjustmentRequest.objects.select_for_update().get(pk=request.pk)
    if locked.status != AdjustmentRequest.Status.REQUESTED:
        raise AdjustmentNotAllowed(_("This adjustment has already been decided."))
    if by is None or locked.requested_by_id == by.pk:
        raise AdjustmentNotAllowed(_("Nobody can decide on their own adjustment request."))
    return locked


def adjustment_approve(
    *, request: AdjustmentRequest, by: Any, comment: str = "", now: datetime.datetime | None = None
) -> AdjustmentRequest:
    """Finance approves: the points move (issued:adjustments → member, or back), audited.

    Raises ``AdjustmentNotAllowed`` for one's own request or a decided one, and
    ``InsufficientPoints`` when taking away more than the member can spend now.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = _decide(request, by)
        member = Member.objects.select_related("program").get(pk=locked.member_id)
        reference = f"adjustment:{locked.pk}"
        description = f"{locked.get_reason_display()}: {locked.comment}"[:255]
        if locked.points > 0:
            transfer = points_credit(
                account_or_member=member,
                amount=locked.points,
                kind=Kind.ADJUSTMENT,
                reference=reference,
                source="adjustments",
                description=description,
                by=by,
                now=now,
            )
        else:
            transfer = points_debit(
                account_or_member=member,
                amount=-locked.points,
                kind=Kind.ADJUSTMENT,
                reference=reference,
                to=Account.Kind.ISSUED,
                to_source="adjustments",
                description=description,
                by=by,
                now=now,
            )
        locked.status = AdjustmentRequest.Status.APPROVED
        locked.decided_by = by
        locked.decided_at = now
        locked.decision_comment = comment
        locked.transfer = transfer
        locked.save(
            update_fields=["status", "decided_by", "decided_at", "decision_comment", "transfer"]
        )
        _audit(
            user=by,
            action="update",
            obj=locked,
            changes={"status": ["requested", "approved"], "transfer": [None, transfer.pk]},
            program=member.program,
        )
    return locked


def adjustment_reject(
    *, request: AdjustmentRequest, by: Any, comment: str = "", now: datetime.datetime | None = None
) -> AdjustmentRequest:
    """Finance rejects: nothing moves; the decision is recorded and audited."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _decide(request, by)
        locked.status = AdjustmentRequest.Status.REJECTED
        locked.decided_by = by
        locked.decided_at = now
        locked.decision_comment = comment
        locked.save(update_fields=["status", "decided_by", "decided_at", "decision_comment"])
        _audit(
            user=by,
            action="update",
            obj=locked,
            changes={"status": ["requested", "rejected"], "decision_comment": ["", comment]},
            program=Program.objects.get(members__pk=locked.member_id),
        )
    return locked


# --- Opening balances ---------------------------------------------------------------------


@dataclass
class ImportRow:
    line: int
    phone: str = ""
    card: str = ""
    points: int = 0
    expires_on: datetime.date | None = None


@dataclass
class ImportResult:
    created: int = 0
    already: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def opening_reference(program: Program, member: Member, row: ImportRow) -> str:
    """Idempotency anchor of one imported row: same member, points and expiry = same row.

    So two identical rows for one member in a file credit once (they are taken
    for a duplicate), and running the file again credits nothing.
    """
    digest = hashlib.sha256(f"{row.points}|{row.expires_on or ''}".encode()).hexdigest()[:16]
    return f"opening:{program.code}:{member.pk}:{digest}"


def balances_import(
    *,
    program: Program,
    rows: Sequence[ImportRow],
    by: Any = None,
    now: datetime.datetime | None = None,
) -> ImportResult:
    """Credit opening balances (kind ``opening``, source ``opening``), one transfer per row.

    Idempotent per row: running the same file again credits nothing new. Each row
    is its own transaction, so a bad row is reported and the rest still load.
    A row's expiry date is the end of that day in the program's time zone; without
    one the program's ``points_expire_days`` applies.
    """
    from zoneinfo import ZoneInfo

    from accounts.selectors import member_find

    now = now or timezone.now()
    zone = ZoneInfo(program.time_zone)
    result = ImportResult()
    for row in rows:
        if row.points <= 0:
            result.errors.append((row.line, _("points must be a positive whole number")))
            continue
        member = member_find(program=program, phone=row.phone or None, card=row.card or None)
        if member is None:
            result.errors.append((row.line, _("no member with this phone or card")))
            continue
        expires_at = None
        if row.expires_on is not None:
            expires_at = datetime.datetime.combine(
                row.expires_on + datetime.timedelta(days=1), datetime.time(), tzinfo=zone
            )
            if expires_at <= now:
                result.errors.append((row.line, _("the expiry date has passed")))
                continue
        reference = opening_reference(program, member, row)
        if Transfer.objects.filter(reference=reference).exists():
            result.already += 1
            continue
        try:
            with transaction.atomic():
                points_credit(
                    account_or_member=member,
                    amount=row.points,
                    kind=Kind.OPENING,
                    reference=reference,
                    source="opening",
                    expires_at=expires_at,
                    description=_("Opening balance"),
                    by=by,
                    now=now,
                )
        except (LedgerBusy, DuplicateReference) as exc:
            result.errors.append((row.line, str(exc)))
            continue
        result.created += 1
    return result
