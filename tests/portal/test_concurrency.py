"""Parallel guesses cannot get more tries than a code allows (real transactions, threads)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from portal import services
from portal.models import SignInCode, SignInFailure
from tests.pos.factories import member_create, program_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_forty_parallel_wrong_guesses_use_at_most_the_codes_five_attempts(settings) -> None:
    settings.PORTAL_FAILURES_PER_PHONE_HOUR = 1000
    settings.PORTAL_FAILURES_PER_IP_HOUR = 1000
    program = program_create()
    member = member_create(program=program)
    services.code_request(program=program, phone=member.phone, ip="10.3.3.3")
    start = threading.Barrier(20)

    def guess(n: int) -> str:
        try:
            start.wait(timeout=10) if n < 20 else None
            services.code_verify(program=program, phone=member.phone, code=f"{n:06d}x", ip=None)
            return "in"
        except services.CodeInvalid:
            return "refused"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(guess, range(40)))
    assert results == ["refused"] * 40
    code = SignInCode.objects.get(phone=member.phone)
    assert code.attempts == code.max_attempts == 5
    assert SignInFailure.objects.filter(phone=member.phone).count() == 40
