"""Phone numbers: every common local form in, E.164 out.

libphonenumber (the `phonenumbers` package) knows each country's trunk prefix
and number lengths, e.g. that in Russia a leading 8 is the trunk prefix
(`8 912 ...` is `+7 912 ...`) and that `7 912 ...` typed without a plus is the
country code. We only add what it is too lenient about: it reads letters as
keypad digits (vanity numbers) and accepts numbers that no operator issues.
"""

from __future__ import annotations

import re

import phonenumbers
from django.utils.translation import gettext as _

# What people type around the digits: spaces (also non-breaking), dashes of
# any width, dots, slashes and brackets. Anything else is refused.
_ALLOWED = re.compile(r"^\+?[\d\s\-\u2010-\u2015.()/]+$")


class InvalidPhone(ValueError):
    """A phone that cannot be a real number; the message is for a human."""


def normalize_phone(raw: str, region: str = "RU") -> str:
    """Return `raw` in E.164 (`+79123456789`), reading local forms as `region` numbers."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone(_("Enter a phone number."))
    if not _ALLOWED.match(text):
        raise InvalidPhone(
            _("A phone number may contain only digits, spaces, dashes, dots, brackets and '+'.")
        )
    digits = re.sub(r"\D", "", text)
    if len(digits) < 7:
        raise InvalidPhone(_("%(phone)s is too short for a phone number.") % {"phone": text})
    if len(digits) > 15:  # E.164 allows at most 15 digits
        raise InvalidPhone(_("%(phone)s is too long for a phone number.") % {"phone": text})
    try:
        number = phonenumbers.parse(text, (region or "RU").upper())
    except phonenumbers.NumberParseException:
        raise InvalidPhone(_("%(phone)s is not a phone number.") % {"phone": text}) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(
            _("%(phone)s is not a valid phone number (check the digits and the length).")
            % {"phone": text}
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_candidates(raw: str, region: str = "RU") -> list[str]:
    """Forms of a search query worth matching: its E.164 form (when it is one) and the raw text.

    Used by admin search, where staff type whatever the customer says.
    """
    found = [raw.strip()]
    try:
        found.insert(0, normalize_phone(raw, region))
    except InvalidPhone:
        pass
    return found


def phone_masked(phone: str | None) -> str:
    """`+79123454567` -> `+7 *** ***-45-67`: enough for a cashier to confirm, no more."""
    if not phone:
        return ""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return "***"
    national = str(number.national_number)
    return f"+{number.country_code} *** ***-{national[-4:-2]}-{national[-2:]}"
