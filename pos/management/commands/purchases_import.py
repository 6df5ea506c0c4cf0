"""`manage.py purchases_import PATH --program CODE`: past receipts in, no points moved."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from tqdm import tqdm

from accounts.csv_format import FileFormatError, open_binary
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
        parser.add_argument(
            "--delimiter", default=None, help="default: guessed from the header (;  ,  or tab)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            program = Program.objects.get(code=options["program"])
        except Program.DoesNotExist:
            raise CommandError(
                _("No program %(code)s.") % {"code": repr(options["program"])}
            ) from None
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(_("No file %(path)s.") % {"path": path})
        report_path = Path(options["report"] or f"{path}.refused.csv")
        size = os.path.getsize(path)
        refused = 0
        try:
            with (
                path.open("rb") as stream,
                # UTF-8 with a BOM, so that Excel shows Cyrillic reasons as they are
                report_path.open("w", encoding="utf-8-sig", newline="") as report_file,
                tqdm(
                    total=size,
                    unit="B",
                    unit_scale=True,
                    desc="receipts",
                    disable=options["verbosity"] == 0,
                ) as bar,
            ):
                # UTF-8 or Windows-1251, ; or , or tab: as the member import reads them
                try:
                    source = open_binary(stream, delimiter=options["delimiter"])
                except FileFormatError as error:  # an empty file, UTF-16, a broken first megabyte
                    raise CommandError(" ".join(error.messages)) from None
                header, reader = source.header, source.rows
                names = [h.strip().lower() for h in header]
                missing = REQUIRED - set(names)
                if missing or not ({"total", "amount", "price"} & set(names)):
                    lacking = ", ".join(sorted(missing)) or _("total (or amount/price)")
                    raise CommandError(_("Missing columns: %(columns)s.") % {"columns": lacking})
                writer = csv.writer(report_file, delimiter=source.delimiter)
                writer.writerow(["row", *header, "error"])

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

                try:
                    result = purchases_import(program=program, rows=rows(), refuse=refuse)
                except FileFormatError as error:
                    # A later line in another encoding, or not CSV: the batches before it
                    # are in, and a second run of the mended file skips them.
                    then = _(
                        "Nothing from that line on was imported; run the mended file again: "
                        "receipts already imported are skipped."
                    )
                    raise CommandError(" ".join([*error.messages, then])) from None
        finally:
            if not refused:  # nothing refused, or the file could not be read at all
                report_path.unlink(missing_ok=True)
        counts = {
            "receipts": result.receipts,
            "imported": result.imported,
            "skipped": result.skipped,
            "refused": result.refused_rows,
            "report": report_path,
            "tiers": result.tier_changes,
        }
        self.stdout.write(
            (
                _(
                    "receipts: %(receipts)d, imported: %(imported)d, already there: %(skipped)d, "
                    "refused rows: %(refused)d (see %(report)s), tier changes: %(tiers)d"
                )
                if refused
                else _(
                    "receipts: %(receipts)d, imported: %(imported)d, already there: %(skipped)d, "
                    "refused rows: %(refused)d, tier changes: %(tiers)d"
                )
            )
            % counts
        )
