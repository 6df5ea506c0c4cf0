"""SMS providers: one interface, a logging provider (the default) and SMS.ru over HTTP.

`SMS_PROVIDER` chooses: "log" (writes the message to the log, sends nothing) or
"smsru" (https://sms.ru/api/send: `SMS_RU_API_ID`, optional `SMS_SENDER`,
`SMS_RU_URL` to point at a test server).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmsResult:
    ok: bool
    answer: str  # what the provider said, kept on the outbox row
    retry: bool = True  # a failure worth trying again (network, provider busy)


class SmsProvider(Protocol):
    def send(self, *, phone: str, text: str) -> SmsResult: ...


class LoggingProvider:
    """Sends nothing: writes the message to the log. The default, for development."""

    def send(self, *, phone: str, text: str) -> SmsResult:
        logger.info("SMS to %s: %s", phone, text)
        return SmsResult(ok=True, answer="logged")


class SmsRuProvider:
    """SMS.ru: GET/POST /sms/send with api_id, to, msg, json=1.

    The answer is JSON: {"status": "OK", "sms": {"7912…": {"status": "OK",
    "status_code": 100, "sms_id": "…"}}} or {"status": "ERROR", "status_code":
    200, "status_text": "…"}. Codes 200-299 are account and request problems
    (no use retrying); 5xx and failures to connect are retried; no answer after
    the request went out is not (the SMS may have been sent).
    """

    def __init__(self, *, api_id: str, url: str, sender: str = "", timeout: float = 10) -> None:
        if not api_id:
            raise ImproperlyConfigured("SMS_PROVIDER=smsru needs SMS_RU_API_ID.")
        self.api_id, self.url, self.sender, self.timeout = api_id, url, sender, timeout

    def send(self, *, phone: str, text: str) -> SmsResult:
        to = phone.lstrip("+")
        params = {"api_id": self.api_id, "to": to, "msg": text, "json": "1"}
        if self.sender:
            params["from"] = self.sender
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(self.url, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            return SmsResult(ok=False, answer=f"HTTP {exc.code}", retry=exc.code >= 500)
        except urllib.error.URLError as exc:
            # urllib wraps only the errors of connecting and sending: the provider has
            # not got the message, so trying again cannot send it twice.
            return SmsResult(ok=False, answer=f"network: {exc.reason}", retry=True)
        except OSError as exc:  # TimeoutError included
            # The request went out and no answer came back: the provider may have sent
            # the SMS. A second one costs money and annoys the member; support checks
            # the provider's delivery report instead.
            return SmsResult(
                ok=False,
                answer=f"outcome unknown: no answer after sending ({exc!r}); "
                "check the provider's delivery report",
                retry=False,
            )
        try:
            data = json.loads(raw)
        except ValueError:
            return SmsResult(ok=False, answer=raw[:500], retry=True)
        if data.get("status") != "OK":
            code = int(data.get("status_code") or 0)
            return SmsResult(ok=False, answer=raw[:500], retry=not 200 <= code < 300)
        item = (data.get("sms") or {}).get(to) or {}
        if item.get("status") != "OK":
            return SmsResult(ok=False, answer=raw[:500], retry=False)  # e.g. a bad number
        return SmsResult(ok=True, answer=raw[:500])


def provider() -> SmsProvider:
    name = getattr(settings, "SMS_PROVIDER", "log")
    if name == "log":
        return LoggingProvider()
    if name == "smsru":
        return SmsRuProvider(
            api_id=getattr(settings, "SMS_RU_API_ID", ""),
            url=getattr(settings, "SMS_RU_URL", "https://sms.ru/sms/send"),
            sender=getattr(settings, "SMS_SENDER", ""),
        )
    raise ImproperlyConfigured(f"SMS_PROVIDER={name!r}: use log or smsru.")
