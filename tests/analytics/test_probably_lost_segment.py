"""The campaigns segment "probably lost" holds members whose P(alive) is under its threshold."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from analytics.models import ClvModel, MemberClv
from campaigns.models import Segment, SegmentMember
from campaigns.segments import segment_recalculate
from tests.analytics.factories import ProgramFactory, member_create

pytestmark = pytest.mark.django_db


def test_a_probably_lost_segment_holds_members_under_its_p_alive_threshold() -> None:
    program = ProgramFactory(code="lost")
    other = ProgramFactory(code="elsewhere")
    model = ClvModel.objects.create(program=program, until=dt.date(2025, 12, 31), members=3,
                                    repeat_members=3, r=0.2, alpha=4, a=0.8, b=2.4,
                                    log_likelihood=-10, p=6, q=3.7, gamma=15)  # fmt: skip
    other_model = ClvModel.objects.create(program=other, until=dt.date(2025, 12, 31), members=1,
                                          repeat_members=1, r=0.2, alpha=4, a=0.8, b=2.4,
                                          log_likelihood=-10, p=6, q=3.7, gamma=15)  # fmt: skip
    members = {}
    for name, alive in (("gone", 0.05), ("fading", 0.25), ("loyal", 0.9)):
        members[name] = member_create(program)
        MemberClv.objects.create(member=members[name], program=program, model=model, x=2, t_x=5,
                                 T=50, expected_purchases=1, p_alive=alive,
                                 value=Decimal("10"), expected_spend=Decimal("10"))  # fmt: skip
    stranger = member_create(other)
    MemberClv.objects.create(member=stranger, program=other, model=other_model, x=2, t_x=5, T=50,
                             expected_purchases=1, p_alive=0.01, value=Decimal("1"),
                             expected_spend=Decimal("1"))  # fmt: skip
    never_fitted = member_create(program)

    default = Segment.objects.create(program=program, name="lost", kind="probably_lost")
    strict = Segment.objects.create(program=program, name="very lost", kind="probably_lost",
                                    p_alive_below=Decimal("0.10"))  # fmt: skip

    assert segment_recalculate(segment=default) == 2
    assert segment_recalculate(segment=strict) == 1
    held = set(SegmentMember.objects.filter(segment=default).values_list("member_id", flat=True))
    assert held == {members["gone"].pk, members["fading"].pk}
    assert never_fitted.pk not in held and stranger.pk not in held
    assert SegmentMember.objects.get(segment=strict).member_id == members["gone"].pk
