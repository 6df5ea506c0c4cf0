"""Analytics read models: daily aggregates, monthly member activity, snapshots, CLV.

Everything here is derived from the other apps' tables by `analytics.services`
and can be rebuilt from them at any time (`manage.py analytics_rebuild`);
nothing else writes these tables and analytics never writes anyone else's.

Invariants:
- DailyStats.new_members of a day, store and tier = the MemberEnrolment rows with
  that day, store and tier (both are written together by analytics.services);
- analytics_dailystats_unique / analytics_dailypoints_unique /
  analytics_membermonth_unique / analytics_tiermoves_unique /
  analytics_periodmembers_unique / analytics_cohortcell_unique /
  analytics_tiersnapshot_unique / analytics_rfmcell_unique: one row per key, so a
  rebuild that runs twice (or concurrently, under the program lock) gives the
  same rows, not double counts;
- analytics_memberclv_p_alive_range: P(alive) lies in 0..1;
- analytics_clvmodel_positive: fitted parameters are positive (q > 1).
Campaigns are referred to by id without a foreign key on purpose: analytics
must never block the deletion of a draft campaign, and an aggregate of a
campaign outlives it.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Member
from programs.models import Program, Store, Tier


def _money(verbose_name: object) -> models.DecimalField:
    return models.DecimalField(verbose_name, max_digits=14, decimal_places=2, default=Decimal("0"))


class DailyStats(models.Model):
    """Receipts, revenue, refunds and enrolments per program, local day, store and tier.

    tier is the member's tier at the purchase (empty for anonymous receipts and
    members without a tier); enrolments carry the registration store and the
    member's tier when the day was aggregated.
    """

    program = models.ForeignKey(Program, verbose_name=_("program"), on_delete=models.CASCADE)
    day = models.DateField(_("day"))
    store = models.ForeignKey(
        Store, verbose_name=_("store"), on_delete=models.CASCADE, null=True, blank=True
    )
    tier = models.ForeignKey(
        Tier, verbose_name=_("tier"), on_delete=models.CASCADE, null=True, blank=True
    )
    receipts = models.PositiveIntegerField(_("receipts"), default=0)
    receipts_member = models.PositiveIntegerField(_("receipts with a member"), default=0)
    revenue = _money(_("revenue"))
    revenue_member = _money(_("revenue with a member"))
    refunds = models.PositiveIntegerField(_("refunds"), default=0)
    refund_amount = _money(_("refunded"))
    new_members = models.PositiveIntegerField(_("new members"), default=0)

    class Meta:
        verbose_name = _("daily figures")
        verbose_name_plural = _("daily figures")
        ordering = ["program", "-day"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "day", "store", "tier"],
                nulls_distinct=False,
                name="analytics_dailystats_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.program_id} {self.day}"


class DailyPoints(models.Model):
    """Points moved per program, local day and flow (issued by source, redeemed, ...)."""

    class Flow(models.TextChoices):
        ISSUED = "issued", _("issued")
        REDEEMED = "redeemed", _("redeemed")
        EXPIRED = "expired", _("expired")
        REVERSED = "reversed", _("taken back by refunds")

    program = models.ForeignKey(Program, verbose_name=_("program"), on_delete=models.CASCADE)
    day = models.DateField(_("day"))
    flow = models.CharField(_("flow"), max_length=10, choices=Flow.choices)
    # Funding source of issued points: base, campaign:<id>, adjustments, opening.
    source = models.CharField(_("source"), max_length=100, blank=True, default="")
    points = models.BigIntegerField(_("points"), default=0)

    class Meta:
        verbose_name = _("daily points")
        verbose_name_plural = _("daily points")
        ordering = ["program", "-day"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "day", "flow", "source"], name="analytics_dailypoints_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.flow} {self.source}: {self.points}"


class MemberEnrolment(models.Model):
    """Where a member is counted in DailyStats.new_members: registration day, store and tier.

    Kept by the nightly job (analytics.services._enrolments_sync): when a member
    changes (a new tier, an edited registration), it takes them out of the row
    this says and into the row they belong to now, reading only the members that
    changed instead of recounting every enrolment day they touch.
    """

    member = models.OneToOneField(
        Member, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(_("registration day"))
    store = models.ForeignKey(
        Store, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    tier = models.ForeignKey(
        Tier, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("member enrolment")
        verbose_name_plural = _("member enrolments")
        indexes = [models.Index(fields=["program", "day"], name="analytics_enrolment_day")]

    def __str__(self) -> str:
        return f"{self.member_id} {self.day}"


class MemberMonth(models.Model):
    """One member's purchases in one calendar month at one store (distinct-member counts)."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    month = models.DateField(_("month"))  # the first day of the month
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    tier = models.ForeignKey(
        Tier, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    cohort = models.DateField(_("enrolment month"))
    receipts = models.PositiveIntegerField(_("receipts"), default=0)
    spend = _money(_("spend net of refunds"))

    class Meta:
        verbose_name = _("member month")
        verbose_name_plural = _("member months")
        constraints = [
            models.UniqueConstraint(
                fields=["program", "month", "member", "store", "tier"],
                nulls_distinct=False,
                name="analytics_membermonth_unique",
            )
        ]
        indexes = [
            models.Index(fields=["program", "month", "member"], name="analytics_mm_month"),
            models.Index(fields=["member", "month"], name="analytics_mm_member"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.month:%Y-%m}"


class PeriodMembers(models.Model):
    """Distinct members of a period of `months` months ending with `month`, per store and tier.

    Precomputed from MemberMonth by the nightly job, so the dashboard never counts
    distinct members over raw rows: store or tier empty means "all". `ever` is the
    members who bought at any time up to the end of `month`, kept on the 3-month
    rows only (sleeping = ever minus active of that 3-month row).
    """

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    month = models.DateField(_("period ends with month"))
    months = models.PositiveSmallIntegerField(_("months in the period"))
    store = models.ForeignKey(
        Store, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    tier = models.ForeignKey(
        Tier, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    active = models.PositiveIntegerField(_("active members"), default=0)
    repeat = models.PositiveIntegerField(_("members with 2+ receipts"), default=0)
    previous_active = models.PositiveIntegerField(
        _("active members in the previous period"), default=0
    )
    churned = models.PositiveIntegerField(_("churned members"), default=0)
    ever = models.PositiveIntegerField(_("members who ever bought"), default=0)

    class Meta:
        verbose_name = _("members of a period")
        verbose_name_plural = _("members of periods")
        constraints = [
            models.UniqueConstraint(
                fields=["program", "month", "months", "store", "tier"],
                nulls_distinct=False,
                name="analytics_periodmembers_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} ({self.months})"


class CohortCell(models.Model):
    """Distinct members of one enrolment month who bought in one month, per store and tier."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    cohort = models.DateField(_("enrolment month"))
    month = models.DateField(_("month"))
    store = models.ForeignKey(
        Store, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    tier = models.ForeignKey(
        Tier, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    members = models.PositiveIntegerField(_("members"), default=0)

    class Meta:
        verbose_name = _("cohort cell")
        verbose_name_plural = _("cohort cells")
        constraints = [
            models.UniqueConstraint(
                fields=["program", "cohort", "month", "store", "tier"],
                nulls_distinct=False,
                name="analytics_cohortcell_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.cohort:%Y-%m} {self.month:%Y-%m}: {self.members}"


class TierMoves(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(_("day"))
    up = models.PositiveIntegerField(_("moved up"), default=0)
    down = models.PositiveIntegerField(_("moved down"), default=0)

    class Meta:
        verbose_name = _("tier moves")
        verbose_name_plural = _("tier moves")
        constraints = [
            models.UniqueConstraint(fields=["program", "day"], name="analytics_tiermoves_unique")
        ]

    def __str__(self) -> str:
        return f"{self.day}: +{self.up} -{self.down}"


class TierSnapshot(models.Model):
    """How many members held each tier at the end of a day (taken nightly)."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(_("day"))
    tier = models.ForeignKey(
        Tier, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    members = models.PositiveIntegerField(_("members"), default=0)

    class Meta:
        verbose_name = _("tier snapshot")
        verbose_name_plural = _("tier snapshots")
        constraints = [
            models.UniqueConstraint(
                fields=["program", "day", "tier"],
                nulls_distinct=False,
                name="analytics_tiersnapshot_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.tier_id}: {self.members}"


class PointsSnapshot(models.Model):
    """Points that will expire soon, as seen on one day (taken nightly from open lots)."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(_("day"))
    expiring_30 = models.BigIntegerField(_("expire within 30 days"), default=0)
    expiring_60 = models.BigIntegerField(_("expire within 60 days"), default=0)
    expiring_90 = models.BigIntegerField(_("expire within 90 days"), default=0)

    class Meta:
        verbose_name = _("points snapshot")
        verbose_name_plural = _("points snapshots")
        constraints = [
            models.UniqueConstraint(
                fields=["program", "day"], name="analytics_pointssnapshot_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.expiring_30}/{self.expiring_60}/{self.expiring_90}"


class RfmCell(models.Model):
    """Members by recency × frequency band on a day, with the money they spent."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(_("day"))
    recency = models.PositiveSmallIntegerField(_("recency band"))
    frequency = models.PositiveSmallIntegerField(_("frequency band"))
    members = models.PositiveIntegerField(_("members"), default=0)
    monetary = _money(_("spend in 12 months"))

    class Meta:
        verbose_name = _("RFM cell")
        verbose_name_plural = _("RFM cells")
        constraints = [
            models.UniqueConstraint(
                fields=["program", "day", "recency", "frequency"], name="analytics_rfmcell_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} R{self.recency}F{self.frequency}: {self.members}"


class CampaignStats(models.Model):
    """What a campaign cost and brought, and its uplift against the holdout group."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    campaign_id = models.BigIntegerField(_("campaign"), unique=True)
    name = models.CharField(pgettext_lazy("title of a thing", "name"), max_length=200)
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"), null=True, blank=True)
    cost_points = models.BigIntegerField(_("cost, points"), default=0)
    cost = _money(_("cost, money"))
    reached = models.PositiveIntegerField(_("members reached"), default=0)
    receipts = models.PositiveIntegerField(_("receipts of participants"), default=0)
    revenue = _money(_("revenue of participants"))
    holdout_members = models.PositiveIntegerField(_("holdout members"), default=0)
    treated_mean = models.FloatField(_("revenue per reached member"), null=True)
    holdout_mean = models.FloatField(_("revenue per holdout member"), null=True)
    uplift = models.FloatField(_("uplift per member"), null=True)
    uplift_low = models.FloatField(_("uplift, lower bound"), null=True)
    uplift_high = models.FloatField(_("uplift, upper bound"), null=True)
    computed_at = models.DateTimeField(_("computed at"), default=timezone.now)

    class Meta:
        verbose_name = _("campaign result")
        verbose_name_plural = _("campaign results")
        ordering = ["program", "-uplift"]

    def __str__(self) -> str:
        return self.name


class Watermark(models.Model):
    """Up to when the nightly job has looked at purchases, refunds and transfers."""

    program = models.OneToOneField(Program, on_delete=models.CASCADE, related_name="+")
    seen_until = models.DateTimeField()
    # Insert-only tables with growing bigint ids are followed by id, so the job
    # reads only rows past these through the primary key ({"transfer": id, ...}).
    seen_ids = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("aggregation watermark")
        verbose_name_plural = _("aggregation watermarks")

    def __str__(self) -> str:
        return f"{self.program_id}: {self.seen_until}"


class ClvModel(models.Model):
    """One fit of BG/NBD + Gamma-Gamma for a program; the newest is the one in use."""

    program = models.ForeignKey(
        Program, verbose_name=_("program"), on_delete=models.CASCADE, related_name="+"
    )
    until = models.DateField(_("data up to"))
    fitted_at = models.DateTimeField(_("fitted at"), default=timezone.now)
    members = models.PositiveIntegerField(_("members"))
    repeat_members = models.PositiveIntegerField(_("members with repeat purchases"))
    r = models.FloatField("r")
    alpha = models.FloatField("alpha")
    a = models.FloatField("a")
    b = models.FloatField("b")
    log_likelihood = models.FloatField(_("BG/NBD log-likelihood"))
    p = models.FloatField("p")
    q = models.FloatField("q")
    gamma = models.FloatField("gamma")
    seconds = models.FloatField(_("fit time, s"), default=0)
    # Totals over the members' predictions, taken when they are stored, so the
    # dashboard does not sum a million rows per request. Null on fits stored
    # before these existed.
    predicted_value = models.DecimalField(
        _("predicted 12-month value"), max_digits=14, decimal_places=2, null=True
    )
    at_risk_members = models.PositiveIntegerField(_("members probably lost"), null=True)
    value_at_risk = models.DecimalField(
        _("value at risk"), max_digits=14, decimal_places=2, null=True
    )

    class Meta:
        verbose_name = _("CLV model")
        verbose_name_plural = _("CLV models")
        ordering = ["program", "-fitted_at"]
        get_latest_by = "fitted_at"
        permissions = [
            ("view_dashboard", _("Can view the analytics dashboard")),
            ("export_reports", _("Can export analytics reports")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(r__gt=0, alpha__gt=0, a__gt=0, b__gt=0, p__gt=0, q__gt=1, gamma__gt=0),
                name="analytics_clvmodel_positive",
            )
        ]

    def __str__(self) -> str:
        return f"{self.program_id} {self.until}"


class MemberClv(models.Model):
    """A member's lifetime value under the program's newest CLV model."""

    member = models.OneToOneField(
        Member, on_delete=models.CASCADE, primary_key=True, related_name="clv"
    )
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(ClvModel, on_delete=models.CASCADE, related_name="+")
    x = models.PositiveIntegerField(_("repeat purchases"))
    t_x = models.FloatField(_("weeks to the last purchase"))
    T = models.FloatField(_("weeks observed"))
    monetary = _money(_("mean repeat spend"))
    spend_12m = _money(_("spend in the last 12 months"))
    expected_purchases = models.FloatField(_("expected purchases, 12 months"))
    p_alive = models.FloatField(_("P(alive)"))
    expected_spend = _money(_("expected spend per purchase"))
    value = _money(_("predicted 12-month value"))

    class Meta:
        verbose_name = _("member lifetime value")
        verbose_name_plural = _("member lifetime values")
        constraints = [
            models.CheckConstraint(
                condition=Q(p_alive__gte=0, p_alive__lte=1),
                name="analytics_memberclv_p_alive_range",
            )
        ]
        indexes = [
            models.Index(fields=["program", "p_alive"], name="analytics_clv_p_alive"),
            models.Index(fields=["program", "-value"], name="analytics_clv_value"),
        ]

    def __str__(self) -> str:
        return str(self.member_id)
