"""What every cashier API view shares: auth, throttle, JSON parsing, idempotent POSTs."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import OperationalError, transaction
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, parsers, serializers
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from loyalty_site.db import lock_conflict
from pos import idempotency
from pos.api.presenters import render
from pos.auth import TerminalAuthentication, TerminalInfo
from pos.errors import InvalidInput, LockTimeout, RequestInProgress

MAX_BODY_BYTES = 1_000_000


def lock_timeout_ms() -> int:
    """The longest wait for a row lock before answering 409 (the ledger's setting)."""
    return int(getattr(settings, "LEDGER_LOCK_TIMEOUT_MS", 2000))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


class StrictJSONParser(parsers.JSONParser):
    """JSON with Decimal numbers; malformed, too deep, too big or NaN is 400, never 500."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise exceptions.ParseError(_("The request body is too large."))
        try:
            text = raw.decode("utf-8")
            return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(_("Malformed JSON: %(error)s") % {"error": exc}) from None


class TerminalThrottle(SimpleRateThrottle):
    """Requests per terminal (API_THROTTLE_RATE, e.g. 20/second), counted in Django's cache.

    With CACHE_URL set to Redis every web process counts together; without it
    each process counts its own (the limit is then per process).
    """

    scope = "terminal"

    def get_rate(self) -> str:
        return settings.API_THROTTLE_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        terminal = request.auth
        return None if terminal is None else f"throttle_terminal_{terminal.id}"


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def json_response(status: int, body: bytes, *, replayed: bool = False) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/json")
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def lock_timeout_set() -> None:
    """A short lock_timeout for this transaction: wait briefly, then answer 409."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{lock_timeout_ms()}ms'")


class TerminalView(APIView):
    authentication_classes = [TerminalAuthentication]
    permission_classes: list[Any] = []
    throttle_classes = [TerminalThrottle]
    parser_classes = [StrictJSONParser]

    @property
    def terminal(self) -> TerminalInfo:
        return self.request.auth

    def body(self, request: Request) -> Any:
        data = request.data
        if not isinstance(data, dict):
            raise InvalidInput({"non_field_errors": [str(_("Send a JSON object."))]})
        return data

    def run_locked(self, work: Callable[[], tuple[int, bytes]]) -> HttpResponse:
        """Run `work` in one transaction with the short lock timeout (no key needed)."""
        try:
            with transaction.atomic():
                lock_timeout_set()
                status, body = work()
        except OperationalError as exc:
            if lock_conflict(exc):
                raise LockTimeout(retry_after=1) from None
            raise
        return json_response(status, body)

    def idempotent(
        self, request: Request, data: Any, work: Callable[[], tuple[int, bytes]]
    ) -> HttpResponse:
        """Claim the Idempotency-Key, run `work`, store its answer: all in one transaction."""
        key = idempotency.key_from_header(request.META.get("HTTP_IDEMPOTENCY_KEY"))
        fingerprint = idempotency.request_fingerprint(request.path, data)
        claimed = False
        try:
            with transaction.atomic():
                got = idempotency.key_claim(
                    terminal_id=self.terminal.id,
                    key=key,
                    fingerprint=fingerprint,
                    lock_timeout_ms=lock_timeout_ms(),
                )
                if isinstance(got, idempotency.Replay):
                    return json_response(got.status, got.body, replayed=True)
                claimed = True
                status, body = work()
                idempotency.key_store(key_id=got, status=status, body=body)
        except OperationalError as exc:
            if lock_conflict(exc):
                if not claimed:
                    raise RequestInProgress(retry_after=1) from None
                raise LockTimeout(retry_after=1) from None
            raise
        return json_response(status, body)


__all__ = ["json_response", "render", "validated"]
