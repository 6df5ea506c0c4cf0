"""`manage.py program_import FILE [--dry-run]`: create or update a program from its file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from programs.services import ProgramFileError, program_file_loads, program_import


class Command(BaseCommand):
    help = (
        "Create or update a program, its tiers and stores from a JSON program file, "
        "all or nothing. Errors are listed one per line with their JSON path."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the program file (JSON, UTF-8); '-' reads stdin")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check the file and show what would change, without saving anything",
        )
        parser.add_argument(
            "--user",
            help="username the audit trail records as the author (default: none)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["file"]
        text = self._read(name)
        try:
            data = program_file_loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(
                _("%(file)s: not valid JSON at line %(line)d, column %(column)d: %(reason)s")
                % {"file": name, "line": exc.lineno, "column": exc.colno, "reason": exc.msg}
            ) from None
        except ValueError as exc:
            raise CommandError(
                _("%(file)s: not a usable program file: %(reason)s") % {"file": name, "reason": exc}
            ) from None

        by = None
        if options["user"]:
            try:
                by = get_user_model()._default_manager.get_by_natural_key(options["user"])
            except get_user_model().DoesNotExist:
                raise CommandError(_("No user %(name)r.") % {"name": options["user"]}) from None

        try:
            result = program_import(data, dry_run=options["dry_run"], by=by)
        except ProgramFileError as exc:
            for path, message in exc.errors:
                self.stderr.write(f"{path}: {message}")
            raise CommandError(
                _("%(file)s: %(count)d error(s); nothing was changed.")
                % {"file": name, "count": len(exc.errors)}
            ) from None

        for line in result.changes:
            self.stdout.write(f"  {line}")
        code = result.program.code
        if result.dry_run:
            if not result.changes:
                verdict = _('Dry run: program "%(code)s" has no changes; nothing was saved.')
            elif result.created:
                verdict = _('Dry run: program "%(code)s" would be created; nothing was saved.')
            else:
                verdict = _('Dry run: program "%(code)s" would be updated; nothing was saved.')
            self.stdout.write(verdict % {"code": code})
        elif result.created:
            self.stdout.write(self.style.SUCCESS(_('Program "%(code)s" created.') % {"code": code}))
        elif result.changes:
            self.stdout.write(self.style.SUCCESS(_('Program "%(code)s" updated.') % {"code": code}))
        else:
            self.stdout.write(
                _('Program "%(code)s" is up to date; nothing changed.') % {"code": code}
            )

    def _read(self, name: str) -> str:
        try:
            if name == "-":
                raw = sys.stdin.buffer.read()
            else:
                raw = Path(name).read_bytes()
        except OSError as exc:
            raise CommandError(
                _("%(file)s: cannot read the file: %(reason)s")
                % {"file": name, "reason": exc.strerror}
            ) from None
        try:
            return raw.decode("utf-8-sig")  # tolerate the BOM some editors write
        except UnicodeDecodeError as exc:
            raise CommandError(
                _("%(file)s: not UTF-8 text (byte %(byte)d cannot be decoded)")
                % {"file": name, "byte": exc.start}
            ) from None
