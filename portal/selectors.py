"""What a signed-in member sees: reads only, every one scoped to the member passed in.

Every function takes the member (never an id from the request) and filters by
it, so another member's ids lead nowhere: a purchase id of someone else simply
is not found. Costs do not grow with history: balances are the ledger's cached
row, expiry and history read indexed, paginated slices.
"""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Card, Member
from accounts.phones import phone_masked
from accounts.selectors import card_active, consents_current
from campaigns.engine import in_holdout
from campaigns.models import Audience, Campaign, SegmentMember, Status
from campaigns.selectors import member_promo_codes
from ledger.models import Account, Lot, Transfer
from pos.models import Purchase, Refund
from pos.selectors import member_history
from programs.models import Tier

PAGE_SIZE = 20


@dataclass(frozen=True)
class Balance:
    available: int = 0
    pending: int = 0
    on_hold: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"available": self.available, "pending": self.pending, "on_hold": self.on_hold}


@dataclass(frozen=True)
class DatedPoints:
    date: datetime.date
    points: int


@dataclass(frozen=True)
class TierProgress:
    current: Tier | None
    next: Tier | None
    qualifying_spend: Decimal
    spend_to_next: Decimal | None  # None at the top tier
    window_days: int | None  # None: lifetime spend counts
    # Keeping the current tier: spend that leaves the window within KEEP_DAYS, and
    # what must be bought within them to stay at least at the current threshold.
    keep_days: int = 30
    leaving_window: Decimal = Decimal("0")
    spend_to_keep: Decimal = Decimal("0")


KEEP_DAYS = 30


def zone(member: Member) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(member.program.time_zone)


def points_account(member: Member) -> Account | None:
    return Account.objects.filter(member=member, kind=Account.Kind.MEMBER).first()


def balance(member: Member, account: Account | None = None) -> Balance:
    account = account if account is not None else points_account(member)
    if account is None:
        return Balance()
    return Balance(account.available, account.pending, account.on_hold)


def _by_local_day(rows: Any, tz: zoneinfo.ZoneInfo) -> list[DatedPoints]:
    days: OrderedDict[datetime.date, int] = OrderedDict()
    for moment, points in rows:
        day = timezone.localtime(moment, tz).date()
        days[day] = days.get(day, 0) + points
    return [DatedPoints(day, points) for day, points in days.items()]


def _lots_by_day(member: Member, when: str, limit: int, **filters: Any) -> list[DatedPoints]:
    rows = (
        Lot.objects.filter(account__member=member, remaining__gt=0, **filters)
        .order_by(when, "id")
        .values_list(when, "remaining")[: limit * 20]
    )
    return _by_local_day(rows, zone(member))[:limit]


def expiry_schedule(member: Member, *, limit: int = 24) -> list[DatedPoints]:
    """Points that will burn, per day in the program's zone, soonest first."""
    return _lots_by_day(member, "expires_at", limit, expires_at__isnull=False)


def pending_schedule(member: Member, *, limit: int = 24) -> list[DatedPoints]:
    """Earned points that become spendable, per day, soonest first."""
    return _lots_by_day(member, "available_at", limit, pending=True)


def next_expiry(member: Member) -> DatedPoints | None:
    schedule = expiry_schedule(member, limit=1)
    return schedule[0] if schedule else None


def tier_progress(member: Member, *, now: datetime.datetime | None = None) -> TierProgress:
    now = now or timezone.now()
    program = member.program
    tiers = list(Tier.objects.filter(program=program).order_by("threshold"))
    current = next((t for t in tiers if t.pk == member.tier_id), None)
    spend = member.qualifying_spend
    floor = current.threshold if current is not None else Decimal("-1")
    upper = next((t for t in tiers if t.threshold > floor), None)
    window = program.tier_window_days or None
    progress = TierProgress(
        current=current,
        next=upper,
        qualifying_spend=spend,
        spend_to_next=max(Decimal("0"), upper.threshold - spend) if upper else None,
        window_days=window,
    )
    if current is None or current.threshold <= 0 or window is None:
        return progress
    # Purchases that will be older than the window within KEEP_DAYS stop counting.
    start = now - datetime.timedelta(days=window)
    leaving = Purchase.objects.filter(
        member=member,
        status=Purchase.Status.COMPLETED,
        purchased_at__gt=start,
        purchased_at__lte=start + datetime.timedelta(days=KEEP_DAYS),
    ).aggregate(total=Sum("total"), refunded=Sum("refunded_amount"))
    leaving_spend = (leaving["total"] or Decimal("0")) - (leaving["refunded"] or Decimal("0"))
    return TierProgress(
        **{
            **progress.__dict__,
            "keep_days": KEEP_DAYS,
            "leaving_window": leaving_spend,
            "spend_to_keep": max(Decimal("0"), current.threshold - (spend - leaving_spend)),
        }
    )


def card_number(member: Member) -> str | None:
    card: Card | None = card_active(member)
    return card.number if card is not None else None


def summary(member: Member) -> dict[str, Any]:
    """The MemberSummary shape of API.md, for the member themselves."""
    expiry = next_expiry(member)
    return {
        "id": str(member.pk),
        "card_number": card_number(member),
        "first_name": member.first_name,
        "phone_masked": phone_masked(member.phone),
        "status": member.status,
        "tier": {"code": member.tier.code, "name": member.tier.name} if member.tier else None,
        "balance": balance(member).as_dict(),
        "next_expiry": (
            {"points": expiry.points, "date": expiry.date.isoformat()} if expiry else None
        ),
    }


# --- purchases and the points history ------------------------------------------------


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None = None


def _cursor_parse(cursor: str | None) -> tuple[datetime.datetime, str] | None:
    if not cursor:
        return None
    try:
        moment, _sep, key = cursor.partition("~")
        parsed = datetime.datetime.fromisoformat(moment)
    except ValueError:
        return None
    if parsed.tzinfo is None or not key:
        return None
    return parsed, key


def purchases_page(member: Member, *, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """The member's purchases, newest first, with refunds; keyset pages ("~"-joined cursor)."""
    qs = (
        Purchase.objects.filter(member=member)
        .select_related("store")
        .prefetch_related(Prefetch("refunds", queryset=Refund.objects.order_by("created_at")))
        .order_by("-purchased_at", "-id")
    )
    after = _cursor_parse(cursor)
    if after is not None:
        try:
            key = uuid.UUID(after[1])
        except ValueError:
            key = None
        if key is not None:
            qs = qs.filter(Q(purchased_at__lt=after[0]) | Q(purchased_at=after[0], id__lt=key))
    rows = list(qs[: size + 1])
    page = Page(rows[:size])
    if len(rows) > size:
        last = rows[size - 1]
        page.next_cursor = f"{last.purchased_at.isoformat()}~{last.pk}"
    return page


def purchase_of(member: Member, purchase_id: Any) -> Purchase | None:
    """One of the member's purchases with lines and refunds; None for anyone else's."""
    try:
        pk = uuid.UUID(str(purchase_id))
    except ValueError:
        return None
    return (
        Purchase.objects.filter(pk=pk, member=member)
        .select_related("store")
        .prefetch_related("lines", "refunds__lines")
        .first()
    )


@dataclass
class HistoryItem:
    id: int
    created_at: datetime.datetime
    kind: str
    kind_label: str
    points: int
    description: str
    receipt_number: str | None
    expires_at: datetime.datetime | None


def history_page(member: Member, *, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """The points history, newest first, signed as the member sees it.

    The same reading as the cashier API's (pos.selectors.member_history): a
    transfer counts for what it changes in the member's available plus pending
    points, so a hold is a minus, its release a plus, and activating pending
    points shows 0.
    """
    account = points_account(member)
    if account is None:
        return Page([])
    after = _cursor_parse(cursor)
    before = (after[0], int(after[1])) if after is not None and after[1].isdigit() else None
    rows = member_history(
        program_id=member.program_id, account_id=account.pk, before=before, limit=size + 1
    )
    labels = dict(Transfer.Kind.choices)
    items = [
        HistoryItem(
            id=row.id,
            created_at=row.created_at,
            kind=row.kind,
            kind_label=str(labels.get(row.kind, row.kind)),
            points=row.points,
            description=row.description,
            receipt_number=row.receipt_number,
            expires_at=row.expires_at,
        )
        for row in rows[:size]
    ]
    page = Page(items)
    if len(rows) > size:
        last = rows[size - 1]
        page.next_cursor = f"{last.created_at.isoformat()}~{last.id}"
    return page


# --- offers, promo codes, referral ---------------------------------------------------


@dataclass
class Offer:
    id: int
    name: str
    description: str
    ends_at: datetime.datetime | None
    benefits: list[str]
    code: str | None = None


def _benefits(campaign: Campaign) -> list[str]:
    out = []
    if campaign.extra_percent:
        out.append(_("+%(percent)s%% in points") % {"percent": campaign.extra_percent.normalize()})
    if campaign.multiplier:
        out.append(_("points × %(factor)s") % {"factor": campaign.multiplier.normalize()})
    if campaign.fixed_points:
        out.append(_("%(points)s bonus points per receipt") % {"points": campaign.fixed_points})
    if campaign.unit_points:
        out.append(_("%(points)s points per item") % {"points": campaign.unit_points.normalize()})
    if campaign.min_total:
        out.append(_("for receipts from %(total)s") % {"total": campaign.min_total})
    return out


def _running(program_id: int, now: datetime.datetime) -> Any:
    return Campaign.objects.filter(
        program_id=program_id, status=Status.ACTIVE, starts_at__lte=now
    ).filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))


@dataclass(frozen=True)
class PersonalCode:
    code: str
    campaign_id: int
    campaign: str  # the campaign's name
    valid_from: datetime.datetime | None
    # The code's own end or its campaign's, whichever comes first; None: no end.
    valid_until: datetime.datetime | None


def promo_codes(member: Member, *, now: datetime.datetime | None = None) -> list[PersonalCode]:
    """The member's own personal promo codes they can use now (active, unused,
    within their validity, of a running campaign), soonest to end first.

    Campaigns decides what "usable" means (`member_promo_codes`, the till's own
    rules); it filters by this member, so nobody else's code can appear.
    """
    now = now or timezone.now()
    result = []
    for code in member_promo_codes(member, at=now):
        ends = [d for d in (code.valid_until, code.campaign.ends_at) if d is not None]
        result.append(
            PersonalCode(
                code=code.code,
                campaign_id=code.campaign_id,
                campaign=code.campaign.name,
                valid_from=code.valid_from,
                valid_until=min(ends) if ends else None,
            )
        )
    return result


def offers(
    member: Member,
    *,
    now: datetime.datetime | None = None,
    codes: list[PersonalCode] | None = None,
) -> list[Offer]:
    """Running campaigns meant for this member; code-only ones appear with the member's code.

    `codes`: the member's promo_codes when the caller has them already.
    """
    now = now or timezone.now()
    qs = (
        _running(member.program_id, now)
        .filter(
            Q(audience=Audience.EVERYONE)
            | Q(audience=Audience.TIERS, tiers=member.tier_id)
            | Q(
                audience=Audience.SEGMENTS,
                segments__in=SegmentMember.objects.filter(member=member).values("segment"),
            )
            | Q(audience=Audience.NEW)
        )
        .distinct()
        .order_by("-priority", "ends_at", "id")
    )
    own = codes if codes is not None else promo_codes(member, now=now)
    by_campaign = {code.campaign_id: code.code for code in own}
    result = []
    for campaign in qs:
        if campaign.audience == Audience.NEW and (
            not campaign.new_member_days
            or member.registered_at < now - datetime.timedelta(days=campaign.new_member_days)
        ):
            continue
        if campaign.requires_code and campaign.pk not in by_campaign:
            continue
        if in_holdout(campaign.pk, str(member.pk), campaign.holdout_percent):
            continue  # the control group must not be told about the offer either
        result.append(
            Offer(
                id=campaign.pk,
                name=campaign.name,
                description=campaign.description,
                ends_at=campaign.ends_at,
                benefits=_benefits(campaign),
                code=by_campaign.get(campaign.pk),
            )
        )
    return result


def referral_code(member: Member) -> str | None:
    """The member's code to invite friends with, while the program rewards invitations.

    Campaigns makes the code on first ask (`referral_code_get`); without an
    active referral trigger there is nothing to invite to, so no code is shown.
    """
    from campaigns.models import Trigger, TriggerKind
    from campaigns.triggers import referral_code_get

    running = Trigger.objects.filter(
        program_id=member.program_id, kind=TriggerKind.REFERRAL, is_active=True
    ).exists()
    return referral_code_get(member=member) if running else None


def consents(member: Member) -> dict[str, bool]:
    return consents_current(member)
