"""Data the fault tests share, made through the models campaigns' admin writes."""

from __future__ import annotations

from typing import Any

from campaigns.models import MessageTemplate, Trigger
from programs.models import Program


def trigger_with_message(program: Program, kind: str, **fields: Any) -> Trigger:
    """An active trigger that sends an SMS (the template in English), e.g. a welcome bonus."""
    MessageTemplate.objects.create(
        program=program, kind=kind, channel="sms", language="en", body=f"{kind}: hello {{name}}"
    )
    return Trigger.objects.create(
        program=program, kind=kind, is_active=True, send_message=True, **fields
    )
