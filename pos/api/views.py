"""The cashier API of API.md: one view per operation, thin; the work is in pos.services."""

from __future__ import annotations

import base64
import datetime
from typing import Any
from urllib.parse import urlencode

from django.db import transaction
from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.request import Request

from accounts import services as accounts_services
from accounts.models import Channel
from pos import errors, services
from pos.api import presenters
from pos.api import schema as _schema  # noqa: F401  (registers the auth scheme)
from pos.api import serializers as s
from pos.api.base import TerminalView, json_response, validated
from pos.api.receipt_input import receipt_parse
from pos.models import Refund
from pos.selectors import member_history, member_state

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="1–255 characters, unique per change; a retry with the same key and body "
    "replays the first answer (with `Idempotent-Replayed: true`).",
)


def _errors(*codes: tuple[int, str]) -> dict[int, OpenApiResponse]:
    out: dict[int, OpenApiResponse] = {
        400: OpenApiResponse(s.ErrorOut, description="`invalid`: malformed or invalid input."),
        401: OpenApiResponse(s.ErrorOut, description="Missing or unknown terminal key."),
        403: OpenApiResponse(s.ErrorOut, description="`terminal_blocked`."),
        429: OpenApiResponse(s.ErrorOut, description="`throttled`, with Retry-After."),
        503: OpenApiResponse(
            s.ErrorOut,
            description="`service_unavailable`: the database is unreachable for a moment; "
            "retry (with the same Idempotency-Key) after Retry-After.",
        ),
    }
    for status, text in codes:
        out[status] = OpenApiResponse(s.ErrorOut, description=text)
    return out


MEMBER_EXAMPLE = {
    "id": "6f1c2d4e-3b7a-4c8e-9d2f-1a2b3c4d5e6f",
    "card_number": "2000000000017",
    "first_name": "Anna",
    "phone_masked": "+7 *** ***-45-67",
    "status": "active",
    "tier": {"code": "silver", "name": "Silver"},
    "balance": {"available": 340, "pending": 25, "on_hold": 0},
    "next_expiry": {"points": 120, "date": "2027-01-31"},
}

PURCHASE_INPUT_EXAMPLE = {
    "member": {"card": "2000000000017"},
    "receipt_number": "R-000123",
    "lines": [
        {
            "sku": "A1",
            "name": "Milk",
            "category": "dairy",
            "quantity": "2",
            "price": "80.00",
            "amount": "160.00",
        }
    ],
    "redeem_points": 40,
}

QUOTE_EXAMPLE = {
    "total": "160.00",
    "payable": "120.00",
    "redeem": {"requested": 40, "applied": 40, "max_allowed": 48},
    "earn": {"points": 6, "breakdown": [{"source": "base", "campaign_id": None, "points": 6}]},
    "lines": [
        {
            "line_no": 1,
            "sku": "A1",
            "amount": "160.00",
            "redeemed_amount": "40.00",
            "earned_points": 6,
            "redeemed_points": 40,
        }
    ],
    "campaigns": [],
    "messages": [],
    "member": MEMBER_EXAMPLE,
}


def _member_ref_from_query(request: Request) -> dict[str, str]:
    card = request.query_params.get("card")
    phone = request.query_params.get("phone")
    if bool(card) == bool(phone):
        raise errors.InvalidInput({"card": [_("Give exactly one of card or phone.")]})
    name, value = ("card" if card else "phone"), card or phone or ""
    if len(value) > 40:
        raise errors.InvalidInput({name: [_("Too long.")]})
    if "\x00" in value:  # PostgreSQL's text cannot hold it
        raise errors.InvalidInput({name: [_("Null characters are not allowed.")]})
    return {name: value}


class MemberLookupView(TerminalView):
    @extend_schema(
        operation_id="members_lookup",
        summary="Find a member by card or phone",
        parameters=[
            OpenApiParameter("card", str, description="Card number (scanned or typed)."),
            OpenApiParameter(
                "phone", str, description="Any common local form; normalised to E.164."
            ),
        ],
        responses={
            200: OpenApiResponse(
                s.MemberSummaryOut,
                examples=[OpenApiExample("member", MEMBER_EXAMPLE)],
            ),
            **_errors((404, "`member_not_found`.")),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        program = self.terminal.program
        member = member_state(program, **_member_ref_from_query(request), with_expiry=True)
        if member is None:
            raise errors.MemberNotFound()
        body = presenters.member_summary(program, member, member.next_expiry)
        return json_response(200, presenters.render(body))


class MemberDetailView(TerminalView):
    @extend_schema(
        operation_id="members_get",
        summary="A member's summary",
        responses={200: s.MemberSummaryOut, **_errors((404, "`not_found`."))},
    )
    def get(self, request: Request, member_id: str) -> HttpResponse:
        program = self.terminal.program
        member = member_state(program, member_id=member_id, with_expiry=True)
        if member is None:
            raise errors.NotFound()
        body = presenters.member_summary(program, member, member.next_expiry)
        return json_response(200, presenters.render(body))


class MemberCreateView(TerminalView):
    @extend_schema(
        operation_id="members_create",
        summary="Enrol a member at the till",
        request=s.MemberInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[
            OpenApiExample(
                "enrol",
                {
                    "phone": "8 (912) 345-67-89",
                    "first_name": "Anna",
                    "consents": {
                        "personal_data": True,
                        "marketing_sms": True,
                        "marketing_email": False,
                    },
                },
                request_only=True,
            )
        ],
        responses={
            201: s.MemberSummaryOut,
            409: OpenApiResponse(
                s.MemberCreatedConflictOut, description="`member_exists`, with its `id`."
            ),
            **_errors((422, "`consent_required`.")),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        data = self.body(request)
        payload = validated(s.MemberInputSerializer, data)
        terminal = self.terminal

        def work() -> tuple[int, bytes]:
            try:
                member = accounts_services.member_enroll(
                    program=_program_model(terminal.program_id),
                    phone=payload["phone"],
                    first_name=payload.get("first_name", ""),
                    last_name=payload.get("last_name", ""),
                    email=payload.get("email", ""),
                    birth_date=payload.get("birth_date"),
                    card_number=payload.get("card_number") or None,
                    store=_store_model(terminal.store_id),
                    channel=Channel.TILL,
                    consents=dict(payload["consents"]),
                )
            except accounts_services.InvalidPhone as exc:
                raise errors.InvalidInput({"phone": [str(exc)]}) from None
            except accounts_services.InvalidCardNumber as exc:
                raise errors.InvalidInput({"card_number": [str(exc)]}) from None
            except accounts_services.CardTaken as exc:
                raise errors.InvalidInput({"card_number": [str(exc)]}) from None
            except accounts_services.ConsentRequired as exc:
                raise errors.ConsentRequired(str(exc)) from None
            except accounts_services.MemberExists as exc:
                raise errors.MemberExists(id=str(exc.member.pk)) from None
            state = member_state(terminal.program, member_id=member.pk)
            body = presenters.member_summary(terminal.program, state, None)  # type: ignore[arg-type]
            return 201, presenters.render(body)

        return self.idempotent(request, data, work)


def _program_model(program_id: int) -> Any:
    from programs.models import Program

    return Program.objects.get(pk=program_id)


def _store_model(store_id: int) -> Any:
    from programs.models import Store

    return Store.objects.get(pk=store_id)


def _cursor_encode(created_at: datetime.datetime, transfer_id: int) -> str:
    raw = f"{created_at.isoformat()}|{transfer_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str) -> tuple[datetime.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, transfer_id = raw.split("|")
        when = datetime.datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, int(transfer_id)
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidInput({"cursor": [_("Invalid cursor.")]}) from None


HISTORY_DESCRIPTIONS = {
    "accrual": _("Points earned"),
    "redemption": _("Points spent"),
    "refund_reversal": _("Points taken back for a refund"),
    "refund_return": _("Points returned for a refund"),
    "expiry": _("Points expired"),
    "activation": _("Points became spendable"),
    "bonus": _("Bonus points"),
    "adjustment": _("Points adjusted"),
    "hold": _("Points reserved"),
    "hold_release": _("Reserved points released"),
}


class MemberTransactionsView(TerminalView):
    @extend_schema(
        operation_id="members_transactions",
        summary="A member's points history, newest first",
        description="`points` is the change of the member's points (available plus pending): "
        "a hold shows as spent, its release as returned, its posting as 0; an activation "
        "moves points from pending to available and shows as 0.",
        parameters=[
            OpenApiParameter("cursor", str, description="From `next` of the previous page."),
            OpenApiParameter("limit", int, description="1–100, default 20."),
        ],
        responses={200: s.TransactionPageOut, **_errors((404, "`not_found`."))},
    )
    def get(self, request: Request, member_id: str) -> HttpResponse:
        program = self.terminal.program
        member = member_state(program, member_id=member_id)
        if member is None:
            raise errors.NotFound()
        raw_limit = request.query_params.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            raise errors.InvalidInput({"limit": [_("Use a whole number from 1 to 100.")]})
        limit = int(raw_limit)
        cursor = request.query_params.get("cursor")
        before = _cursor_decode(cursor) if cursor else None
        items = member_history(
            program_id=program.id, account_id=member.account_id, before=before, limit=limit + 1
        )
        more = len(items) > limit
        items = items[:limit]
        kinds = {"opening": "adjustment"}
        results = [
            {
                "id": str(x.id),
                "created_at": presenters._iso(x.created_at),
                "kind": kinds.get(x.kind, x.kind),
                "points": x.points,
                "description": x.description
                or str(HISTORY_DESCRIPTIONS.get(kinds.get(x.kind, x.kind), x.kind)),
                "receipt_number": x.receipt_number,
                "expires_at": presenters._iso(x.expires_at),
            }
            for x in items
        ]
        next_url = None
        if more:
            query = urlencode(
                {"cursor": _cursor_encode(items[-1].created_at, items[-1].id), "limit": limit}
            )
            next_url = request.build_absolute_uri(f"{request.path}?{query}")
        return json_response(200, presenters.render({"results": results, "next": next_url}))


class QuoteView(TerminalView):
    @extend_schema(
        operation_id="purchases_quote",
        summary="What a receipt would redeem and earn (changes nothing)",
        request=s.QuoteInputSerializer,
        examples=[OpenApiExample("receipt", PURCHASE_INPUT_EXAMPLE, request_only=True)],
        responses={
            200: OpenApiResponse(s.QuoteOut, examples=[OpenApiExample("quote", QUOTE_EXAMPLE)]),
            404: OpenApiResponse(s.ErrorOut, description="`member_not_found`."),
            422: OpenApiResponse(
                s.RedeemLimitOut,
                description="`redeem_limit_exceeded` (with `max_allowed`), `coupon_invalid` "
                "(with `coupon` and `reason`), `member_blocked`.",
            ),
            **{k: v for k, v in _errors().items() if k != 422},
        },
    )
    def post(self, request: Request) -> HttpResponse:
        data = receipt_parse(self.body(request), purchase=False)
        outcome = services.purchase_quote(terminal=self.terminal, data=data)
        body = presenters.quote_body(self.terminal.program, outcome)
        return json_response(200, presenters.render(body))


class PurchaseCreateView(TerminalView):
    @extend_schema(
        operation_id="purchases_create",
        summary="Take a purchase (commit now, or hold with commit=false)",
        request=s.PurchaseInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[OpenApiExample("receipt", PURCHASE_INPUT_EXAMPLE, request_only=True)],
        responses={
            201: s.PurchaseOut,
            404: OpenApiResponse(s.ErrorOut, description="`member_not_found`."),
            409: OpenApiResponse(
                s.ErrorOut,
                description="`duplicate_receipt`, `request_in_progress` or `lock_timeout` "
                "(with Retry-After).",
            ),
            422: OpenApiResponse(
                s.RedeemLimitOut,
                description="`redeem_limit_exceeded` (with `max_allowed`), `coupon_invalid`, "
                "`idempotency_key_reused`, `member_blocked`.",
            ),
            **{k: v for k, v in _errors().items() if k != 422},
        },
    )
    def post(self, request: Request) -> HttpResponse:
        raw = self.body(request)
        data = receipt_parse(raw, purchase=True)
        terminal = self.terminal

        def work() -> tuple[int, bytes]:
            outcome = services.purchase_create(terminal=terminal, data=data)
            return 201, presenters.render(presenters.purchase_body(terminal.program, outcome))

        return self.idempotent(request, raw, work)


class PurchaseDetailView(TerminalView):
    @extend_schema(
        operation_id="purchases_get",
        summary="A purchase with its refunds",
        responses={200: s.PurchaseOut, **_errors((404, "`not_found`."))},
    )
    def get(self, request: Request, purchase_id: str) -> HttpResponse:
        outcome = services.purchase_get(terminal=self.terminal, purchase_id=purchase_id)
        body = presenters.purchase_body(self.terminal.program, outcome)
        return json_response(200, presenters.render(body))


class _PendingActionView(TerminalView):
    operation: Any = None  # not `action`: drf-spectacular reads that as the DRF action name

    def post(self, request: Request, purchase_id: str) -> HttpResponse:
        raw = request.data or {}
        if not isinstance(raw, dict) or raw:
            raise errors.InvalidInput({"non_field_errors": [_("Send an empty JSON object.")]})
        terminal = self.terminal
        operation = type(self).operation

        def work() -> tuple[int, bytes]:
            outcome = operation(terminal=terminal, purchase_id=purchase_id)
            return 200, presenters.render(presenters.purchase_body(terminal.program, outcome))

        return self.idempotent(request, {}, work)


_PENDING_RESPONSES = {
    200: s.PurchaseOut,
    404: OpenApiResponse(s.ErrorOut, description="`not_found`."),
    409: OpenApiResponse(
        s.ErrorOut, description="`purchase_not_pending`, `request_in_progress`, `lock_timeout`."
    ),
    **_errors((422, "`idempotency_key_reused`: the key was sent before for another request.")),
}


class PurchaseConfirmView(_PendingActionView):
    operation = staticmethod(services.purchase_confirm)

    @extend_schema(
        operation_id="purchases_confirm",
        summary="Confirm a pending purchase: held points are spent, earned ones credited",
        request=None,
        parameters=[IDEMPOTENCY_HEADER],
        responses=_PENDING_RESPONSES,
    )
    def post(self, request: Request, purchase_id: str) -> HttpResponse:
        return super().post(request, purchase_id)


class PurchaseCancelView(_PendingActionView):
    operation = staticmethod(services.purchase_cancel)

    @extend_schema(
        operation_id="purchases_cancel",
        summary="Cancel a pending purchase: the hold is released",
        request=None,
        parameters=[IDEMPOTENCY_HEADER],
        responses=_PENDING_RESPONSES,
    )
    def post(self, request: Request, purchase_id: str) -> HttpResponse:
        return super().post(request, purchase_id)


class RefundCreateView(TerminalView):
    @extend_schema(
        operation_id="refunds_create",
        summary="Refund lines of a purchase (or all that is left of it)",
        request=s.RefundInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[
            OpenApiExample(
                "one of two",
                {"refund_number": "RF-1", "lines": [{"line_no": 1, "quantity": "1"}]},
                request_only=True,
            )
        ],
        responses={
            201: s.RefundOut,
            404: OpenApiResponse(s.ErrorOut, description="`not_found`."),
            409: OpenApiResponse(
                s.ErrorOut,
                description="`duplicate_refund`, `purchase_not_completed`, "
                "`request_in_progress`, `lock_timeout`.",
            ),
            422: OpenApiResponse(
                s.ErrorOut, description="`refund_exceeds_purchase`, `idempotency_key_reused`."
            ),
            **{k: v for k, v in _errors().items() if k != 422},
        },
    )
    def post(self, request: Request, purchase_id: str) -> HttpResponse:
        raw = self.body(request)
        payload = validated(s.RefundInputSerializer, raw)
        terminal = self.terminal

        def work() -> tuple[int, bytes]:
            outcome = services.refund_create(
                terminal=terminal,
                purchase_id=purchase_id,
                refund_number=payload["refund_number"],
                lines=[dict(x) for x in payload["lines"]] if "lines" in payload else None,
            )
            balance = outcome.member.balance if outcome.member else None
            return 201, presenters.render(
                presenters.refund_body(outcome.refund, outcome.lines, balance)
            )

        return self.idempotent(request, raw, work)


__all__ = ["Refund", "transaction"]
