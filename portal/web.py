"""What every member page shares: who is signed in, which program, the client's address."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from portal.conf import setting
from portal.services import SessionInvalid, session_member
from programs.models import Program

SESSION_TOKEN = "portal_token"
SESSION_SIGN_IN = "portal_sign_in"


def client_ip(request: HttpRequest) -> str | None:
    header = setting("PORTAL_IP_HEADER")
    raw = (request.META.get(header) if header else None) or request.META.get("REMOTE_ADDR")
    return (raw or "").split(",")[0].strip() or None


def user_agent(request: HttpRequest) -> str:
    return request.META.get("HTTP_USER_AGENT", "")[:200]


def program_for(code: str | None) -> Program | None:
    """The program named by `code`, else PORTAL_PROGRAM, else the only program there is."""
    code = code or setting("PORTAL_PROGRAM")
    if code:
        return Program.objects.filter(code=code).first()
    programs = list(Program.objects.order_by("pk")[:2])
    return programs[0] if len(programs) == 1 else None


def private(response: HttpResponse) -> HttpResponse:
    """Personal pages and answers: no shared cache (proxy, CDN) may keep them, nor the browser."""
    patch_cache_control(
        response, private=True, no_store=True, no_cache=True, must_revalidate=True, max_age=0
    )
    patch_vary_headers(response, ("Cookie", "Authorization"))
    return response


def private_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return private(view(request, *args, **kwargs))

    return wrapper


def member_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Pages of a signed-in member: `request.member`, or a redirect to sign in."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            request.member = session_member(  # type: ignore[attr-defined]
                token=request.session.get(SESSION_TOKEN, ""), kinds=("web",)
            )
        except SessionInvalid:
            request.session.pop(SESSION_TOKEN, None)
            target = reverse("portal:sign_in")
            if request.method == "GET":
                target += "?" + urlencode({"next": request.get_full_path()})
            return private(redirect(target))
        return private(view(request, *args, **kwargs))

    return wrapper


def safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        if candidate.startswith(reverse("portal:home")):
            return candidate
    return reverse("portal:home")
