"""Personal promo codes: issued per member in one statement, refused to anyone else at the till."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Card, Consent
from campaigns import engine, selectors, services
from campaigns.models import (
    Audience,
    CodeUse,
    MessageTemplate,
    OutboxMessage,
    PromoCode,
    PromoCodeBatch,
    Segment,
    SegmentMember,
    Status,
)
from programs.models import AuditEntry
from tests.campaigns.factories import MemberFactory, ProgramFactory, running_campaign
from tests.campaigns.test_till import quote
from tests.pos.factories import card_of, member_create, program_create, receipt, till_create

pytestmark = pytest.mark.django_db

CODE = re.compile(rf"^VIP[{services.CODE_ALPHABET}]{{{services.CODE_LENGTH}}}$")


@pytest.fixture(autouse=True)
def _fresh_rules(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CAMPAIGN_RULES_CHECK_SECONDS = 0
    selectors.cache_clear()


def code_campaign(**fields):  # type: ignore[no-untyped-def]
    """A running campaign that gives 100 points to a receipt with its code."""
    fields.setdefault("codes", ["SHARED1"])  # a code campaign needs a code to be launched
    return running_campaign(fixed_points=100, multiplier=None, requires_code=True, **fields)


def static_segment(program, members) -> Segment:  # type: ignore[no-untyped-def]
    segment = Segment.objects.create(program=program, name="List", kind=Segment.Kind.STATIC)
    SegmentMember.objects.bulk_create([SegmentMember(segment=segment, member=m) for m in members])
    return segment


def personal_code(campaign, member) -> PromoCode:  # type: ignore[no-untyped-def]
    return services.code_create(
        campaign=campaign, code=f"P{uuid.uuid4().hex[:8]}", max_uses=1, member=member
    )


# --- at the till ------------------------------------------------------------------


def test_another_members_personal_code_is_not_applicable_and_says_whose_it_is() -> None:
    campaign = code_campaign()
    anna, boris = MemberFactory(program=campaign.program), MemberFactory(program=campaign.program)
    code = personal_code(campaign, anna)
    coupons = selectors.coupons_lookup(
        program=campaign.program, codes=[code.code.lower()], member=boris, at=timezone.now()
    )
    assert coupons == (
        engine.Coupon(
            code=code.code,
            campaign_id=campaign.pk,
            problem=engine.NOT_APPLICABLE,
            detail="it is another member's personal code",
        ),
    )
    _rules, evaluation = quote(campaign.program, boris, codes=(code.code,))
    assert evaluation.coupon_problems == {code.code: "not_applicable"}
    assert evaluation.coupons_applied == {}


def test_the_owner_uses_their_personal_code_once() -> None:
    campaign = code_campaign()
    program = campaign.program
    anna = MemberFactory(program=program)
    code = personal_code(campaign, anna)
    rules, evaluation = quote(program, anna, codes=(code.code,))
    assert evaluation.coupons_applied == {code.code: campaign.pk}
    assert [p.points for p in evaluation.breakdown] == [100]
    with transaction.atomic():
        services.campaigns_reserve(
            program=program,
            member=anna,
            reference="p1",
            evaluation=evaluation,
            at=timezone.now(),
            rules=rules,
            confirm=True,
        )
    assert CodeUse.objects.get(code=code).state == CodeUse.State.USED
    _r, again = quote(program, anna, codes=(code.code,))
    assert again.coupon_problems == {code.code: "used_up"}


def test_the_reservation_refuses_another_members_personal_code_even_past_the_lookup() -> None:
    # Belt and braces: an evaluation made for the owner cannot be reserved for someone else.
    campaign = code_campaign()
    program = campaign.program
    anna, boris = MemberFactory(program=program), MemberFactory(program=program)
    code = personal_code(campaign, anna)
    rules, evaluation = quote(program, anna, codes=(code.code,))
    with pytest.raises(services.CampaignsUnavailable) as info, transaction.atomic():
        services.campaigns_reserve(
            program=program,
            member=boris,
            reference="p2",
            evaluation=evaluation,
            at=timezone.now(),
            rules=rules,
        )
    assert info.value.codes == {code.code: "not_applicable"}
    assert not CodeUse.objects.filter(code=code).exists()


def test_the_till_adapter_gives_the_reason_in_words() -> None:
    from campaigns import till
    from tests.campaigns.test_till import _step_quote

    campaign = code_campaign()
    anna, boris = MemberFactory(program=campaign.program), MemberFactory(program=campaign.program)
    code = personal_code(campaign, anna)
    _receipt, result = _step_quote(campaign.program, boris, coupons=[code.code, "NOPE"])
    assert isinstance(result, till.TillResult)
    assert result.coupon_problems == {code.code: "not_applicable", "NOPE": "unknown"}
    assert result.coupon_messages == {code.code: "it is another member's personal code"}
    _receipt, own = _step_quote(campaign.program, anna, coupons=[code.code])
    assert own.coupon_problems == {} and own.coupon_messages == {}


def test_the_cashier_api_refuses_another_members_personal_code() -> None:
    program = program_create()
    campaign = code_campaign(program=program)
    till = till_create(program=program)
    anna, boris = member_create(program=program), member_create(program=program)
    code = personal_code(campaign, anna)
    refused = till.post(
        "purchases/quote", receipt("100.00", member={"card": card_of(boris)}, coupons=[code.code])
    )
    assert refused.status_code == 422, refused.content
    body = refused.json()
    assert (body["code"], body["coupon"], body["reason"]) == (
        "coupon_invalid",
        code.code,
        "not_applicable",
    )
    # The cashier reads why on the screen, not just the reason code.
    assert "another member's personal code" in body["detail"], body
    bought = till.post(
        "purchases", receipt("100.00", member={"card": card_of(anna)}, coupons=[code.code])
    )
    assert bought.status_code == 201, bought.content
    assert bought.json()["earn"]["points"] == 5 + 100
    again = till.post(
        "purchases", receipt("100.00", member={"card": card_of(anna)}, coupons=[code.code])
    )
    assert again.status_code == 422 and again.json()["reason"] == "used_up"


# --- issuing ----------------------------------------------------------------------


def test_each_member_of_the_segment_gets_one_unique_personal_code() -> None:
    campaign = code_campaign()
    program = campaign.program
    chosen = [MemberFactory(program=program) for _i in range(30)]
    outsider = MemberFactory(program=program)
    MemberFactory(program=program, status="blocked")
    segment = static_segment(program, chosen)
    batch = services.promo_codes_issue(campaign=campaign, segment=segment, prefix="vip", by=None)
    codes = list(PromoCode.objects.filter(batch=batch).values_list("member_id", "code"))
    assert sorted(m for m, _c in codes) == sorted(m.pk for m in chosen)
    assert len({c for _m, c in codes}) == 30 and all(CODE.match(c) for _m, c in codes)
    assert (batch.count, batch.personal, batch.segment) == (30, True, segment)
    assert not PromoCode.objects.filter(member=outsider).exists()
    first = PromoCode.objects.filter(batch=batch).first()
    assert (first.max_uses, first.per_member_limit, first.uses, first.is_active) == (1, 1, 0, True)
    audit = AuditEntry.objects.get(object_id=str(batch.pk), content_type__model="promocodebatch")
    assert audit.changes["count"] == [None, 30]


def test_issuing_twice_gives_nobody_a_second_code_and_then_only_newcomers_one() -> None:
    campaign = code_campaign()
    program = campaign.program
    members = [MemberFactory(program=program) for _i in range(5)]
    segment = static_segment(program, members)
    services.promo_codes_issue(campaign=campaign, segment=segment, by=None)
    with pytest.raises(services.CampaignRefused, match="already has a personal code"):
        services.promo_codes_issue(campaign=campaign, segment=segment, by=None)
    newcomer = MemberFactory(program=program)
    SegmentMember.objects.create(segment=segment, member=newcomer)
    second = services.promo_codes_issue(campaign=campaign, segment=segment, by=None)
    assert list(PromoCode.objects.filter(batch=second).values_list("member_id", flat=True)) == [
        newcomer.pk
    ]
    per_member = PromoCode.objects.filter(campaign=campaign, member__isnull=False)
    assert per_member.count() == 6 == len(set(per_member.values_list("member_id", flat=True)))
    assert PromoCodeBatch.objects.filter(campaign=campaign).count() == 2  # the refusal left none


def test_the_database_refuses_a_second_code_for_a_member_in_one_batch() -> None:
    campaign = code_campaign()
    member = MemberFactory(program=campaign.program)
    batch = services.promo_codes_issue(
        campaign=campaign, segment=static_segment(campaign.program, [member]), by=None
    )
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_promocode (program_id, campaign_id, batch_id, member_id, code,"
            " uses, is_active, created_at) VALUES (%s, %s, %s, %s, 'OTHER', 0, true, now())",
            [campaign.program_id, campaign.pk, batch.pk, member.pk],
        )


def test_codes_that_clash_are_drawn_again_for_the_members_they_missed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Every member of a round draws the same code: one gets it, the others clash and wait
    # for the next round; so three members take three rounds and still each get one code.
    same = "(SELECT count(*) FROM campaigns_promocode)::text"
    monkeypatch.setattr(
        services, "_ISSUE_SQL", services._ISSUE_SQL.replace(services._RANDOM_CODE, same)
    )
    campaign = code_campaign()
    members = [MemberFactory(program=campaign.program) for _i in range(3)]
    segment = static_segment(campaign.program, members)
    batch = services.promo_codes_issue(campaign=campaign, segment=segment, prefix="X", by=None)
    codes = list(PromoCode.objects.filter(batch=batch).values_list("code", flat=True))
    assert batch.count == 3 and len(set(codes)) == 3
    monkeypatch.setattr(services, "_ISSUE_ROUNDS", 1)
    more = [MemberFactory(program=campaign.program) for _i in range(2)]
    SegmentMember.objects.bulk_create([SegmentMember(segment=segment, member=m) for m in more])
    with pytest.raises(RuntimeError, match="could not draw"):
        services.promo_codes_issue(campaign=campaign, segment=segment, prefix="X", by=None)
    assert not PromoCode.objects.filter(member__in=more).exists()  # all or nothing


def test_personal_codes_never_take_an_existing_code() -> None:
    campaign = code_campaign(codes=["SHARED1"])
    members = [MemberFactory(program=campaign.program) for _i in range(200)]
    services.promo_codes_issue(
        campaign=campaign, segment=static_segment(campaign.program, members), by=None
    )
    codes = list(PromoCode.objects.filter(campaign=campaign).values_list("code", flat=True))
    assert len(codes) == len(set(codes)) == 201
    # Drawn at random, not counted up: no two codes share their first five characters
    # (with 200 random codes of 31**5 ≈ 29 million such starts, a clash is ~0.07% likely).
    assert len({c[:5] for c in codes}) == len(codes)


def test_the_campaigns_audience_decides_who_gets_a_code() -> None:
    from tests.pos.factories import tiers_create

    program = program_create()
    base, silver = tiers_create(program)
    campaign = code_campaign(program=program)
    campaign.audience = Audience.TIERS
    services.campaign_save(campaign=campaign, tiers=[silver])
    gold_ones = [member_create(program=program) for _i in range(3)]
    for m in gold_ones:
        m.tier = silver
        m.save(update_fields=["tier"])
    others = [member_create(program=program) for _i in range(2)]
    batch = services.promo_codes_issue(campaign=campaign, by=None)
    holders = set(PromoCode.objects.filter(batch=batch).values_list("member_id", flat=True))
    assert holders == {m.pk for m in gold_ones}
    assert not holders & {m.pk for m in others}
    assert base.pk


def test_the_holdout_gets_no_code() -> None:
    campaign = code_campaign(holdout_percent=50)
    members = [MemberFactory(program=campaign.program) for _i in range(40)]
    batch = services.promo_codes_issue(
        campaign=campaign, segment=static_segment(campaign.program, members), by=None
    )
    holders = set(PromoCode.objects.filter(batch=batch).values_list("member_id", flat=True))
    expected = {m.pk for m in members if not engine.in_holdout(campaign.pk, str(m.pk), 50)}
    assert holders == expected and 0 < len(expected) < 40


def test_issuing_is_refused_for_a_finished_campaign_or_another_programs_segment() -> None:
    campaign = code_campaign()
    MemberFactory(program=campaign.program)
    foreign = static_segment(ProgramFactory(), [])
    with pytest.raises(services.CampaignRefused) as info:
        services.promo_codes_issue(campaign=campaign, segment=foreign, by=None)
    assert "segment" in info.value.errors
    services.campaign_status_change(campaign=campaign, to=Status.FINISHED)
    with pytest.raises(services.CampaignRefused, match="finished"):
        services.promo_codes_issue(campaign=campaign, by=None)
    assert not PromoCodeBatch.objects.exists()


# --- export and messages ------------------------------------------------------------


def test_the_export_of_a_personal_batch_has_each_members_phone_and_card_safely() -> None:
    campaign = code_campaign(name="=cmd|' /C calc'!A0")
    member = MemberFactory(program=campaign.program, phone="+79120000001")
    Card.objects.create(member=member, number="2000000000015")
    batch = services.promo_codes_issue(
        campaign=campaign, segment=static_segment(campaign.program, [member]), by=None
    )
    header, row = services.codes_csv_rows(PromoCode.objects.filter(batch=batch))
    assert header[-2:] == ["phone", "card"]
    assert row[0] == PromoCode.objects.get(batch=batch).code
    assert row[1] == "'=cmd|' /C calc'!A0"  # a name that would run as a formula
    assert row[-2:] == ["'+79120000001", "2000000000015"]  # "+…" starts a formula too
    shared = services.codes_csv_rows(PromoCode.objects.filter(code="SHARED1"))[1]
    assert shared[-2:] == ["", ""]


def test_a_message_template_gets_each_members_own_code_once() -> None:
    campaign = code_campaign(name="Autumn")
    program = campaign.program
    MessageTemplate.objects.create(
        program=program,
        kind="promo",
        channel="sms",
        language="ru",
        body="{name}: {code} ({campaign})",
    )
    anna = MemberFactory(program=program, first_name="Anna")
    boris = MemberFactory(program=program, first_name="Boris")
    for m in (anna, boris):
        Consent.objects.create(member=m, kind="marketing_sms", granted=True, channel="admin")
    batch = services.promo_codes_issue(
        campaign=campaign, segment=static_segment(program, [anna, boris]), by=None
    )
    assert services.promo_codes_notify(batch=batch, kind="promo") == 2
    assert services.promo_codes_notify(batch=batch, kind="promo") == 0
    for m in (anna, boris):
        code = PromoCode.objects.get(batch=batch, member=m).code
        assert OutboxMessage.objects.get(member=m).body == f"{m.first_name}: {code} (Autumn)"
    with pytest.raises(services.CampaignRefused):
        services.promo_codes_notify(batch=batch, kind="no-such-kind")


# --- what the member pages read ---------------------------------------------------------


def test_a_members_usable_codes_are_their_own_unused_and_currently_valid_ones() -> None:
    campaign = code_campaign()
    program = campaign.program
    anna, boris = MemberFactory(program=program), MemberFactory(program=program)
    now = timezone.now()
    usable = personal_code(campaign, anna)
    personal_code(campaign, boris)
    PromoCode.objects.filter(pk=personal_code(campaign, anna).pk).update(
        valid_until=now - timedelta(minutes=1)
    )
    PromoCode.objects.filter(pk=personal_code(campaign, anna).pk).update(
        valid_from=now + timedelta(days=1)
    )
    PromoCode.objects.filter(pk=personal_code(campaign, anna).pk).update(is_active=False)
    used = personal_code(campaign, anna)
    CodeUse.objects.create(code=used, member=anna, reference="r1", state=CodeUse.State.RESERVED)
    released = personal_code(campaign, anna)
    CodeUse.objects.create(code=released, member=anna, reference="r2", state="released")
    paused = code_campaign(program=program, codes=["SHARED2"])
    personal_code(paused, anna)
    services.campaign_status_change(campaign=paused, to=Status.PAUSED)
    got = selectors.member_promo_codes(anna, at=now)
    assert sorted(c.pk for c in got) == sorted([usable.pk, released.pk])
    assert all(c.member_id == anna.pk for c in got)


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("en", "it is another member's personal code"),
        ("ru", "это личный промокод другого участника"),
    ],
)
def test_the_reason_in_words_speaks_the_cashiers_language(language, words) -> None:  # type: ignore[no-untyped-def]
    from django.utils import translation

    campaign = code_campaign()
    anna, boris = MemberFactory(program=campaign.program), MemberFactory(program=campaign.program)
    code = personal_code(campaign, anna)
    with translation.override(language):
        (coupon,) = selectors.coupons_lookup(
            program=campaign.program, codes=[code.code], member=boris, at=timezone.now()
        )
    assert (coupon.problem, coupon.detail) == ("not_applicable", words)
