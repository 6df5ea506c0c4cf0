"""manage.py analytics_rebuild --program CODE --from D --to D: recompute a range of days."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.services import aggregates_rebuild, campaign_stats_refresh, snapshots_take
from programs.models import Program


def _date(raw: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"{raw!r} is not a date; use YYYY-MM-DD.") from None


class Command(BaseCommand):
    help = (
        "Recompute the daily aggregates (and the monthly member activity of their months) "
        "of a program for local days FROM..TO inclusive, then today's snapshots. "
        "Safe to run again: the range's rows are replaced."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--program", required=True, help="program code")
        parser.add_argument("--from", dest="first", type=_date, required=True, help="YYYY-MM-DD")
        parser.add_argument("--to", dest="last", type=_date, required=True, help="YYYY-MM-DD")

    def handle(self, *args: Any, **options: Any) -> None:
        program = Program.objects.filter(code=options["program"]).first()
        if program is None:
            raise CommandError(f"No program with code {options['program']!r}.")
        if options["last"] < options["first"]:
            raise CommandError("--to is before --from.")
        aggregates_rebuild(program=program, first=options["first"], last=options["last"])
        snapshots_take(program=program)
        campaign_stats_refresh(program=program)
        self.stdout.write(f"Rebuilt {program.code} from {options['first']} to {options['last']}.")
