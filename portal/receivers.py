"""Reactions to other apps' signals."""

from __future__ import annotations

from typing import Any

from accounts.models import Member


def sessions_end_on_anonymise(sender: Any, member: Member, **kwargs: Any) -> None:
    """An anonymised member is nobody any more: their open sessions must not show anything."""
    from portal.models import SignInCode
    from portal.services import member_sessions_end

    member_sessions_end(member=member)
    # The codes name the phone, which anonymisation erases.
    SignInCode.objects.filter(member=member).delete()
