"""Realistic member CSV files for the member import benchmark.

Phones in the forms people type, Russian names, some e-mails and birth dates
in both date formats, a share of legacy card numbers, and a few per cent of
rows that must be refused: bad phones, duplicates, missing consent, bad dates.
Deterministic for a given seed, written as a stream (memory stays flat).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

FIRST = ["Анна", "Мария", "Елена", "Ольга", "Иван", "Пётр", "Сергей", "Дмитрий", "Алексей"]
LAST = ["Иванова", "Смирнова", "Кузнецов", "Попов", "Васильев", "Соколова", "Морозов"]
DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru"]
HEADERS_EN = [
    "phone",
    "card_number",
    "first_name",
    "last_name",
    "email",
    "birth_date",
    "store",
    "registered_at",
    "consent_personal_data",
    "consent_marketing_sms",
    "consent_marketing_email",
]
HEADERS_RU = [
    "Телефон",
    "Номер карты",
    "Имя",
    "Фамилия",
    "Эл. почта",
    "Дата рождения",
    "Магазин",
    "Дата регистрации",
    "Согласие на обработку ПД",
    "Согласие на SMS",
    "Согласие на email",
]
STORES = ["S1", "S2", "S3", "S4", "S5"]


def _phone(national: str, rng: random.Random) -> str:
    form = rng.randrange(5)
    a, b, c, d = national[:3], national[3:6], national[6:8], national[8:]
    if form == 0:
        return f"8 ({a}) {b}-{c}-{d}"
    if form == 1:
        return f"+7 {a} {b} {c} {d}"
    if form == 2:
        return national
    if form == 3:
        return "7" + national
    return f"+7({a}){b}-{c}-{d}"


def _national(i: int, seed: int) -> str:
    # A permutation of 9xx numbers: unique without remembering them.
    return str(9_000_000_000 + (i * 7_919_777 + seed) % 1_000_000_000)


def _day(rng: random.Random, first_year: int, last_year: int) -> tuple[int, int, int]:
    return rng.randrange(first_year, last_year), rng.randrange(1, 13), rng.randrange(1, 29)


def members_csv_write(path: Path, rows: int, *, russian: bool, seed: int = 1) -> Path:
    """Write `rows` member rows to `path`: cp1251 with `;` and Russian headers, or UTF-8 BOM."""
    rng = random.Random(seed)
    encoding = "cp1251" if russian else "utf-8-sig"
    yes, no = ("да", "нет") if russian else ("1", "0")
    with path.open("w", encoding=encoding, newline="") as out:
        writer = csv.writer(out, delimiter=";" if russian else ",")
        writer.writerow(HEADERS_RU if russian else HEADERS_EN)
        for i in range(rows):
            national = _national(i, seed)
            phone = _phone(national, rng)
            roll = rng.random()
            consent = yes
            birth = ""
            if roll < 0.005:
                phone = "12345"  # too short
            elif roll < 0.01:
                phone = f"8 (9{rng.randrange(10, 99)}) abc-12-34"
            elif roll < 0.015 and i > 10:
                # the same person twice, typed differently
                phone = _phone(_national(i - 7, seed), rng)
            elif roll < 0.025:
                consent = rng.choice(["", no])
            elif roll < 0.028:
                birth = "31.02.1980"
            if not birth and rng.random() < 0.7:
                year, month, day = _day(rng, 1950, 2006)
                birth = (
                    f"{day:02d}.{month:02d}.{year}"
                    if rng.random() < 0.5
                    else f"{year}-{month:02d}-{day:02d}"
                )
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"user{i}@{rng.choice(DOMAINS)}" if rng.random() < 0.6 else ""
            # Legacy numbers from an older system, distinct between files of other seeds.
            card = f"3{seed % 1000:03d}{i:09d}" if rng.random() < 0.3 else ""
            year, month, day = _day(rng, 2015, 2025)
            registered = f"{year}-{month:02d}-{day:02d}"
            writer.writerow(
                [
                    phone,
                    card,
                    first,
                    last,
                    email,
                    birth,
                    rng.choice(STORES),
                    registered,
                    consent,
                    rng.choice([yes, no, ""]),
                    rng.choice([yes, no]),
                ]
            )
    return path
