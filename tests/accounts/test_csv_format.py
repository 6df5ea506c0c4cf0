"""Reading member files: encodings, delimiters, headers, and the check of one row."""

from __future__ import annotations

import datetime
import random

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.csv_format import (
    ColumnMap,
    FileFormatError,
    PhoneReader,
    RowParser,
    escape_formula,
    open_binary,
    plus7_valid,
    unescape_formula,
)
from accounts.phones import InvalidPhone, normalize_phone
from tests.accounts.csv_support import DATA

HEADER = ["phone", "first_name", "birth_date", "registered_at", "consent_personal_data"]


def parse(*cells: str, header: list[str] | None = None):  # type: ignore[no-untyped-def]
    parser = RowParser(ColumnMap.from_header(header or HEADER), today=datetime.date(2026, 11, 23))
    return parser.parse(list(cells), 2)


def test_a_cp1251_file_with_semicolons_and_russian_headers_is_read() -> None:
    with (DATA / "members_cp1251_semicolon.csv").open("rb") as f:
        source = open_binary(f)
        rows = list(source.rows)
    assert (source.encoding, source.delimiter) == ("cp1251", ";")
    columns = ColumnMap.from_header(source.header)
    assert columns.positions["consent_marketing_email"] == 10
    assert rows[0][2] == "Анна"


def test_a_quote_never_closed_names_its_line_instead_of_a_traceback() -> None:
    """A cell that starts with a quote mark never closed: the csv module reads on and on."""
    import io

    text = "phone;first_name;consent_personal_data\r\n+79123456780;Анна;да\r\n"
    text += '+79123456781;"ООО Ромашка;да\r\n' + "+79123456782;Борис;да\r\n" * 8000
    source = open_binary(io.BytesIO(text.encode("cp1251")))
    with pytest.raises(FileFormatError, match=r"Line 3 is not valid CSV"):
        list(source.rows)


def test_a_utf8_file_with_bom_and_mixed_case_headers_is_read() -> None:
    with (DATA / "members_utf8_bom.csv").open("rb") as f:
        source = open_binary(f)
        rows = list(source.rows)
    assert (source.encoding, source.delimiter) == ("utf-8-sig", ",")
    columns = ColumnMap.from_header(source.header)
    assert columns.positions["phone"] == 0 and columns.positions["email"] == 3
    assert rows[2][1] == 'Elena "Lena"'


def test_a_file_without_the_consent_column_is_refused_as_a_whole() -> None:
    with pytest.raises(FileFormatError) as error:
        ColumnMap.from_header(["Телефон", "Имя"])
    assert "consent_personal_data" in str(error.value)


def test_unknown_columns_are_ignored_and_named() -> None:
    columns = ColumnMap.from_header(["phone", "consent_personal_data", "City"])
    assert columns.ignored == ["City"]


@pytest.mark.parametrize("value", ["1", "yes", "Да", "TRUE", " да "])
def test_consent_yes_values(value: str) -> None:
    row = parse("+79123456789", "", "", "", value)
    assert row.errors == [] and row.consents["personal_data"] is True


@pytest.mark.parametrize("value", ["0", "no", "нет", "false", ""])
def test_a_row_without_personal_data_consent_is_refused(value: str) -> None:
    row = parse("+79123456789", "", "", "", value)
    assert row.errors == ["Consent to personal data processing is required: the value must be yes."]


def test_dates_in_both_formats_and_times_in_the_program_zone() -> None:
    row = parse("+79123456789", "", "21.07.1990", "01.02.2023 10:30", "1")
    assert row.birth_date == datetime.date(1990, 7, 21)
    assert row.registered_at == datetime.datetime(2023, 2, 1, 7, 30, tzinfo=datetime.UTC)
    row = parse("+79123456789", "", "1990-07-21", "2023-02-01", "1")
    assert row.birth_date == datetime.date(1990, 7, 21) and row.errors == []


def test_impossible_dates_are_refused_with_the_value() -> None:
    row = parse("+79123456789", "", "31.02.1980", "2099-01-01", "1")
    assert row.errors == [
        "31.02.1980 is not a date for birth date: use YYYY-MM-DD or DD.MM.YYYY.",
        "The registration date 2099-01-01 is in the future.",
    ]


def test_every_problem_of_a_row_is_reported() -> None:
    row = parse("12345", "", "1.1.80", "", "maybe")
    assert len(row.errors) == 3


def test_formula_cells_are_text_and_the_export_guard_is_undone() -> None:
    assert escape_formula('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    for text in ["=1+2", "+7912", "-x", "@SUM(A1)", "\tx", "\rx", "plain", "'quoted"]:
        assert unescape_formula(escape_formula(text)) == text
    row = parse("'+79123456789", "'=1+2", "", "", "1")
    assert (row.phone, row.first_name) == ("+79123456789", "=1+2")


def test_the_phone_reader_agrees_with_normalize_phone() -> None:
    """The fast path for Russian numbers gives normalize_phone's answer, every time."""
    rng = random.Random(7)
    reader = PhoneReader("RU")
    forms = [
        "8{n}",
        "+7{n}",
        "{n}",
        "7{n}",
        "8 ({a}) {b}-{c}-{d}",
        "+7 {a} {b} {c} {d}",
        "+7({a}){b}-{c}-{d}",
        "8 10 {n}",
        "+{n}",
        "{n}0",
        "8{n}0",
    ]
    for _ in range(6000):
        n = str(rng.randrange(10**9, 10**10))
        text = rng.choice(forms).format(n=n, a=n[:3], b=n[3:6], c=n[6:8], d=n[8:])
        try:
            expected = normalize_phone(text, "RU")
        except InvalidPhone as error:
            expected = f"error: {error}"
        try:
            got = reader(text)
        except InvalidPhone as error:
            got = f"error: {error}"
        assert got == expected, text


def test_the_phone_reader_removes_exactly_the_punctuation_normalize_phone_allows() -> None:
    """Its translation table is the class `[\\s\\-\\u2010-\\u2015.()/]`, every code point."""
    import re
    import sys

    allowed = re.compile(r"[\s\-\u2010-\u2015.()/]")
    expected = {c for c in range(sys.maxunicode + 1) if allowed.match(chr(c))}
    assert set(PhoneReader._PUNCTUATION) == expected


def test_repeated_date_and_consent_cells_give_the_same_row_as_the_first_time() -> None:
    parser = RowParser(ColumnMap.from_header(HEADER), today=datetime.date(2026, 11, 23))
    cells = ["+79123456789", "", "31.02.1980", "2099-01-01", "maybe"]
    first, again = parser.parse(list(cells), 2), parser.parse(list(cells), 3)
    assert first.errors == again.errors and len(first.errors) == 3
    first_line, again_line = first.copy_line().split("\t"), again.copy_line().split("\t")
    del first_line[5], again_line[5]  # a card number drawn for each row
    assert first_line[1:] == again_line[1:]


def test_plus7_valid_is_libphonenumbers_answer_for_every_number_range() -> None:
    """Every four-digit range of +7 (and every six-digit one where the patterns go
    that deep: 930..., Kazakhstan's 7...), both ends and a random number of each."""
    import phonenumbers

    rng = random.Random(11)

    def library(national: str) -> bool:
        number = phonenumbers.PhoneNumber(country_code=7, national_number=int(national))
        return phonenumbers.is_valid_number(number)

    prefixes = [f"{p:04d}" for p in range(10**4)]
    prefixes += [f"930{p:03d}" for p in range(1000)] + [f"7{p:05d}"[:6] for p in range(0, 10**5, 7)]
    for prefix in prefixes:
        rest = 10 - len(prefix)
        for suffix in ("0" * rest, "9" * rest, f"{rng.randrange(10**rest):0{rest}d}"):
            assert plus7_valid(prefix + suffix) == library(prefix + suffix), prefix + suffix


@pytest.mark.parametrize(
    "email",
    [
        "anna@mail.ru",
        "anna.ivanova+promo@yandex.ru",
        '"anna ivanova"@mail.ru',
        "anna..ivanova@mail.ru",
        ".anna@mail.ru",
        "anna ivanova@mail.ru",
        "анна@почта.рф",
        "anna@[192.168.0.1]",
        "anna@localhost",
        "anna@mail",
        "@mail.ru",
        "anna@",
        "ANNA@MAIL.RU",
        "a" * 65 + "@mail.ru",
    ],
)
def test_the_import_checks_e_mails_exactly_as_django_does(email: str) -> None:
    def django_says(value: str) -> bool:
        try:
            validate_email(value)
        except ValidationError:
            return False
        return True

    def import_says(value: str) -> bool:
        columns = ColumnMap.from_header(["phone", "email", "consent_personal_data"])
        row = RowParser(columns).parse(["+79123456789", value, "1"], 2)
        return not any("e-mail" in error for error in row.errors)

    assert import_says(email) == django_says(email)
