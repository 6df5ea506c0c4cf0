"""Campaigns, their versions and counters, promo codes, segments.

Invariants (named database constraints, so they hold whatever path writes):
- campaigns_campaign_period_order: a campaign ends after it starts;
- campaigns_campaign_budget_positive, campaigns_campaign_holdout_range,
  campaigns_campaign_limits_positive: the money and limit settings make sense;
- campaigns_campaignversion_unique_number: version numbers count up per campaign;
- campaigns_budgetslot_within_cap: a budget slot never spends more than its cap,
  and the caps of a campaign add up to its budget (so the budget is never
  overspent, whatever the concurrency: consumption is a conditional UPDATE);
- campaigns_memberusage_unique / _within_limits: one usage row per member, campaign
  and limit window, moved by a conditional upsert;
- campaigns_campaignuse_unique_reference: a purchase uses a campaign once;
- campaigns_promocode_unique_code: a code is unique within a program;
- campaigns_promocode_uses_within_max: a code is never used more than allowed;
- campaigns_promocode_one_per_member_in_batch: a batch of personal codes gives a
  member at most one code (issuing again for the same batch adds nothing);
- campaigns_codeuse_unique_reference: a purchase reserves a code once.
A promo code with a `member` is that member's personal code: only they may use
it (services and the till's lookup check it; another member's attempt is refused
as not applicable). Its member belongs to the code's program (the issuing
service selects members of the campaign's program only).
The budget is split into slots so that concurrent purchases of one campaign do
not all wait for the same row (ARCHITECTURE.md: no hot rows).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Member
from programs.models import Program, Store, Tier


def _codes(verbose_name: object, help_text: object = "") -> ArrayField:
    return ArrayField(
        models.CharField(max_length=100),
        verbose_name=verbose_name,
        help_text=help_text,
        default=list,
        blank=True,
    )


class Status(models.TextChoices):
    DRAFT = "draft", _("draft")
    SCHEDULED = "scheduled", _("scheduled")
    ACTIVE = "active", pgettext_lazy("status of a campaign", "active")
    PAUSED = "paused", _("paused")
    FINISHED = "finished", _("finished")


class Audience(models.TextChoices):
    EVERYONE = "everyone", _("everyone")
    TIERS = "tiers", _("members of the tiers")
    SEGMENTS = "segments", _("members of the segments")
    NEW = "new", _("new members")


class LimitPeriod(models.TextChoices):
    DAY = "day", _("per day")
    WEEK = "week", _("per week")
    MONTH = "month", _("per month")
    CAMPAIGN = "campaign", _("for the whole campaign")


class Weekday(models.IntegerChoices):
    MONDAY = 0, _("Monday")
    TUESDAY = 1, _("Tuesday")
    WEDNESDAY = 2, _("Wednesday")
    THURSDAY = 3, _("Thursday")
    FRIDAY = 4, _("Friday")
    SATURDAY = 5, _("Saturday")
    SUNDAY = 6, _("Sunday")


class Segment(models.Model):
    class Kind(models.TextChoices):
        NEW = "new", _("new: enrolled in the last N days")
        ACTIVE = "active", _("active: bought in the last N days")
        SLEEPING = "sleeping", _("sleeping: no purchase for N days")
        VIP = "vip", _("VIP: qualifying spend at least X")
        TIER = "tier", _("tier")
        STORE = "store", _("registration store")
        BIRTHDAY_MONTH = "birthday_month", _("birthday this month")
        CONSENT = "consent", _("consent given")
        STATIC = "static", _("static list (uploaded CSV)")
        # Evaluated by analytics (CLV model) through segments.segment_source_register.
        PROBABLY_LOST = "probably_lost", _("probably lost: P(alive) under X (CLV)")

    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.CASCADE, related_name="segments"
    )
    name = models.CharField(pgettext_lazy("title of a thing", "name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    days = models.PositiveIntegerField(
        _("N days"), null=True, blank=True, help_text=_("For new, active and sleeping members.")
    )
    min_spend = models.DecimalField(
        _("spend at least"),
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("For VIP: the member's qualifying spend (purchases in the tier window)."),
    )
    tier = models.ForeignKey(
        Tier, verbose_name=_("tier"), on_delete=models.CASCADE, null=True, blank=True
    )
    store = models.ForeignKey(
        Store, verbose_name=_("store"), on_delete=models.CASCADE, null=True, blank=True
    )
    consent_kind = models.CharField(
        _("consent"),
        max_length=20,
        blank=True,
        help_text=_("marketing_sms, marketing_email or third_party"),
    )
    p_alive_below = models.DecimalField(
        _("P(alive) under"),
        max_digits=3,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("1"))],
        help_text=_("For probably lost: 0.30 when empty. Members never fitted are not included."),
    )
    size = models.PositiveIntegerField(_("members"), default=0, editable=False)
    computed_at = models.DateTimeField(_("recalculated at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["program", "name"]
        permissions = [("recalculate_segment", _("Can recalculate segments"))]

    def __str__(self) -> str:
        return self.name


class SegmentMember(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")

    class Meta:
        verbose_name = _("segment member")
        verbose_name_plural = _("segment members")
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "member"], name="campaigns_segmentmember_unique"
            )
        ]
        # The unique index serves "members of a segment"; this one "segments of a member".
        indexes = [models.Index(fields=["member", "segment"], name="campaigns_segmember_member")]

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.member_id}"


class SegmentSize(models.Model):
    """The history of a segment's size, one row per recalculation."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="sizes")
    computed_at = models.DateTimeField(_("recalculated at"), default=timezone.now)
    size = models.PositiveIntegerField(_("members"))

    class Meta:
        verbose_name = _("segment size")
        verbose_name_plural = _("segment size history")
        ordering = ["-computed_at"]

    def __str__(self) -> str:
        return f"{self.size}"


class Campaign(models.Model):
    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.PROTECT, related_name="campaigns"
    )
    name = models.CharField(pgettext_lazy("title of a thing", "name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.DRAFT, editable=False
    )
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(
        _("ends at"), null=True, blank=True, help_text=_("Empty: runs until stopped.")
    )
    stores = models.ManyToManyField(
        Store,
        verbose_name=_("stores"),
        blank=True,
        related_name="+",
        help_text=_("Empty: all stores."),
    )
    audience = models.CharField(
        _("audience"), max_length=10, choices=Audience.choices, default=Audience.EVERYONE
    )
    tiers = models.ManyToManyField(Tier, verbose_name=_("tiers"), blank=True, related_name="+")
    segments = models.ManyToManyField(
        Segment, verbose_name=_("segments"), blank=True, related_name="campaigns"
    )
    new_member_days = models.PositiveIntegerField(
        _("new members: enrolled within, days"), null=True, blank=True
    )
    priority = models.IntegerField(
        _("priority"), default=0, help_text=_("Campaigns with a higher priority are tried first.")
    )
    exclusive = models.BooleanField(
        _("exclusive"),
        default=False,
        help_text=_("An exclusive campaign is never combined with other campaigns on a receipt."),
    )

    # Conditions: every one that is filled in must hold.
    min_total = models.DecimalField(
        _("receipt total at least"), max_digits=14, decimal_places=2, null=True, blank=True
    )
    line_categories = _codes(_("categories in the receipt"))
    line_skus = _codes(_("SKUs in the receipt"))
    line_min_quantity = models.DecimalField(
        _("of them, quantity at least"), max_digits=12, decimal_places=3, null=True, blank=True
    )
    line_min_amount = models.DecimalField(
        _("of them, amount at least"), max_digits=14, decimal_places=2, null=True, blank=True
    )
    weekdays = ArrayField(
        models.PositiveSmallIntegerField(choices=Weekday.choices),
        verbose_name=_("weekdays"),
        default=list,
        blank=True,
        help_text=_("0 = Monday … 6 = Sunday. Empty: every day."),
    )
    hour_from = models.PositiveSmallIntegerField(
        _("from hour"), null=True, blank=True, validators=[MaxValueValidator(23)]
    )
    hour_to = models.PositiveSmallIntegerField(
        _("to hour"),
        null=True,
        blank=True,
        validators=[MaxValueValidator(24)],
        help_text=_("In the program's time zone; 22 to 6 means the night."),
    )
    first_purchase = models.BooleanField(_("member's first purchase"), default=False)
    every_nth = models.PositiveIntegerField(
        _("every Nth purchase"), null=True, blank=True, validators=[MinValueValidator(2)]
    )
    birthday_days = models.PositiveIntegerField(
        _("birthday within ± days"), null=True, blank=True, validators=[MaxValueValidator(31)]
    )
    requires_code = models.BooleanField(_("promo code required"), default=False)

    # Effects: every one that is filled in adds up.
    extra_percent = models.DecimalField(
        # xgettext:no-python-format
        _("extra earning, % of matching lines"),
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("100"))],
    )
    multiplier = models.DecimalField(
        _("multiply base points by"),
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("1.01")), MaxValueValidator(Decimal("20"))],
    )
    fixed_points = models.PositiveIntegerField(
        _("bonus points per receipt"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    unit_points = models.DecimalField(
        _("points per unit"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01"))],
    )
    unit_skus = _codes(_("SKUs earning points per unit"))

    # Money and limits
    budget_points = models.BigIntegerField(
        _("budget, points"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("The campaign stops giving points once it has given this many. Empty: no cap."),
    )
    limit_times = models.PositiveIntegerField(
        _("times per member"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    limit_points = models.PositiveIntegerField(
        _("points per member"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    limit_period = models.CharField(
        _("member limit window"),
        max_length=10,
        choices=LimitPeriod.choices,
        default=LimitPeriod.CAMPAIGN,
    )
    expire_days = models.PositiveIntegerField(
        _("points expire after, days"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_(
            "A burning bonus: campaign points expire sooner than the program's. "
            "Empty: the program's expiry."
        ),
    )
    holdout_percent = models.PositiveSmallIntegerField(
        _("holdout, %"),
        default=0,
        validators=[MaxValueValidator(50)],
        help_text=_("This share of the audience is kept out to measure the campaign's effect."),
    )
    receipt_message = models.CharField(
        _("message on the receipt"),
        max_length=200,
        blank=True,
        help_text=_(
            "Shown to the cashier when it applies; {points} is replaced by the points, "
            "{points_text} by the points with their word (1 бонус, 3 бонуса, 5 бонусов)."
        ),
    )

    current_version = models.ForeignKey(
        "CampaignVersion",
        verbose_name=_("current version"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("changed at"), auto_now=True)
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, editable=False)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("status changed by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-starts_at", "-id"]
        permissions = [
            ("change_campaign_status", _("Can launch, pause and finish campaigns")),
            ("backtest_campaign", _("Can run campaign backtests")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="campaigns_campaign_period_order",
            ),
            models.CheckConstraint(
                condition=Q(budget_points__isnull=True) | Q(budget_points__gt=0),
                name="campaigns_campaign_budget_positive",
            ),
            models.CheckConstraint(
                condition=Q(holdout_percent__gte=0, holdout_percent__lte=50),
                name="campaigns_campaign_holdout_range",
            ),
            models.CheckConstraint(
                condition=(Q(limit_times__isnull=True) | Q(limit_times__gt=0))
                & (Q(limit_points__isnull=True) | Q(limit_points__gt=0)),
                name="campaigns_campaign_limits_positive",
            ),
        ]
        indexes = [models.Index(fields=["program", "status"], name="campaigns_campaign_status")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Cross-field rules live in one place, campaigns.validation, shared with services.
        from campaigns.validation import campaign_errors

        errors = campaign_errors(self)
        if errors:
            from django.core.exceptions import ValidationError

            raise ValidationError(errors)


class CampaignVersion(models.Model):
    """A frozen copy of a campaign's rules; purchases record the version they used."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(_("version"))
    rules = models.JSONField(_("rules"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("campaign version")
        verbose_name_plural = _("campaign versions")
        ordering = ["campaign", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "number"], name="campaigns_campaignversion_unique_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.campaign} v{self.number}"


class StatusChange(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="status_changes")
    old_status = models.CharField(_("from"), max_length=10, choices=Status.choices)
    new_status = models.CharField(_("to"), max_length=10, choices=Status.choices)
    changed_at = models.DateTimeField(_("when"), default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("who"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("status change")
        verbose_name_plural = _("status changes")
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.old_status} → {self.new_status}"


class BudgetSlot(models.Model):
    """A slice of a campaign's budget; purchases spread over the slots."""

    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.CASCADE,
        related_name="budget_slots",
        db_index=False,  # covered by campaigns_budgetslot_unique
    )
    slot = models.PositiveSmallIntegerField()
    cap = models.BigIntegerField()
    used = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("budget slot")
        verbose_name_plural = _("budget slots")
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "slot"], name="campaigns_budgetslot_unique"
            ),
            models.CheckConstraint(
                condition=Q(used__gte=0) & Q(used__lte=F("cap")),
                name="campaigns_budgetslot_within_cap",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.slot}: {self.used}/{self.cap}"


class MemberUsage(models.Model):
    """How often and how much a member used a campaign in one limit window."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    member = models.ForeignKey(
        Member,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # covered by campaigns_memberusage_unique
    )
    window = models.CharField(max_length=12)  # "all", "d2026-01-31", "w2026-05", "m2026-01"
    times = models.PositiveIntegerField(default=0)
    points = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("member usage")
        verbose_name_plural = _("member usage")
        constraints = [
            models.UniqueConstraint(
                fields=["member", "campaign", "window"], name="campaigns_memberusage_unique"
            ),
            models.CheckConstraint(
                condition=Q(times__gte=0) & Q(points__gte=0),
                name="campaigns_memberusage_within_limits",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.window}: {self.times} / {self.points}"


class CampaignUse(models.Model):
    """A campaign's points on one purchase: reserved at commit, released by refunds."""

    class State(models.TextChoices):
        RESERVED = "reserved", _("reserved")
        CONFIRMED = "confirmed", _("confirmed")
        RELEASED = "released", _("released")

    campaign = models.ForeignKey(
        Campaign,
        verbose_name=_("campaign"),
        on_delete=models.PROTECT,
        related_name="uses",
        db_index=False,  # covered by campaigns_use_campaign
    )
    version = models.ForeignKey(
        CampaignVersion, verbose_name=_("version"), on_delete=models.PROTECT, related_name="+"
    )
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="+"
    )
    reference = models.CharField(_("purchase"), max_length=100)
    points = models.BigIntegerField(_("points"))
    released_points = models.BigIntegerField(_("points released"), default=0)
    # {slot: points} still taken from each budget slot, for giving them back.
    slots = models.JSONField(default=dict)
    window = models.CharField(max_length=12, blank=True)
    state = models.CharField(
        _("state"), max_length=10, choices=State.choices, default=State.RESERVED
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("campaign use")
        verbose_name_plural = _("campaign uses")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["reference", "campaign"], name="campaigns_campaignuse_unique_reference"
            ),
            models.CheckConstraint(
                condition=Q(released_points__gte=0) & Q(released_points__lte=F("points")),
                name="campaigns_campaignuse_release_within_points",
            ),
        ]
        indexes = [models.Index(fields=["campaign", "created_at"], name="campaigns_use_campaign")]

    def __str__(self) -> str:
        return f"{self.reference}: {self.points}"


class HoldoutMember(models.Model):
    """A member kept out of a campaign (its control group), recorded when first met."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("holdout member")
        verbose_name_plural = _("holdout members")
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member"], name="campaigns_holdout_unique")
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.member_id}"


class RulesState(models.Model):
    """A counter per program that moves whenever any campaign changes: the rule cache key."""

    program = models.OneToOneField(Program, on_delete=models.CASCADE, related_name="+")
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.program_id}: {self.version}"


class PromoCodeBatch(models.Model):
    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="code_batches"
    )
    prefix = models.CharField(_("prefix"), max_length=20, blank=True)
    count = models.PositiveIntegerField(_("codes"))
    personal = models.BooleanField(
        _("personal codes"),
        default=False,
        editable=False,
        help_text=_("One code for each member, usable by that member only."),
    )
    segment = models.ForeignKey(
        Segment,
        verbose_name=_("segment"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("batch of promo codes")
        verbose_name_plural = _("batches of promo codes")
        ordering = ["-created_at"]
        permissions = [("export_promocodebatch", _("Can export promo codes"))]

    def __str__(self) -> str:
        return f"{self.prefix or '—'} × {self.count}"


class PromoCode(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="codes"
    )
    batch = models.ForeignKey(
        PromoCodeBatch,
        verbose_name=_("batch"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="codes",
    )
    member = models.ForeignKey(
        Member,
        verbose_name=_("member"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        # Indexed by campaigns_promocode_member below: partial, shared codes have no member.
        db_index=False,
        help_text=_("A personal code: only this member may use it. Empty: anyone."),
    )
    code = models.CharField(_("code"), max_length=40)
    max_uses = models.PositiveIntegerField(
        _("uses in total"),
        null=True,
        blank=True,
        help_text=_("1 for a one-time code. Empty: any number of times."),
    )
    uses = models.PositiveIntegerField(_("used"), default=0, editable=False)
    per_member_limit = models.PositiveIntegerField(
        _("uses per member"), null=True, blank=True, default=1, help_text=_("Empty: no limit.")
    )
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("promo code")
        verbose_name_plural = _("promo codes")
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "code"], name="campaigns_promocode_unique_code"
            ),
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(uses__lte=F("max_uses")),
                name="campaigns_promocode_uses_within_max",
            ),
            models.UniqueConstraint(
                fields=["batch", "member"],
                condition=Q(member__isnull=False),
                name="campaigns_promocode_one_per_member_in_batch",
            ),
        ]
        indexes = [
            # A member's codes (the member pages) and "has a code of this campaign" (issuing).
            models.Index(
                fields=["member", "campaign"],
                condition=Q(member__isnull=False),
                name="campaigns_promocode_member",
            )
        ]

    def __str__(self) -> str:
        return self.code


class CodeUse(models.Model):
    class State(models.TextChoices):
        RESERVED = "reserved", _("reserved")
        USED = "used", _("used")
        RELEASED = "released", _("released")

    code = models.ForeignKey(
        PromoCode,
        verbose_name=_("promo code"),
        on_delete=models.CASCADE,
        related_name="code_uses",
        db_index=False,  # covered by campaigns_codeuse_member
    )
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="+"
    )
    reference = models.CharField(_("purchase"), max_length=100)
    state = models.CharField(
        _("state"), max_length=10, choices=State.choices, default=State.RESERVED
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("promo code use")
        verbose_name_plural = _("promo code uses")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["reference", "code"], name="campaigns_codeuse_unique_reference"
            )
        ]
        indexes = [models.Index(fields=["code", "member"], name="campaigns_codeuse_member")]

    def __str__(self) -> str:
        return f"{self.reference}: {self.state}"


class Channel(models.TextChoices):
    SMS = "sms", _("SMS")
    EMAIL = "email", _("e-mail")


class TriggerKind(models.TextChoices):
    WELCOME = "welcome", _("welcome bonus")
    BIRTHDAY = "birthday", _("birthday bonus")
    WINBACK = "winback", _("win-back bonus")
    EXPIRING = "expiring", _("points expiring reminder")
    TIER_UPGRADE = "tier_upgrade", _("tier upgrade congratulation")
    REFERRAL = "referral", _("referral bonus")


class Trigger(models.Model):
    """An automatic campaign run by beat: who gets what, and which message goes with it."""

    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.CASCADE, related_name="triggers"
    )
    kind = models.CharField(_("kind"), max_length=20, choices=TriggerKind.choices)
    is_active = models.BooleanField(_("on"), default=False)
    points = models.PositiveIntegerField(
        _("bonus points"), default=0, help_text=_("0: a message only.")
    )
    days = models.PositiveIntegerField(
        _("days"),
        default=0,
        help_text=_(
            "Birthday: days before the birthday; win-back: days without a purchase; "
            "expiring: days before the points expire."
        ),
    )
    expire_days = models.PositiveIntegerField(
        _("bonus expires after, days"),
        null=True,
        blank=True,
        help_text=_("A short expiry makes a win-back bonus urgent. Empty: the program's."),
    )
    referrer_points = models.PositiveIntegerField(
        _("referral: points to the member who invited"), default=0
    )
    max_referrals = models.PositiveIntegerField(
        _("referral: rewarded invitations per member"),
        default=10,
        help_text=_("Against abuse: invitations beyond this earn nothing."),
    )
    send_message = models.BooleanField(_("send a message"), default=True)

    class Meta:
        verbose_name = _("trigger")
        verbose_name_plural = _("triggers")
        constraints = [
            models.UniqueConstraint(fields=["program", "kind"], name="campaigns_trigger_unique")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.program})"


class TierSeen(models.Model):
    """The tier a member was last congratulated on, to find upgrades without pos telling us."""

    member = models.OneToOneField(Member, on_delete=models.CASCADE, related_name="+")
    tier = models.ForeignKey(Tier, on_delete=models.CASCADE, related_name="+")

    def __str__(self) -> str:
        return f"{self.member_id}: {self.tier_id}"


class ReferralCode(models.Model):
    member = models.OneToOneField(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="referral_code"
    )
    code = models.CharField(_("code"), max_length=20, unique=True)

    class Meta:
        verbose_name = _("referral code")
        verbose_name_plural = _("referral codes")

    def __str__(self) -> str:
        return self.code


class Referral(models.Model):
    referrer = models.ForeignKey(
        Member, verbose_name=_("invited by"), on_delete=models.CASCADE, related_name="+"
    )
    referred = models.OneToOneField(
        Member, verbose_name=_("new member"), on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    rewarded_at = models.DateTimeField(_("rewarded at"), null=True, blank=True)

    class Meta:
        verbose_name = _("referral")
        verbose_name_plural = _("referrals")
        constraints = [
            models.CheckConstraint(
                condition=~Q(referrer=F("referred")), name="campaigns_referral_not_self"
            )
        ]

    def __str__(self) -> str:
        return f"{self.referrer_id} → {self.referred_id}"


class MessageTemplate(models.Model):
    """A message text per kind, channel and language; {name}, {balance}, {points},
    {expiring_points}, {expiring_date}, {tier}, {code}, {optout_url} are filled in, and
    {balance_text}, {points_text}, {expiring_points_text}: the number with its word."""

    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(
        _("kind"),
        max_length=20,
        help_text=_("A trigger kind (welcome, birthday, …) or your own name for a mailing."),
    )
    channel = models.CharField(_("channel"), max_length=5, choices=Channel.choices)
    language = models.CharField(_("language"), max_length=2, choices=settings.LANGUAGES)
    subject = models.CharField(_("subject (e-mail)"), max_length=200, blank=True)
    body = models.TextField(_("text"))

    class Meta:
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        constraints = [
            models.UniqueConstraint(
                fields=["program", "kind", "channel", "language"],
                name="campaigns_messagetemplate_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} / {self.channel} / {self.language}"


class OutboxMessage(models.Model):
    """A message to a member: queued, then sent (or failed after retries, or skipped)."""

    class State(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        SKIPPED = "skipped", _("not sent")

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    member = models.ForeignKey(
        Member,
        verbose_name=_("member"),
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # covered by campaigns_outbox_member
    )
    channel = models.CharField(_("channel"), max_length=5, choices=Channel.choices)
    kind = models.CharField(_("kind"), max_length=20)
    reference = models.CharField(_("reference"), max_length=120, unique=True)
    to = models.CharField(_("to"), max_length=254)
    subject = models.CharField(_("subject"), max_length=200, blank=True)
    body = models.TextField(_("text"))
    state = models.CharField(_("state"), max_length=8, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    provider_answer = models.TextField(_("provider's answer"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("outbox")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(state="queued"),
                name="campaigns_outbox_due",
            ),
            models.Index(fields=["member", "created_at"], name="campaigns_outbox_member"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.to}"


class Backtest(models.Model):
    """A replay of a draft campaign over past receipts, run as a Celery job."""

    class State(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="backtests"
    )
    days = models.PositiveIntegerField(_("last days"), default=30)
    state = models.CharField(_("state"), max_length=8, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(_("progress, %"), default=0)
    result = models.JSONField(_("result"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("backtest")
        verbose_name_plural = _("backtests")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.campaign} ({self.days})"
