"""The member's own pages under /my/: thin views over portal.services and portal.selectors."""

from __future__ import annotations

import time

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from accounts.phones import InvalidPhone, normalize_phone, phone_masked
from portal import barcodes, selectors, services
from portal.conf import setting
from portal.forms import CodeForm, ConsentsForm, DeletionForm, PhoneForm
from portal.models import DeletionRequest
from portal.web import (
    SESSION_SIGN_IN,
    SESSION_TOKEN,
    client_ip,
    member_required,
    private_view,
    program_for,
    safe_next,
    user_agent,
)
from programs.models import Program


def _minutes(seconds: int) -> int:
    return max(1, (seconds + 59) // 60)


def _wait_text(seconds: int) -> str:
    minutes = _minutes(seconds)
    return ngettext("Try again in %(n)s minute.", "Try again in %(n)s minutes.", minutes) % {
        "n": minutes
    }


@private_view
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    program = program_for(request.GET.get("program") or request.POST.get("program"))
    if program is None:
        raise Http404(_("No loyalty program is set up for these pages."))
    form = PhoneForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            sent = services.code_request(
                program=program,
                phone=form.cleaned_data["phone"],
                ip=client_ip(request),
                language=request.LANGUAGE_CODE,
            )
        except InvalidPhone as error:
            form.add_error("phone", str(error))
        except services.SignInThrottled as error:
            form.add_error(None, f"{error} {_wait_text(error.retry_after)}")
        else:
            request.session[SESSION_SIGN_IN] = {
                "program": program.pk,
                "phone": normalize_phone(form.cleaned_data["phone"], program.default_region),
                "sent_at": time.time(),
                "resend_after": sent.resend_after,
                "next": safe_next(request, request.GET.get("next")),
            }
            return redirect("portal:sign_in_code")
    return render(
        request, "portal/sign_in.html", {"form": form, "program": program, "page": "sign_in"}
    )


@private_view
@require_http_methods(["GET", "POST"])
def sign_in_code(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(SESSION_SIGN_IN)
    if not pending:
        return redirect("portal:sign_in")
    # The program is the one the code was sent in.
    program = Program.objects.filter(pk=pending["program"]).first()
    if program is None:
        return redirect("portal:sign_in")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            member = services.code_verify(
                program=program,
                phone=pending["phone"],
                code=form.cleaned_data["code"],
                ip=client_ip(request),
            )
        except services.SignInLocked as error:
            form.add_error(None, f"{error} {_wait_text(error.retry_after)}")
        except services.CodeInvalid as error:
            form.add_error("code", str(error))
        else:
            token = services.web_session_start(
                member=member, ip=client_ip(request), user_agent=user_agent(request)
            )
            target = pending.get("next") or reverse("portal:home")
            # A new session key at sign-in: a key planted before it must not get in.
            request.session.cycle_key()
            request.session.pop(SESSION_SIGN_IN, None)
            request.session[SESSION_TOKEN] = token
            request.session.set_expiry(setting("PORTAL_SESSION_MAX_HOURS") * 3600)
            return redirect(target)
    wait = int(pending["sent_at"] + pending["resend_after"] - time.time())
    return render(
        request,
        "portal/sign_in_code.html",
        {
            "form": form,
            "phone_masked": phone_masked(pending["phone"]),
            "phone": pending["phone"],
            "program": program,
            "resend_wait": max(0, wait),
            "code_minutes": _minutes(setting("PORTAL_CODE_SECONDS")),
            "page": "sign_in",
        },
    )


@private_view
@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    token = request.session.get(SESSION_TOKEN)
    if token:
        services.session_end(token=token)
    request.session.flush()
    return redirect("portal:sign_in")


def _context(request: HttpRequest, page: str, **extra: object) -> dict[str, object]:
    member = request.member  # type: ignore[attr-defined]
    return {"member": member, "program": member.program, "page": page, **extra}


@member_required
def home(request: HttpRequest) -> HttpResponse:
    member = request.member  # type: ignore[attr-defined]
    now = timezone.now()
    return render(
        request,
        "portal/home.html",
        _context(
            request,
            "home",
            balance=selectors.balance(member),
            expiring=selectors.expiry_schedule(member, limit=5),
            pending=selectors.pending_schedule(member, limit=5),
            tier=selectors.tier_progress(member, now=now),
            card_number=selectors.card_number(member),
        ),
    )


@member_required
def points(request: HttpRequest) -> HttpResponse:
    member = request.member  # type: ignore[attr-defined]
    page = selectors.history_page(member, cursor=request.GET.get("cursor"))
    return render(
        request,
        "portal/points.html",
        _context(
            request,
            "points",
            balance=selectors.balance(member),
            expiring=selectors.expiry_schedule(member),
            pending=selectors.pending_schedule(member),
            history=page,
        ),
    )


@member_required
def purchases(request: HttpRequest) -> HttpResponse:
    member = request.member  # type: ignore[attr-defined]
    page = selectors.purchases_page(member, cursor=request.GET.get("cursor"))
    return render(request, "portal/purchases.html", _context(request, "purchases", history=page))


@member_required
def purchase_detail(request: HttpRequest, purchase_id: str) -> HttpResponse:
    purchase = selectors.purchase_of(request.member, purchase_id)  # type: ignore[attr-defined]
    if purchase is None:
        raise Http404(_("No such purchase."))
    return render(
        request, "portal/purchase.html", _context(request, "purchases", purchase=purchase)
    )


@member_required
def offers(request: HttpRequest) -> HttpResponse:
    member = request.member  # type: ignore[attr-defined]
    codes = selectors.promo_codes(member)
    return render(
        request,
        "portal/offers.html",
        _context(request, "offers", offers=selectors.offers(member, codes=codes), codes=codes),
    )


@member_required
def card(request: HttpRequest) -> HttpResponse:
    member = request.member  # type: ignore[attr-defined]
    number = selectors.card_number(member)
    label = _("Card %(number)s") % {"number": number} if number else ""
    return render(
        request,
        "portal/card.html",
        _context(
            request,
            "card",
            card_number=number,
            barcode_svg=barcodes.barcode_svg(number, label=label) if number else "",
            qr_svg=barcodes.qr_svg(number, label=label) if number else "",
            referral_code=selectors.referral_code(member),
        ),
    )


@member_required
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    member = request.member  # type: ignore[attr-defined]
    current = selectors.consents(member)
    form = ConsentsForm(
        request.POST if request.POST.get("form") == "consents" else None,
        initial={kind: current.get(kind, False) for kind in services.MEMBER_CONSENTS},
    )
    if request.method == "POST" and form.is_bound and form.is_valid():
        changed = services.consents_change(member=member, wanted=form.cleaned_data)
        if changed:
            messages.success(request, _("Saved. The change is in force now."))
        return redirect("portal:settings")
    open_request = DeletionRequest.objects.filter(
        member=member, status=DeletionRequest.Status.OPEN
    ).first()
    return render(
        request,
        "portal/settings.html",
        _context(
            request,
            "settings",
            form=form,
            deletion_form=DeletionForm(),
            deletion_request=open_request,
        ),
    )


@member_required
@require_http_methods(["GET", "POST"])
def deletion_request(request: HttpRequest) -> HttpResponse:
    member = request.member  # type: ignore[attr-defined]
    form = DeletionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.deletion_request_create(member=member, comment=form.cleaned_data["comment"])
        messages.success(
            request,
            _("Your request was passed to support. We will delete your data and let you know."),
        )
        return redirect("portal:settings")
    return render(
        request, "portal/deletion.html", _context(request, "settings", deletion_form=form)
    )
