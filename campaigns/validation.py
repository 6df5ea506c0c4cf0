"""Can a campaign work as set? Problems in a marketer's words, per form field.

One function used by the model's clean(), the admin form and the services that
schedule or activate a campaign, so the same campaign is refused the same way
wherever it comes from.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _

if TYPE_CHECKING:
    from campaigns.models import Campaign

NON_FIELD = "__all__"


def _has_effect(c: Campaign) -> bool:
    return bool(c.extra_percent or c.multiplier or c.fixed_points or c.unit_points)


def _has_receipt_condition(c: Campaign) -> bool:
    """A condition that stops a fixed bonus from being collected on any tiny receipt."""
    return bool(
        c.min_total
        or c.line_categories
        or c.line_skus
        or c.first_purchase
        or c.every_nth
        or c.birthday_days is not None
        or c.requires_code
        or c.limit_times
        or c.limit_points
    )


def campaign_errors(
    c: Campaign,
    *,
    tier_ids: Collection[int] | None = None,
    segment_ids: Collection[int] | None = None,
    code_count: int | None = None,
) -> dict[str, list[str]]:
    """{field: [problem, …]} for everything that stops the campaign from working as set.

    `tier_ids`/`segment_ids` are the chosen audience (the admin form knows them
    before they are saved); `code_count` the number of its promo codes, checked
    when the campaign is about to run (a draft may get its codes later).
    """
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if c.starts_at and c.ends_at and c.ends_at <= c.starts_at:
        add("ends_at", _("The campaign ends before it starts: move the end after the start."))
    if not _has_effect(c):
        add(
            NON_FIELD,
            _(
                "The campaign gives nothing: set extra earning, a multiplier, bonus points "
                "per receipt or points per unit."
            ),
        )
    if c.fixed_points and not _has_receipt_condition(c):
        add(
            "fixed_points",
            _(
                "A bonus per receipt without a condition would be paid for any receipt, even "
                "the smallest: add a minimum receipt total, products, a promo code, first or "
                "Nth purchase, birthday, or a limit per member."
            ),
        )
    if c.unit_points and not c.unit_skus:
        add("unit_skus", _("Points per unit need the SKUs they are paid for."))
    if c.unit_skus and not c.unit_points:
        add("unit_points", _("Say how many points each unit of these SKUs earns."))
    if (c.line_min_quantity or c.line_min_amount) and not (c.line_categories or c.line_skus):
        add(
            "line_categories",
            _("A minimum quantity or amount needs the categories or SKUs it counts."),
        )
    if (c.hour_from is None) != (c.hour_to is None):
        add("hour_to", _("Give both hours, from and to, or neither."))
    elif c.hour_from is not None and c.hour_from == c.hour_to:
        add("hour_to", _("The hours are the same: the campaign would never run."))
    if c.first_purchase and c.every_nth:
        add("every_nth", _("A first purchase is never an Nth one: choose one of them."))
    if c.budget_points and c.fixed_points and c.budget_points < c.fixed_points:
        add(
            "budget_points",
            _(
                "The budget (%(budget)d points) is smaller than the bonus of one receipt "
                "(%(bonus)d points): no receipt could ever get it."
            )
            % {"budget": c.budget_points, "bonus": c.fixed_points},
        )
    if c.limit_points and c.fixed_points and c.limit_points < c.fixed_points:
        add(
            "limit_points",
            _("The limit per member is smaller than the bonus of one receipt."),
        )
    if c.audience == "tiers" and tier_ids is not None and not tier_ids:
        add("tiers", _("Choose the tiers this campaign is for."))
    if c.audience == "segments" and segment_ids is not None and not segment_ids:
        add("segments", _("Choose the segments this campaign is for."))
    if c.audience == "new" and not c.new_member_days:
        add("new_member_days", _("Say how many days after enrolment a member counts as new."))
    if c.requires_code and code_count is not None and code_count == 0:
        add(
            "requires_code",
            _("The campaign needs a promo code but has none: add a code or a batch of codes."),
        )
    return errors
