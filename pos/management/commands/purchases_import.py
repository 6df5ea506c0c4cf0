"""`manage.py purchases_import PATH --program CODE`: past receipts in, no points moved."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from pos.history_import import purchases_import
from programs.models import Program

REQUIRED = {"store", "receipt_number", "purchased_at"}


class Command(BaseCommand):
    help = (
        "Import past receipts (API.md 'Purchase history CSV') for tiers, member facts and "
        "analytics; no points are moved. Receipts already imported are skipped. Refused rows "
        "are written to PATH.refused.csv with the reason."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--program", required=True, help="program code")
        parser.add_argument(
            "--report", help="where to write refused rows (default PATH.refused.csv)"
        )
        parser.add_argument("--delimiter", default=None, help="default: guessed (, or ;)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            program = Program.objects.get(code=options["program"])
        except Program.DoesNotExist:
            raise CommandError(f"No program {options['program']!r}.") from None
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"No file {path}.")
        report_path = Path(options["report"] or f"{path}.refused.csv")
        size = os.path.getsize(path)
        with (
            path.open("r", encoding="utf-8-sig", newline="") as source,
            report_path.open("w", encoding="utf-8", newline="") as report_file,
            tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                desc="receipts",
                disable=options["verbosity"] == 0,
            ) as bar,
        ):
            sample = source.read(4096)
            source.seek(0)
            delimiter = options["delimiter"] or (
                ";" if sample.count(";") > sample.count(",") else ","
            )
            reader = csv.reader(source, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise CommandError("The file is empty.") from None
            names = [h.strip().lower() for h in header]
            missing = REQUIRED - set(names)
            if missing or not ({"total", "amount", "price"} & set(names)):
                raise CommandError(
                    f"Missing columns: {', '.join(sorted(missing)) or 'total (or amount/price)'}."
                )
            writer = csv.writer(report_file)
            writer.writerow(["row", *header, "error"])
            refused = 0

            def refuse(number: int, row: dict[str, str], reason: str) -> None:
                nonlocal refused
                refused += 1
                writer.writerow([number, *(row.get(n, "") for n in names), reason])

            def rows():  # type: ignore[no-untyped-def]
                position = 0
                for values in reader:
                    # The bar follows the bytes of the rows read so far (approximately).
                    step = sum(len(v) + 1 for v in values) + 1
                    position += step
                    bar.update(step)
                    yield dict(zip(names, values, strict=False))
                bar.update(max(0, size - position))

            result = purchases_import(program=program, rows=rows(), refuse=refuse)
        if not refused:
            report_path.unlink()
        self.stdout.write(
            f"receipts: {result.receipts}, imported: {result.imported}, "
            f"already there: {result.skipped}, refused rows: {result.refused_rows}"
            + (f" (see {report_path})" if refused else "")
            + f", tier changes: {result.tier_changes}"
        )
