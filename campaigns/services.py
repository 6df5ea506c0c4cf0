"""Campaign operations: each one function in one transaction, audited.

The admin, the Celery tasks and the purchase flow of `pos` go through these.

For pos (the purchase flow), in this order:
- quote:   rules = selectors.active_rules(...); facts = selectors.member_facts(...);
           coupons = selectors.coupons_lookup(...); evaluate through
           engine.earning_step(...) inside programs.earning.receipt_compute.
- commit:  campaigns_reserve(...) inside the purchase transaction (budgets, member
           limits and promo codes are taken atomically; raises CampaignsUnavailable
           naming what ran out: evaluate again with exclude=those ids, or answer
           coupon_invalid for codes), then campaign_points_pay(...) when the purchase
           is completed (commit: true or confirm).
- confirm: campaigns_confirm(reference=...), then campaign_points_pay(...).
- cancel:  campaigns_release(reference=...).
- refund:  campaigns_refund(reference=..., points_by_campaign={id: points taken back}).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Member
from campaigns import engine, selectors
from campaigns.models import (
    BudgetSlot,
    Campaign,
    CampaignUse,
    CampaignVersion,
    CodeUse,
    HoldoutMember,
    MemberUsage,
    PromoCode,
    PromoCodeBatch,
    Segment,
    Status,
    StatusChange,
)
from campaigns.validation import campaign_errors
from loyalty_site.db import transaction_lock
from programs.audit import audit_record, diff, snapshot
from programs.models import Program

BUDGET_SLOTS = 8

# The fields a version freezes: everything that changes what a receipt gets.
RULE_FIELDS = (
    "name",
    "starts_at",
    "ends_at",
    "audience",
    "new_member_days",
    "priority",
    "exclusive",
    "min_total",
    "line_categories",
    "line_skus",
    "line_min_quantity",
    "line_min_amount",
    "weekdays",
    "hour_from",
    "hour_to",
    "first_purchase",
    "every_nth",
    "birthday_days",
    "requires_code",
    "extra_percent",
    "multiplier",
    "fixed_points",
    "unit_points",
    "unit_skus",
    "budget_points",
    "limit_times",
    "limit_points",
    "limit_period",
    "expire_days",
    "holdout_percent",
    "receipt_message",
)

TRANSITIONS: dict[str, frozenset[str]] = {
    Status.DRAFT: frozenset({Status.SCHEDULED, Status.ACTIVE}),
    Status.SCHEDULED: frozenset({Status.DRAFT, Status.ACTIVE, Status.FINISHED}),
    Status.ACTIVE: frozenset({Status.PAUSED, Status.FINISHED}),
    Status.PAUSED: frozenset({Status.ACTIVE, Status.FINISHED}),
    Status.FINISHED: frozenset(),
}


class CampaignRefused(Exception):
    """The campaign cannot work as set; `errors` is {field: [message, …]}."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(m for ms in errors.values() for m in ms))
        self.errors = errors


class CampaignOverlap(Exception):
    """Activating would overlap exclusive campaigns; confirm with allow_overlap=True."""

    def __init__(self, overlaps: list[Campaign]) -> None:
        names = ", ".join(c.name for c in overlaps)
        super().__init__(
            _("It overlaps in time and stores with: %(names)s (one of them is exclusive).")
            % {"names": names}
        )
        self.overlaps = overlaps


class CampaignsUnavailable(Exception):
    """Some campaigns or codes ran out between the quote and the commit.

    `campaign_ids`: budgets or member limits that no longer fit (evaluate again
    without them); `codes`: {code: reason} for promo codes that can no longer be used.
    """

    def __init__(self, campaign_ids: Sequence[int], codes: Mapping[str, str]) -> None:
        super().__init__(f"campaigns {list(campaign_ids)} codes {dict(codes)}")
        self.campaign_ids = list(campaign_ids)
        self.codes = dict(codes)


# --- the rule cache ---------------------------------------------------------


def rules_changed(*, program_id: int) -> None:
    """Move the program's rule counter so every process reloads its campaign rules."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_rulesstate (program_id, version) VALUES (%s, 1) "
            "ON CONFLICT (program_id) DO UPDATE SET version = campaigns_rulesstate.version + 1",
            [program_id],
        )
    selectors.cache_clear(program_id)
    transaction.on_commit(lambda: selectors.cache_clear(program_id))


# --- saving, versions, status -------------------------------------------------


def campaign_snapshot(campaign: Campaign) -> dict[str, Any]:
    """The campaign's rules as JSON (what a version freezes), with its stores and audience."""
    state = snapshot(campaign)
    rules = {name: state.get(name) for name in RULE_FIELDS}
    if campaign.pk:
        rules["stores"] = sorted(campaign.stores.values_list("id", flat=True))
        rules["tiers"] = sorted(campaign.tiers.values_list("id", flat=True))
        rules["segments"] = sorted(campaign.segments.values_list("id", flat=True))
    return rules


def _audit_state(campaign: Campaign) -> dict[str, Any]:
    state = snapshot(campaign, exclude=("current_version", "status_changed_at"))
    if campaign.pk:
        state.update(
            {k: v for k, v in campaign_snapshot(campaign).items() if k in ("stores", "tiers")}
        )
        state["segments"] = campaign_snapshot(campaign)["segments"]
    return state


def _version_create(campaign: Campaign, by: Any) -> CampaignVersion | None:
    """A new version when the rules differ from the current one; None when they do not."""
    rules = campaign_snapshot(campaign)
    current = campaign.current_version
    if current is not None and current.rules == rules:
        return None
    last = campaign.versions.order_by("-number").values_list("number", flat=True).first() or 0
    version = CampaignVersion.objects.create(
        campaign=campaign,
        number=last + 1,
        rules=rules,
        created_by=by if getattr(by, "is_authenticated", False) else None,
    )
    campaign.current_version = version
    campaign.save(update_fields=["current_version"])
    return version


def _checked(campaign: Campaign, *, running: bool) -> None:
    errors = campaign_errors(
        campaign,
        tier_ids=list(campaign.tiers.values_list("id", flat=True)) if campaign.pk else None,
        segment_ids=list(campaign.segments.values_list("id", flat=True)) if campaign.pk else None,
        code_count=campaign.codes.filter(is_active=True).count() if running else None,
    )
    if errors:
        raise CampaignRefused(errors)


def campaign_save(
    *,
    campaign: Campaign,
    by: Any = None,
    stores: Sequence[Any] | None = None,
    tiers: Sequence[Any] | None = None,
    segments: Sequence[Any] | None = None,
) -> Campaign:
    """Create or change a campaign; audited; a running campaign gets a new version.

    Raises CampaignRefused when it cannot work as set.
    """
    with transaction.atomic():
        before: dict[str, Any] = {}
        if campaign.pk:
            old = Campaign.objects.select_for_update().get(pk=campaign.pk)
            before = _audit_state(old)
            campaign.status = old.status
            campaign.current_version_id = old.current_version_id
        created = campaign.pk is None
        campaign.save()
        if stores is not None:
            campaign.stores.set(stores)
        if tiers is not None:
            campaign.tiers.set(tiers)
        if segments is not None:
            campaign.segments.set(segments)
        running = campaign.status in (Status.SCHEDULED, Status.ACTIVE, Status.PAUSED)
        _checked(campaign, running=running)
        if running:
            _version_create(campaign, by)
            campaign_budget_sync(campaign=campaign)
        after = _audit_state(campaign)
        audit_record(
            user=by,
            action="create" if created else "update",
            obj=campaign,
            changes=diff(before, after),
            program=campaign.program,
            source="campaigns",
        )
        rules_changed(program_id=campaign.program_id)
    return campaign


def campaign_status_change(
    *, campaign: Campaign, to: str, by: Any = None, allow_overlap: bool = False
) -> Campaign:
    """Move a campaign along draft → scheduled → active → paused → finished.

    Scheduling or activating checks the campaign can work (CampaignRefused) and
    that it does not meet an exclusive campaign (CampaignOverlap, unless the
    marketer has seen the overlap and confirms with allow_overlap=True). A
    start before its `starts_at` makes it scheduled: the till applies it from
    its start time on.
    """
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        old = campaign.status
        if to == Status.ACTIVE and old == Status.DRAFT and campaign.starts_at > timezone.now():
            to = Status.SCHEDULED
        if to not in TRANSITIONS[old]:
            raise CampaignRefused(
                {
                    "__all__": [
                        _("A %(old)s campaign cannot become %(new)s.")
                        % {"old": Status(old).label, "new": Status(to).label}
                    ]
                }
            )
        if to in (Status.SCHEDULED, Status.ACTIVE):
            _checked(campaign, running=True)
            if campaign.ends_at is not None and campaign.ends_at <= timezone.now():
                raise CampaignRefused(
                    {"ends_at": [_("The campaign's period is over: move its end first.")]}
                )
            if old in (Status.DRAFT,) and not allow_overlap:
                overlaps = selectors.campaign_overlaps(campaign)
                if overlaps:
                    raise CampaignOverlap(overlaps)
            _version_create(campaign, by)
            campaign_budget_sync(campaign=campaign)
        user = by if getattr(by, "is_authenticated", False) else None
        campaign.status = to
        campaign.status_changed_at = timezone.now()
        campaign.status_changed_by = user
        campaign.save(update_fields=["status", "status_changed_at", "status_changed_by"])
        StatusChange.objects.create(
            campaign=campaign, old_status=old, new_status=to, changed_by=user
        )
        audit_record(
            user=by,
            action="update",
            obj=campaign,
            changes={"status": [old, to]},
            program=campaign.program,
            source="campaigns",
        )
        rules_changed(program_id=campaign.program_id)
    return campaign


def campaigns_finish_due(*, at: datetime | None = None) -> int:
    """Mark campaigns whose period is over as finished, and started ones as active (beat)."""
    at = at or timezone.now()
    done = 0
    for campaign in Campaign.objects.filter(
        status__in=(Status.SCHEDULED, Status.ACTIVE, Status.PAUSED), ends_at__lte=at
    ):
        campaign_status_change(campaign=campaign, to=Status.FINISHED)
        done += 1
    for campaign in Campaign.objects.filter(status=Status.SCHEDULED, starts_at__lte=at):
        campaign_status_change(campaign=campaign, to=Status.ACTIVE, allow_overlap=True)
        done += 1
    return done


# --- budgets ----------------------------------------------------------------


def campaign_budget_sync(*, campaign: Campaign) -> None:
    """Make the budget slots' caps add up to the budget (or to what is spent, if more).

    What is left of the budget is spread evenly over the slots; slots are locked
    in slot order, the same order the commit path's slow path uses.
    """
    if campaign.budget_points is None:
        BudgetSlot.objects.filter(campaign=campaign).delete()
        return
    slots = list(BudgetSlot.objects.select_for_update().filter(campaign=campaign).order_by("slot"))
    if not slots:
        slots = BudgetSlot.objects.bulk_create(
            [BudgetSlot(campaign=campaign, slot=i, cap=0, used=0) for i in range(BUDGET_SLOTS)]
        )
    used = sum(s.used for s in slots)
    left = max(0, campaign.budget_points - used)
    share, extra = divmod(left, len(slots))
    for i, slot in enumerate(slots):
        slot.cap = slot.used + share + (1 if i < extra else 0)
    BudgetSlot.objects.bulk_update(slots, ["cap"])


def _slot_of(reference: str) -> int:
    digest = hashlib.blake2b(reference.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % BUDGET_SLOTS


class _SlotShort(Exception):
    pass


def _budget_take(campaign_id: int, points: int, reference: str) -> dict[str, int] | None:
    """Take `points` from the campaign's budget; {slot: points} taken, or None if it is short.

    Fast path: one conditional UPDATE of the slot this purchase hashes to.
    Slow path (that slot is short): lock all slots in slot order and take from several.
    """
    slot = _slot_of(reference)
    try:
        # In a savepoint: an UPDATE that waited for a concurrent one and then found the
        # slot short keeps that row locked; rolling the savepoint back lets it go, so the
        # slow path below takes its locks in slot order only (no deadlock).
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE campaigns_budgetslot SET used = used + %s "
                "WHERE campaign_id = %s AND slot = %s AND used + %s <= cap",
                [points, campaign_id, slot, points],
            )
            if cursor.rowcount != 1:
                raise _SlotShort
        return {str(slot): points}
    except _SlotShort:
        pass
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT slot, cap - used FROM campaigns_budgetslot WHERE campaign_id = %s "
            "ORDER BY slot FOR UPDATE",
            [campaign_id],
        )
        rows = cursor.fetchall()
        if not rows:
            return {}  # no budget: unlimited
        if sum(left for _slot, left in rows) < points:
            return None
        taken: dict[str, int] = {}
        need = points
        for slot_no, left in rows:
            take = min(left, need)
            if take > 0:
                cursor.execute(
                    "UPDATE campaigns_budgetslot SET used = used + %s "
                    "WHERE campaign_id = %s AND slot = %s",
                    [take, campaign_id, slot_no],
                )
                taken[str(slot_no)] = take
                need -= take
            if need == 0:
                break
        return taken


def _budget_give_back(campaign_id: int, slots: dict[str, int], points: int) -> dict[str, int]:
    """Return `points` to the slots they came from; the slots still holding points."""
    left = dict(slots)
    with connection.cursor() as cursor:
        for slot_no in sorted(left, key=int):
            give = min(left[slot_no], points)
            if give <= 0:
                continue
            cursor.execute(
                "UPDATE campaigns_budgetslot SET used = used - %s "
                "WHERE campaign_id = %s AND slot = %s",
                [give, campaign_id, int(slot_no)],
            )
            left[slot_no] -= give
            points -= give
    return {k: v for k, v in left.items() if v > 0}


def _usage_take(rule: engine.Rule, member_id: Any, window: str, points: int) -> bool:
    """Count one use and `points` against the member's limit; False when it does not fit."""
    if rule.limit_times is not None and rule.limit_times < 1:
        return False
    if rule.limit_points is not None and points > rule.limit_points:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            'INSERT INTO campaigns_memberusage (campaign_id, member_id, "window", times, points) '
            "VALUES (%s, %s, %s, 1, %s) "
            'ON CONFLICT (member_id, campaign_id, "window") DO UPDATE SET '
            "times = campaigns_memberusage.times + 1, "
            "points = campaigns_memberusage.points + EXCLUDED.points "
            "WHERE (%s::integer IS NULL OR campaigns_memberusage.times + 1 <= %s::integer) "
            "AND (%s::bigint IS NULL OR campaigns_memberusage.points + EXCLUDED.points "
            "<= %s::bigint) RETURNING id",
            [
                rule.campaign_id,
                member_id,
                window,
                points,
                rule.limit_times,
                rule.limit_times,
                rule.limit_points,
                rule.limit_points,
            ],
        )
        return cursor.fetchone() is not None


def _usage_give_back(use: CampaignUse, points: int, times: int) -> None:
    MemberUsage.objects.filter(
        campaign_id=use.campaign_id, member_id=use.member_id, window=use.window
    ).update(times=F("times") - times, points=F("points") - points)


# --- promo codes at the till --------------------------------------------------


def _code_take(code: PromoCode, member: Member, reference: str, state: str) -> str:
    """Reserve a code for a purchase; "" or the reason it cannot be used."""
    if code.member_id is not None and str(code.member_id) != str(member.pk):
        return engine.NOT_APPLICABLE  # another member's personal code (the lookup says so too)
    if CodeUse.objects.filter(code=code, reference=reference).exists():
        return ""  # a retry of the same purchase
    with connection.cursor() as cursor:
        if code.per_member_limit is not None:
            # Serialise this member's uses of this code only, not the code's other users.
            transaction_lock(f"campaigns.code:{code.pk}:{member.pk}")
            taken = (
                CodeUse.objects.filter(code=code, member=member)
                .exclude(state=CodeUse.State.RELEASED)
                .count()
            )
            if taken >= code.per_member_limit:
                return engine.USED_UP
        if code.max_uses is not None:
            cursor.execute(
                "UPDATE campaigns_promocode SET uses = uses + 1 WHERE id = %s AND uses < max_uses",
                [code.pk],
            )
            if cursor.rowcount != 1:
                return engine.USED_UP
    CodeUse.objects.create(code=code, member=member, reference=reference, state=state)
    return ""


def _codes_give_back(reference: str, campaign_ids: Sequence[int] | None = None) -> None:
    uses = (
        CodeUse.objects.select_for_update()
        .filter(reference=reference)
        .exclude(state=CodeUse.State.RELEASED)
    )
    if campaign_ids is not None:
        uses = uses.filter(code__campaign_id__in=campaign_ids)
    for use in uses.select_related("code"):
        if use.code.max_uses is not None:
            PromoCode.objects.filter(pk=use.code_id).update(uses=F("uses") - 1)
        use.state = CodeUse.State.RELEASED
        use.save(update_fields=["state"])


# --- the purchase flow (called by pos) --------------------------------------------


def campaigns_reserve(
    *,
    program: Program,
    member: Member,
    reference: str,
    evaluation: engine.Evaluation,
    at: datetime,
    rules: Sequence[engine.Rule],
    points: Mapping[int, int] | None = None,
    confirm: bool = False,
) -> list[CampaignUse]:
    """Take the budgets, member limits and promo codes the evaluation applied.

    `reference` identifies the purchase (its id); `points` the campaign points
    the receipt finally gives ({campaign id: points}, from receipt_compute's
    breakdown), defaulting to the evaluation's own. Atomic: either everything
    is taken or nothing, and CampaignsUnavailable says what ran out. Safe to
    call again for the same reference (returns what was taken). `confirm`
    marks the codes used at once (a purchase committed straight away).
    """
    existing = list(CampaignUse.objects.filter(reference=reference))
    if existing:
        return existing
    by_id = {r.campaign_id: r for r in rules}
    amounts = {p.campaign_id: p.points for p in evaluation.breakdown}
    if points is not None:
        amounts = {int(k): v for k, v in points.items() if int(k) in amounts}
    local = at.astimezone(selectors.program_zone(program))
    failed: list[int] = []
    bad_codes: dict[str, str] = {}
    uses: list[CampaignUse] = []
    with transaction.atomic():
        for item in sorted(evaluation.breakdown, key=lambda p: p.campaign_id):
            rule = by_id[item.campaign_id]
            n = amounts.get(item.campaign_id, 0)
            window = ""
            if rule.limit_times is not None or rule.limit_points is not None:
                window = selectors.limit_window(rule.limit_period, local)
                if not _usage_take(rule, member.pk, window, n):
                    failed.append(rule.campaign_id)
                    continue
            slots: dict[str, int] | None = {}
            if rule.budget_points is not None and n > 0:
                slots = _budget_take(rule.campaign_id, n, reference)
                if slots is None:
                    failed.append(rule.campaign_id)
                    continue
            uses.append(
                CampaignUse(
                    campaign_id=rule.campaign_id,
                    version_id=rule.version_id,
                    member=member,
                    reference=reference,
                    points=n,
                    slots=slots,
                    window=window,
                    state=CampaignUse.State.CONFIRMED if confirm else CampaignUse.State.RESERVED,
                    created_at=at,
                )
            )
        state = CodeUse.State.USED if confirm else CodeUse.State.RESERVED
        codes = {
            pc.code: pc
            for pc in PromoCode.objects.filter(
                program=program, code__in=list(evaluation.coupons_applied)
            )
        }
        for code in sorted(evaluation.coupons_applied):
            if evaluation.coupons_applied[code] in failed:
                continue
            reason = _code_take(codes[code], member, reference, state)
            if reason:
                bad_codes[code] = reason
        if failed or bad_codes:
            raise CampaignsUnavailable(failed, bad_codes)
        CampaignUse.objects.bulk_create(uses)
        if evaluation.held_out:
            HoldoutMember.objects.bulk_create(
                [HoldoutMember(campaign_id=cid, member=member) for cid in evaluation.held_out],
                ignore_conflicts=True,
            )
    return uses


def campaigns_confirm(*, reference: str) -> int:
    """A pending purchase is confirmed: its campaign uses and codes become final."""
    with transaction.atomic():
        CodeUse.objects.filter(reference=reference, state=CodeUse.State.RESERVED).update(
            state=CodeUse.State.USED
        )
        return CampaignUse.objects.filter(
            reference=reference, state=CampaignUse.State.RESERVED
        ).update(state=CampaignUse.State.CONFIRMED)


def campaigns_release(*, reference: str) -> int:
    """A purchase is cancelled (or fully refunded): give back budgets, limits and codes."""
    with transaction.atomic():
        released = 0
        uses = (
            CampaignUse.objects.select_for_update()
            .filter(reference=reference)
            .exclude(state=CampaignUse.State.RELEASED)
            .order_by("campaign_id")
        )
        for use in uses:
            left = use.points - use.released_points
            _release(use, left, whole=True)
            released += 1
        _codes_give_back(reference)
        return released


def _release(use: CampaignUse, points: int, *, whole: bool) -> None:
    if use.slots:
        use.slots = _budget_give_back(use.campaign_id, use.slots, points)
    if use.window:
        _usage_give_back(use, points, 1 if whole else 0)
    use.released_points += points
    if whole:
        use.state = CampaignUse.State.RELEASED
    use.save(update_fields=["slots", "released_points", "state"])


def campaigns_refund(*, reference: str, points_by_campaign: Mapping[int, int]) -> dict[int, int]:
    """A refund took campaign points back: give them back to budgets and member limits.

    `points_by_campaign` is what the refund reversed of each campaign's points
    (pos knows it from the lines' campaign shares, Evaluation.campaign_line_points).
    A campaign whose points all came back is released whole: its use no longer
    counts against the member's limit and its promo code can be used again.
    Returns {campaign id: points released}.
    """
    result: dict[int, int] = {}
    with transaction.atomic():
        uses = (
            CampaignUse.objects.select_for_update()
            .filter(reference=reference, campaign_id__in=list(points_by_campaign))
            .exclude(state=CampaignUse.State.RELEASED)
            .order_by("campaign_id")
        )
        emptied: list[int] = []
        for use in uses:
            left = use.points - use.released_points
            n = max(0, min(int(points_by_campaign[use.campaign_id]), left))
            whole = n == left
            _release(use, n, whole=whole)
            result[use.campaign_id] = n
            if whole:
                emptied.append(use.campaign_id)
        if emptied:
            _codes_give_back(reference, emptied)
    return result


@dataclass(frozen=True)
class Payment:
    campaign_id: int
    points: int
    expires_at: datetime | None
    source: str


def funding_source(campaign_id: int) -> str:
    """The ledger funding source a campaign's points are paid from."""
    return f"campaign:{campaign_id}"


def payments_plan(
    *, program: Program, rules: Sequence[engine.Rule], points: Mapping[int, int], at: datetime
) -> list[Payment]:
    """What to credit for each campaign: points, funding source and the (shorter) expiry."""
    by_id = {r.campaign_id: r for r in rules}
    plan = []
    for campaign_id, n in sorted(points.items()):
        if n <= 0:
            continue
        rule = by_id.get(int(campaign_id))
        days = program.points_expire_days
        if rule is not None and rule.expire_days is not None:
            days = rule.expire_days if days is None else min(days, rule.expire_days)
        plan.append(
            Payment(
                campaign_id=int(campaign_id),
                points=n,
                expires_at=at + timedelta(days=days) if days is not None else None,
                source=funding_source(int(campaign_id)),
            )
        )
    return plan


# --- promo codes ------------------------------------------------------------

# No 0/O, 1/I/L: codes are read aloud and typed from paper.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8


def code_create(
    *,
    campaign: Campaign,
    code: str,
    max_uses: int | None = None,
    per_member_limit: int | None = 1,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    member: Member | None = None,
    by: Any = None,
) -> PromoCode:
    """A shared code (e.g. SPRING25) for a campaign, or one member's personal code; audited."""
    if member is not None and member.program_id != campaign.program_id:
        raise CampaignRefused({"member": [_("The member is not in the campaign's program.")]})
    with transaction.atomic():
        promo = PromoCode.objects.create(
            program_id=campaign.program_id,
            campaign=campaign,
            member=member,
            code=selectors.code_normalize(code),
            max_uses=max_uses,
            per_member_limit=per_member_limit,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        changes: dict[str, Any] = {"code": [None, promo.code], "campaign": [None, campaign.pk]}
        if member is not None:
            changes["member"] = [None, str(member.pk)]
        audit_record(
            user=by,
            action="create",
            obj=promo,
            changes=changes,
            program=campaign.program,
            source="campaigns",
        )
    return promo


def code_batch_generate(
    *,
    campaign: Campaign,
    count: int,
    prefix: str = "",
    max_uses: int | None = 1,
    per_member_limit: int | None = 1,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    by: Any = None,
) -> PromoCodeBatch:
    """`count` unique random codes starting with `prefix`, e.g. for a mailing; audited.

    Codes are drawn at random (secrets) and inserted with ON CONFLICT DO NOTHING
    until the batch is full, so a clash with an existing code is simply redrawn.
    """
    import secrets

    prefix = selectors.code_normalize(prefix)
    if count < 1 or count > 1_000_000:
        raise CampaignRefused({"count": [_("A batch holds from 1 to 1,000,000 codes.")]})
    with transaction.atomic():
        batch = PromoCodeBatch.objects.create(
            campaign=campaign,
            prefix=prefix,
            count=count,
            created_by=by if getattr(by, "is_authenticated", False) else None,
        )
        made = 0
        while made < count:
            chunk = min(10_000, count - made)
            codes = {
                prefix + "".join(secrets.choice(CODE_ALPHABET) for _i in range(CODE_LENGTH))
                for _j in range(chunk)
            }
            created = PromoCode.objects.bulk_create(
                [
                    PromoCode(
                        program_id=campaign.program_id,
                        campaign=campaign,
                        batch=batch,
                        code=code,
                        max_uses=max_uses,
                        per_member_limit=per_member_limit,
                        valid_from=valid_from,
                        valid_until=valid_until,
                    )
                    for code in codes
                ],
                ignore_conflicts=True,
            )
            del created  # with ignore_conflicts the objects do not tell which were inserted
            made = PromoCode.objects.filter(batch=batch).count()
        audit_record(
            user=by,
            action="create",
            obj=batch,
            changes={"count": [None, count], "prefix": [None, prefix]},
            program=campaign.program,
            source="campaigns",
        )
    return batch


# One INSERT ... SELECT draws a code for every member still without one. The random
# part comes from PostgreSQL's strong random source (gen_random_uuid: its last 7
# bytes are random, 56 bits), written in CODE_ALPHABET digits; 2**56 / 31**8 ≈ 85,000,
# so the skew of the modulo is negligible. Codes that clash with an existing one
# (ON CONFLICT DO NOTHING) leave their member without a code for this round only.
_BASE = len(CODE_ALPHABET)
_RANDOM_CODE = " || ".join(
    # %% is the modulo operator once the driver has put the parameters in.
    f"substr('{CODE_ALPHABET}', ((c.n / {_BASE**k}) %% {_BASE})::int + 1, 1)"
    for k in range(CODE_LENGTH)
)
_ISSUE_SQL = f"""
INSERT INTO campaigns_promocode
       (program_id, campaign_id, batch_id, member_id, code, max_uses, uses,
        per_member_limit, valid_from, valid_until, is_active, created_at)
SELECT %s, %s, %s, c.id, %s || {_RANDOM_CODE}, %s, 0, %s, %s, %s, true, %s
  FROM (SELECT m.id,
               ('x' || encode(substr(uuid_send(gen_random_uuid()), 10, 7), 'hex'))::bit(56)::bigint
               AS n
          FROM ({{members}}) AS m(id)
         WHERE NOT (m.id = ANY(%s::uuid[]))) AS c
ON CONFLICT DO NOTHING
"""
_ISSUE_ROUNDS = 8


def promo_codes_issue(
    *,
    campaign: Campaign,
    segment: Segment | None = None,
    prefix: str = "",
    by: Any = None,
    max_uses: int | None = 1,
    per_member_limit: int | None = 1,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    at: datetime | None = None,
) -> PromoCodeBatch:
    """Give each member of the campaign's audience (within `segment`, if given) one
    personal code, in a new batch; audited.

    Set-based: one INSERT ... SELECT per round, random codes drawn by the database;
    a round that clashed with existing codes is followed by another for the members
    it missed. Members who already hold an active personal code of the campaign
    (from any batch) are skipped, and issuing is serialised per campaign (its row
    is locked), so running it twice, even at once, never gives anyone a second
    code: the second run issues only to newcomers, or is refused when there are
    none. Members in the campaign's holdout get no code. Raises CampaignRefused.
    """
    at = at or timezone.now()
    prefix = selectors.code_normalize(prefix)
    errors: dict[str, list[str]] = {}
    if segment is not None and segment.program_id != campaign.program_id:
        errors["segment"] = [_("The segment is of another program.")]
    if valid_from and valid_until and valid_until <= valid_from:
        errors["valid_until"] = [_("A code must end after it starts.")]
    if errors:
        raise CampaignRefused(errors)
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status == Status.FINISHED:
            raise CampaignRefused({"campaign": [_("The campaign is finished.")]})
        members = selectors.personal_code_candidates(campaign=campaign, segment=segment, at=at)
        held_out: list[str] = []
        if campaign.holdout_percent:
            # The control group is not told about the offer: no code (the hash is Python's).
            held_out = [
                str(pk)
                for pk in members.values_list("pk", flat=True).iterator(chunk_size=10_000)
                if engine.in_holdout(campaign.pk, str(pk), campaign.holdout_percent)
            ]
        members_sql, members_params = members.order_by().values_list("pk").query.sql_with_params()

        def left() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT EXISTS (SELECT 1 FROM ({members_sql}) AS m(id) "
                    "WHERE NOT (m.id = ANY(%s::uuid[])))",
                    [*members_params, held_out],
                )
                return bool(cursor.fetchone()[0])

        if not left():
            raise CampaignRefused(
                {"__all__": [_("Every member of this audience already has a personal code.")]}
            )
        batch = PromoCodeBatch.objects.create(
            campaign=campaign,
            prefix=prefix,
            count=0,
            personal=True,
            segment=segment,
            created_at=at,
            created_by=by if getattr(by, "is_authenticated", False) else None,
        )
        issued = 0
        for _round in range(_ISSUE_ROUNDS):
            with connection.cursor() as cursor:
                cursor.execute(
                    _ISSUE_SQL.format(members=members_sql),
                    [
                        campaign.program_id,
                        campaign.pk,
                        batch.pk,
                        prefix,
                        max_uses,
                        per_member_limit,
                        valid_from,
                        valid_until,
                        at,
                        *members_params,
                        held_out,
                    ],
                )
                issued += cursor.rowcount
            if not left():
                break
        else:
            raise RuntimeError("could not draw free promo codes; try a longer prefix")
        batch.count = issued
        batch.save(update_fields=["count"])
        audit_record(
            user=by,
            action="create",
            obj=batch,
            changes={
                "count": [None, issued],
                "prefix": [None, prefix],
                "personal": [None, True],
                "segment": [None, segment.pk if segment else None],
            },
            program=campaign.program,
            source="campaigns",
        )
    return batch


def promo_codes_notify(*, batch: PromoCodeBatch, kind: str) -> int:
    """Send each member of a personal batch their code with the message template `kind`.

    The template's `{code}` is the member's code, `{campaign}` the campaign's
    name, `{valid_until}` the code's last day (or the campaign's). Once per code
    and channel (the outbox reference), so running it again sends nothing new.
    Consent, the frequency cap and quiet hours apply as to every message.
    Returns how many messages were queued now.
    """
    from campaigns import messaging
    from campaigns.models import Channel, MessageTemplate, OutboxMessage

    campaign = batch.campaign
    if not MessageTemplate.objects.filter(program_id=campaign.program_id, kind=kind).exists():
        raise CampaignRefused({"kind": [_("There is no message template of this kind.")]})
    zone = selectors.program_zone(campaign.program)
    queued = 0
    codes = batch.codes.filter(member__isnull=False, is_active=True).select_related("member")
    for code in codes.order_by("pk").iterator(chunk_size=1000):
        until = min((d for d in (code.valid_until, campaign.ends_at) if d), default=None)
        variables = {
            "code": code.code,
            "campaign": campaign.name,
            "valid_until": until.astimezone(zone).strftime("%d.%m.%Y") if until else "",
        }
        for channel in (Channel.SMS, Channel.EMAIL):
            reference = f"promo:{code.pk}:{channel}"
            if OutboxMessage.objects.filter(reference=reference).exists():
                continue
            message = messaging.message_enqueue(
                member=code.member,
                kind=kind,
                channel=channel,
                reference=reference,
                variables=variables,
            )
            if message is not None and message.state == OutboxMessage.State.QUEUED:
                queued += 1
    return queued


def csv_safe(value: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def codes_csv_rows(codes: Any, *, with_members: bool = True) -> list[list[str]]:
    """Rows (with a header) of promo codes for export. One query.

    `with_members`: a personal code with its member's phone and active card
    (empty for shared codes), for sending the codes out; leave them out for
    someone who may not export member data.
    """
    from accounts.models import Card

    header = ["code", "campaign", "max_uses", "used", "valid_from", "valid_until"]
    codes = codes.select_related("campaign").order_by("code")
    if with_members:
        header += ["phone", "card"]
        card = Card.objects.filter(member=OuterRef("member_id"), status=Card.Status.ACTIVE)
        codes = codes.select_related("member").annotate(
            card_number=Subquery(card.values("number")[:1])
        )
    rows = [header]
    for pc in codes.iterator(chunk_size=5000):
        row = [
            csv_safe(pc.code),
            csv_safe(pc.campaign.name),
            "" if pc.max_uses is None else str(pc.max_uses),
            str(pc.uses),
            pc.valid_from.isoformat() if pc.valid_from else "",
            pc.valid_until.isoformat() if pc.valid_until else "",
        ]
        if with_members:
            row.append(csv_safe(pc.member.phone or "") if pc.member else "")
            row.append(csv_safe(pc.card_number or ""))
        rows.append(row)
    return rows


def campaign_points_pay(
    *,
    account_or_member: Any,
    reference: str,
    plan: Sequence[Payment],
    at: datetime,
    by: Any = None,
) -> list[Any]:
    """Credit each campaign's points from its own funding account (`campaign:<id>`).

    `reference` is the purchase's; each credit gets `<reference>:campaign:<id>`, so
    calling it again changes nothing. Kind `accrual`: campaign points of a purchase
    wait for the program's accrual delay like the base points do. Pass the Account
    from ledger.services.account_lock when the caller already holds the member lock.
    """
    from ledger import services as ledger

    transfers = []
    for payment in plan:
        transfers.append(
            ledger.points_credit(
                account_or_member=account_or_member,
                amount=payment.points,
                kind="accrual",
                reference=f"{reference}:campaign:{payment.campaign_id}",
                source=payment.source,
                expires_at=payment.expires_at,
                description=_("Campaign points"),
                purchase_ref=reference,
                by=by,
                now=at,
            )
        )
    return transfers
