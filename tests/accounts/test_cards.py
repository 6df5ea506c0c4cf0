from __future__ import annotations

import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from accounts.cards import (
    card_number_candidate,
    clean_card_number,
    ean13_check_digit,
    is_own_card_number,
    is_valid_ean13,
    issue_card_number,
)
from accounts.models import Card

from .factories import member_create


@pytest.mark.parametrize(
    "number",
    [
        "4006381333931",  # a real product barcode
        "5901234123457",  # GS1's own example
        "2000000000015",
        "4600051000057",
    ],
)
def test_known_good_ean13_numbers_pass(number: str) -> None:
    assert is_valid_ean13(number)


@pytest.mark.parametrize(
    "number",
    [
        "4006381333932",  # wrong check digit
        "4006381333913",  # two neighbours swapped
        "400638133393",  # 12 digits
        "40063813339310",  # 14 digits
        "40063813339a1",
        "４００６３８１３３３９３１",  # full-width digits are digits to Python, not to a scanner
        "",
    ],
)
def test_mistyped_or_malformed_numbers_fail(number: str) -> None:
    assert not is_valid_ean13(number)


def test_the_check_digit_is_computed_with_weights_one_and_three() -> None:
    # 2 0 0 0 0 0 0 0 0 0 0 1: 2*1 + 1*3 = 5, so the check digit is 5.
    assert ean13_check_digit("200000000001") == "5"
    assert ean13_check_digit("400638133393") == "1"
    with pytest.raises(ValueError):
        ean13_check_digit("12345")


def test_any_single_digit_typo_of_an_issued_number_is_detected() -> None:
    number = card_number_candidate(random.Random(7))
    for position in range(13):
        for digit in "0123456789":
            if digit != number[position]:
                typo = number[:position] + digit + number[position + 1 :]
                assert not is_valid_ean13(typo), typo


def test_issued_numbers_are_in_store_ean13_with_our_prefix() -> None:
    rng = random.Random(1)
    for _ in range(200):
        number = card_number_candidate(rng)
        assert is_valid_ean13(number)
        assert number.startswith("2")
        assert is_own_card_number(number)


def test_seeded_numbers_repeat_and_unseeded_ones_vary() -> None:
    assert card_number_candidate(random.Random(5)) == card_number_candidate(random.Random(5))
    assert len({card_number_candidate() for _ in range(50)}) == 50


@pytest.mark.django_db
def test_issuing_retries_when_a_number_is_already_taken() -> None:
    member = member_create()
    taken = card_number_candidate(random.Random(42))
    Card.objects.filter(member=member).update(number=taken)

    issued = issue_card_number(random.Random(42))  # the first candidate is the taken one

    assert issued != taken
    assert is_valid_ean13(issued)


def test_spaces_and_dashes_in_a_typed_number_are_ignored() -> None:
    assert clean_card_number(" 2000 0000-0001 5 ") == "2000000000015"


@given(body=st.integers(min_value=0, max_value=10**11 - 1), data=st.data())
def test_swapping_two_different_neighbours_is_caught_unless_they_differ_by_five(
    body: int, data: st.DataObject
) -> None:
    first12 = f"2{body:011d}"
    number = first12 + ean13_check_digit(first12)
    i = data.draw(st.integers(min_value=0, max_value=11))
    a, b = number[i], number[i + 1]
    assume(a != b)
    swapped = number[:i] + b + a + number[i + 2 :]
    # Weights 1 and 3 differ by 2, so a swap shifts the sum by 2*(a-b): a multiple
    # of 10 only when the digits differ by 5 (the known blind spot of EAN-13).
    assert is_valid_ean13(swapped) == (abs(int(a) - int(b)) == 5)
