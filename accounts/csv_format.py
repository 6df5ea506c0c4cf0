"""The member CSV: its columns, how a file is read, and how one row is checked.

This module is the one place that decides whether a row of a member file is
acceptable and what it means. The admin import (django-import-export), the
`members_import` command and the Celery task all read rows through
`RowParser`; what happens next (matching to existing members, duplicates,
card conflicts, writing) is set-based SQL in `accounts.csv_bulk`, also
shared by all three.

Files are read as people have them: UTF-8 with or without BOM, or
Windows-1251 (what Russian Excel saves); `,`, `;` or tab between cells;
English or Russian headers in any case and order.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import functools
import io
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from phonenumbers.phonemetadata import PhoneMetadata

from accounts.cards import card_number_candidate, clean_card_number
from accounts.models import Card, Member, birth_date_impossible
from accounts.phones import InvalidPhone, normalize_phone

# Column name -> (English header, Russian header, other accepted spellings).
COLUMNS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "phone": ("phone", "телефон", ()),
    "card_number": ("card_number", "номер карты", ()),
    "first_name": ("first_name", "имя", ()),
    "last_name": ("last_name", "фамилия", ()),
    "email": ("email", "эл. почта", ()),
    "birth_date": ("birth_date", "дата рождения", ()),
    "store": ("store", "магазин", ()),
    "registered_at": ("registered_at", "дата регистрации", ()),
    "consent_personal_data": ("consent_personal_data", "согласие на обработку пд", ()),
    "consent_marketing_sms": ("consent_marketing_sms", "согласие на sms", ()),
    "consent_marketing_email": ("consent_marketing_email", "согласие на email", ()),
}
REQUIRED_COLUMNS = ("phone", "consent_personal_data")
# Consent column -> accounts.models.Consent.Kind value.
CONSENT_COLUMNS = {
    "consent_personal_data": "personal_data",
    "consent_marketing_sms": "marketing_sms",
    "consent_marketing_email": "marketing_email",
}
CONSENT_KINDS_BY_COLUMN = tuple((kind, column) for column, kind in CONSENT_COLUMNS.items())
COLUMN_LABELS = {
    "phone": gettext_lazy("phone"),
    "card_number": gettext_lazy("card number"),
    "first_name": gettext_lazy("first name"),
    "last_name": gettext_lazy("last name"),
    "email": gettext_lazy("e-mail"),
    "birth_date": gettext_lazy("birth date"),
    "store": gettext_lazy("store"),
    "registered_at": gettext_lazy("registration date"),
    "consent_personal_data": gettext_lazy("consent to personal data processing"),
    "consent_marketing_sms": gettext_lazy("consent to SMS advertising"),
    "consent_marketing_email": gettext_lazy("consent to e-mail advertising"),
}

TRUE_VALUES = frozenset({"1", "yes", "да", "true"})
FALSE_VALUES = frozenset({"0", "no", "нет", "false"})
# A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
DELIMITERS = (";", ",", "\t")
SNIFF_BYTES = 1 << 20


class FileFormatError(ValueError):
    """The file as a whole cannot be read (encoding, header); `.messages` say why."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def _header_key(text: str) -> str:
    return " ".join(str(text).replace("\ufeff", "").split()).lower().replace("ё", "е")


_HEADER_LOOKUP: dict[str, str] = {}
for _name, (_en, _ru, _more) in COLUMNS.items():
    for _spelling in (_name, _en, _ru, *_more):
        _HEADER_LOOKUP[_header_key(_spelling)] = _name


def column_for_header(header: str) -> str | None:
    """The column a header names (English or Russian, any case), or None."""
    return _HEADER_LOOKUP.get(_header_key(header))


def export_headers(language: str | None) -> list[str]:
    """Headers an export writes: Russian ones for a Russian admin, English otherwise."""
    russian = (language or "").lower().startswith("ru")
    return [ru if russian else en for en, ru, _more in COLUMNS.values()]


# --- Reading files --------------------------------------------------------


def sniff_encoding(head: bytes) -> str:
    """The encoding of a file that starts with `head`: UTF-8 (with or without BOM) or cp1251."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileFormatError(
            [_("The file is in UTF-16. Save it as CSV in UTF-8 or Windows-1251.")]
        )
    try:
        # final=False: the sample may end in the middle of a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp1251"
    return "utf-8"


def sniff_delimiter(header_line: str) -> str:
    """`;`, `,` or tab: whichever separates the most cells of the header line."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def decode_bytes(data: bytes) -> str:
    """A whole small file as text, in the encoding it was saved in."""
    encoding = sniff_encoding(data[:SNIFF_BYTES])
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise FileFormatError([_unreadable(error)]) from None


def _unreadable(error: UnicodeDecodeError) -> str:
    return _(
        "The file mixes encodings: byte %(position)d cannot be read. "
        "Save it again as CSV in UTF-8 or Windows-1251."
    ) % {"position": error.start}


@dataclass
class CsvSource:
    """An open member CSV: its delimiter, encoding, header and an iterator of rows (lists)."""

    header: list[str]
    rows: Iterator[list[str]]
    delimiter: str
    encoding: str


def open_text(text: str) -> CsvSource:
    """Read CSV text already decoded (the admin upload)."""
    first_line = text.lstrip("\ufeff").split("\n", 1)[0]
    delimiter = sniff_delimiter(first_line)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delimiter)
    return _with_header(reader, delimiter, "utf-8")


def open_binary(stream: IO[bytes], delimiter: str | None = None) -> CsvSource:
    """Stream a CSV file from a binary file object, detecting encoding and delimiter
    (unless `delimiter` is given).

    Memory does not grow with the file: rows are decoded and read as they are
    consumed. A byte that does not fit the detected encoding further down
    raises FileFormatError when it is reached.
    """
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)
    head = buffered.peek(SNIFF_BYTES)[:SNIFF_BYTES]
    encoding = sniff_encoding(head)
    text = io.TextIOWrapper(buffered, encoding=encoding, newline="")
    first_line = head.decode(encoding, errors="replace").lstrip("\ufeff").split("\n", 1)[0]
    delimiter = delimiter or sniff_delimiter(first_line)
    reader = csv.reader(_decoding_guard(text), delimiter=delimiter)
    return _with_header(reader, delimiter, encoding)


def _decoding_guard(lines: Iterable[str]) -> Iterator[str]:
    try:
        yield from lines
    except UnicodeDecodeError as error:
        raise FileFormatError([_unreadable(error)]) from None


def _records(reader: Any) -> Iterator[list[str]]:
    """The reader's rows; a row the csv module cannot read is a FileFormatError naming the
    line it starts on (most often a quote mark opened and never closed, which swallows the
    rest of the file into one cell until the cell outgrows the csv module's limit)."""
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise FileFormatError(
                [
                    _(
                        "Line %(line)d is not valid CSV (%(error)s). The usual cause is a "
                        'quote mark (") opened in a cell and never closed.'
                    )
                    % {"line": line, "error": error}
                ]
            ) from None
        yield row


def _with_header(reader: Any, delimiter: str, encoding: str) -> CsvSource:
    records = _records(reader)
    for header in records:
        if any(cell.strip() for cell in header):
            return CsvSource(header=header, rows=records, delimiter=delimiter, encoding=encoding)
    raise FileFormatError([_("The file is empty: it has no header line.")])


# --- Checking a row -------------------------------------------------------


@dataclass(frozen=True)
class ColumnMap:
    """Which cell holds which column; built once per file from its header."""

    positions: dict[str, int]
    ignored: list[str] = field(default_factory=list)
    width: int = 0

    @classmethod
    def from_header(cls, header: Sequence[Any]) -> ColumnMap:
        positions: dict[str, int] = {}
        ignored: list[str] = []
        errors: list[str] = []
        for index, raw in enumerate(header):
            text = "" if raw is None else str(raw).strip()
            name = column_for_header(text)
            if name is None:
                if text:
                    ignored.append(text)
                continue
            if name in positions:
                errors.append(
                    _("The column %(column)s appears twice in the header.") % {"column": text}
                )
            positions[name] = index
        for name in REQUIRED_COLUMNS:
            if name not in positions:
                en, ru, _more = COLUMNS[name]
                errors.append(
                    _("The file has no column %(en)s (%(ru)s); it is required.")
                    % {"en": en, "ru": ru}
                )
        if errors:
            raise FileFormatError(errors)
        return cls(positions=positions, ignored=ignored, width=len(header))


@dataclass(slots=True)
class ParsedRow:
    """One row as the import understands it. None: the cell was empty (change nothing)."""

    line: int
    raw: list[str]
    errors: list[str]
    phone: str | None = None
    card_number: str | None = None
    new_card_number: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    birth_date: datetime.date | None = None
    store: str | None = None
    registered_at: datetime.datetime | None = None
    consents: dict[str, bool | None] = field(default_factory=dict)
    # The two dates as COPY text, when the parser has them already (it reads each
    # distinct date cell once); None: copy_line formats them.
    birth_date_copy: str | None = field(default=None, repr=False, compare=False)
    registered_at_copy: str | None = field(default=None, repr=False, compare=False)

    def copy_line(self) -> str:
        """The row as a line of COPY text for accounts.csv_bulk (order of STAGING_COLUMNS there).

        Built by hand: psycopg's generic write_row costs more than checking the row.
        """
        raw = RAW_SEPARATOR.join(self.raw)  # split again for the refused-rows report
        # Text fields are cut from the cells, so when no cell holds a character COPY
        # escapes, none of them does and they go as they are.
        special = "\\" in raw or "\t" in raw or "\n" in raw or "\r" in raw
        text = _copy_escaped if special else _copy_plain
        consents = self.consents
        return (
            "\t".join(
                (
                    str(self.line),
                    text(raw),
                    _copy_escaped(" ".join(self.errors)) if self.errors else "\\N",
                    text(self.phone),
                    text(self.card_number),
                    self.new_card_number or "\\N",
                    text(self.first_name),
                    text(self.last_name),
                    text(self.email),
                    self.birth_date_copy or _copy_date(self.birth_date),
                    text(self.store),
                    self.registered_at_copy or _copy_date(self.registered_at),
                    _COPY_BOOL[consents.get("personal_data")],
                    _COPY_BOOL[consents.get("marketing_sms")],
                    _COPY_BOOL[consents.get("marketing_email")],
                )
            )
            + "\n"
        )


RAW_SEPARATOR = "\x1f"
_COPY_BOOL = {True: "t", False: "f", None: "\\N"}


def _copy_date(value: datetime.date | None) -> str:
    return "\\N" if value is None else value.isoformat()


def _copy_plain(value: str | None) -> str:
    return "\\N" if value is None else value


def _copy_escaped(value: str | None) -> str:
    if value is None:
        return "\\N"
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def cell_text(value: Any) -> str:
    """A cell as text: spreadsheets hand over numbers and dates, CSV hands over strings."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def unescape_formula(text: str) -> str:
    """Undo the export's guard: `'=SUM(...)` was exported for `=SUM(...)`."""
    if len(text) > 1 and text[0] == "'" and text[1] in "=+-@\t\r":
        return text[1:]
    return text


def escape_formula(text: str) -> str:
    """Guard a cell a spreadsheet would run as a formula by putting `'` before it."""
    if text and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


# libphonenumber's number types, in the order its validity check tries them.
_NUMBER_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@functools.cache
def _plus7_rules() -> tuple[tuple[re.Pattern[str] | None, re.Pattern[str] | None], ...]:
    """Per region of the calling code +7 (RU, KZ): its leading-digits pattern and one
    pattern for its valid ten-digit national numbers, from libphonenumber's metadata."""

    def pattern(desc: Any) -> str | None:
        if desc is None or not desc.national_number_pattern:
            return None
        if desc.possible_length and 10 not in desc.possible_length:
            return None
        return desc.national_number_pattern

    rules = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[7]:
        metadata = PhoneMetadata.metadata_for_region(region)
        general = pattern(metadata.general_desc)
        types = [t for t in (pattern(getattr(metadata, n)) for n in _NUMBER_TYPES) if t]
        typed = None
        if general and types:
            any_type = "|".join(f"(?:{t})" for t in types)
            typed = re.compile(rf"(?=(?:{general})\Z)(?:{any_type})")
        leading = re.compile(metadata.leading_digits) if metadata.leading_digits else None
        rules.append((leading, typed))
    return tuple(rules)


def plus7_valid(national: str) -> bool:
    """`phonenumbers.is_valid_number` of +7 and these ten digits, at regex speed.

    Its rule: the number belongs to the first region of +7 whose leading digits
    it starts with (or, for a region without leading digits, whose numbers it
    matches), and is valid when it matches one of that region's number types.
    """
    for leading, typed in _plus7_rules():
        if leading is not None:
            if leading.match(national):
                return typed is not None and typed.fullmatch(national) is not None
        elif typed is not None and typed.fullmatch(national):
            return True
    return False


class PhoneReader:
    """normalize_phone for a million rows: the common Russian forms read without parsing.

    libphonenumber's `parse` costs ~30 µs a number, too slow for a million
    rows. For the region RU, the forms people type (`8 912 ...`, `+7 912 ...`,
    `7912...`, `912...`) all mean "+7 and these ten digits"; whether such a
    number is valid is libphonenumber's answer (`plus7_valid`: its own
    patterns and rule, without its per-call overhead), remembered per six
    leading digits (its +7 patterns look no further). Anything else, and every
    invalid number, goes through normalize_phone, so results and error messages
    are exactly its own; tests/accounts/test_csv_format.py compares the two on
    varied input, and plus7_valid with is_valid_number on every number range.
    """

    # What _national removes: the punctuation normalize_phone allows around the digits
    # (every Unicode space, dashes of any width, dots, brackets, slashes). str.translate
    # does in one C call what a regular expression substitution took a dozen times longer for.
    _PUNCTUATION = dict.fromkeys(
        [c for c in range(0x3001) if chr(c).isspace()]  # U+3000 is the last space
        + [ord(c) for c in "-.()/"]
        + list(range(0x2010, 0x2016))
    )

    def __init__(self, region: str) -> None:
        self.region = (region or "RU").upper()
        self._fast = self.region == "RU"
        self._valid_ranges: dict[str, bool] = {}

    def __call__(self, raw: str) -> str:
        national = self._national(raw) if self._fast else None
        if national is not None:
            key = national[:6]
            valid = self._valid_ranges.get(key)
            if valid is None:
                valid = self._valid_ranges[key] = plus7_valid(national)
            if valid:
                return "+7" + national
        return normalize_phone(raw, self.region)

    def _national(self, raw: str) -> str | None:
        compact = raw.translate(self._PUNCTUATION)
        plus = compact[:1] == "+"
        digits = compact[1:] if plus else compact
        if not (digits.isascii() and digits.isdigit()):
            return None
        if plus:
            return digits[1:] if len(digits) == 11 and digits[0] == "7" else None
        if len(compact) == 10:
            return compact
        # 8 is the trunk prefix, 7 the country code; 8 10 starts an international number.
        if len(compact) == 11 and compact[0] in "78" and not compact.startswith("810"):
            return compact[1:]
        return None


class _CachedDomainEmailValidator(EmailValidator):
    """Django's e-mail check, remembering which domains passed (files repeat a few domains).

    Django compiles its user-part pattern lazily, behind a proxy object that
    every match goes through (two thirds of the check's time); this validator
    holds the same compiled pattern itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self._domains: dict[str, bool] = {}
        lazy = EmailValidator.user_regex
        self.user_regex = re.compile(lazy.pattern, lazy.flags)

    def validate_domain_part(self, domain_part: str) -> bool:
        known = self._domains.get(domain_part)
        if known is None:
            known = self._domains[domain_part] = super().validate_domain_part(domain_part)
        return known


_NAME_MAX = Member._meta.get_field("first_name").max_length
_EMAIL_MAX = Member._meta.get_field("email").max_length
_CARD_MAX = Card._meta.get_field("number").max_length
_STORE_MAX = 50


class RowParser:
    """Checks rows of one file for one program: `parse(cells, line)` -> ParsedRow.

    Every problem of a row is reported (not only the first), in the active
    language. Empty cells mean "keep what the member has". Rows without a card
    number get a freshly drawn candidate (`accounts.cards.card_number_candidate`,
    so the check digit rule stays in one place); `accounts.csv_bulk` makes sure
    it is free before it is used.
    """

    def __init__(
        self,
        columns: ColumnMap,
        *,
        region: str = "RU",
        time_zone: str = "Europe/Moscow",
        today: datetime.date | None = None,
    ) -> None:
        self.columns = columns
        self.phone = PhoneReader(region)
        self.zone = zoneinfo.ZoneInfo(time_zone)
        self.today = today or timezone.localdate(timezone=self.zone)
        self.email_validator = _CachedDomainEmailValidator()
        # Cell index of each column in COLUMNS order; a column the file lacks points
        # past any row, so it reads as an empty cell.
        self._indices = tuple(columns.positions.get(name, _ABSENT) for name in COLUMNS)
        # Dates and consent cells repeat (a few thousand distinct values in a million
        # rows): each distinct text is read once. Bounded, so memory stays flat.
        self._birth_dates: dict[str, tuple[datetime.date | None, str | None, str]] = {}
        self._registered: dict[str, tuple[datetime.datetime | None, str | None, str]] = {}
        self._consents: dict[tuple[str, str], tuple[bool | None, str | None]] = {}

    def parse(self, cells: Sequence[Any], line: int) -> ParsedRow:
        raw = [c if type(c) is str else cell_text(c) for c in cells]
        row = ParsedRow(line=line, raw=raw, errors=[])
        errors = row.errors
        width = len(raw)
        header_width = self.columns.width

        if width > header_width and any(c.strip() for c in raw[header_width:]):
            errors.append(_("The row has more cells than the header."))

        values = [raw[i].strip() if i < width else "" for i in self._indices]
        if "'" in "".join(values):  # the export's formula guard, undone (rare)
            values = [unescape_formula(v) if v[:1] == "'" else v for v in values]
        (
            phone,
            card,
            first_name,
            last_name,
            email,
            birth_date,
            store,
            registered_at,
            *consent_cells,
        ) = values

        try:
            row.phone = self.phone(phone)
        except InvalidPhone as error:
            errors.append(str(error))

        if card:
            number = clean_card_number(card)
            if len(number) > _CARD_MAX:
                errors.append(_("The card number is too long."))
            row.card_number = number
        else:
            row.new_card_number = card_number_candidate()

        if first_name:
            if len(first_name) > _NAME_MAX:
                errors.append(self._too_long("first_name"))
            row.first_name = first_name
        if last_name:
            if len(last_name) > _NAME_MAX:
                errors.append(self._too_long("last_name"))
            row.last_name = last_name

        if email:
            try:
                if len(email) > _EMAIL_MAX:
                    raise ValidationError("too long")
                self.email_validator(email)
            except ValidationError:
                errors.append(_("%(email)s is not an e-mail address.") % {"email": email})
            row.email = email

        if birth_date:
            known = self._birth_dates.get(birth_date)
            if known is None:
                known = _remember(self._birth_dates, birth_date, self._birth_date(birth_date))
            row.birth_date, error, row.birth_date_copy = known
            if error:
                errors.append(error)

        if store:
            if len(store) > _STORE_MAX:
                errors.append(_("The store code is too long."))
            row.store = store

        if registered_at:
            known = self._registered.get(registered_at)
            if known is None:
                known = _remember(
                    self._registered, registered_at, self._registered_at(registered_at)
                )
            row.registered_at, error, row.registered_at_copy = known
            if error:
                errors.append(error)

        unreadable_consent = False
        consents = row.consents
        cache = self._consents
        for (kind, column), text in zip(CONSENT_KINDS_BY_COLUMN, consent_cells, strict=True):
            known = cache.get((column, text))
            if known is None:
                known = _remember(cache, (column, text), self._consent(column, text))
            consents[kind], error = known
            if error:
                unreadable_consent = unreadable_consent or kind == "personal_data"
                errors.append(error)
        if consents["personal_data"] is not True and not unreadable_consent:
            errors.append(
                _("Consent to personal data processing is required: the value must be yes.")
            )
        return row

    @staticmethod
    def _too_long(column: str) -> str:
        return _("The %(column)s is longer than %(max)d characters.") % {
            "column": COLUMN_LABELS[column],
            "max": _NAME_MAX,
        }

    def _birth_date(self, text: str) -> tuple[datetime.date | None, str | None, str]:
        """(date, error, COPY text) of a birth date cell."""
        born = parse_date(text)
        if born is None:
            return None, _date_error(text, "birth_date"), "\\N"
        error = None
        if birth_date_impossible(born, self.today):
            error = _("The birth date %(date)s is not possible.") % {"date": text}
        return born, error, born.isoformat()

    def _registered_at(self, text: str) -> tuple[datetime.datetime | None, str | None, str]:
        """(moment, error, COPY text) of a registration date cell."""
        when = parse_datetime(text, self.zone)
        if when is None:
            return None, _date_error(text, "registered_at"), "\\N"
        error = None
        if when.astimezone(self.zone).date() > self.today:
            error = _("The registration date %(date)s is in the future.") % {"date": text}
        return when, error, when.isoformat()

    @staticmethod
    def _consent(column: str, cell: str) -> tuple[bool | None, str | None]:
        """(value, error) of a consent cell; None: empty or unreadable."""
        text = cell.lower()
        if not text:
            return None, None
        if text in TRUE_VALUES:
            return True, None
        if text in FALSE_VALUES:
            return False, None
        return None, _("%(value)s is not a value for %(column)s: use %(values)s.") % {
            "value": text,
            "column": COLUMN_LABELS[column],
            "values": "1/0, yes/no, да/нет, true/false",
        }


_ABSENT = 1 << 30  # a cell index no row reaches
_CACHE_MAX = 50_000


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    """Store `value` under `key`; a full cache starts again (values of a file repeat early)."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def _value(raw: list[str], index: int) -> str:
    """The stripped cell at `index` (-1: the file has no such column), formula guard undone."""
    if index < 0 or index >= len(raw):
        return ""
    text = raw[index].strip()
    if text and text[0] == "'":
        return unescape_formula(text)
    return text


def _date_error(text: str, column: str) -> str:
    return _("%(value)s is not a date for %(column)s: use YYYY-MM-DD or DD.MM.YYYY.") % {
        "value": text,
        "column": COLUMN_LABELS[column],
    }


_DMY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2}|\d{1,2}\.\d{1,2}\.\d{4})"
    r"(?:[ T](?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?)?"
)


def parse_date(text: str) -> datetime.date | None:
    """`YYYY-MM-DD` or `DD.MM.YYYY`; None when it is neither or not a real date."""
    try:
        if len(text) == 10 and text[4] == "-":
            return datetime.date.fromisoformat(text)
        match = _DMY.fullmatch(text)
        if match:
            day, month, year = (int(g) for g in match.groups())
            return datetime.date(year, month, day)
    except ValueError:
        return None
    return None


def parse_datetime(text: str, zone: datetime.tzinfo) -> datetime.datetime | None:
    """A date, or a date and a time (`HH:MM[:SS]`), read in `zone` unless it names its offset."""
    match = _DATETIME.fullmatch(text.strip())
    if not match:
        return None
    day = parse_date(match["date"])
    if day is None:
        return None
    try:
        moment = datetime.datetime(
            day.year,
            day.month,
            day.day,
            int(match["h"] or 0),
            int(match["m"] or 0),
            int(match["s"] or 0),
        )
    except ValueError:
        return None
    offset = match["tz"]
    if offset:
        if offset == "Z":
            return moment.replace(tzinfo=datetime.UTC)
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        delta = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return moment.replace(tzinfo=datetime.timezone(sign * delta))
    return moment.replace(tzinfo=zone)
