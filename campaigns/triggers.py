"""Automatic campaigns on beat: welcome, birthday, win-back, expiring points, tier, referral.

Each run is safe to repeat and to run concurrently: every bonus is a ledger
credit with a unique reference (`welcome:<member>`, `birthday:<member>:<year>`,
`winback:<member>:<date of the last purchase>`, `referral:<id>:new|referrer`),
which the ledger records once; messages carry the same reference in the outbox.
Candidates are found with one set-based query per trigger that already leaves
out members who got theirs (an anti-join on the ledger reference), so a second
run does almost nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Concat, ExtractDay, ExtractMonth, TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Member
from campaigns import messaging
from campaigns.models import Channel, Referral, ReferralCode, TierSeen, Trigger, TriggerKind
from campaigns.selectors import program_zone
from ledger import services as ledger
from ledger.models import Lot, Transfer
from loyalty_site.db import transaction_lock
from programs.models import Program

logger = logging.getLogger(__name__)

BATCH = 1000


def _without_reference(
    members: QuerySet[Member], prefix: str, suffix: Any = None
) -> QuerySet[Member]:
    """Members whose ledger reference `<prefix><member id>[:<suffix>]` does not exist yet."""
    parts: list[Any] = [Value(prefix), Cast("pk", CharField())]
    if suffix is not None:
        parts += [Value(":"), suffix]
    return members.annotate(_ref=Concat(*parts, output_field=CharField())).filter(
        ~Exists(Transfer.objects.filter(reference=OuterRef("_ref")))
    )


def _active(program: Program) -> QuerySet[Member]:
    return Member.objects.filter(program=program, status=Member.Status.ACTIVE)


def _notify(member: Member, kind: str, reference: str, variables: dict[str, Any]) -> None:
    for channel in (Channel.SMS, Channel.EMAIL):
        messaging.message_enqueue(
            member=member,
            kind=kind,
            channel=channel,
            reference=f"{reference}:{channel}",
            variables=variables,
        )


def _bonus(
    trigger: Trigger, member: Member, reference: str, at: datetime, variables: dict[str, Any]
) -> bool:
    """Credit the trigger's bonus once (ledger reference) and queue its message.

    One transaction for both: the ledger reference is what a rerun skips on, so
    a worker killed between the bonus and its message must lose both, not the
    message alone.
    """
    with transaction.atomic():
        balance: int | None = None
        if trigger.points:
            expires_at = at + timedelta(days=trigger.expire_days) if trigger.expire_days else None
            transfer = ledger.points_credit(
                account_or_member=member,
                amount=trigger.points,
                kind="bonus",
                reference=reference,
                source=f"trigger:{trigger.kind}",
                expires_at=expires_at,
                description=trigger.get_kind_display(),
                now=at,
            )
            balance = transfer.account.available
        if trigger.send_message:
            _notify(
                member,
                trigger.kind,
                reference,
                {
                    "points": trigger.points,
                    "balance": balance if balance is not None else "",
                    **variables,
                },
            )
    return True


def _chunks(queryset: QuerySet[Member]) -> Iterator[Member]:
    yield from queryset.order_by("pk").iterator(chunk_size=BATCH)


def _trigger(program: Program, kind: str) -> Trigger | None:
    return Trigger.objects.filter(program=program, kind=kind, is_active=True).first()


def welcome_run(*, program: Program, at: datetime | None = None, window_days: int = 7) -> int:
    """Members enrolled in the last week who have not had their welcome bonus."""
    at = at or timezone.now()
    trigger = _trigger(program, TriggerKind.WELCOME)
    if trigger is None:
        return 0
    members = _active(program).filter(registered_at__gte=at - timedelta(days=window_days))
    members = _without_reference(members, "welcome:")
    if not trigger.points:  # a message only: the outbox reference is the anchor
        members = members.exclude(pk__in=_sent("welcome:"))
    done = 0
    for member in _chunks(members):
        done += _bonus(trigger, member, f"welcome:{member.pk}", at, {})
    return done


def _sent(prefix: str) -> QuerySet[Any]:
    from campaigns.models import OutboxMessage

    return OutboxMessage.objects.filter(reference__startswith=prefix).values("member_id")


def birthday_target(today: date, days_before: int) -> date:
    return today + timedelta(days=days_before)


def birthday_run(*, program: Program, at: datetime | None = None) -> int:
    """Members whose birthday is `days` days from today (program time), once a year."""
    at = at or timezone.now()
    trigger = _trigger(program, TriggerKind.BIRTHDAY)
    if trigger is None:
        return 0
    target = birthday_target(at.astimezone(program_zone(program)).date(), trigger.days)
    day_match = Q(_m=target.month, _d=target.day)
    if target.month == 2 and target.day == 28 and not _leap(target.year):
        day_match |= Q(_m=2, _d=29)  # born on 29 February: celebrated on the 28th
    members = (
        _active(program)
        .filter(birth_date__isnull=False)
        .annotate(_m=ExtractMonth("birth_date"), _d=ExtractDay("birth_date"))
        .filter(day_match)
    )
    members = _without_reference(members, "birthday:", Value(str(target.year)))
    done = 0
    for member in _chunks(members):
        done += _bonus(trigger, member, f"birthday:{member.pk}:{target.year}", at, {})
    return done


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def winback_run(*, program: Program, at: datetime | None = None) -> int:
    """Members sleeping `days` days get one bonus per sleep (a short expiry makes it urgent)."""
    at = at or timezone.now()
    trigger = _trigger(program, TriggerKind.WINBACK)
    if trigger is None or not trigger.days:
        return 0
    zone = program_zone(program)
    last_day = Cast(TruncDate("last_purchase_at", tzinfo=zone), CharField())
    members = _without_reference(
        _active(program).filter(last_purchase_at__lt=at - timedelta(days=trigger.days)),
        "winback:",
        last_day,
    )
    done = 0
    for member in _chunks(members):
        slept_since = member.last_purchase_at.astimezone(zone).date().isoformat()
        done += _bonus(trigger, member, f"winback:{member.pk}:{slept_since}", at, {})
    return done


def expiring_run(*, program: Program, at: datetime | None = None) -> int:
    """Remind members whose points expire in `days` days (program time): one day's lots."""
    at = at or timezone.now()
    trigger = _trigger(program, TriggerKind.EXPIRING)
    if trigger is None:
        return 0
    zone = program_zone(program)
    day = at.astimezone(zone).date() + timedelta(days=trigger.days)
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    rows = (
        Lot.objects.filter(
            account__member__program=program,
            account__member__status=Member.Status.ACTIVE,
            remaining__gt=0,
            expires_at__gte=start,
            expires_at__lt=start + timedelta(days=1),
        )
        .values("account__member_id")
        .annotate(points=Sum("remaining"))
        .order_by("account__member_id")
    )
    members = {
        m.pk: m for m in Member.objects.filter(pk__in=[r["account__member_id"] for r in rows])
    }
    done = 0
    for row in rows:
        member = members[row["account__member_id"]]
        _notify(
            member,
            TriggerKind.EXPIRING,
            f"expiring:{member.pk}:{day.isoformat()}",
            {"expiring_points": row["points"], "expiring_date": day.strftime("%d.%m.%Y")},
        )
        done += 1
    return done


def tier_upgrade_run(*, program: Program, at: datetime | None = None) -> int:
    """Congratulate members whose tier went up since the last run."""
    trigger = _trigger(program, TriggerKind.TIER_UPGRADE)
    changed = (
        _active(program)
        .filter(tier__isnull=False)
        .exclude(Exists(TierSeen.objects.filter(member=OuterRef("pk"), tier=OuterRef("tier"))))
        .select_related("tier")
    )
    done = 0
    for member in _chunks(changed):
        seen = TierSeen.objects.filter(member=member).select_related("tier").first()
        with transaction.atomic():
            TierSeen.objects.update_or_create(member=member, defaults={"tier": member.tier})
        # The first look at a member only records their tier: no message for enrolment.
        if seen is not None and member.tier.threshold > seen.tier.threshold and trigger:
            if trigger.send_message:
                _notify(
                    member,
                    TriggerKind.TIER_UPGRADE,
                    f"tier:{member.pk}:{member.tier_id}",
                    {"tier": member.tier.name},
                )
            done += 1
    return done


# --- referral ---------------------------------------------------------------

REFERRAL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def referral_code_get(*, member: Member) -> str:
    """The member's own code to invite friends with (made on first ask, e.g. at enrolment)."""
    existing = ReferralCode.objects.filter(member=member).values_list("code", flat=True).first()
    if existing:
        return existing
    for _attempt in range(10):
        code = "".join(secrets.choice(REFERRAL_ALPHABET) for _i in range(7))
        try:
            with transaction.atomic():
                return ReferralCode.objects.create(member=member, code=code).code
        except IntegrityError:
            found = ReferralCode.objects.filter(member=member).values_list("code", flat=True)
            if found:
                return found[0]
    raise RuntimeError("could not draw a free referral code")


class ReferralRefused(ValueError):
    pass


def referral_attach(*, member: Member, code: str) -> Referral:
    """Record that `member` (just enrolled) was invited with `code`."""
    owner = (
        ReferralCode.objects.filter(code=code.strip().upper(), member__program=member.program_id)
        .select_related("member")
        .first()
    )
    if owner is None:
        raise ReferralRefused(_("There is no such invitation code."))
    if owner.member_id == member.pk:
        raise ReferralRefused(_("A member cannot invite themselves."))
    if member.purchase_count:
        raise ReferralRefused(_("Only a new member can be invited."))
    try:
        with transaction.atomic():
            return Referral.objects.create(referrer=owner.member, referred=member)
    except IntegrityError:
        raise ReferralRefused(_("This member was already invited.")) from None


def referral_run(*, program: Program, at: datetime | None = None) -> int:
    """Reward both members once the new one has made a first purchase; limits per inviter."""
    at = at or timezone.now()
    trigger = _trigger(program, TriggerKind.REFERRAL)
    if trigger is None:
        return 0
    due = Referral.objects.filter(
        rewarded_at__isnull=True,
        referred__program=program,
        referred__purchase_count__gte=1,
        referred__status=Member.Status.ACTIVE,
    ).select_related("referrer", "referred")
    done = 0
    for referral in due.order_by("pk").iterator(chunk_size=BATCH):
        with transaction.atomic():
            # Claim it: of two runs at once, one rewards and the other moves on.
            claimed = Referral.objects.filter(pk=referral.pk, rewarded_at__isnull=True).update(
                rewarded_at=at
            )
            if not claimed:
                continue
            # One inviter's invitations are counted one run at a time: the lock waits
            # for another run's claim, not yet committed, and the count that follows
            # (a new statement) sees it. Purchases and the ledger never take it.
            transaction_lock(f"campaigns.referral_inviter:{referral.referrer_id}")
            rewarded_before = (
                Referral.objects.filter(referrer=referral.referrer_id, rewarded_at__isnull=False)
                .exclude(pk=referral.pk)
                .count()
            )
            new, inviter = referral.referred, referral.referrer
            # Ledger lock order: two members in ascending id.
            pairs = [(new, trigger.points, "new"), (inviter, trigger.referrer_points, "referrer")]
            if rewarded_before >= trigger.max_referrals:
                pairs = pairs[:1]  # the inviter reached the limit: only the newcomer gets a bonus
            for member, points, role in sorted(pairs, key=lambda p: str(p[0].pk)):
                if points and member.status == Member.Status.ACTIVE:
                    ledger.points_credit(
                        account_or_member=member,
                        amount=points,
                        kind="bonus",
                        reference=f"referral:{referral.pk}:{role}",
                        source="trigger:referral",
                        description=trigger.get_kind_display(),
                        now=at,
                    )
        done += 1
    return done


RUNNERS = {
    TriggerKind.WELCOME: welcome_run,
    TriggerKind.BIRTHDAY: birthday_run,
    TriggerKind.WINBACK: winback_run,
    TriggerKind.EXPIRING: expiring_run,
    TriggerKind.TIER_UPGRADE: tier_upgrade_run,
    TriggerKind.REFERRAL: referral_run,
}


def triggers_run(*, at: datetime | None = None, kinds: list[str] | None = None) -> dict[str, int]:
    """Every active trigger of every program (the beat job)."""
    result: dict[str, int] = {}
    programs = Program.objects.filter(
        pk__in=Trigger.objects.filter(is_active=True).values("program_id")
    )
    for program in programs:
        for kind, run in RUNNERS.items():
            if kinds and kind not in kinds:
                continue
            result[f"{program.code}:{kind}"] = run(program=program, at=at)
    return result
