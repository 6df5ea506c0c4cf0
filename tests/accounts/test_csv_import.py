"""The bulk member import (COPY + set-based SQL) through `manage.py members_import`."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError
from django.utils import translation

from accounts import csv_bulk
from accounts.cards import is_valid_ean13
from accounts.models import Card, Channel, Consent, Member
from accounts.selectors import consents_current
from tests.accounts.csv_support import DATA, counts, members_state, program_with_store, run_import
from tests.accounts.factories import member_create

pytestmark = pytest.mark.django_db


def refused_rows(path: Path) -> dict[int, str]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        delimiter = ";" if ";" in f.readline() else ","
        f.seek(0)
        reader = csv.reader(f, delimiter=delimiter)
        next(reader)
        return {int(row[0]): row[1] for row in reader}


def test_a_cp1251_file_creates_members_and_updates_the_one_found_by_phone(tmp_path: Path) -> None:
    program = program_with_store()
    anna = member_create(program, phone="+79123456789", first_name="A.", email="old@example.ru")
    refused = tmp_path / "refused.csv"

    output = run_import(DATA / "members_cp1251_semicolon.csv", program, refused=refused)

    assert "4 rows: 2 members were created, 1 updated, 0 unchanged, 1 refused." in output
    anna.refresh_from_db()
    assert (anna.first_name, anna.last_name, anna.email) == ("Анна", "Иванова", "anna@example.ru")
    assert anna.birth_date.isoformat() == "1985-03-12" and anna.store.code == "S1"
    assert consents_current(anna)["marketing_email"] is False
    peter = Member.objects.get(program=program, phone="+79121112233")
    assert peter.channel == Channel.IMPORT and peter.first_name == "Пётр"
    assert peter.cards.get().number == "2000000000015"
    assert peter.registered_at.isoformat() == "2023-05-04T07:30:00+00:00"
    olga = Member.objects.get(program=program, phone="+79123334455")
    assert is_valid_ean13(olga.cards.get(status="active").number)
    assert refused_rows(refused) == {
        5: "ivan@example is not an e-mail address. "
        "31.02.1980 is not a date for birth date: use YYYY-MM-DD or DD.MM.YYYY."
    }


def test_running_the_same_file_again_changes_nothing(tmp_path: Path) -> None:
    program = program_with_store()
    run_import(DATA / "members_utf8_bom.csv", program)
    before = counts(program)
    updated_at = sorted(Member.objects.values_list("updated_at", flat=True))

    output = run_import(DATA / "members_utf8_bom.csv", program)

    assert "3 rows: 0 members were created, 0 updated, 3 unchanged, 0 refused." in output
    assert counts(program) == before == (3, 3, 6)
    assert sorted(Member.objects.values_list("updated_at", flat=True)) == updated_at


def test_bad_rows_are_refused_each_with_its_reason(tmp_path: Path) -> None:
    program = program_with_store()
    refused = tmp_path / "refused.csv"

    output = run_import(DATA / "members_bad_rows.csv", program, refused=refused)

    assert "13 rows: 2 members were created, 0 updated, 0 unchanged, 11 refused." in output
    reasons = refused_rows(refused)
    assert reasons == {
        3: "12345 is too short for a phone number.",
        4: "A phone number may contain only digits, spaces, dashes, dots, brackets and '+'.",
        5: "Consent to personal data processing is required: the value must be yes.",
        6: "Consent to personal data processing is required: the value must be yes.",
        7: "maybe is not a value for consent to personal data processing: "
        "use 1/0, yes/no, да/нет, true/false.",
        8: "The same phone is also in row 9 of the file.",
        9: "The same phone is also in row 8 of the file.",
        10: "The same card number is also in row 11 of the file.",
        11: "The same card number is also in row 10 of the file.",
        12: "There is no store with the code NOPE in this program.",
        13: "The birth date 2099-01-01 is not possible.",
    }
    assert sorted(Member.objects.values_list("first_name", flat=True)) == ["Good", "Good"]


def test_a_card_of_another_member_is_a_conflict_not_a_merge(tmp_path: Path) -> None:
    program = program_with_store()
    owner = member_create(program, phone="+79127770001", card_number="2000000000022")
    other = member_create(program, phone="+79127770002", first_name="Other")
    refused = tmp_path / "refused.csv"

    output = run_import(DATA / "members_conflicting_cards.csv", program, refused=refused)

    assert "2 rows: 0 members were created, 1 updated, 0 unchanged, 1 refused." in output
    assert refused_rows(refused) == {2: "Card 2000000000022 belongs to another member."}
    owner.refresh_from_db()
    other.refresh_from_db()
    assert (owner.first_name, other.first_name) == ("Owner", "Other")
    assert owner.cards.get().number == "2000000000022"


def test_a_member_found_by_card_gets_the_new_phone(tmp_path: Path) -> None:
    program = program_with_store()
    member = member_create(program, phone="+79120000001", card_number="2000000000015")
    path = tmp_path / "m.csv"
    path.write_text("phone,card_number,consent_personal_data\n+79120000009,2000000000015,1\n")

    output = run_import(path, program)

    assert "1 updated" in output
    member.refresh_from_db()
    assert member.phone == "+79120000009"


def test_two_rows_that_find_the_same_member_are_both_refused(tmp_path: Path) -> None:
    program = program_with_store()
    member_create(program, phone="+79120000001", card_number="2000000000015")
    path = tmp_path / "m.csv"
    path.write_text(
        "phone,card_number,first_name,consent_personal_data\n"
        "+79120000001,,By phone,1\n"
        "+79120000009,2000000000015,By card,1\n"
    )
    refused = tmp_path / "refused.csv"

    run_import(path, program, refused=refused)

    assert refused_rows(refused) == {
        2: "Row 3 of the file is the same member (found by phone or card number).",
        3: "Row 2 of the file is the same member (found by phone or card number).",
    }


def test_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    program = program_with_store()

    output = run_import(DATA / "members_utf8_bom.csv", program, "--dry-run")

    assert "3 members would be created" in output
    assert counts(program) == (0, 0, 0)


def test_a_consent_entry_is_written_only_when_it_changes_the_current_state(
    tmp_path: Path,
) -> None:
    program = program_with_store()
    member = member_create(program, phone="+79125550001")  # personal data yes, SMS yes, email no
    entries = Consent.objects.filter(member=member).count()
    path = tmp_path / "m.csv"
    path.write_text(
        "phone,consent_personal_data,consent_marketing_sms,consent_marketing_email\n"
        "+79125550001,1,0,0\n"
    )

    run_import(path, program)

    latest = Consent.objects.filter(member=member).order_by("-id")
    assert latest.count() == entries + 1
    newest = latest[0]
    assert (newest.kind, newest.granted, newest.channel) == ("marketing_sms", False, "import")
    assert consents_current(member) == {
        "personal_data": True,
        "marketing_sms": False,
        "marketing_email": False,
        "third_party": False,
    }


def test_a_member_with_a_card_is_not_given_a_second_one(tmp_path: Path) -> None:
    program = program_with_store()
    member = member_create(program, phone="+79120000001", card_number="2000000000015")
    path = tmp_path / "m.csv"
    path.write_text("phone,card_number,consent_personal_data\n+79120000001,2000000000022,1\n")
    refused = tmp_path / "refused.csv"

    run_import(path, program, refused=refused)

    assert refused_rows(refused) == {
        2: "The member already has card 2000000000015: replace the card on the member's page."
    }
    assert list(Card.objects.filter(member=member).values_list("number", flat=True)) == [
        "2000000000015"
    ]


def test_an_unreadable_file_stops_with_a_message(tmp_path: Path) -> None:
    program = program_with_store()
    path = tmp_path / "m.csv"
    path.write_text("name;city\nAnna;Moscow\n")

    with pytest.raises(CommandError, match="The file has no column phone"):
        run_import(path, program)


def test_written_in_small_steps_or_in_one_the_result_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = []
    for n, chunk in enumerate((1_000_000, 2)):
        monkeypatch.setattr(csv_bulk, "APPLY_CHUNK", chunk)
        program = program_with_store(f"p{n}")
        member_create(program, phone="+79125550001", first_name="Old")
        run_import(DATA / "members_bad_rows.csv", program)
        path = tmp_path / f"{n}.csv"
        # Card numbers are unique across programs: each run has its own (compared as
        # "issued" by members_state, like drawn ones).
        path.write_text(
            "phone,card_number,first_name,consent_personal_data,consent_marketing_sms\n"
            f"+79125550001,LEG-{n}-1,New,1,0\n"
            "+79125550002,,Second,1,1\n"
            f"+79125550003,LEG-{n}-3,Third,1,\n"
        )
        run_import(path, program)
        results.append(members_state(program))
    assert results[0] == results[1]
    assert len(results[0]) == 5


def test_imported_members_get_time_ordered_ids_in_file_order(tmp_path: Path) -> None:
    program = program_with_store()
    path = tmp_path / "m.csv"
    path.write_text("phone,consent_personal_data\n+79125550001,1\n+79125550002,1\n+79125550003,1\n")

    run_import(path, program)

    ids = [m.id for m in Member.objects.filter(program=program).order_by("phone")]
    assert [i.version for i in ids] == [7, 7, 7]
    # The first 48 bits are the millisecond of drawing, in file order; rows drawn in one
    # millisecond share it (their order inside it is random: PostgreSQL < 18 has no
    # counter there), so the ids are ordered by time, not necessarily strictly.
    millis = [i.int >> 80 for i in ids]
    assert millis == sorted(millis)
    assert abs(millis[0] - time.time() * 1000) < 60_000  # the import's time, not a random one


def test_rows_checked_by_several_processes_give_the_same_members_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: the file's rows are spread over both checking processes, and a
    # blank line and the Russian reasons must come back in file order all the same.
    monkeypatch.setattr(csv_bulk, "COPY_BATCH", 3)
    asked: list[int] = []
    copy_texts = csv_bulk._copy_texts

    def spy(parser: Any, batches: Any, workers: int) -> Any:
        asked.append(workers)
        return copy_texts(parser, batches, workers)

    monkeypatch.setattr(csv_bulk, "_copy_texts", spy)
    source = (DATA / "members_bad_rows.csv").read_text(encoding="utf-8-sig")
    header, first, *rest = source.splitlines()
    path = tmp_path / "m.csv"
    path.write_text("\n".join([header, first, ",,,,,,,,", *rest]) + "\n", encoding="utf-8")
    results = []
    for workers in ("1", "2"):
        program = program_with_store(f"w{workers}")
        refused = tmp_path / f"refused-{workers}.csv"
        with translation.override("ru"):
            output = run_import(path, program, "--workers", workers, refused=refused)
        results.append(
            (output.replace(str(refused), ""), members_state(program), refused_rows(refused))
        )
    assert asked == [1, 2]
    assert results[0] == results[1]
    output, members, reasons = results[1]
    assert len(members) > 0 and 2 not in reasons and 3 not in reasons  # line 3: blank
    assert any("Согласие на обработку" in reason for reason in reasons.values())


def test_an_issued_number_that_is_taken_is_drawn_again_until_it_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issued numbers are random: one may be a card already, or a number typed in the file.

    The draws are scripted: the first issued number is an existing card's, its
    first replacement is the number another row of the file brings, so the
    import must check the replacement again before it gives out the third.
    """
    program = program_with_store()
    member_create(program, phone="+79120000009", card_number="2000000000015")
    draws = iter(["2000000000015", "2000000000022", "2000000000039"])
    monkeypatch.setattr("accounts.csv_format.card_number_candidate", lambda: next(draws))
    monkeypatch.setattr("accounts.csv_bulk.card_number_candidate", lambda: next(draws))
    path = tmp_path / "m.csv"
    path.write_text(
        "phone,card_number,consent_personal_data\n"
        "+79120000001,,1\n"  # no card: gets an issued number
        "+79120000002,2000000000022,1\n"
    )

    output = run_import(path, program)

    assert "2 rows: 2 members were created, 0 updated, 0 unchanged, 0 refused." in output
    cards = Card.objects.filter(member__program=program).values_list("member__phone", "number")
    assert dict(cards) == {
        "+79120000009": "2000000000015",
        "+79120000001": "2000000000039",
        "+79120000002": "2000000000022",
    }
