"""Helpers shared by the member CSV tests (tests/accounts/test_csv_*.py)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from django.core.management import call_command

from accounts.models import Card, Consent, Member
from programs.models import Program, Store
from tests.accounts.factories import ProgramFactory

DATA = Path(__file__).resolve().parent.parent / "data"


def program_with_store(code: str = "main") -> Program:
    program = ProgramFactory(code=code)
    Store.objects.get_or_create(program=program, code="S1", defaults={"name": "Store 1"})
    return program


def run_import(path: Path, program: Program, *extra: str, refused: Path | None = None) -> str:
    out = io.StringIO()
    # Never next to the input: tests/data must stay as committed.
    refused = refused or Path(tempfile.mkdtemp()) / "refused.csv"
    args = [str(path), "--program", program.code, *extra, "--refused", str(refused)]
    call_command("members_import", *args, stdout=out)
    return out.getvalue()


def members_state(program: Program, given_cards: frozenset[str] = frozenset()) -> list[Any]:
    """Everything an import may change about a program's members, comparable across programs.

    Issued card numbers are random: cards not in `given_cards` compare as "issued".
    """
    state = []
    for m in Member.objects.filter(program=program).order_by("phone"):
        cards = sorted(
            (c.number if c.number in given_cards else "issued", c.status)
            for c in Card.objects.filter(member=m)
        )
        consents = sorted((c.kind, c.granted, c.channel) for c in Consent.objects.filter(member=m))
        state.append(
            (
                m.phone,
                m.first_name,
                m.last_name,
                m.email,
                m.birth_date,
                m.store.code if m.store else None,
                m.status,
                m.channel,
                tuple(cards),
                tuple(consents),
            )
        )
    return state


def counts(program: Program) -> tuple[int, int, int]:
    members = Member.objects.filter(program=program)
    return (
        members.count(),
        Card.objects.filter(member__in=members).count(),
        Consent.objects.filter(member__in=members).count(),
    )
