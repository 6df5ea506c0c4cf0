"""`manage.py members_export --program CODE [PATH]`: the program's members as CSV."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from accounts.csv_bulk import members_export_stream
from programs.models import Program


class Command(BaseCommand):
    help = (
        "Export a program's members as CSV (UTF-8 with BOM so Excel opens it; with "
        "--language ru: Russian headers and ';'). Without PATH, writes to standard output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, nargs="?")
        parser.add_argument("--program", required=True, help="program code")
        parser.add_argument("--language", choices=["en", "ru"], default="en")

    def handle(self, *args: Any, **options: Any) -> None:
        program = Program.objects.filter(code=options["program"]).first()
        if program is None:
            raise CommandError(f"There is no program with the code {options['program']!r}.")
        path: Path | None = options["path"]
        if path is None:
            members_export_stream(self.stdout, program=program, language=options["language"])
            return
        bar = tqdm(unit="rows", unit_scale=True, file=sys.stderr, disable=None)

        def progress(done: int, total: int | None, phase: str) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            with path.open("w", encoding="utf-8-sig", newline="") as out:
                written = members_export_stream(
                    out, program=program, language=options["language"], progress=progress
                )
        finally:
            bar.close()
        self.stdout.write(f"{written} members written to {path}")
