"""Input validation and the documented output shapes of the cashier API.

Input serializers reject what API.md does not allow (more than two places of
money, three of quantity, unknown fields, numbers too big to store) as 400
`invalid` with per-field messages. Output is built by `pos.api.presenters` as
plain dicts for speed; the output serializers here only document that shape
for the OpenAPI schema, and a test checks real responses against it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import validate_birth_date

MAX_POINTS = 10**12
# Named enums of the schema (SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
MEMBER_STATUSES = ["active", "blocked"]
PURCHASE_STATUSES = ["pending", "completed", "cancelled"]
MAX_LINES = 1000


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know: a typo must not silently change a receipt."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [_("Unknown field.")] for name in unknown[:20]}
                )
        return super().to_internal_value(data)


class MoneyField(serializers.DecimalField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", Decimal("0"))
        super().__init__(max_digits=14, decimal_places=2, **kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class QuantityField(serializers.DecimalField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=12, decimal_places=3, min_value=Decimal("0.001"), **kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class PointsField(serializers.IntegerField):
    """A whole number of points; refuses booleans and fractions (1.5)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_POINTS)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or (isinstance(data, float) and not data.is_integer()):
            self.fail("invalid")
        if isinstance(data, str) and len(data) > 20:
            self.fail("max_string_length")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "enum": ["max"]}],
        "description": 'Points to pay with, or "max" for the most this receipt allows.',
    }
)
class RedeemField(serializers.Field):
    default_error_messages = {"invalid": _('Enter a whole number of points or "max".')}

    def to_internal_value(self, data: Any) -> int | str:
        if data == "max":
            return "max"
        return PointsField().run_validation(data)

    def to_representation(self, value: Any) -> Any:
        return value


class MemberRefSerializer(StrictSerializer):
    card = serializers.CharField(required=False, max_length=40)
    phone = serializers.CharField(required=False, max_length=40)
    id = serializers.UUIDField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) != 1:
            raise serializers.ValidationError(_("Give exactly one of card, phone or id."))
        return attrs


class LineInputSerializer(StrictSerializer):
    sku = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    name = serializers.CharField(required=False, allow_blank=True, max_length=300, default="")
    category = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    quantity = QuantityField(required=False, default=Decimal("1"))
    price = MoneyField(required=False, allow_null=True, default=None)
    amount = MoneyField(
        required=False,
        allow_null=True,
        default=None,
        help_text="After the shop's own discounts; quantity × price (half up) when absent.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("amount") is None:
            if attrs.get("price") is None:
                raise serializers.ValidationError({"amount": [_("Give amount, or price.")]})
            amount = (attrs["quantity"] * attrs["price"]).quantize(Decimal("0.01"))
            if amount >= Decimal(10**12):
                raise serializers.ValidationError({"amount": [_("The amount is too large.")]})
        return attrs


class QuoteInputSerializer(StrictSerializer):
    member = MemberRefSerializer(required=False, allow_null=True, default=None)
    receipt_number = serializers.CharField(required=False, max_length=100, allow_blank=True)
    lines = LineInputSerializer(many=True, allow_empty=False, max_length=MAX_LINES)
    redeem_points = RedeemField(required=False, default=0)
    coupons = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list, max_length=20
    )


class PurchaseInputSerializer(QuoteInputSerializer):
    receipt_number = serializers.CharField(max_length=100)
    commit = serializers.BooleanField(required=False, default=True)


class RefundLineInputSerializer(StrictSerializer):
    line_no = serializers.IntegerField(min_value=1, max_value=MAX_LINES)
    quantity = QuantityField()


class RefundInputSerializer(StrictSerializer):
    refund_number = serializers.CharField(max_length=100)
    lines = RefundLineInputSerializer(
        many=True, required=False, allow_empty=False, max_length=MAX_LINES
    )


class ConsentsSerializer(StrictSerializer):
    personal_data = serializers.BooleanField()
    marketing_sms = serializers.BooleanField(required=False, default=False)
    marketing_email = serializers.BooleanField(required=False, default=False)


class MemberInputSerializer(StrictSerializer):
    phone = serializers.CharField(max_length=40)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    birth_date = serializers.DateField(
        required=False, allow_null=True, validators=[validate_birth_date]
    )
    card_number = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=40
    )
    consents = ConsentsSerializer()


# --- Output shapes (documentation; presenters build the dicts) -------------


class TierOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class BalanceOut(serializers.Serializer):
    available = serializers.IntegerField()
    pending = serializers.IntegerField()
    on_hold = serializers.IntegerField()


class ExpiryOut(serializers.Serializer):
    points = serializers.IntegerField()
    date = serializers.DateField()


class MemberSummaryOut(serializers.Serializer):
    id = serializers.UUIDField()
    card_number = serializers.CharField(allow_null=True)
    first_name = serializers.CharField()
    phone_masked = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=MEMBER_STATUSES)
    tier = TierOut(allow_null=True)
    balance = BalanceOut()
    next_expiry = ExpiryOut(allow_null=True)


class MemberCreatedConflictOut(serializers.Serializer):
    """A 409: `member_exists` names the member; `request_in_progress` and `lock_timeout` do not."""

    code = serializers.CharField()
    detail = serializers.CharField()
    id = serializers.UUIDField(required=False, help_text="With `member_exists`: the member's id.")


class TransactionOut(serializers.Serializer):
    id = serializers.CharField()
    created_at = serializers.DateTimeField()
    kind = serializers.ChoiceField(
        choices=[
            "accrual",
            "redemption",
            "refund_reversal",
            "refund_return",
            "expiry",
            "activation",
            "bonus",
            "adjustment",
            "hold",
            "hold_release",
        ]
    )
    points = serializers.IntegerField(help_text="Signed, as the member sees it.")
    description = serializers.CharField()
    receipt_number = serializers.CharField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class TransactionPageOut(serializers.Serializer):
    results = TransactionOut(many=True)
    next = serializers.URLField(allow_null=True)


class RedeemOut(serializers.Serializer):
    requested = serializers.IntegerField()
    applied = serializers.IntegerField()
    max_allowed = serializers.IntegerField()


class EarnPartOut(serializers.Serializer):
    source = serializers.ChoiceField(choices=["base", "tier", "campaign"])
    campaign_id = serializers.CharField(allow_null=True)
    points = serializers.IntegerField()


class EarnOut(serializers.Serializer):
    points = serializers.IntegerField()
    breakdown = EarnPartOut(many=True)


class LineOut(serializers.Serializer):
    line_no = serializers.IntegerField()
    sku = serializers.CharField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    redeemed_amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    earned_points = serializers.IntegerField()
    redeemed_points = serializers.IntegerField()


class CampaignOut(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class QuoteOut(serializers.Serializer):
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    payable = serializers.DecimalField(max_digits=14, decimal_places=2)
    redeem = RedeemOut()
    earn = EarnOut()
    lines = LineOut(many=True)
    campaigns = CampaignOut(many=True)
    messages = serializers.ListField(child=serializers.CharField())
    member = MemberSummaryOut(allow_null=True)


class RefundLineOut(serializers.Serializer):
    line_no = serializers.IntegerField()
    quantity = serializers.DecimalField(max_digits=12, decimal_places=3)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    points_reversed = serializers.IntegerField()
    points_returned = serializers.IntegerField()


class RefundOut(serializers.Serializer):
    id = serializers.UUIDField()
    refund_number = serializers.CharField()
    created_at = serializers.DateTimeField()
    lines = RefundLineOut(many=True)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    points_reversed = serializers.IntegerField()
    points_returned = serializers.IntegerField()
    shortfall_points = serializers.IntegerField()
    shortfall_amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    cash_refund = serializers.DecimalField(max_digits=14, decimal_places=2)
    balance_after = BalanceOut(allow_null=True)


class PurchaseOut(QuoteOut):
    id = serializers.UUIDField()
    receipt_number = serializers.CharField()
    status = serializers.ChoiceField(choices=PURCHASE_STATUSES)
    created_at = serializers.DateTimeField()
    hold_expires_at = serializers.DateTimeField(allow_null=True)
    balance_after = BalanceOut(allow_null=True)
    refunds = RefundOut(many=True)


class ErrorOut(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


class RedeemLimitOut(ErrorOut):
    """A 422: each code brings its own fields (a reused Idempotency-Key brings none)."""

    max_allowed = serializers.IntegerField(
        required=False, help_text="With `redeem_limit_exceeded`: the most points allowed."
    )
    coupon = serializers.CharField(
        required=False, allow_null=True, help_text="With `coupon_invalid`: the refused code."
    )
    reason = serializers.CharField(required=False, help_text="With `coupon_invalid`: why.")
    coupons = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="With `coupon_invalid`: every refused code and why.",
    )
    campaigns = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="With `coupon_invalid`: the campaigns whose codes ran out.",
    )


__all__ = ["OpenApiTypes"]
