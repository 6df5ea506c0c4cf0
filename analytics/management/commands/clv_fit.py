"""manage.py clv_fit --program CODE [--until YYYY-MM-DD]: fit CLV and print the model as JSON."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.clv import ClvFitError
from analytics.services import clv_fit
from programs.models import Program


def _date(raw: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"--until {raw!r} is not a date; use YYYY-MM-DD.") from None


class Command(BaseCommand):
    help = (
        "Fit the BG/NBD and Gamma-Gamma models of a program on purchases up to and "
        "including the cut-off date, store them with every member's prediction, and "
        'print {"bgnbd": {...}, "gamma_gamma": {...}, "members": n} as JSON.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--program", required=True, help="program code")
        parser.add_argument(
            "--until", type=_date, default=None, help="cut-off date YYYY-MM-DD (default: today)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        program = Program.objects.filter(code=options["program"]).first()
        if program is None:
            raise CommandError(f"No program with code {options['program']!r}.")
        try:
            model = clv_fit(program=program, until=options["until"])
        except ClvFitError as exc:
            raise CommandError(f"Cannot fit the CLV model of {program.code}: {exc}") from None
        result = {
            "bgnbd": {
                "r": model.r,
                "alpha": model.alpha,
                "a": model.a,
                "b": model.b,
                "log_likelihood": model.log_likelihood,
            },
            "gamma_gamma": {"p": model.p, "q": model.q, "gamma": model.gamma},
            "members": model.members,
        }
        self.stdout.write(json.dumps(result))
