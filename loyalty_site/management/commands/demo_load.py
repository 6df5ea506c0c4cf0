"""Load the demo: a program with tiers and stores, then members with consents.

Safe to run again: the program file is imported (a no-op when unchanged),
members are matched by phone and purchases by receipt number, so a second run
creates nothing. Then a till per store and a year of purchases and refunds,
made through the cashier services (pos.demo). The data is
the same on every machine (seeded random). One function per part, so later
issues add terminals, purchases and campaigns as parts of their own.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import Channel, Member
from accounts.services import member_enroll
from programs.models import Program
from programs.services import program_import_data

DEMO_PROGRAM_FILE = Path(settings.BASE_DIR) / "programs" / "fixtures" / "demo_program.json"
DEMO_SEED = 20250101
CONSENT_TEXT_VERSION = "demo-2025-01"

# (first name, surname) by gender: Russian surnames agree with the gender.
_MALE = ["Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Иван", "Михаил"]
_FEMALE = ["Анна", "Мария", "Елена", "Ольга", "Наталья", "Татьяна", "Ирина", "Екатерина"]
_SURNAMES = [
    ("Иванов", "Иванова"),
    ("Смирнов", "Смирнова"),
    ("Кузнецов", "Кузнецова"),
    ("Попов", "Попова"),
    ("Соколов", "Соколова"),
    ("Лебедев", "Лебедева"),
    ("Козлов", "Козлова"),
    ("Новиков", "Новикова"),
    ("Морозов", "Морозова"),
    ("Волков", "Волкова"),
]
_LATIN = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh sch - y - e yu ya".split(),
        strict=True,
    )
)


@dataclass(frozen=True)
class DemoMember:
    phone: str
    first_name: str
    last_name: str
    email: str
    birth_date: datetime.date | None
    channel: str
    store_index: int
    days_ago: int
    consents: dict[str, bool]


def _latin(text: str) -> str:
    return "".join(_LATIN.get(ch, ch) for ch in text.lower()).replace("-", "")


def demo_members_plan(count: int, *, seed: int = DEMO_SEED) -> list[DemoMember]:
    """The demo members, the same list for the same count and seed."""
    rng = random.Random(seed)
    phones: set[str] = set()
    plan = []
    while len(plan) < count:
        phone = f"+79{rng.randrange(10**9):09d}"  # Russian mobile range +7 9xx
        if phone in phones:
            continue
        phones.add(phone)
        female = rng.random() < 0.55
        first = rng.choice(_FEMALE if female else _MALE)
        last = rng.choice(_SURNAMES)[1 if female else 0]
        has_email = rng.random() < 0.5
        has_birth_date = rng.random() < 0.8
        plan.append(
            DemoMember(
                phone=phone,
                first_name=first,
                last_name=last,
                email=f"{_latin(first)}.{_latin(last)}{len(plan)}@example.com" if has_email else "",
                birth_date=(
                    datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(365 * 55))
                    if has_birth_date
                    else None
                ),
                channel=rng.choice([Channel.TILL, Channel.TILL, Channel.TILL, Channel.WEB]),
                store_index=rng.randrange(1000),
                days_ago=rng.randrange(730),
                consents={
                    "personal_data": True,
                    "marketing_sms": rng.random() < 0.7,
                    "marketing_email": has_email and rng.random() < 0.6,
                    "third_party": rng.random() < 0.1,
                },
            )
        )
    return plan


def demo_program() -> Program:
    """Import (or re-import, a no-op when unchanged) the demo program file."""
    data: dict[str, Any] = json.loads(DEMO_PROGRAM_FILE.read_text(encoding="utf-8"))
    return program_import_data(data)


def demo_members(program: Program, *, count: int = 1000, seed: int = DEMO_SEED) -> int:
    """Enrol the planned demo members that do not exist yet; returns how many were created."""
    plan = demo_members_plan(count, seed=seed)
    existing = set(
        Member.objects.filter(program=program, phone__in=[m.phone for m in plan]).values_list(
            "phone", flat=True
        )
    )
    stores = list(program.stores.order_by("code"))
    rng = random.Random(seed + 1)  # card numbers; reproducible for a given set of new members
    day = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    created = 0
    with transaction.atomic():  # one commit instead of a thousand
        for entry in plan:
            if entry.phone in existing:
                continue
            member_enroll(
                program=program,
                phone=entry.phone,
                first_name=entry.first_name,
                last_name=entry.last_name,
                email=entry.email,
                birth_date=entry.birth_date,
                store=stores[entry.store_index % len(stores)] if stores else None,
                channel=entry.channel,
                consents=entry.consents,
                consent_text_version=CONSENT_TEXT_VERSION,
                registered_at=day - datetime.timedelta(days=entry.days_ago),
                rng=rng,
            )
            created += 1
    return created


class Command(BaseCommand):
    help = "Load the demo program and its members (safe to run again)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--members", type=int, default=1000, help="how many demo members")
        parser.add_argument(
            "--buyers",
            type=int,
            default=200,
            help="how many of them get a year of purchases (0: no tills, no purchases)",
        )

    def handle(self, *args: Any, members: int, buyers: int, **options: Any) -> None:
        started = time.monotonic()
        program = demo_program()
        self.stdout.write(
            f"Program:  {program.code} ({program.tiers.count()} tiers, "
            f"{program.stores.count()} stores)"
        )
        created = demo_members(program, count=members)
        self.stdout.write(f"Members:  {created} created, {members - created} already there")
        if buyers:
            self.demo_purchases(program, buyers)
        self.stdout.write(f"Demo loaded in {time.monotonic() - started:.1f} s")

    def demo_purchases(self, program: Program, buyers: int) -> None:
        from pos.demo import demo_curl, demo_load_purchases

        result = demo_load_purchases(program, members=buyers)
        self.stdout.write(
            f"Purchases: {result['purchases']} created, refunds: {result['refunds']} created"
        )
        port = os.environ.get("PORT", "8000")
        for store, key in sorted(result["tills"].items()):
            self.stdout.write(f"Till key of store {store}: {key}")
        if result["tills"]:
            first_key = result["tills"][sorted(result["tills"])[0]]
            self.stdout.write("Try the cashier API:")
            self.stdout.write("  " + demo_curl(program, first_key, f"http://127.0.0.1:{port}"))
