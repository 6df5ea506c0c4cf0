"""Idempotency-Key handling (API.md "Idempotency").

The key row is INSERTed first inside the transaction that makes the change and
updated with the response at its end, so the key and the change commit or roll
back together. A concurrent request with the same key runs into the unique
index: `ON CONFLICT DO NOTHING` waits for the first transaction, and the short
`lock_timeout` turns that wait into 409 `request_in_progress`. Error answers
roll the transaction back, key included: a retry of a refused request is
evaluated afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import connection

from loyalty_site.db import prepared_cursor
from pos.errors import IdempotencyKeyRequired, IdempotencyKeyReused, InvalidInput

MAX_KEY_LENGTH = 255
KEEP_HOURS = 72


def key_from_header(raw: str | None) -> str:
    if raw is None or raw == "":
        raise IdempotencyKeyRequired()
    if len(raw) > MAX_KEY_LENGTH or not raw.isprintable():
        raise InvalidInput(
            {"Idempotency-Key": ["Use 1 to 255 printable characters."]},
        )
    return raw


def request_fingerprint(path: str, data: Any) -> str:
    """Same path and same JSON (whatever its spacing or key order) → same fingerprint."""
    canonical = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(f"{path}\n{canonical}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Replay:
    status: int
    body: bytes


def key_claim(
    *, terminal_id: Any, key: str, fingerprint: str, lock_timeout_ms: int
) -> int | Replay:
    """Claim `key` in the open transaction: its row id, or the stored answer to replay.

    The same statement sets the transaction's short lock_timeout (set_config in
    the row source runs before the insert waits on a conflicting key), which
    then also bounds the wait for the member's row: one round trip for both.

    Raises IdempotencyKeyReused when the key came with another request; a
    lock timeout (another request with the key still running) propagates as
    the database error, which the view turns into 409 request_in_progress.
    """
    with prepared_cursor() as cursor:
        cursor.execute(
            "INSERT INTO pos_idempotencykey (terminal_id, key, request_hash, created_at)"
            " SELECT %s, %s, %s, now()"
            " FROM (SELECT set_config('lock_timeout', %s, true)) AS cfg"
            " ON CONFLICT (terminal_id, key) DO NOTHING RETURNING id",
            [terminal_id, key, fingerprint, f"{int(lock_timeout_ms)}ms"],
        )
        row = cursor.fetchone()
        if row is not None:
            return row[0]
        cursor.execute(
            "SELECT request_hash, status_code, response_body FROM pos_idempotencykey"
            " WHERE terminal_id = %s AND key = %s",
            [terminal_id, key],
        )
        found = cursor.fetchone()
    if found is None or found[1] is None:
        # Cannot happen with the insert above (the row is written with its answer
        # in one transaction); treat it as still running rather than guess.
        from pos.errors import RequestInProgress

        raise RequestInProgress(retry_after=1)
    if found[0] != fingerprint:
        raise IdempotencyKeyReused()
    return Replay(status=found[1], body=bytes(found[2]))


def key_store(*, key_id: int, status: int, body: bytes) -> None:
    with prepared_cursor() as cursor:
        cursor.execute(
            "UPDATE pos_idempotencykey SET status_code = %s, response_body = %s WHERE id = %s",
            [status, body, key_id],
        )


def keys_prune(*, hours: int = KEEP_HOURS) -> int:
    """Delete keys older than `hours` (they are kept at least 72 hours)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM pos_idempotencykey WHERE created_at < now() - make_interval(hours => %s)",
            [max(hours, KEEP_HOURS)],
        )
        return cursor.rowcount
