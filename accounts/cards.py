"""Card numbers: EAN-13 in the in-store range, so a till can print and scan them.

EAN-13 numbers starting with 2 are reserved for use inside a store (GS1
"restricted circulation"), so they never clash with a product barcode. The
last digit is the check digit: a single mistyped digit, or two swapped
neighbours (except 0/5 and the like), makes the number invalid.
Numbers imported from another system are kept as they are; see
`is_own_card_number` for which typed numbers are checked.
"""

from __future__ import annotations

import random
import secrets

from accounts.models import Card

CARD_PREFIX = "2"
_BODY_DIGITS = 12 - len(CARD_PREFIX)
_MAX_ATTEMPTS = 20


class CardNumberExhausted(RuntimeError):
    """Many random numbers in a row were taken: the number space is nearly full (or a bug)."""


def ean13_check_digit(first12: str) -> str:
    """The 13th digit of an EAN-13 whose first twelve digits are `first12`."""
    if len(first12) != 12 or not first12.isdigit():
        raise ValueError(f"EAN-13 needs 12 digits before the check digit, got {first12!r}")
    # Weights 1 and 3 alternate from the left; the check digit brings the sum to a multiple of 10.
    if first12.isascii():
        # The same sum over the ASCII codes (each digit is its code minus 48): one C call
        # per half instead of a Python loop, as a bulk import draws a million numbers.
        codes = first12.encode()
        total = sum(codes[0::2]) + 3 * sum(codes[1::2]) - 48 * (6 + 3 * 6)
    else:
        total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def is_valid_ean13(number: str) -> bool:
    """True when `number` is 13 digits whose last one is the right check digit."""
    return (
        isinstance(number, str)
        and len(number) == 13
        and number.isascii()
        and number.isdigit()
        and ean13_check_digit(number[:12]) == number[12]
    )


def is_own_card_number(number: str) -> bool:
    """Does `number` look like one we issue (13 digits with our prefix)?

    Such numbers must pass the check digit: when they do not, someone mistyped
    a digit. Other numbers (from a previous system) are accepted as they are.
    """
    return (
        len(number) == 13
        and number.isascii()
        and number.isdigit()
        and number.startswith(CARD_PREFIX)
    )


def card_number_candidate(rng: random.Random | None = None) -> str:
    """A random EAN-13 with our prefix. `rng` makes it reproducible (demo data, tests)."""
    body = (
        rng.randrange(10**_BODY_DIGITS) if rng is not None else secrets.randbelow(10**_BODY_DIGITS)
    )
    first12 = f"{CARD_PREFIX}{body:0{_BODY_DIGITS}d}"
    return first12 + ean13_check_digit(first12)


def issue_card_number(rng: random.Random | None = None) -> str:
    """A new card number that no card has yet.

    With 10^11 possible bodies, a collision is rare, but the check is cheap and
    the unique constraint `accounts_card_unique_number` guards the race between
    this check and the insert (the services retry on it).
    """
    for _attempt in range(_MAX_ATTEMPTS):
        number = card_number_candidate(rng)
        if not Card.objects.filter(number=number).exists():
            return number
    raise CardNumberExhausted(f"no free card number after {_MAX_ATTEMPTS} attempts")


def clean_card_number(raw: str) -> str:
    """A typed or scanned number without the spaces (and, in digit numbers, dashes) people add.

    Dashes inside numbers of another system ("LEG-000123") may be part of the
    number, so they stay there.
    """
    number = "".join((raw or "").split())
    digits = number.replace("-", "")
    return digits if digits.isascii() and digits.isdigit() else number
