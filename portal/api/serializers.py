"""Input and output shapes of /api/v1/me/ (they also make its OpenAPI schema)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from pos.api.serializers import BalanceOut, ExpiryOut, MemberSummaryOut, StrictSerializer

# The points history has the cashier API's shape: one reading of "points as the member sees it".
from pos.api.serializers import TransactionPageOut as MeHistoryPageOut  # noqa: F401


class MeCodeRequestIn(StrictSerializer):
    phone = serializers.CharField(max_length=40)
    program = serializers.CharField(
        max_length=50, required=False, help_text=_("Program code; optional with one program.")
    )


class MeCodeRequestOut(serializers.Serializer):
    detail = serializers.CharField()
    expires_in = serializers.IntegerField(help_text=_("Seconds the code is valid."))
    resend_after = serializers.IntegerField(help_text=_("Seconds before a new code may be asked."))


class MeTokenIn(StrictSerializer):
    phone = serializers.CharField(max_length=40)
    code = serializers.CharField(max_length=12)
    program = serializers.CharField(max_length=50, required=False)


class MeRefreshIn(StrictSerializer):
    refresh_token = serializers.CharField(max_length=200)


class MeTokenOut(serializers.Serializer):
    token_type = serializers.CharField(default="Bearer")
    access_token = serializers.CharField()
    expires_in = serializers.IntegerField(source="access_expires_in")
    refresh_token = serializers.CharField()
    refresh_expires_in = serializers.IntegerField()


class MeOut(MemberSummaryOut):
    pass


class MeDatedPointsOut(serializers.Serializer):
    date = serializers.DateField()
    points = serializers.IntegerField()


class MePointsOut(serializers.Serializer):
    balance = BalanceOut()
    next_expiry = ExpiryOut(allow_null=True)
    expiring = MeDatedPointsOut(many=True, help_text=_("Points that burn, per day, soonest first."))
    pending = MeDatedPointsOut(
        many=True, help_text=_("Earned points that become spendable, per day.")
    )


class MeTierRefOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    threshold = serializers.DecimalField(max_digits=14, decimal_places=2)
    accrual_percent = serializers.DecimalField(max_digits=5, decimal_places=2)


class MeTierProgressOut(serializers.Serializer):
    current = MeTierRefOut(allow_null=True)
    next = MeTierRefOut(allow_null=True)
    qualifying_spend = serializers.DecimalField(max_digits=14, decimal_places=2)
    spend_to_next = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    window_days = serializers.IntegerField(allow_null=True)
    keep_days = serializers.IntegerField()
    leaving_window = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        help_text=_("Spend that stops counting within keep_days."),
    )
    spend_to_keep = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        help_text=_("What to buy within keep_days to keep the current tier."),
    )


class MeRefundOut(serializers.Serializer):
    id = serializers.UUIDField()
    refund_number = serializers.CharField()
    created_at = serializers.DateTimeField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    points_reversed = serializers.IntegerField()
    points_returned = serializers.IntegerField()


class MePurchaseLineOut(serializers.Serializer):
    line_no = serializers.IntegerField()
    sku = serializers.CharField()
    name = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=12, decimal_places=3)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    earned_points = serializers.IntegerField()
    redeemed_points = serializers.IntegerField()


class MePurchaseOut(serializers.Serializer):
    id = serializers.UUIDField()
    receipt_number = serializers.CharField()
    status = serializers.CharField()
    purchased_at = serializers.DateTimeField()
    store = serializers.CharField(source="store.name")
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    payable = serializers.DecimalField(max_digits=14, decimal_places=2)
    redeemed_amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    earned_points = serializers.IntegerField()
    redeemed_points = serializers.IntegerField()
    refunded_amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    refunds = MeRefundOut(many=True, source="refunds.all")


class MePurchaseDetailOut(MePurchaseOut):
    lines = MePurchaseLineOut(many=True, source="lines.all")


class MePurchasePageOut(serializers.Serializer):
    results = MePurchaseOut(many=True)
    next = serializers.URLField(allow_null=True)


class MeOfferOut(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    ends_at = serializers.DateTimeField(allow_null=True)
    benefits = serializers.ListField(child=serializers.CharField())
    code = serializers.CharField(allow_null=True, help_text=_("The member's promo code for it."))


class MePromoCodeOut(serializers.Serializer):
    code = serializers.CharField(help_text=_("The member's personal code: only they can use it."))
    campaign_id = serializers.CharField()
    campaign = serializers.CharField(help_text=_("The campaign's name."))
    valid_from = serializers.DateTimeField(allow_null=True)
    valid_until = serializers.DateTimeField(
        allow_null=True, help_text=_("The code's or its campaign's end, whichever is first.")
    )


class MeOffersOut(serializers.Serializer):
    offers = MeOfferOut(many=True)
    promo_codes = MePromoCodeOut(many=True)


class MeCardOut(serializers.Serializer):
    number = serializers.CharField(allow_null=True)
    symbology = serializers.ChoiceField(choices=["ean13", "code128"], allow_null=True)
    barcode_svg = serializers.CharField(allow_null=True)
    qr_svg = serializers.CharField(allow_null=True)
    referral_code = serializers.CharField(allow_null=True)


class MeConsentsOut(serializers.Serializer):
    personal_data = serializers.BooleanField(read_only=True)
    marketing_sms = serializers.BooleanField()
    marketing_email = serializers.BooleanField()
    third_party = serializers.BooleanField()


class MeConsentsIn(StrictSerializer):
    marketing_sms = serializers.BooleanField(required=False)
    marketing_email = serializers.BooleanField(required=False)
    third_party = serializers.BooleanField(required=False)


class MeDeletionIn(StrictSerializer):
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class MeDeletionOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
