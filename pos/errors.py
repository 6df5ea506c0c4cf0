"""Errors of the cashier API: one JSON shape, `{"code", "detail", "errors"?, ...}`.

Services raise `ApiError` subclasses (or plain domain exceptions that the views
translate); `exception_handler` turns those and everything DRF raises into the
shape of API.md, so no client input ever ends in a 500.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, pgettext_lazy
from rest_framework import exceptions, status
from rest_framework.response import Response

from loyalty_site.db import lock_conflict


class ApiError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"
    default_detail: Any = _("Invalid input.")

    def __init__(
        self,
        detail: Any = None,
        *,
        retry_after: int | None = None,
        **extra: Any,
    ) -> None:
        self.detail = str(detail if detail is not None else self.default_detail)
        self.extra = extra
        self.retry_after = retry_after
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.detail, **self.extra}


class InvalidInput(ApiError):
    def __init__(self, errors: dict[str, list[str]], detail: Any = None) -> None:
        super().__init__(detail or _("The request has invalid fields."), errors=errors)


class IdempotencyKeyRequired(ApiError):
    code = "idempotency_key_required"
    default_detail = _("This request changes data: send an Idempotency-Key header.")


class NotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    # Its own context: DRF's catalog, read first, calls it "Страница не найдена."
    default_detail = pgettext_lazy("api", "Not found.")


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_detail = _("No member with this card, phone or id.")


class TerminalBlocked(ApiError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "terminal_blocked"
    default_detail = _("This terminal is blocked.")


class Conflict(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class MemberExists(Conflict):
    code = "member_exists"
    default_detail = _("A member with this phone already exists.")


class DuplicateReceipt(Conflict):
    code = "duplicate_receipt"
    default_detail = _("A purchase with this receipt number was already sent by this terminal.")


class DuplicateRefund(Conflict):
    code = "duplicate_refund"
    default_detail = _("This purchase already has a refund with this number.")


class PurchaseNotPending(Conflict):
    code = "purchase_not_pending"
    default_detail = _("The purchase is not pending.")


class PurchaseNotCompleted(Conflict):
    code = "purchase_not_completed"
    default_detail = _("Only a completed purchase can be refunded.")


class RequestInProgress(Conflict):
    code = "request_in_progress"
    default_detail = _("A request with this Idempotency-Key is still running; retry shortly.")


class LockTimeout(Conflict):
    code = "lock_timeout"
    default_detail = _("The member is busy with another request; retry shortly.")


class ServiceUnavailable(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"
    default_detail = _(
        "The service cannot reach its database for a moment; retry with the same Idempotency-Key."
    )


class Unprocessable(ApiError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"
    default_detail = _("This Idempotency-Key was used with a different request.")


class ConsentRequired(Unprocessable):
    code = "consent_required"
    default_detail = _("The member must consent to the processing of personal data.")


class RedeemLimitExceeded(Unprocessable):
    code = "redeem_limit_exceeded"
    default_detail = _("More points asked than this receipt allows.")

    @classmethod
    def at_most(cls, max_allowed: int) -> RedeemLimitExceeded:
        """The refusal with its limit, for the cashier's screen and in the body."""
        detail = ngettext(
            "At most %(n)s point can be redeemed on this receipt.",
            "At most %(n)s points can be redeemed on this receipt.",
            max_allowed,
        ) % {"n": max_allowed}
        return cls(detail, max_allowed=max_allowed)


class CouponInvalid(Unprocessable):
    code = "coupon_invalid"
    default_detail = _("The coupon cannot be used.")


class RefundExceedsPurchase(Unprocessable):
    code = "refund_exceeds_purchase"
    default_detail = _("The refund asks for more than is left of the purchase.")


class MemberBlocked(Unprocessable):
    code = "member_blocked"
    default_detail = _("The member is blocked and cannot earn or spend points.")


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors → {"lines[0].amount": ["..."]}; a list's own errors under its name."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):
                name = f"{prefix}[{key}]"
            elif key in ("non_field_errors", "__all__"):
                name = prefix or "non_field_errors"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten(value, name))
    elif isinstance(detail, list) and detail and all(isinstance(x, str) for x in detail):
        out.setdefault(prefix or "non_field_errors", []).extend(str(x) for x in detail)
    elif isinstance(detail, list):
        for i, value in enumerate(detail):
            if value:
                out.update(_flatten(value, f"{prefix}[{i}]"))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


_DRF_CODES = {
    exceptions.ParseError: "invalid",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def error_response(exc: ApiError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return Response(exc.body(), status=exc.status_code, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: every error in the shape of API.md."""
    if isinstance(exc, ApiError):
        return error_response(exc)
    from ledger.services import LedgerBusy

    if isinstance(exc, LedgerBusy):
        return error_response(LockTimeout(retry_after=exc.retry_after))
    if isinstance(exc, OperationalError | InterfaceError):
        # A lost or restarting database (failover, PgBouncer restart): nothing was
        # committed, so the till may safely retry with the same key. A lock given up
        # or a deadlock outside the views' own handling is the member being busy.
        if lock_conflict(exc):
            return error_response(LockTimeout(retry_after=1))
        return error_response(ServiceUnavailable(retry_after=1))
    if isinstance(exc, Http404):
        return error_response(NotFound())
    if isinstance(exc, RequestDataTooBig):  # over DATA_UPLOAD_MAX_MEMORY_SIZE, read by DRF
        exc = exceptions.ParseError(_("The request body is too large."))
    if isinstance(exc, exceptions.ValidationError):
        return error_response(InvalidInput(_flatten(exc.detail)))
    if isinstance(exc, exceptions.APIException):
        code = next((c for k, c in _DRF_CODES.items() if isinstance(exc, k)), "error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        body = {"code": code, "detail": str(detail)}
        headers: dict[str, str] = {}
        if isinstance(exc, exceptions.Throttled):
            # DRF's own text is half translated ("Запрос был проигнорирован. Expected
            # available in 1 second."): one sentence of ours, whole in either language.
            seconds = max(1, int((exc.wait or 1) + 0.999))
            headers["Retry-After"] = str(seconds)
            body["detail"] = ngettext(
                "Too many requests: retry in %(seconds)d second.",
                "Too many requests: retry in %(seconds)d seconds.",
                seconds,
            ) % {"seconds": seconds}
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            headers["WWW-Authenticate"] = "Token"
            exc.status_code = status.HTTP_401_UNAUTHORIZED
        return Response(body, status=exc.status_code, headers=headers or None)
    return None
