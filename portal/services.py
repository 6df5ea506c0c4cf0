"""Member sign-in with a one-time SMS code, member sessions, and what members change themselves.

Sign-in, and why it looks the way it does
-----------------------------------------
- `code_request` answers the same for every well-formed phone: it writes a code
  row, checks the same limits and queues the same delivery task whether or not
  the phone belongs to an active member; only the task (after the response)
  knows, and for nobody's phone it sends nothing. So neither the answer nor its
  timing tells whether someone is a member.
- Limits are counted in the database (code rows and failure rows), so they hold
  across every web process: sends per phone (and a pause between two sends),
  sends per IP, guesses per code (a conditional F() update claims each guess
  before the comparison, so parallel guesses cannot exceed it), wrong codes per
  phone and per IP within an hour (lockout).
- Only the latest code of a phone counts; a new code replaces the old one.
- `code_verify` is not wrapped in one transaction on purpose: a wrong guess
  must stay recorded although the call fails.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import Consent, Member
from accounts.phones import normalize_phone
from accounts.selectors import consents_current
from accounts.services import consent_record, member_anonymise
from loyalty_site.db import transaction_lock
from portal.conf import setting
from portal.models import DeletionRequest, MemberSession, SignInCode, SignInFailure
from programs.models import Program

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
HOUR = datetime.timedelta(hours=1)
# Consents a member may change on their own pages. Withdrawing consent to
# personal data processing means deleting the data: that is the deletion request.
MEMBER_CONSENTS = (
    Consent.Kind.MARKETING_SMS,
    Consent.Kind.MARKETING_EMAIL,
    Consent.Kind.THIRD_PARTY,
)


class SignInError(Exception):
    """A sign-in step refused; the message is for the member."""


class SignInThrottled(SignInError):
    """Too many codes asked for (this phone or this address); `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(_("Too many codes were requested. Try again later."))
        self.retry_after = max(1, int(retry_after))


class SignInLocked(SignInError):
    """Too many wrong codes for this phone or from this address; `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(_("Too many wrong codes. Sign-in is paused; try again later."))
        self.retry_after = max(1, int(retry_after))


class CodeInvalid(SignInError):
    """Wrong, expired, used up or never sent: one answer for all, on purpose."""

    def __init__(self) -> None:
        super().__init__(_("The code is wrong or has expired. Check it or ask for a new one."))


class SessionInvalid(Exception):
    """The token is unknown, expired or ended."""


@dataclass(frozen=True)
class CodeSent:
    expires_in: int  # seconds the code is valid
    resend_after: int  # seconds before another code may be asked for


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    access_expires_in: int
    refresh_token: str
    refresh_expires_in: int


def _code_hash(program_id: int, phone: str, code: str) -> str:
    # Keyed with SECRET_KEY: without it, 10^6 candidates per row would be trivial to try.
    message = f"portal-code:{program_id}:{phone}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _seconds_until(moment: datetime.datetime, now: datetime.datetime) -> int:
    return max(1, int((moment - now).total_seconds() + 0.999))


def _lock_phone(program_id: int, phone: str) -> None:
    """Queue concurrent requests for one phone, so its send limit is exact."""
    transaction_lock(f"portal-code:{program_id}:{phone}")


def code_request(
    *,
    program: Program,
    phone: str,
    ip: str | None,
    language: str = "",
    now: datetime.datetime | None = None,
) -> CodeSent:
    """Issue a sign-in code for `phone` and queue its SMS (sent only to a member's phone).

    Raises InvalidPhone for what cannot be a phone number and SignInThrottled past
    the limits; otherwise answers the same for members and for nobody.
    """
    e164 = normalize_phone(phone, program.default_region)
    now = now or timezone.now()
    resend = datetime.timedelta(seconds=setting("PORTAL_CODE_RESEND_SECONDS"))
    lifetime = setting("PORTAL_CODE_SECONDS")
    with transaction.atomic():
        _lock_phone(program.pk, e164)
        recent = list(
            SignInCode.objects.filter(program=program, phone=e164, created_at__gt=now - HOUR)
            .order_by("-created_at")
            .values_list("created_at", flat=True)[: setting("PORTAL_CODE_SENDS_PER_PHONE_HOUR")]
        )
        if recent and recent[0] > now - resend:
            raise SignInThrottled(_seconds_until(recent[0] + resend, now))
        if len(recent) >= setting("PORTAL_CODE_SENDS_PER_PHONE_HOUR"):
            raise SignInThrottled(_seconds_until(recent[-1] + HOUR, now))
        if ip:
            by_ip = list(
                SignInCode.objects.filter(ip=ip, created_at__gt=now - HOUR)
                .order_by("-created_at")
                .values_list("created_at", flat=True)[: setting("PORTAL_CODE_SENDS_PER_IP_HOUR")]
            )
            if len(by_ip) >= setting("PORTAL_CODE_SENDS_PER_IP_HOUR"):
                raise SignInThrottled(_seconds_until(by_ip[-1] + HOUR, now))
        member_id = (
            Member.objects.filter(program=program, phone=e164, status=Member.Status.ACTIVE)
            .values_list("pk", flat=True)
            .first()
        )
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        row = SignInCode.objects.create(
            program=program,
            phone=e164,
            member_id=member_id,
            code_hash=_code_hash(program.pk, e164, code),
            ip=ip,
            created_at=now,
            expires_at=now + datetime.timedelta(seconds=lifetime),
            max_attempts=setting("PORTAL_CODE_ATTEMPTS"),
        )
        language = language or translation.get_language() or settings.LANGUAGE_CODE
        transaction.on_commit(lambda: code_dispatch(row.pk, code, language))
    return CodeSent(expires_in=lifetime, resend_after=int(resend.total_seconds()))


def code_dispatch(code_id: int, code: str, language: str) -> None:
    """Hand the code to the worker. Done for every code, so members and nobody look alike.

    With the broker down nothing would queue the code again later and the member
    would wait in vain (the request answered 500), so it is sent from here instead.
    """
    from kombu.exceptions import OperationalError as BrokerUnavailable

    from portal.sms import SmsNotSent
    from portal.tasks import sign_in_code_send_task

    try:
        sign_in_code_send_task.delay(code_id, code, language)
    except BrokerUnavailable:
        logger.warning("broker unavailable: sign-in code %s is sent by the web process", code_id)
        try:
            code_deliver(code_id=code_id, code=code, language=language)
        except SmsNotSent as error:
            logger.warning("sign-in code %s not sent: %s", code_id, error)


def code_deliver(*, code_id: int, code: str, language: str, now: Any = None) -> bool:
    """Send the code by SMS if it is for a member and still usable; True when sent."""
    from portal import sms

    now = now or timezone.now()
    row = (
        SignInCode.objects.filter(pk=code_id, used_at__isnull=True, expires_at__gt=now)
        .select_related("member")
        .first()
    )
    if row is None or row.member is None or row.member.status != Member.Status.ACTIVE:
        return False
    if not hmac.compare_digest(row.code_hash, _code_hash(row.program_id, row.phone, code)):
        return False  # the task was given something else than what was issued
    minutes = max(1, int((row.expires_at - row.created_at).total_seconds()) // 60)
    with translation.override(language or settings.LANGUAGE_CODE):
        text = _(
            "%(code)s is your sign-in code. It is valid for %(minutes)s min. "
            "Do not tell it to anyone, store staff included."
        ) % {"code": code, "minutes": minutes}
    sms.send(phone=row.phone, text=text)
    return True


def _failure_record(program: Program, phone: str, ip: str | None, now: datetime.datetime) -> None:
    SignInFailure.objects.create(program=program, phone=phone, ip=ip, created_at=now)


def _lockout_check(program: Program, phone: str, ip: str | None, now: datetime.datetime) -> None:
    for filters, limit in (
        ({"program": program, "phone": phone}, setting("PORTAL_FAILURES_PER_PHONE_HOUR")),
        ({"ip": ip}, setting("PORTAL_FAILURES_PER_IP_HOUR")),
    ):
        if filters.get("ip", True) is None:
            continue
        times = list(
            SignInFailure.objects.filter(**filters, created_at__gt=now - HOUR)
            .order_by("-created_at")
            .values_list("created_at", flat=True)[:limit]
        )
        if len(times) >= limit:
            raise SignInLocked(_seconds_until(times[-1] + HOUR, now))


def code_verify(
    *,
    program: Program,
    phone: str,
    code: str,
    ip: str | None,
    now: datetime.datetime | None = None,
) -> Member:
    """The member whose phone received `code`; CodeInvalid or SignInLocked otherwise."""
    now = now or timezone.now()
    try:
        e164 = normalize_phone(phone, program.default_region)
    except ValueError:
        raise CodeInvalid() from None
    _lockout_check(program, e164, ip, now)
    typed = "".join(code.split())
    row = (
        SignInCode.objects.filter(program=program, phone=e164, created_at__lte=now)
        .order_by("-created_at", "-id")
        .first()
    )
    usable = row is not None and row.used_at is None and row.expires_at > now
    # Claim the guess before comparing: concurrent guesses each need a claim.
    claimed = usable and bool(
        SignInCode.objects.filter(
            pk=row.pk, used_at__isnull=True, attempts__lt=F("max_attempts")
        ).update(attempts=F("attempts") + 1)
    )
    # The hash is compared for nobody's phone too: the same work, whoever it is.
    matches = hmac.compare_digest(
        row.code_hash if row is not None else "", _code_hash(program.pk, e164, typed)
    )
    right = claimed and matches and row.member_id is not None
    if not right or not SignInCode.objects.filter(pk=row.pk, used_at__isnull=True).update(
        used_at=now
    ):
        _failure_record(program, e164, ip, now)
        raise CodeInvalid()
    member = Member.objects.select_related("program", "tier").get(pk=row.member_id)
    if member.status != Member.Status.ACTIVE:
        raise CodeInvalid()
    return member


# --- sessions and tokens ---------------------------------------------------------


def _new_session(
    *,
    member: Member,
    kind: str,
    family: uuid.UUID,
    lifetime: datetime.timedelta,
    ip: str | None,
    user_agent: str,
    now: datetime.datetime,
) -> str:
    token = secrets.token_urlsafe(32)
    MemberSession.objects.create(
        member=member,
        kind=kind,
        token_hash=token_hash(token),
        family=family,
        created_at=now,
        expires_at=now + lifetime,
        ip=ip,
        user_agent=user_agent[:200],
    )
    return token


def web_session_start(
    *, member: Member, ip: str | None, user_agent: str = "", now: Any = None
) -> str:
    """A web session for the member; the token goes into the (server-side) Django session."""
    now = now or timezone.now()
    return _new_session(
        member=member,
        kind=MemberSession.Kind.WEB,
        family=uuid.uuid4(),
        lifetime=datetime.timedelta(hours=setting("PORTAL_SESSION_MAX_HOURS")),
        ip=ip,
        user_agent=user_agent,
        now=now,
    )


def _token_pair(
    *, member: Member, family: uuid.UUID, ip: str | None, user_agent: str, now: datetime.datetime
) -> TokenPair:
    access_life = datetime.timedelta(minutes=setting("PORTAL_ACCESS_TOKEN_MINUTES"))
    refresh_life = datetime.timedelta(days=setting("PORTAL_REFRESH_TOKEN_DAYS"))
    common = {"member": member, "family": family, "ip": ip, "user_agent": user_agent, "now": now}
    return TokenPair(
        access_token=_new_session(kind=MemberSession.Kind.ACCESS, lifetime=access_life, **common),
        access_expires_in=int(access_life.total_seconds()),
        refresh_token=_new_session(
            kind=MemberSession.Kind.REFRESH, lifetime=refresh_life, **common
        ),
        refresh_expires_in=int(refresh_life.total_seconds()),
    )


def app_session_start(
    *, member: Member, ip: str | None, user_agent: str = "", now: Any = None
) -> TokenPair:
    """An access token and a refresh token for the member's app."""
    with transaction.atomic():
        return _token_pair(
            member=member,
            family=uuid.uuid4(),
            ip=ip,
            user_agent=user_agent,
            now=now or timezone.now(),
        )


def session_member(*, token: str, kinds: tuple[str, ...], now: Any = None) -> Member:
    """The active member a live token of one of `kinds` belongs to; SessionInvalid otherwise.

    Web sessions also end after PORTAL_SESSION_IDLE_MINUTES without a request;
    `last_used_at` is written at most once a minute per session.
    """
    now = now or timezone.now()
    if not token or len(token) > 200:
        raise SessionInvalid()
    session = (
        MemberSession.objects.filter(
            token_hash=token_hash(token),
            kind__in=kinds,
            revoked_at__isnull=True,
            expires_at__gt=now,
        )
        .select_related("member__program", "member__tier")
        .first()
    )
    if session is None or session.member.status != Member.Status.ACTIVE:
        raise SessionInvalid()
    if session.kind == MemberSession.Kind.WEB:
        idle = datetime.timedelta(minutes=setting("PORTAL_SESSION_IDLE_MINUTES"))
        if (session.last_used_at or session.created_at) <= now - idle:
            MemberSession.objects.filter(pk=session.pk, revoked_at__isnull=True).update(
                revoked_at=now
            )
            raise SessionInvalid()
    if session.last_used_at is None or session.last_used_at < now - datetime.timedelta(minutes=1):
        MemberSession.objects.filter(pk=session.pk).update(last_used_at=now)
    return session.member


def app_session_refresh(
    *, refresh_token: str, ip: str | None, user_agent: str = "", now: Any = None
) -> TokenPair:
    """Exchange a refresh token (once) for a new pair; reuse of a spent one ends the sign-in."""
    now = now or timezone.now()
    if not refresh_token or len(refresh_token) > 200:
        raise SessionInvalid()
    with transaction.atomic():
        session = (
            MemberSession.objects.select_for_update(of=("self",))
            .filter(token_hash=token_hash(refresh_token), kind=MemberSession.Kind.REFRESH)
            .select_related("member")
            .first()
        )
        if session is None:
            raise SessionInvalid()
        if session.revoked_at is None:
            if session.expires_at <= now or session.member.status != Member.Status.ACTIVE:
                raise SessionInvalid()
            MemberSession.objects.filter(family=session.family, revoked_at__isnull=True).update(
                revoked_at=now
            )
            return _token_pair(
                member=session.member,
                family=session.family,
                ip=ip,
                user_agent=user_agent,
                now=now,
            )
    # A refresh token is used once: seeing it again means someone copied it. Ended
    # outside the transaction above, which the SessionInvalid would roll back.
    family_end(family=session.family, now=now)
    raise SessionInvalid()


def family_end(*, family: uuid.UUID, now: Any = None) -> int:
    """End one sign-in: the web session, or an app's access and refresh tokens."""
    return MemberSession.objects.filter(family=family, revoked_at__isnull=True).update(
        revoked_at=now or timezone.now()
    )


def session_end(*, token: str, now: Any = None) -> bool:
    """Sign out: end the sign-in `token` belongs to. True when something was ended."""
    family = (
        MemberSession.objects.filter(token_hash=token_hash(token))
        .values_list("family", flat=True)
        .first()
    )
    return bool(family and family_end(family=family, now=now))


def member_sessions_end(*, member: Member, now: Any = None) -> int:
    """End every sign-in of the member (anonymised, blocked, "sign out everywhere")."""
    return MemberSession.objects.filter(member=member, revoked_at__isnull=True).update(
        revoked_at=now or timezone.now()
    )


# --- what members change themselves -----------------------------------------------


def consents_change(
    *, member: Member, wanted: dict[str, bool], text_version: str = ""
) -> list[str]:
    """Record the member's own consent changes (channel web); returns the kinds that changed.

    A withdrawal is in force as soon as this returns: marketing reads the latest
    consent entry when it picks recipients and again when it sends.
    """
    unknown = set(wanted) - set(MEMBER_CONSENTS)
    if unknown:
        raise ValueError(f"members cannot change these consents here: {sorted(unknown)}")
    changed: list[str] = []
    with transaction.atomic():
        current = consents_current(member)
        for kind, granted in wanted.items():
            if current.get(kind) != bool(granted):
                consent_record(
                    member=member,
                    kind=kind,
                    granted=bool(granted),
                    channel="web",
                    text_version=text_version,
                )
                changed.append(kind)
    return changed


def deletion_request_create(*, member: Member, comment: str = "") -> tuple[DeletionRequest, bool]:
    """Ask support to delete the member's data; the open request if there is one already."""
    existing = DeletionRequest.objects.filter(
        member=member, status=DeletionRequest.Status.OPEN
    ).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return DeletionRequest.objects.create(member=member, comment=comment[:2000]), True
    except IntegrityError:
        # Sent twice at once: the other request won (portal_deletionrequest_one_open).
        return DeletionRequest.objects.get(member=member, status=DeletionRequest.Status.OPEN), False


def _deletion_request_close(
    request: DeletionRequest, *, status: str, by: Any, note: str, erase: bool
) -> DeletionRequest:
    with transaction.atomic():
        locked = DeletionRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != DeletionRequest.Status.OPEN:
            return locked  # handled already (two support agents, a double click)
        if erase:
            member_anonymise(member=locked.member, by=by)
        locked.status = status
        locked.handled_at = timezone.now()
        locked.handled_by = by
        locked.resolution = note
        locked.save(update_fields=["status", "handled_at", "handled_by", "resolution"])
    return locked


def deletion_request_perform(
    *, request: DeletionRequest, by: Any, note: str = ""
) -> DeletionRequest:
    """Support deletes the member's data (anonymisation) and closes the request."""
    return _deletion_request_close(
        request, status=DeletionRequest.Status.DONE, by=by, note=note, erase=True
    )


def deletion_request_reject(*, request: DeletionRequest, by: Any, note: str) -> DeletionRequest:
    """Close a request without deleting (e.g. the law requires keeping the data); say why."""
    if not note.strip():
        raise ValueError(_("Say why the request is rejected."))
    return _deletion_request_close(
        request, status=DeletionRequest.Status.REJECTED, by=by, note=note, erase=False
    )


def sign_in_records_purge(*, now: Any = None, keep_days: int = 7) -> dict[str, int]:
    """Delete sign-in codes, failures and ended sessions older than the limits need.

    The limits look back one hour; a week is kept for support to answer "I got
    no code". Phones of nobody are in these rows too, so they must not pile up.
    """
    now = now or timezone.now()
    before = now - datetime.timedelta(days=keep_days)
    codes, _ = SignInCode.objects.filter(created_at__lt=before).delete()
    failures, _ = SignInFailure.objects.filter(created_at__lt=before).delete()
    sessions, _ = MemberSession.objects.filter(expires_at__lt=before).delete()
    return {"codes": codes, "failures": failures, "sessions": sessions}
