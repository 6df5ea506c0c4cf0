"""Reactions to other apps' signals."""

from __future__ import annotations

from typing import Any

from accounts.models import Member


def sessions_end_on_anonymise(sender: Any, member: Member, **kwargs: Any) -> None:
    """An anonymised member is nobody any more: forget their sign-ins.

    Deleting the session rows ends them (a token without its row opens nothing)
    and erases the addresses and browsers kept there; the code and failure rows
    carry the phone, which anonymisation erases everywhere.
    """
    from portal.models import MemberSession, SignInCode, SignInFailure

    phones = set(SignInCode.objects.filter(member=member).values_list("phone", flat=True))
    SignInFailure.objects.filter(phone__in=phones).delete()
    SignInCode.objects.filter(phone__in=phones).delete()
    MemberSession.objects.filter(member=member).delete()
