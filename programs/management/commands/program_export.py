"""`manage.py program_export CODE`: print a program's file, the same JSON import reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from programs.models import Program
from programs.services import program_export_data, program_file_dumps


class Command(BaseCommand):
    help = "Print the program file of a program (JSON, UTF-8); program_import reads it back."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code", help="the program code")
        parser.add_argument("-o", "--output", help="write to this file instead of stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            text = program_file_dumps(program_export_data(options["code"]))
        except Program.DoesNotExist:
            raise CommandError(
                _("No program with code %(code)r.") % {"code": options["code"]}
            ) from None
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            return
        self.stdout.write(text, ending="")
