from __future__ import annotations

import pytest

from accounts.phones import InvalidPhone, normalize_phone, phone_candidates, phone_masked

# What customers and cashiers really type, and what it means.
ACCEPTED = [
    ("8 (912) 345-67-89", "+79123456789"),
    ("+7 912 345 67 89", "+79123456789"),
    ("89123456789", "+79123456789"),
    ("9123456789", "+79123456789"),
    ("+79123456789", "+79123456789"),
    ("7 912 3456789", "+79123456789"),
    ("79123456789", "+79123456789"),
    ("8-912-345-67-89", "+79123456789"),
    ("8.912.345.67.89", "+79123456789"),
    ("+7(912)345-67-89", "+79123456789"),
    ("(912) 345-67-89", "+79123456789"),
    ("8 (912) 345–67–89", "+79123456789"),  # en dashes from a word processor
    ("  +7 912 345 67 89\t", "+79123456789"),
    ("+7\u00a0912\u00a0345\u00a067\u00a089", "+79123456789"),  # non-breaking spaces
    ("810 7 912 345 67 89", "+79123456789"),  # international prefix dialled from Russia
    ("8 (495) 123-45-67", "+74951234567"),  # Moscow landline
    ("4951234567", "+74951234567"),
    ("8 800 555 35 35", "+78005553535"),
    ("+375 29 123 45 67", "+375291234567"),  # Belarus, typed with its country code
    ("+44 20 7946 0958", "+442079460958"),
]

REFUSED = [
    ("", "Enter a phone number"),
    ("   ", "Enter a phone number"),
    ("8 912 ABC 67 89", "only digits"),
    ("+7 912 345 67 89 доб. 5", "only digits"),
    ("++79123456789", "only digits"),
    ("89123", "too short"),
    ("1234567890123456", "too long"),
    ("8 912 345 67 8", "not a valid phone number"),  # a digit missing
    ("8 912 345 67 89 0", "not a valid phone number"),  # a digit too many
    ("8912345678901", "not a valid phone number"),
    ("+7 000 000 00 00", "not a valid phone number"),  # no such range
]


@pytest.mark.parametrize(("raw", "e164"), ACCEPTED)
def test_common_local_forms_become_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(("raw", "message"), REFUSED)
def test_what_cannot_be_a_phone_is_refused_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(InvalidPhone, match=message):
        normalize_phone(raw)


def test_invalid_phone_is_a_value_error_for_generic_handlers() -> None:
    assert issubclass(InvalidPhone, ValueError)


def test_the_region_decides_how_a_local_number_is_read() -> None:
    # The same national digits are a Belarusian number when the program's region is BY.
    assert normalize_phone("29 123 45 67", region="BY") == "+375291234567"
    with pytest.raises(InvalidPhone):
        normalize_phone("29 123 45 67", region="RU")


def test_search_candidates_hold_the_e164_form_and_the_raw_text() -> None:
    assert phone_candidates("8 912 345-67-89") == ["+79123456789", "8 912 345-67-89"]
    assert phone_candidates("Ivanova") == ["Ivanova"]


def test_a_masked_phone_shows_only_the_last_four_digits() -> None:
    assert phone_masked("+79123454567") == "+7 *** ***-45-67"
    assert phone_masked(None) == ""
