"""Terminal keys: generation, hashing, and the per-process cache that authenticates.

A key is 32 random bytes (urlsafe base64); only its SHA-256 is stored. A key
nobody can guess needs no slow password hash, and SHA-256 keeps authentication
to one indexed lookup, which the cache below turns into none for a busy till.

The cache holds, per key hash, the terminal's scope and a snapshot of its
program's rules and tiers for `CACHE_SECONDS`. Blocking or rotating a key, or
changing the program, reaches other processes within that time; in the
process that made the change it is immediate (`terminal_cache_clear`).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from pos.errors import TerminalBlocked

CACHE_SECONDS = 10.0
LAST_SEEN_EVERY = timedelta(minutes=1)
KEY_BYTES = 32


def key_generate() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TierInfo:
    id: int
    code: str
    name: str
    threshold: Decimal
    accrual_percent: Decimal


@dataclass(frozen=True)
class ProgramInfo:
    """What the hot path reads of a program, read once per process per CACHE_SECONDS."""

    id: int
    code: str
    default_region: str
    time_zone: ZoneInfo
    point_value: Decimal
    accrual_percent: Decimal
    redeem_max_percent: Decimal
    redeem_min_balance: int
    accrue_on_redeemed_part: bool
    accrual_delay_days: int
    points_expire_days: int | None
    refund_grace_days: int
    hold_minutes: int
    excluded_from_accrual_categories: frozenset[str]
    excluded_from_accrual_skus: frozenset[str]
    excluded_from_redemption_categories: frozenset[str]
    excluded_from_redemption_skus: frozenset[str]
    tier_window_days: int | None
    tiers: tuple[TierInfo, ...]  # ascending threshold
    tiers_by_id: dict[int, TierInfo] = field(default_factory=dict)

    def tier_for_spend(self, spend: Decimal) -> TierInfo | None:
        """The highest tier whose threshold the qualifying spend reaches."""
        best = None
        for tier in self.tiers:
            if spend >= tier.threshold:
                best = tier
        return best


@dataclass(frozen=True)
class TerminalInfo:
    id: Any  # uuid.UUID
    name: str
    store_id: int
    store_code: str
    program: ProgramInfo
    is_blocked: bool

    @property
    def program_id(self) -> int:
        return self.program.id


@dataclass
class _Entry:
    terminal: TerminalInfo | None
    fetched: float
    seen: float = 0.0


_cache: dict[str, _Entry] = {}
_programs: dict[int, tuple[ProgramInfo, float]] = {}
_lock = threading.Lock()


def terminal_cache_clear() -> None:
    with _lock:
        _cache.clear()
        _programs.clear()


def program_info(program_id: int, *, now: float | None = None) -> ProgramInfo:
    now = time.monotonic() if now is None else now
    hit = _programs.get(program_id)
    if hit is not None and now - hit[1] < CACHE_SECONDS:
        return hit[0]
    from programs.models import Program

    program = Program.objects.prefetch_related("tiers").get(pk=program_id)
    info = program_info_of(program)
    _programs[program_id] = (info, now)
    return info


def program_info_of(program: Any) -> ProgramInfo:
    tiers = tuple(
        TierInfo(t.id, t.code, t.name, t.threshold, t.accrual_percent)
        for t in sorted(program.tiers.all(), key=lambda t: t.threshold)
    )
    return ProgramInfo(
        id=program.id,
        code=program.code,
        default_region=program.default_region,
        time_zone=ZoneInfo(program.time_zone),
        point_value=program.point_value,
        accrual_percent=program.accrual_percent,
        redeem_max_percent=program.redeem_max_percent,
        redeem_min_balance=program.redeem_min_balance,
        accrue_on_redeemed_part=program.accrue_on_redeemed_part,
        accrual_delay_days=program.accrual_delay_days,
        points_expire_days=program.points_expire_days,
        refund_grace_days=program.refund_grace_days,
        hold_minutes=program.hold_minutes,
        excluded_from_accrual_categories=frozenset(program.excluded_from_accrual_categories),
        excluded_from_accrual_skus=frozenset(program.excluded_from_accrual_skus),
        excluded_from_redemption_categories=frozenset(program.excluded_from_redemption_categories),
        excluded_from_redemption_skus=frozenset(program.excluded_from_redemption_skus),
        tier_window_days=program.tier_window_days or None,
        tiers=tiers,
        tiers_by_id={t.id: t for t in tiers},
    )


def _terminal_load(hashed: str, now: float) -> TerminalInfo | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.id, t.name, t.store_id, s.code, t.program_id, t.is_blocked"
            " FROM pos_terminal t JOIN programs_store s ON s.id = t.store_id"
            " WHERE t.key_hash = %s",
            [hashed],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return TerminalInfo(
        id=row[0],
        name=row[1],
        store_id=row[2],
        store_code=row[3],
        program=program_info(row[4], now=now),
        is_blocked=row[5],
    )


def terminal_for_key(key: str) -> TerminalInfo | None:
    hashed = key_hash(key)
    now = time.monotonic()
    entry = _cache.get(hashed)
    if entry is None or now - entry.fetched >= CACHE_SECONDS:
        entry = _Entry(_terminal_load(hashed, now), now, entry.seen if entry else 0.0)
        with _lock:
            if len(_cache) > 10_000:  # unknown keys must not grow it without bound
                _cache.clear()
            _cache[hashed] = entry
    terminal = entry.terminal
    if terminal is not None and now - entry.seen >= LAST_SEEN_EVERY.total_seconds():
        entry.seen = now
        _last_seen_touch(terminal)
    return terminal


def _last_seen_touch(terminal: TerminalInfo) -> None:
    # Conditional, so many processes together still write the row about once a minute.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pos_terminal SET last_seen_at = %s WHERE id = %s"
            " AND (last_seen_at IS NULL OR last_seen_at < %s)",
            [timezone.now(), terminal.id, timezone.now() - LAST_SEEN_EVERY],
        )


class TerminalAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <key>`: 401 without a known key, 403 when blocked."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[None, TerminalInfo]:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        parts = header.split()
        if not parts or parts[0].lower() != self.keyword.lower():
            raise exceptions.NotAuthenticated(_("Send Authorization: Token <terminal key>."))
        if len(parts) != 2 or len(parts[1]) > 200:
            raise exceptions.AuthenticationFailed(_("Malformed Authorization header."))
        terminal = terminal_for_key(parts[1])
        if terminal is None:
            raise exceptions.AuthenticationFailed(_("Unknown terminal key."))
        if terminal.is_blocked:
            raise TerminalBlocked()
        return (None, terminal)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
