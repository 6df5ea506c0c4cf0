"""`manage.py members_import PATH --program CODE [--dry-run]`: a member CSV of any size."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from accounts.csv_bulk import (
    MAX_WORKERS,
    PARALLEL_FROM,
    checkers_for,
    count_lines,
    members_import_stream,
)
from accounts.csv_format import FileFormatError
from programs.models import Program


class Command(BaseCommand):
    help = (
        "Import members from a CSV file (columns of API.md 'Member CSV', English or Russian "
        "headers). Rows are matched by phone, then card number; refused rows are written "
        "with their reasons to PATH.refused.csv."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--program", required=True, help="program code")
        parser.add_argument(
            "--dry-run", action="store_true", help="check and report, write no member"
        )
        parser.add_argument(
            "--refused",
            type=Path,
            help="where to write the refused rows (default: PATH.refused.csv)",
        )
        parser.add_argument(
            "--workers",
            type=int,
            help="processes that check rows while the file is read (default: one per core, "
            f"up to {MAX_WORKERS}, for files of {PARALLEL_FROM:,} rows or more; 1: none)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        program = Program.objects.filter(code=options["program"]).first()
        if program is None:
            raise CommandError(f"There is no program with the code {options['program']!r}.")
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        refused_path: Path = options["refused"] or path.with_name(path.name + ".refused.csv")
        with path.open("rb") as counting:
            total = count_lines(counting)
        workers = options["workers"]
        if workers is None:
            workers = checkers_for(total)
        if workers < 1:
            raise CommandError("--workers must be 1 or more.")
        bar = tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, disable=None)
        phase = {"name": ""}

        def progress(done: int, total: int | None, name: str) -> None:
            if name != phase["name"]:
                phase["name"] = name
                bar.set_description(name)
            if total:
                bar.total = total
            bar.n = min(done, bar.total or done)
            bar.refresh()

        try:
            with (
                path.open("rb") as stream,
                refused_path.open("w", encoding="utf-8-sig", newline="") as refused_out,
            ):
                summary = members_import_stream(
                    stream,
                    program=program,
                    dry_run=options["dry_run"],
                    refused_out=refused_out,
                    progress=progress,
                    total=total,
                    workers=workers,
                )
        except FileFormatError as error:
            refused_path.unlink(missing_ok=True)
            raise CommandError("\n".join(error.messages)) from None
        finally:
            bar.close()
        if not summary.refused:
            refused_path.unlink(missing_ok=True)
        verb = "would be" if summary.dry_run else "were"
        self.stdout.write(
            f"{summary.total} rows: {summary.created} members {verb} created, "
            f"{summary.updated} updated, {summary.unchanged} unchanged, "
            f"{summary.refused} refused."
        )
        if options["verbosity"] > 1:
            self.stdout.write(
                "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.timings.items())
            )
        if summary.ignored_columns:
            self.stdout.write("Ignored columns: " + ", ".join(summary.ignored_columns))
        if summary.refused:
            self.stdout.write(f"Refused rows and their reasons: {refused_path}")
