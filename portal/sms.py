"""Sending the sign-in SMS through a replaceable sender.

The sender is a callable ``(*, phone, text) -> None`` named by the setting
``PORTAL_SMS_SENDER``. Without it, the campaigns app's provider is used when it
offers ``campaigns.messaging.send_sms``; a development install without any
provider writes the message to the log instead (refused when DEBUG is off, so
production never "sends" codes into a log file).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import import_module

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from accounts.phones import phone_masked
from portal.conf import setting

Sender = Callable[..., None]
logger = logging.getLogger("portal.sms")


def log_sender(*, phone: str, text: str) -> None:
    """Development only: the message goes to the log, where the developer reads the code."""
    if not settings.DEBUG:
        raise ImproperlyConfigured(
            "No SMS provider: set PORTAL_SMS_SENDER or configure the campaigns SMS provider."
        )
    logger.warning("SMS to %s (no provider configured, DEBUG): %s", phone_masked(phone), text)


def _campaigns_sender() -> Sender | None:
    try:
        messaging = import_module("campaigns.messaging")
    except ImportError:
        return None
    return getattr(messaging, "send_sms", None)


def sender() -> Sender:
    path = setting("PORTAL_SMS_SENDER")
    if path:
        return import_string(path)
    return _campaigns_sender() or log_sender
