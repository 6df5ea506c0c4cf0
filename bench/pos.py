"""Cashier API benchmark: python -m bench pos [--seconds N] [--clients N] [--workers N]
[--threads N] [--setups 6x1,2x3] [--rounds N] [--ceiling] [--in-process N].

1. The yardstick: pgbench runs /work/shared/bench's ledger_accrue.sql (-c 8 -j 2)
   against the same PostgreSQL server, in a scratch database.
2. The API under gunicorn (DEBUG off, throttling lifted; --workers processes of
   --threads threads each, gthread when threads > 1) on the configured
   database (embedded, or DATABASE_URL): --clients concurrent clients, each on
   its own members (new ones every run, so runs compare), send committed
   purchases with redemption (a 3-line receipt, 10 points redeemed) for
   --seconds; then quotes for --seconds.
Prints purchases/s, p50/p99 latency, quotes/s, and the figure API ÷ pgbench
(target ≥ 0.25, aim 0.4; quotes ≥ 2× the commit rate), plus one JSON line.

Also the CPU milliseconds per purchase of the web server, the database server
and the benchmark's clients, and per pgbench transaction of the server and
pgbench (from /proc, when the server runs on this machine). When the machine's
cores are all busy, the figure is about the ratio of the two totals: it shows
where a purchase's time goes, and what the figure can reach. Both are printed:
the figure the CPU shares predict, beside the measured one, and with --ceiling
the figure a purchase would reach if our Python cost nothing (its SQL, plus
gunicorn and the clients on bench.null_app, a WSGI app that does nothing, driven
for --seconds more under the same set-up).

--in-process N runs no server: N purchases, then N quotes, one at a time
through Django's WSGI handler in this process, and prints the CPU each takes.

--rounds N (default 3) repeats the whole (pgbench, then the API) N times and prints the
medians; --setups compares gunicorn set-ups (WORKERSxTHREADS) side by side,
each round running every set-up in turn after its pgbench run, so a slow
minute of the machine touches them alike.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from bench.common import (
    database_ensure,
    database_url,
    median,
    pgbench_prepare,
    pgbench_tps,
    postgres_server_pid,
    process_tree_cpu,
)

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = "bench-pos"


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty_site.settings")
    import django

    django.setup()


def yardstick(seconds: int) -> tuple[float, dict[str, float | None]]:
    """pgbench tps of the raw-SQL purchase on this server (scratch database bench_pos_pgbench),
    and the CPU milliseconds per transaction of the server and of pgbench."""
    scratch = "bench_pos_pgbench"
    database_ensure(scratch)
    pgbench_prepare(scratch)
    server = postgres_server_pid()
    before = _cpu(server=server)
    tps = pgbench_tps(scratch, seconds)
    return tps, _per_unit(before, _cpu(server=server), tps * seconds, ("postgres", "pgbench"))


def _cpu(*, server: int | None, web: int | None = None) -> dict[str, float | None]:
    """CPU seconds so far: the database server, the web server, this process, its children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "postgres": process_tree_cpu(server) if server else None,
        "web": process_tree_cpu(web) if web else None,
        "client": time.process_time(),
        "pgbench": children.ru_utime + children.ru_stime,
    }


def _cpu_line(title: str, cpu: dict[str, float | None]) -> str:
    """E.g. "CPU per purchase: web 7.00 ms, postgres 3.30 ms, client 0.70 ms (11.00 ms)"."""
    known = [(n, v) for n, v in cpu.items() if v is not None]
    parts = ", ".join(f"{n} {v:.2f} ms" for n, v in known)
    total = sum(v for _n, v in known)
    missing = [n for n, v in cpu.items() if v is None]
    note = f"; not measured: {', '.join(missing)} (not on this machine)" if missing else ""
    return f"{title}: {parts} ({total:.2f} ms){note}"


def _per_unit(
    before: dict[str, float | None],
    after: dict[str, float | None],
    units: float,
    names: tuple[str, ...],
) -> dict[str, float | None]:
    """CPU milliseconds per unit of work of the `names` process groups (None: not measured)."""
    out: dict[str, float | None] = {}
    for name in names:
        start, end = before[name], after[name]
        out[name] = (
            None
            if start is None or end is None or not units
            else (round((end - start) / units * 1000, 2))
        )
    return out


def prepare(members: int) -> tuple[str, list[str]]:
    """The benchmark program, a store, a fresh terminal key and new members with many points."""
    from django.db import connection

    from accounts.models import Card, Member
    from accounts.services import member_enroll
    from ledger.services import points_credit
    from pos.services import terminal_create
    from programs.models import Program, Store

    program, _c = Program.objects.get_or_create(
        code=PROGRAM,
        defaults={"name": "Cashier API benchmark", "redeem_max_percent": 50},
    )
    store, _c = Store.objects.get_or_create(program=program, code="B1", defaults={"name": "Bench"})
    _terminal, key = terminal_create(store=store, name=f"bench {time.strftime('%H:%M:%S')}")
    # New members every run: a member's history (its open lots, all earned today and
    # expiring on one day) grows with each purchase, so members reused from the last
    # run would make each run slower than the one before.
    start = Member.objects.filter(program=program).count()
    have = [
        member_enroll(
            program=program,
            phone=f"+7950{i:07d}",
            first_name=f"Bench {i}",
            channel="import",
            consents={"personal_data": True},
        )
        for i in range(start, start + members)
    ]
    for member in have:
        points_credit(
            account_or_member=member,
            amount=1_000_000,
            kind="bonus",
            reference=f"bench-pos:{member.pk}",
            source="base",
            never_expires=True,
        )
    cards = dict(
        Card.objects.filter(member__in=have, status="active").values_list("member_id", "number")
    )
    connection.close()
    return key, [cards[m.pk] for m in have]


def _reexec_on(dbname: str, argv: list[str]) -> None:
    """Run this benchmark again with DATABASE_URL on its own database of the same server.

    Its own database keeps the figures apart from whatever else uses the
    development database meanwhile (demo data, other people's experiments).
    """
    database_ensure(dbname)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(dbname),
        "BENCH_POS_DATABASE": dbname,
    }
    os.execve(sys.executable, [sys.executable, "-m", "bench", "pos", *argv], env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The web server's settings: production ones (DEBUG off), throttling lifted.
API_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": os.environ.get("SECRET_KEY", "benchmark-only-secret-key-" + "x" * 30),
    "SECURE_SSL_REDIRECT": "0",
    "ALLOWED_HOSTS": "127.0.0.1",
    "API_THROTTLE_RATE": "1000000/second",
    "LOG_LEVEL": "WARNING",
    "DATABASE_CONN_MAX_AGE": "600",
}


def start_api(
    workers: int, port: int, threads: int = 1, app: str = "loyalty_site.wsgi"
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **API_ENV, "DATABASE_URL": database_url()}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    # The Procfile's default is sync workers (--threads 1): measured side by side
    # on 2 cores, 6 sync workers took as many purchases as 4 workers of 4 threads
    # with a far shorter p99 (threads of one process queue for its one GIL).
    args = [gunicorn, app, "--workers", str(workers), "--threads", str(threads)]
    args += ["--bind"]
    args += [f"127.0.0.1:{port}", "--log-level", "warning", "--worker-tmp-dir", "/dev/shm"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/api/v1/members/lookup")
            conn.getresponse().read()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("gunicorn did not start") from None
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("gunicorn did not answer within 180 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _receipt(card: str, n: str, redeem: int) -> bytes:
    return json.dumps(
        {
            "member": {"card": card},
            "receipt_number": n,
            "lines": [
                {
                    "sku": "MILK",
                    "name": "Milk",
                    "category": "dairy",
                    "quantity": "2",
                    "price": "80.00",
                    "amount": "160.00",
                },
                {
                    "sku": "BREAD",
                    "name": "Bread",
                    "category": "bakery",
                    "quantity": "1",
                    "amount": "45.50",
                },
                {
                    "sku": "APPLE",
                    "name": "Apples",
                    "category": "fruit",
                    "quantity": "1.234",
                    "price": "150.00",
                },
            ],
            "redeem_points": redeem,
        }
    ).encode()


class _Client:
    """One client's connection in drive()'s loop: a request out, its answer read back."""

    def __init__(self, cards: list[str]) -> None:
        self.cards = cards
        self.sock: socket.socket | None = None
        self.out = b""
        self.answer = bytearray()
        self.started = 0.0


def _answer_status(answer: bytearray) -> tuple[int, bool] | None:
    """(status, server closes) once a whole HTTP answer is in `answer`, else None."""
    head_end = answer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(answer[:head_end]).lower()
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _sep, value = line.partition(b":")
        if name == b"content-length":
            length = int(value)
    if len(answer) < head_end + 4 + length:
        return None
    return int(head[9:12]), b"\r\nconnection: close" in head


def drive(
    port: int, key: str, cards: list[str], clients: int, seconds: float, path: str, status: int
) -> tuple[int, list[float], dict[int, int]]:
    """`clients` connections, each on its own cards, for `seconds`: (ok count, latencies, statuses).

    One thread drives them all through a selector, with the requests' bytes written by
    hand: the benchmark's own CPU counts against the API on a shared machine (pgbench's
    client is C), and 16 threads of http.client took 2 (purchases) to 6 (the do-nothing
    app) times as much CPU a request, measured side by side.
    """
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    run = f"{time.time_ns()}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {key}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    selector = selectors.DefaultSelector()
    count = 0

    def send(client: _Client) -> None:
        nonlocal count
        count += 1
        ident = f"{run}-{count}"
        body = _receipt(client.cards[count % len(client.cards)], f"R-{ident}", 10)
        client.out = (
            head
            + f"Idempotency-Key: {ident}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        client.answer.clear()
        client.started = time.perf_counter()
        if client.sock is None:
            client.sock = socket.socket()
            client.sock.setblocking(False)
            client.sock.connect_ex(("127.0.0.1", port))
        selector.register(client.sock, selectors.EVENT_WRITE, client)

    def done(client: _Client, sock: socket.socket, code: int, close: bool) -> None:
        latencies.append(time.perf_counter() - client.started)
        statuses[code] = statuses.get(code, 0) + 1
        selector.unregister(sock)
        more = time.monotonic() < stop
        if close or not more:
            sock.close()
            client.sock = None
        if more:
            send(client)

    for c in range(clients):
        send(_Client(cards[c::clients]))
    deadline = stop + 30
    while selector.get_map() and time.monotonic() < deadline:
        for event_key, mask in selector.select(timeout=1):
            client: _Client = event_key.data
            sock = cast(socket.socket, event_key.fileobj)
            try:
                if mask & selectors.EVENT_WRITE:
                    client.out = client.out[sock.send(client.out) :]
                    if not client.out:
                        selector.modify(sock, selectors.EVENT_READ, client)
                    continue
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before the answer")
                client.answer += chunk
                answered = _answer_status(client.answer)
                if answered is not None:
                    done(client, sock, *answered)
            except (OSError, ValueError):
                done(client, sock, 0, close=True)
    for event_key in list(selector.get_map().values()):  # still waiting at the deadline
        cast(socket.socket, event_key.fileobj).close()
    selector.close()
    return statuses.get(status, 0), latencies, statuses


def in_process(calls: int) -> None:
    """Purchases, then quotes, one at a time through Django's WSGI handler in this process.

    The Python CPU of a call without gunicorn, the network or other processes
    competing for the cores: the figure to watch when trimming the hot path.
    """
    from django.core.handlers.wsgi import WSGIHandler

    key, cards = prepare(4)
    app = WSGIHandler()
    run = time.time_ns()

    def call(path: str, ident: str, card: str) -> None:
        body = _receipt(card, f"R-{ident}", 10)
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json",
            "HTTP_AUTHORIZATION": f"Token {key}",
            "HTTP_IDEMPOTENCY_KEY": ident,
        }
        statuses: list[str] = []
        response = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(response)
        response.close()
        if not statuses[0].startswith(("200", "201")):
            raise SystemExit(f"{path} answered {statuses[0]}")

    for name, path in (("purchase", "/api/v1/purchases"), ("quote", "/api/v1/purchases/quote")):
        for i in range(20):  # per-process caches and prepared statements
            call(path, f"{run}-{name}-warm-{i}", cards[i % len(cards)])
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(calls):
            call(path, f"{run}-{name}-{i}", cards[i % len(cards)])
        cpu_ms = (time.process_time() - cpu) / calls * 1000
        wall_ms = (time.perf_counter() - wall) / calls * 1000
        print(f"in process, one at a time: a {name} takes {cpu_ms:.2f} ms of CPU, {wall_ms:.2f} ms")
        print(json.dumps({"bench": "pos", "in_process": name, "cpu_ms": round(cpu_ms, 3)}))


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def run_api(
    setup: tuple[int, int],
    seconds: int,
    clients: int,
    members_per_client: int,
    ceiling: bool = False,
) -> dict[str, Any]:
    """One set-up (workers, threads): committed purchases, then quotes, on new members.

    With `ceiling`, then the same purchase requests to bench.null_app under the same
    set-up: the CPU of gunicorn and the clients alone, per request.
    """
    server = postgres_server_pid()
    key, cards = prepare(clients * members_per_client)
    port = _free_port()

    def purchases(web: int, server: int | None, warm_up: float, names: tuple[str, ...]) -> Any:
        """Purchase requests for `seconds` after a warm-up: (answered, latencies, statuses,
        CPU milliseconds per answer of the `names` process groups)."""
        drive(port, key, cards, clients, warm_up, "/api/v1/purchases", 201)
        before = _cpu(server=server, web=web)
        ok, lat, statuses = drive(port, key, cards, clients, seconds, "/api/v1/purchases", 201)
        return ok, lat, statuses, _per_unit(before, _cpu(server=server, web=web), ok, names)

    api = start_api(setup[0], port, setup[1])
    try:
        ok, lat, statuses, cpu = purchases(api.pid, server, 3, ("web", "postgres", "client"))
        q_ok, q_lat, q_statuses = drive(
            port, key, cards, clients, seconds, "/api/v1/purchases/quote", 200
        )
    finally:
        _stop(api)
    null_cpu = None
    if ceiling:
        null = start_api(setup[0], port, setup[1], app="bench.null_app")
        try:
            *_answers, null_cpu = purchases(null.pid, None, 1, ("web", "client"))
        finally:
            _stop(null)
    return {
        "workers": setup[0],
        "threads": setup[1],
        "purchases_per_s": round(ok / seconds, 1),
        "p50_ms": round(_pct(lat, 0.5), 1),
        "p99_ms": round(_pct(lat, 0.99), 1),
        "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
        "statuses": statuses,
        "quotes_per_s": round(q_ok / seconds, 1),
        "quote_p99_ms": round(_pct(q_lat, 0.99), 1),
        "quote_statuses": q_statuses,
        "cpu_ms_per_purchase": cpu,
        "cpu_ms_per_null_request": null_cpu,
    }


def _cpu_figure(tx_cpu: dict[str, float | None], per_request: list[float | None]) -> float | None:
    """pgbench's CPU per transaction ÷ the CPU of one request: what the figure comes to when
    the cores are all busy (None when a part was not measured)."""
    yardstick = [tx_cpu.get("postgres"), tx_cpu.get("pgbench")]
    parts = [*yardstick, *per_request]
    if any(v is None for v in parts):
        return None
    return round(sum(yardstick) / sum(per_request), 3)  # type: ignore[arg-type]


def _figures_from_cpu(run: dict[str, Any]) -> dict[str, float | None]:
    """The figure as the CPU shares predict it, and the ceiling: the same with no Python of
    ours, a purchase costing only its SQL plus gunicorn and the clients on a do-nothing app."""
    tx_cpu, purchase = run["cpu_ms_per_pgbench_tx"] or {}, run["cpu_ms_per_purchase"]
    null = run["cpu_ms_per_null_request"]
    return {
        "cpu_figure": _cpu_figure(tx_cpu, list(purchase.values())),
        "ceiling": _cpu_figure(tx_cpu, [purchase["postgres"], null["web"], null["client"]])
        if null
        else None,
    }


def _report(run: dict[str, Any]) -> None:
    """One run, as run_api and main recorded it, for people."""
    rate, q_rate = run["purchases_per_s"], run["quotes_per_s"]
    print(
        f"purchases (commit + redemption): {rate:.0f}/s, p50 {run['p50_ms']:.1f} ms, "
        f"p99 {run['p99_ms']:.1f} ms, statuses {run['statuses']}"
    )
    print(
        f"quotes: {q_rate:.0f}/s, p99 {run['quote_p99_ms']:.1f} ms "
        f"({q_rate / rate if rate else float('nan'):.1f}× the commit rate), "
        f"statuses {run['quote_statuses']}"
    )
    print(_cpu_line("CPU per purchase", run["cpu_ms_per_purchase"]))
    if run["cpu_ms_per_pgbench_tx"]:
        print(_cpu_line("CPU per pgbench transaction", run["cpu_ms_per_pgbench_tx"]))
    if run["figure"] is not None:
        print(f"figure: API ÷ pgbench = {run['figure']:.3f} (target ≥ 0.25, aim 0.4)")
    if run["cpu_figure"] is not None:
        print(
            f"the same from CPU: {run['cpu_figure']:.3f} (pgbench's CPU per transaction ÷ "
            "the purchase's; the two agree while the cores are all busy)"
        )
    if run["ceiling"] is not None:
        null = run["cpu_ms_per_null_request"]
        print(
            f"ceiling: {run['ceiling']:.3f}, the figure if our Python cost nothing: the "
            f"purchase's SQL (postgres {run['cpu_ms_per_purchase']['postgres']:.2f} ms) plus "
            f"gunicorn and the clients on a do-nothing app (web {null['web']:.2f} ms, "
            f"client {null['client']:.2f} ms)"
        )


def _setups(text: str) -> list[tuple[int, int]]:
    """The set-ups of --setups, e.g. 6x1,2x3 → [(6, 1), (2, 3)]."""
    try:
        pairs = [part.strip().lower().split("x") for part in text.split(",") if part.strip()]
        return [(int(w), int(t)) for w, t in pairs]
    except ValueError:
        raise SystemExit(f"--setups: expected WORKERSxTHREADS[,...], got {text!r}") from None


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(median(known), 3) if known else None


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians of several runs of one set-up."""
    names = (
        "figure",
        "cpu_figure",
        "ceiling",
        "purchases_per_s",
        "p50_ms",
        "p99_ms",
        "quotes_per_s",
    )
    return {
        "workers": runs[0]["workers"],
        "threads": runs[0]["threads"],
        "runs": len(runs),
        **{name: _median_or_none([r.get(name) for r in runs]) for name in names},
        "cpu_ms_per_purchase": {
            part: _median_or_none([r["cpu_ms_per_purchase"][part] for r in runs])
            for part in ("web", "postgres", "client")
        },
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench pos", description=__doc__)
    parser.add_argument("--seconds", type=int, default=20, help="per phase (default 20)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 6)))
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("WEB_THREADS", 1)),
        help="threads per gunicorn worker (default WEB_THREADS or 1 = sync workers)",
    )
    parser.add_argument(
        "--setups",
        default="",
        help="gunicorn set-ups to compare, WORKERSxTHREADS[,...] (default: --workers x --threads)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians printed (default 3)")
    parser.add_argument(
        "--in-process",
        type=int,
        default=0,
        metavar="N",
        help="instead: N purchases, then N quotes, through Django in this process, one at a time",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also drive a do-nothing WSGI app (bench.null_app) under the same set-up and "
        "print the figure a purchase would reach if our Python cost nothing",
    )
    parser.add_argument("--members-per-client", type=int, default=4)
    parser.add_argument("--skip-pgbench", action="store_true")
    parser.add_argument(
        "--database",
        default="bench_pos",
        help="database for the API's data, created and migrated on the same server "
        "(default bench_pos; 'default' uses the configured one)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    setups = _setups(args.setups) if args.setups else [(args.workers, args.threads)]
    if args.in_process:
        os.environ.update(API_ENV)  # read by the settings, in this process and after the re-exec
    _setup()
    if args.database != "default" and os.environ.get("BENCH_POS_DATABASE") != args.database:
        _reexec_on(args.database, argv)
    if os.environ.get("BENCH_POS_DATABASE"):
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
    if args.in_process:
        in_process(args.in_process)
        return 0

    runs: dict[tuple[int, int], list[dict[str, Any]]] = {setup: [] for setup in setups}
    for round_no in range(1, args.rounds + 1):
        tps, tx_cpu = (None, {}) if args.skip_pgbench else yardstick(args.seconds)
        if tps is not None:
            print(
                f"round {round_no}: pgbench yardstick {tps:.0f} tps (-c 8 -j 2, {args.seconds} s)"
            )
        for setup in setups:
            run = run_api(setup, args.seconds, args.clients, args.members_per_client, args.ceiling)
            run |= {
                "bench": "pos",
                "round": round_no,
                "pgbench_tps": tps,
                "cpu_ms_per_pgbench_tx": tx_cpu,
                "figure": round(run["purchases_per_s"] / tps, 3) if tps else None,
                "clients": args.clients,
            }
            run |= _figures_from_cpu(run)
            print(f"gunicorn {setup[0]} workers x {setup[1]} threads, round {round_no}:")
            _report(run)
            print(json.dumps(run))
            runs[setup].append(run)
    if args.rounds > 1 or len(setups) > 1:
        print(f"medians of {args.rounds} rounds:")
        for setup, done in runs.items():
            summary = _medians(done)
            print(
                f"  {setup[0]} workers x {setup[1]} threads: figure {summary['figure']} "
                f"(from CPU {summary['cpu_figure']}), "
                f"{summary['purchases_per_s']:.0f} purchases/s, p50 {summary['p50_ms']:.1f} ms, "
                f"p99 {summary['p99_ms']:.1f} ms, quotes {summary['quotes_per_s']:.0f}/s, "
                f"CPU per purchase {summary['cpu_ms_per_purchase']}"
                + (f", ceiling {summary['ceiling']}" if summary["ceiling"] is not None else "")
            )
            print(json.dumps({"bench": "pos", "medians": summary}))
    return 0
