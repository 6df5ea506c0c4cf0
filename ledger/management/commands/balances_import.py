"""manage.py balances_import PATH --program CODE: opening balances from another system.

CSV with a header row; columns by name (English or Russian), in any order:
phone (телефон) or card (карта, card_number), points (баллы, бонусы), and an
optional expiry date (expires_on, expiry, срок, дата сгорания) as YYYY-MM-DD or
DD.MM.YYYY. UTF-8 (with or without BOM) or Windows-1251; comma or semicolon.
Each row is credited once: running the same file again credits nothing new.
"""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.services import ImportRow, balances_import
from programs.models import Program

HEADERS = {
    "phone": "phone",
    "телефон": "phone",
    "card": "card",
    "card_number": "card",
    "карта": "card",
    "номер карты": "card",
    "points": "points",
    "баллы": "points",
    "бонусы": "points",
    "expires_on": "expires_on",
    "expiry": "expires_on",
    "expires": "expires_on",
    "срок": "expires_on",
    "дата сгорания": "expires_on",
}


def decode(raw: bytes) -> str:
    """UTF-8 (a BOM is dropped) or, failing that, Windows-1251 as Russian Excel saves it."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1251")


def parse_date(text: str) -> datetime.date:
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or DD.MM.YYYY)")


def read_rows(text: str) -> tuple[list[ImportRow], list[tuple[int, str]]]:
    """The file's rows, and (line, message) for rows that cannot be read."""
    first_line = text.splitlines()[0] if text else ""
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise CommandError("The file is empty.")
    columns = [HEADERS.get(name.strip().lower(), "") for name in header]
    if "points" not in columns or not {"phone", "card"} & set(columns):
        raise CommandError(
            "The header needs a points column and a phone or card column; "
            f"found: {', '.join(header)}"
        )
    rows: list[ImportRow] = []
    errors: list[tuple[int, str]] = []
    for line, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        data = {col: value.strip() for col, value in zip(columns, values, strict=False) if col}
        try:
            points = int(data.get("points", "").replace(" ", "").replace("\xa0", ""))
            expires = parse_date(data["expires_on"]) if data.get("expires_on") else None
        except ValueError as exc:
            errors.append((line, str(exc)))
            continue
        if not data.get("phone") and not data.get("card"):
            errors.append((line, "no phone and no card"))
            continue
        rows.append(
            ImportRow(
                line=line,
                phone=data.get("phone", ""),
                card=data.get("card", ""),
                points=points,
                expires_on=expires,
            )
        )
    return rows, errors


class Command(BaseCommand):
    help = "Credit opening balances from a CSV file (idempotent per row)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--program", required=True, help="program code")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            program = Program.objects.get(code=options["program"])
        except Program.DoesNotExist:
            raise CommandError(f"No program with code {options['program']!r}.") from None
        path: Path = options["path"]
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        rows, errors = read_rows(decode(path.read_bytes()))
        result = balances_import(program=program, rows=rows)
        for line, message in sorted(errors + result.errors):
            self.stderr.write(f"line {line}: {message}")
        self.stdout.write(
            f"credited {result.created} rows, {result.already} already imported, "
            f"{len(errors) + len(result.errors)} errors"
        )
        if errors or result.errors:
            raise CommandError("Some rows were not imported (see above).", returncode=2)
