"""`manage.py terminal_create --store CODE --name NAME`: one JSON line with the new key."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pos.services import terminal_create
from programs.models import Store


class Command(BaseCommand):
    help = (
        "Create a cashier terminal for a store and print "
        '{"terminal": "<id>", "key": "<key>"}. The key is not shown again.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", required=True, help="store code")
        parser.add_argument("--name", required=True, help="terminal name, e.g. 'Till 1'")
        parser.add_argument(
            "--program", help="program code (needed when several programs have this store code)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stores = Store.objects.filter(code=options["store"])
        if options.get("program"):
            stores = stores.filter(program__code=options["program"])
        found = list(stores[:2])
        if not found:
            raise CommandError(f"No store with code {options['store']!r}.")
        if len(found) > 1:
            raise CommandError(
                f"Several programs have a store {options['store']!r}: add --program CODE."
            )
        terminal, key = terminal_create(store=found[0], name=options["name"])
        self.stdout.write(json.dumps({"terminal": str(terminal.pk), "key": key}))
