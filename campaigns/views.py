"""The two public pages of campaigns: the opt-out link and the SMS provider's reply hook."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from accounts.phones import InvalidPhone, normalize_phone
from campaigns import messaging


@require_http_methods(["GET", "POST"])
def optout(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks, POST records: link scanners in mail servers only ever GET."""
    if request.method == "POST":
        member = messaging.optout_apply(token)
        return render(request, "campaigns/optout.html", {"done": member is not None, "asked": True})
    return render(request, "campaigns/optout.html", {"asked": False})


@csrf_exempt
@require_POST
def sms_inbound(request: HttpRequest) -> HttpResponse:
    """Replies from members, forwarded by the SMS provider: `phone` and `text` fields."""
    expected = getattr(settings, "SMS_INBOUND_TOKEN", "")
    given = request.GET.get("token", "")
    if not expected or not hmac.compare_digest(expected, given):
        return HttpResponseForbidden("bad token")
    try:
        phone = normalize_phone(request.POST.get("phone", ""))
    except InvalidPhone:
        return HttpResponse("ignored")
    recorded = messaging.inbound_sms(phone=phone, text=request.POST.get("text", ""))
    return HttpResponse("recorded" if recorded else "ignored")
