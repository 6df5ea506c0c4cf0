"""Simulated cashier terminals: the mixed load of the soak and the fault tests.

Each terminal is a thread with its own HTTP connection and its own key. It
loops until a deadline (bounded: every request has a timeout, every retry
loop a limit), picking operations by weight: lookups, member pages, quotes,
purchases with and without redemption, two-phase purchases confirmed or
cancelled, refunds, enrolments, and replays of finished requests.

A terminal behaves the way the API asks a careful client to: a POST that
answers 409 `request_in_progress`/`lock_timeout`, 429 or 5xx (or whose
connection broke) is sent again with the same Idempotency-Key and body after
Retry-After. What each attempt answered is counted, so a run can show that
nothing answered 5xx other than 503, and that every change happened once.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

RETRYABLE_409 = {"request_in_progress", "lock_timeout", "ledger_busy"}


@dataclass
class Answer:
    status: int  # 0: no answer (connection refused or broken, timeout)
    body: Any
    raw: bytes
    headers: dict[str, str]
    ms: float


@dataclass
class Stats:
    """What one terminal saw; merged over terminals at the end."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    codes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    purchases: dict[str, str] = field(default_factory=dict)  # purchase id -> last known status
    refunds: set[str] = field(default_factory=set)
    members_created: set[str] = field(default_factory=set)
    gave_up: Counter[str] = field(default_factory=Counter)  # operations left without an answer
    replays_checked: int = 0

    def merge(self, other: Stats) -> None:
        for name, values in other.latencies.items():
            self.latencies[name].extend(values)
        for name, counter in other.statuses.items():
            self.statuses[name].update(counter)
        self.codes.update(other.codes)
        self.problems.extend(other.problems)
        self.purchases.update(other.purchases)
        self.refunds |= other.refunds
        self.members_created |= other.members_created
        self.gave_up.update(other.gave_up)
        self.replays_checked += other.replays_checked

    def server_errors(self) -> dict[str, dict[int, int]]:
        """Every 5xx seen, by operation (503 included: count it apart if it is allowed)."""
        return {
            name: {s: n for s, n in counter.items() if s >= 500}
            for name, counter in self.statuses.items()
            if any(s >= 500 for s in counter)
        }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Api:
    """One keep-alive HTTP connection of one terminal."""

    def __init__(self, base_url: str, key: str, *, timeout: float = 15.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.key = key
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def call(
        self, method: str, path: str, body: Any = None, *, idempotency_key: str | None = None
    ) -> Answer:
        headers = {"Authorization": f"Token {self.key}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        began = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.request(method, "/api/v1/" + path, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
            if response.will_close:
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return Answer(0, None, b"", {}, (time.perf_counter() - began) * 1000)
        ms = (time.perf_counter() - began) * 1000
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Answer(response.status, parsed, raw, answer_headers, ms)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# Operation weights of the mixed load (relative).
MIX = {
    "lookup": 18,
    "member": 4,
    "transactions": 3,
    "quote": 15,
    "purchase": 24,
    "purchase_redeem": 10,
    "two_phase": 9,
    "refund": 9,
    "enrol": 5,
    "anonymous": 3,
}

CATEGORIES = ["dairy", "bakery", "grocery", "drinks", "household", "tobacco"]


class Terminal(threading.Thread):
    """A till: loops over the mix until `deadline` (time.monotonic())."""

    def __init__(
        self,
        *,
        index: int,
        base_url: str,
        key: str,
        cards: list[str],
        deadline: float,
        seed: int,
        run_tag: str,
        mix: dict[str, int] | None = None,
        retry_for: float = 60.0,
        replay_share: float = 0.05,
        max_ops: int | None = None,
    ) -> None:
        super().__init__(name=f"terminal-{index}", daemon=True)
        self.index = index
        self.api = Api(base_url, key)
        self.cards = list(cards)
        self.deadline = deadline
        self.rng = random.Random(seed)
        self.tag = f"{run_tag}-{index}"
        self.mix = mix or MIX
        self.retry_for = retry_for
        self.replay_share = replay_share
        self.max_ops = max_ops
        self.stats = Stats()
        self.serial = 0
        self.completed: list[dict[str, Any]] = []  # purchases that may be refunded

    # --- plumbing ---------------------------------------------------------------------
    def _next(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.tag}-{self.serial}"

    def _record(self, name: str, answer: Answer) -> None:
        self.stats.latencies[name].append(answer.ms)
        self.stats.statuses[name][answer.status] += 1
        if isinstance(answer.body, dict) and answer.status >= 400:
            self.stats.codes[f"{answer.status} {answer.body.get('code')}"] += 1

    def get(self, name: str, path: str) -> Answer:
        answer = self.api.call("GET", path)
        self._record(name, answer)
        return answer

    def post(self, name: str, path: str, body: Any, *, key: str | None = None) -> Answer | None:
        """POST with an Idempotency-Key, retried with the same key while the answer may change.

        Returns the final answer, or None when none came within `retry_for` seconds.
        """
        key = key or self._next("k")
        give_up = time.monotonic() + self.retry_for
        while True:
            answer = self.api.call("POST", path, body, idempotency_key=key)
            self._record(name, answer)
            # 5xx: a careful client cannot know whether the change was made, so it asks
            # again with the same key (the API replays it if it was).
            retry = (
                answer.status in (0, 429)
                or answer.status >= 500
                or (
                    answer.status == 409
                    and isinstance(answer.body, dict)
                    and answer.body.get("code") in RETRYABLE_409
                )
            )
            if not retry:
                break  # after a lost answer this may be the replay of the first attempt's change
            if time.monotonic() > give_up:
                self.stats.gave_up[name] += 1
                return None
            wait = answer.headers.get("retry-after", "")
            time.sleep(min(2.0, float(wait)) if wait.isdigit() else 0.2 + self.rng.random() * 0.3)
        if answer.status < 300 and self.rng.random() < self.replay_share:
            self._replay(path, body, key, answer)
        return answer

    def _replay(self, path: str, body: Any, key: str, original: Answer) -> None:
        again = self.api.call("POST", path, body, idempotency_key=key)
        self._record("replay", again)
        if again.status == 0 or again.status >= 500:
            return  # the server is away; nothing to compare
        self.stats.replays_checked += 1
        if again.status != original.status or again.raw != original.raw:
            self.stats.problems.append(f"replay of {path} answered differently ({again.status})")
        elif again.headers.get("idempotent-replayed") != "true":
            self.stats.problems.append(f"replay of {path} lacks Idempotent-Replayed")

    # --- the operations ---------------------------------------------------------------
    def _card(self) -> str:
        return self.rng.choice(self.cards)

    def _lines(self) -> list[dict[str, Any]]:
        lines = []
        for n in range(self.rng.randint(1, 3)):
            price = f"{self.rng.randint(30, 900)}.{self.rng.randint(0, 99):02d}"
            lines.append(
                {
                    "sku": f"SKU{self.rng.randint(1, 300)}",
                    "name": f"item {n + 1}",
                    "category": self.rng.choice(CATEGORIES),
                    "quantity": str(self.rng.randint(1, 3)),
                    "price": price,
                }
            )
        return lines

    def _purchase_body(self, *, member: bool, redeem: Any, commit: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "member": {"card": self._card()} if member else None,
            "receipt_number": self._next("R"),
            "lines": self._lines(),
            "commit": commit,
        }
        if redeem:
            body["redeem_points"] = redeem
        return body

    def _note_purchase(self, answer: Answer | None) -> dict[str, Any] | None:
        if answer is None or answer.status != 201 or not isinstance(answer.body, dict):
            return None
        self.stats.purchases[answer.body["id"]] = answer.body.get("status", "?")
        return answer.body

    def op_lookup(self) -> None:
        self.get("lookup", f"members/lookup?card={self._card()}")

    def op_member(self) -> None:
        answer = self.api.call("GET", f"members/lookup?card={self._card()}")
        if answer.status == 200 and isinstance(answer.body, dict):
            self.get("member", f"members/{answer.body['id']}")

    def op_transactions(self) -> None:
        answer = self.api.call("GET", f"members/lookup?card={self._card()}")
        if answer.status == 200 and isinstance(answer.body, dict):
            self.get("transactions", f"members/{answer.body['id']}/transactions")

    def op_quote(self) -> None:
        body = self._purchase_body(member=True, redeem=self.rng.choice([0, "max"]), commit=True)
        body.pop("receipt_number")
        body.pop("commit")
        answer = self.api.call("POST", "purchases/quote", body)
        self._record("quote", answer)

    def op_purchase(self, *, redeem: Any = 0, member: bool = True, name: str = "purchase") -> None:
        answer = self.post(
            name, "purchases", self._purchase_body(member=member, redeem=redeem, commit=True)
        )
        body = self._note_purchase(answer)
        if body is not None and member:
            self.completed.append(body)

    def op_purchase_redeem(self) -> None:
        self.op_purchase(redeem="max", name="purchase_redeem")

    def op_anonymous(self) -> None:
        self.op_purchase(member=False, name="purchase_anonymous")

    def op_two_phase(self) -> None:
        answer = self.post(
            "purchase_pending",
            "purchases",
            self._purchase_body(member=True, redeem="max", commit=False),
        )
        body = self._note_purchase(answer)
        if body is None:
            return
        if self.rng.random() < 0.7:
            done = self.post("confirm", f"purchases/{body['id']}/confirm", {})
            if done is not None and done.status == 200 and isinstance(done.body, dict):
                self.stats.purchases[body["id"]] = done.body.get("status", "?")
                self.completed.append(done.body)
        else:
            done = self.post("cancel", f"purchases/{body['id']}/cancel", {})
            if done is not None and done.status == 200 and isinstance(done.body, dict):
                self.stats.purchases[body["id"]] = done.body.get("status", "?")

    def op_refund(self) -> None:
        if not self.completed:
            return self.op_purchase()
        purchase = self.completed.pop(self.rng.randrange(len(self.completed)))
        body: dict[str, Any] = {"refund_number": self._next("RF")}
        lines = purchase.get("lines") or []
        if lines and self.rng.random() < 0.5:
            body["lines"] = [{"line_no": lines[0]["line_no"], "quantity": "1"}]
        answer = self.post("refund", f"purchases/{purchase['id']}/refunds", body)
        if answer is not None and answer.status == 201 and isinstance(answer.body, dict):
            self.stats.refunds.add(answer.body["id"])
        return None

    def op_enrol(self) -> None:
        self.serial += 1
        phone = f"+7999{self.index:02d}{self.serial:05d}"
        body = {
            "phone": phone,
            "first_name": "Soak",
            "consents": {"personal_data": True, "marketing_sms": self.rng.random() < 0.5},
        }
        answer = self.post("enrol", "members", body)
        if answer is not None and answer.status == 201 and isinstance(answer.body, dict):
            self.stats.members_created.add(answer.body["id"])
            self.cards.append(answer.body["card_number"])

    def run(self) -> None:
        names = list(self.mix)
        weights = [self.mix[n] for n in names]
        done = 0
        try:
            while time.monotonic() < self.deadline:
                if self.max_ops is not None and done >= self.max_ops:
                    break
                name = self.rng.choices(names, weights)[0]
                try:
                    getattr(self, f"op_{name}")()
                except Exception as exc:  # a bug in the driver must show, not kill the run
                    self.stats.problems.append(f"{name}: {exc.__class__.__name__}: {exc}")
                done += 1
        finally:
            self.api.close()


def run_terminals(
    *,
    base_url: str,
    keys: list[str],
    cards: list[str],
    seconds: float,
    seed: int = 1,
    run_tag: str = "soak",
    **kwargs: Any,
) -> tuple[Stats, float]:
    """Run one thread per key for `seconds`; their merged stats and the wall time."""
    deadline = time.monotonic() + seconds
    terminals = [
        Terminal(
            index=i,
            base_url=base_url,
            key=key,
            cards=cards,
            deadline=deadline,
            seed=seed * 1000 + i,
            run_tag=run_tag,
            **kwargs,
        )
        for i, key in enumerate(keys)
    ]
    began = time.monotonic()
    for t in terminals:
        t.start()
    for t in terminals:
        # Bounded: the deadline plus the longest retry window plus a request timeout.
        t.join(seconds + t.retry_for + 60)
    wall = time.monotonic() - began
    total = Stats()
    for t in terminals:
        if t.is_alive():
            total.problems.append(f"{t.name} did not stop")
        total.merge(t.stats)
    return total, wall


def report(stats: Stats, wall: float) -> list[dict[str, Any]]:
    """Per operation: count, per second, p50 and p99 in ms, statuses."""
    rows = []
    for name in sorted(stats.latencies):
        values = stats.latencies[name]
        rows.append(
            {
                "operation": name,
                "requests": len(values),
                "per_second": round(len(values) / wall, 1) if wall else 0.0,
                "p50_ms": round(percentile(values, 50), 1),
                "p99_ms": round(percentile(values, 99), 1),
                "statuses": dict(sorted(stats.statuses[name].items())),
            }
        )
    return rows


def main(argv: list[str]) -> int:
    """Not a benchmark of its own: the terminals of `python -m bench soak`."""
    print("bench.soak_load drives the terminals of `python -m bench soak`; run that.")
    return 2
