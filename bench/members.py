"""python -m bench members [--sizes 100000,1000000] [--admin-rows 100000] [--untuned-rows 2000]
[--without-superuser]

(--admin-rows 0 skips the admin path, --untuned-rows 0 its untuned default.)

Member CSV import, in a scratch database (created, migrated, dropped):

1. Generates realistic member files (bench/members_data.py): the first size
   as Windows-1251 with `;` and Russian headers, the others as UTF-8 with BOM;
   mixed phone forms and a few per cent of bad rows. Files go to a temporary
   folder that is removed at the end (never committed).
2. For each file: a bare `COPY` of it into an unindexed table of text columns
   on the same server (the yardstick), then `manage.py members_import` into a
   fresh program, then the same command again (a re-run changes nothing).
   Each command runs as a child process; its wall time and peak memory
   (max RSS, from wait4) are measured. The figure is command ÷ bare COPY.
   With --without-superuser, the command also runs into a third program as a
   login role without superuser, as on a managed server: there PostgreSQL
   checks the written rows' foreign keys one by one (see
   MemberImport._references_checked_in_bulk).
3. The admin path on the first file: django-import-export with the tuned
   MemberResource (preview = dry run, then the confirmation), and its untuned
   default (bench/members_untuned.py: per-row load, diff, save) on the first
   N rows only, as it is far too slow for the whole file; rows/s compared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import database_url, django_setup, scratch_database, server_connect, table

ROOT = Path(__file__).resolve().parent.parent


def _child(args: list[str], url: str | None = None) -> tuple[float, float, str]:
    """Run a child process on the scratch database (as `url` says, if given):
    (wall seconds, peak MB, stdout)."""
    env = {**os.environ, "DATABASE_URL": url or database_url(), "DATABASE_CONN_MAX_AGE": "0"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{out}")
    return wall, usage.ru_maxrss / 1024, out


def _program(code: str) -> None:
    from programs.models import Program, Store, Tier

    program = Program.objects.create(code=code, name=code)
    for store in ("S1", "S2", "S3", "S4", "S5"):
        Store.objects.create(program=program, code=store, name=store)
    Tier.objects.create(program=program, code="base", name="Base", accrual_percent=5)


def _bare_copy(path: Path, russian: bool) -> float:
    """COPY the file as it is into an unindexed table of text columns; seconds."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_members_copy")
        cursor.execute(
            "CREATE TABLE bench_members_copy (" + ", ".join(f"c{i} text" for i in range(11)) + ")"
        )
        options = (
            "FORMAT csv, HEADER true, DELIMITER ';', ENCODING 'WIN1251'"
            if russian
            else "FORMAT csv, HEADER true, DELIMITER ','"
        )
        started = time.perf_counter()
        with (
            cursor.copy(f"COPY bench_members_copy FROM STDIN ({options})") as copy,
            path.open("rb") as f,
        ):
            if not russian:
                f.read(3)  # the BOM
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        seconds = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_members_copy")
    return seconds


def _import_command(path: Path, code: str, url: str | None = None) -> tuple[float, float, str]:
    return _child(
        [sys.executable, "manage.py", "members_import", str(path), "--program", code, "-v", "2"],
        url,
    )


PLAIN_ROLE = "bench_members_plain"


def _plain_role_url() -> str:
    """DATABASE_URL of the scratch database as a login role without superuser.

    The role gets what the application's role has on its own tables: all
    privileges on them, and temporary tables. Dropped by _plain_role_drop.
    """
    from django.db import connection

    password = "bench-" + os.urandom(8).hex()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP ROLE IF EXISTS {PLAIN_ROLE}")
        cursor.execute(f"CREATE ROLE {PLAIN_ROLE} LOGIN NOSUPERUSER PASSWORD %s", [password])
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {PLAIN_ROLE}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {PLAIN_ROLE}")
        cursor.execute(
            f'GRANT CONNECT, TEMPORARY ON DATABASE "{connection.settings_dict["NAME"]}" '
            f"TO {PLAIN_ROLE}"
        )
    return database_url(user=PLAIN_ROLE, password=password)


def _plain_role_drop() -> None:
    import psycopg

    try:
        with server_connect() as conn:
            conn.execute(f"DROP ROLE IF EXISTS {PLAIN_ROLE}")
    except psycopg.Error as error:
        print(f"could not drop the role {PLAIN_ROLE}: {error}", file=sys.stderr)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench members")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--admin-rows", type=int, default=100_000)
    parser.add_argument("--untuned-rows", type=int, default=2_000)
    parser.add_argument(
        "--without-superuser",
        action="store_true",
        help="also import each file as a login role without superuser (foreign keys "
        "checked row by row, as on a managed server)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]

    django_setup(scratch="bench_members")
    from bench.members_data import members_csv_write

    folder = Path(tempfile.mkdtemp(prefix="bench-members-"))
    rows: list[list[Any]] = [
        ["path", "rows", "wall s", "rows/s", "peak MB", "× bare COPY", "outcome"]
    ]
    try:
        with scratch_database():
            plain_url = _plain_role_url() if args.without_superuser else None
            files: list[tuple[Path, int, bool]] = []
            for i, size in enumerate(sizes):
                russian = i == 0
                path = folder / f"members-{size}-{'cp1251' if russian else 'utf8'}.csv"
                members_csv_write(path, size, russian=russian, seed=size)
                files.append((path, size, russian))
                mb = path.stat().st_size / 1e6
                print(f"generated {path.name}: {size} rows, {mb:.0f} MB", flush=True)

            for path, size, russian in files:
                copy_s = _bare_copy(path, russian)
                rows.append(
                    [
                        f"bare COPY ({path.name})",
                        size,
                        f"{copy_s:.1f}",
                        f"{size / copy_s:,.0f}",
                        "-",
                        "1.0",
                        "-",
                    ]
                )
                code = f"bench-{size}"
                _program(code)
                runs: list[tuple[str, Path, str, str | None]] = [
                    ("members_import", path, code, None),
                    ("members_import again", path, code, None),
                ]
                if args.without_superuser:
                    # A file of the same shape with other card numbers: cards are
                    # unique across programs, so this file's would be refused.
                    plain = members_csv_write(
                        folder / f"plain-{path.name}", size, russian=russian, seed=size + 2
                    )
                    _program(f"{code}-plain")
                    runs.append(("members_import, no superuser", plain, f"{code}-plain", plain_url))
                for label, file, program_code, url in runs:
                    wall, peak, out = _import_command(file, program_code, url)
                    outcome = out.strip().splitlines()
                    rows.append(
                        [
                            label,
                            size,
                            f"{wall:.1f}",
                            f"{size / wall:,.0f}",
                            f"{peak:.0f}",
                            f"{wall / copy_s:.1f}",
                            " | ".join(outcome[:2]),
                        ]
                    )
                    print(rows[-1], flush=True)

            if args.admin_rows > 0:  # 0: the bulk path only
                # The admin path gets a file of its own (other card numbers), same shape.
                path, size, _russian = files[0]
                path = members_csv_write(folder / "admin.csv", size, russian=True, seed=size + 1)
                admin_rows = min(args.admin_rows, size)
                _program("bench-admin")
                wall, peak, out = _child(
                    [
                        sys.executable,
                        "-m",
                        "bench.members_admin_run",
                        str(path),
                        "bench-admin",
                        "--rows",
                        str(admin_rows),
                    ]
                )
                tuned = json.loads(out.strip().splitlines()[-1])
                rows.append(
                    [
                        "admin preview (dry run)",
                        admin_rows,
                        f"{tuned['preview_s']:.1f}",
                        f"{admin_rows / tuned['preview_s']:,.0f}",
                        f"{peak:.0f}",
                        "-",
                        "",
                    ]
                )
                rows.append(
                    [
                        "admin import (confirm)",
                        admin_rows,
                        f"{tuned['import_s']:.1f}",
                        f"{admin_rows / tuned['import_s']:,.0f}",
                        f"{peak:.0f}",
                        "-",
                        f"created {tuned.get('created')}",
                    ]
                )
            if args.admin_rows > 0 and args.untuned_rows > 0:
                _program("bench-untuned")
                wall, peak, out = _child(
                    [
                        sys.executable,
                        "-m",
                        "bench.members_admin_run",
                        str(path),
                        "bench-untuned",
                        "--untuned",
                        "--rows",
                        str(args.untuned_rows),
                    ]
                )
                untuned = json.loads(out.strip().splitlines()[-1])
                untuned_rate = untuned["rows"] / untuned["import_s"]
                tuned_rate = admin_rows / tuned["import_s"]
                rows.append(
                    [
                        f"admin, untuned default (first {untuned['rows']} rows)",
                        untuned["rows"],
                        f"{untuned['import_s']:.1f}",
                        f"{untuned_rate:,.0f}",
                        f"{peak:.0f}",
                        "-",
                        f"tuned is {tuned_rate / untuned_rate:.0f}× faster",
                    ]
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if args.without_superuser:
            _plain_role_drop()
    print()
    print(table(rows))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"(this process: {usage.ru_maxrss / 1024:.0f} MB peak; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    return 0
