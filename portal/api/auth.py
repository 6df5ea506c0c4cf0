"""Member tokens for the app API: `Authorization: Bearer <access token>`."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import Member
from portal.conf import setting
from portal.models import MemberSession
from portal.services import SessionInvalid, session_member


class MemberTokenAuthentication(authentication.BaseAuthentication):
    """A live access token of an active member; `request.auth` is the Member."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[None, Member] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        parts = header.split()
        if not parts or parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(_("Malformed Authorization header."))
        try:
            member = session_member(token=parts[1], kinds=(MemberSession.Kind.ACCESS,))
        except SessionInvalid:
            raise exceptions.AuthenticationFailed(
                _("The access token is unknown or has expired; refresh it or sign in again.")
            ) from None
        return (None, member)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IsMember(permissions.BasePermission):
    message = _("Sign in: send Authorization: Bearer <access token>.")

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Member)


class MemberRateThrottle(SimpleRateThrottle):
    """Requests per signed-in member (PORTAL_API_RATE, e.g. 120/minute), in Django's cache."""

    scope = "portal_member"

    def get_rate(self) -> str:
        return setting("PORTAL_API_RATE")

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        member = request.auth
        return f"throttle_portal_member_{member.pk}" if isinstance(member, Member) else None
