"""Messages to members: templates, the outbox, consent, quiet hours, frequency cap, opt-out.

- `message_enqueue` renders a template into the outbox, once per reference,
  only for a member whose current consent for that channel is given and who
  has not had the weekly number of messages yet; otherwise it records the
  message as skipped with the reason (so a marketer sees why).
- `outbox_send` (beat, every minute) claims due messages one at a time with
  SKIP LOCKED, each in its own short transaction: checks consent again,
  postpones what falls into quiet hours (program time), marks the message as
  handed to the provider before calling it and stores the answer right after;
  retries refusals with a growing pause; a message whose worker died while
  sending it is marked failed for support, never sent twice on a guess.
- `segment_send_preview` / `segment_send_start` / `segment_send`: a marketer's
  message to a segment from the admin: who would get it, then each member
  queued through `message_enqueue` by a Celery job (one write path).
- Opt-out: every message carries a signed link that records a consent
  withdrawal; an SMS reply STOP does the same (`inbound_sms`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import Consent, Member
from accounts.selectors import consent_given_subquery, consents_current
from accounts.services import consent_record
from campaigns import sms
from campaigns.engine import points_text
from campaigns.models import Channel, MessageTemplate, OutboxMessage, Segment, SegmentMember
from campaigns.selectors import program_zone
from ledger.selectors import member_balance
from programs.audit import audit_record

logger = logging.getLogger(__name__)

CONSENT_OF = {Channel.SMS: Consent.Kind.MARKETING_SMS, Channel.EMAIL: Consent.Kind.MARKETING_EMAIL}
MAX_ATTEMPTS = 5
OPTOUT_SALT = "campaigns.optout"
STOP_WORDS = frozenset({"STOP", "СТОП", "ОТПИСАТЬСЯ"})


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def render(text: str, variables: dict[str, Any]) -> str:
    """Fill {name}-style variables; unknown ones become empty, stray braces stay."""
    try:
        return text.format_map(_Blank(variables))
    except (ValueError, IndexError, AttributeError):
        return text


# Numbers of points that a template can also take with their word, declined for the number.
COUNTED = ("points", "balance", "expiring_points")


def _counted_words(values: dict[str, Any], language: str) -> dict[str, Any]:
    """{points_text} and the like: "1 бонус", "3 бонуса", "5 бонусов" ("1 point", "5 points"),
    in the template's language; Russian needs the word to agree with the number."""
    with translation.override(language):
        return {
            f"{key}_text": points_text(values[key])
            for key in COUNTED
            if isinstance(values.get(key), int)
        }


def optout_url(member: Member, channel: str) -> str:
    token = signing.dumps({"m": str(member.pk), "c": channel}, salt=OPTOUT_SALT)
    base = _setting("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
    return base + reverse("campaigns:optout", args=[token])


def optout_apply(token: str) -> Member | None:
    """Record the consent withdrawal a signed opt-out link stands for; None if forged."""
    try:
        data = signing.loads(token, salt=OPTOUT_SALT)
    except signing.BadSignature:
        return None
    member = Member.objects.filter(pk=data.get("m")).first()
    kind = CONSENT_OF.get(data.get("c"))
    if member is None or kind is None:
        return None
    if consents_current(member).get(kind):
        consent_record(member=member, kind=kind, granted=False, channel="web")
    return member


def inbound_sms(*, phone: str, text: str) -> bool:
    """An SMS reply from a member: STOP withdraws the SMS consent. True when recorded."""
    if text.strip().upper().rstrip(".!") not in STOP_WORDS:
        return False
    recorded = False
    for member in Member.objects.filter(phone=phone):
        if consents_current(member).get(Consent.Kind.MARKETING_SMS):
            consent_record(
                member=member, kind=Consent.Kind.MARKETING_SMS, granted=False, channel="web"
            )
            recorded = True
    return recorded


def _template(program_id: int, kind: str, channel: str, language: str) -> MessageTemplate | None:
    found = {
        t.language: t
        for t in MessageTemplate.objects.filter(program_id=program_id, kind=kind, channel=channel)
    }
    return (
        found.get(language) or found.get(settings.LANGUAGE_CODE) or next(iter(found.values()), None)
    )


def _address(member: Member, channel: str) -> str:
    return (member.phone or "") if channel == Channel.SMS else member.email


def message_enqueue(
    *,
    member: Member,
    kind: str,
    channel: str,
    reference: str,
    variables: dict[str, Any] | None = None,
    language: str | None = None,
    at: datetime | None = None,
) -> OutboxMessage | None:
    """Put a message for the member in the outbox, once per `reference`.

    Returns the outbox row (state queued, or skipped with the reason in
    provider_answer), or None when the program has no template for it.
    """
    at = at or timezone.now()
    existing = OutboxMessage.objects.filter(reference=reference).first()
    if existing is not None:
        return existing
    template = _template(member.program_id, kind, channel, language or settings.LANGUAGE_CODE)
    if template is None:
        return None
    values = {
        "name": member.first_name,
        "optout_url": optout_url(member, channel),
        **(variables or {}),
    }
    values.update(_counted_words(values, template.language))
    state, reason = OutboxMessage.State.QUEUED, ""
    to = _address(member, channel)
    if not to:
        state, reason = OutboxMessage.State.SKIPPED, _("no address")
    elif not consents_current(member).get(CONSENT_OF[channel]):
        state, reason = OutboxMessage.State.SKIPPED, _("no consent")
    else:
        cap = int(_setting("MESSAGES_PER_MEMBER_PER_WEEK", 3))
        recent = (
            OutboxMessage.objects.filter(member=member, created_at__gte=at - timedelta(days=7))
            .exclude(state=OutboxMessage.State.SKIPPED)
            .count()
        )
        if recent >= cap:
            state, reason = OutboxMessage.State.SKIPPED, _("frequency cap")
    try:
        with transaction.atomic():
            return OutboxMessage.objects.create(
                program_id=member.program_id,
                member=member,
                channel=channel,
                kind=kind,
                reference=reference,
                to=to,
                subject=render(template.subject, values),
                body=render(template.body, values),
                state=state,
                provider_answer=reason,
                next_attempt_at=at,
                created_at=at,
            )
    except IntegrityError:  # the same reference enqueued concurrently
        return OutboxMessage.objects.get(reference=reference)


def quiet_until(local: datetime) -> datetime | None:
    """The end of the quiet hours `local` falls in (program time), or None when not quiet."""
    start, end = _setting("MESSAGES_QUIET_HOURS", (21, 9))
    hour = local.hour
    quiet = (start <= hour or hour < end) if start > end else (start <= hour < end)
    if not quiet:
        return None
    day = local.date() if hour < end else local.date() + timedelta(days=1)
    return datetime.combine(day, time(end), tzinfo=local.tzinfo)


def _deliver(message: OutboxMessage) -> sms.SmsResult:
    if message.channel == Channel.SMS:
        return sms.provider().send(phone=message.to, text=message.body)
    try:
        sent = EmailMessage(subject=message.subject, body=message.body, to=[message.to]).send(
            fail_silently=False
        )
    except Exception as exc:  # any backend error is a failed attempt, retried later
        return sms.SmsResult(ok=False, answer=f"{type(exc).__name__}: {exc}"[:500])
    return sms.SmsResult(ok=bool(sent), answer="accepted by the mail server")


# How long a message may stay handed to the provider without its answer stored. Far
# longer than any provider call (SMS.ru: 10 s timeout); past it, the worker that sent
# it is taken for dead (killed, OOM, machine lost) and the message is settled as below.
SENDING_TIMEOUT = timedelta(minutes=10)


def is_sending(message: OutboxMessage) -> bool:
    """Handed to the provider, its answer not stored yet: queued with `sent_at` set.

    The outbox has no state of its own for this (adding one needs a migration);
    `sent_at` records when the message went to the provider, and only a claim
    sets it on a queued row.
    """
    return message.state == OutboxMessage.State.QUEUED and message.sent_at is not None


def _claim(now: datetime) -> tuple[str, OutboxMessage] | None:
    """Take the next due message in a short transaction of its own, and settle or mark it.

    Returns what became of it: "send" (marked as handed to the provider, one
    more attempt counted: the caller sends it now), "postponed", "skipped" or
    "unknown"; None when nothing is due. One row is locked, SKIP LOCKED, so
    workers running at once take different messages.
    """
    with transaction.atomic():
        message = (
            OutboxMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=OutboxMessage.State.QUEUED, next_attempt_at__lte=now)
            .select_related("member", "program")
            .order_by("next_attempt_at", "id")
            .first()
        )
        if message is None:
            return None
        if message.sent_at is not None:
            # Left handed to the provider by a worker that died before storing the
            # answer: the provider may well have delivered it. A careful SMS sender
            # does not send it again on a guess: a marketing SMS twice costs twice,
            # annoys the member (who may answer STOP) and counts against the weekly
            # cap, while neither provider here takes an idempotency key to make a
            # resend safe. So it is marked failed for support, who can look it up
            # in the provider's delivery report; it is never resent automatically.
            message.state = OutboxMessage.State.FAILED
            message.provider_answer = _(
                "outcome unknown: the sending worker stopped after handing the message to "
                "the provider at %(at)s; not sent again automatically (check the provider's "
                "delivery report)"
            ) % {"at": message.sent_at.isoformat(timespec="seconds")}
            message.save(update_fields=["state", "provider_answer"])
            return "unknown", message
        until = quiet_until(now.astimezone(program_zone(message.program)))
        if until is not None:
            message.next_attempt_at = until
            message.save(update_fields=["next_attempt_at"])
            return "postponed", message
        if not consents_current(message.member).get(CONSENT_OF[message.channel]):
            message.state = OutboxMessage.State.SKIPPED
            message.provider_answer = _("consent withdrawn before sending")
            message.save(update_fields=["state", "provider_answer"])
            return "skipped", message
        message.attempts += 1
        message.sent_at = now
        message.next_attempt_at = now + SENDING_TIMEOUT
        message.save(update_fields=["attempts", "sent_at", "next_attempt_at"])
        return "send", message


def _answer_store(message: OutboxMessage, result: sms.SmsResult, now: datetime) -> str:
    """Store the provider's answer for the attempt this worker claimed; returns the count key.

    One conditional UPDATE on the attempt number (the claim's token), committed
    at once: whatever happens to this worker afterwards, a sent message stays sent.
    """
    fields: dict[str, Any] = {"provider_answer": result.answer}
    if result.ok:
        outcome = "sent"
        fields.update(state=OutboxMessage.State.SENT, sent_at=now)
    elif not result.retry or message.attempts >= MAX_ATTEMPTS:
        outcome = "failed"
        fields.update(state=OutboxMessage.State.FAILED, sent_at=None)
    else:
        # The provider said no (busy, network down before it took the message): not
        # delivered, so sending again later is safe.
        outcome = "retry"
        fields.update(
            state=OutboxMessage.State.QUEUED,
            sent_at=None,
            next_attempt_at=now + timedelta(minutes=2**message.attempts),
        )
    OutboxMessage.objects.filter(pk=message.pk, attempts=message.attempts).update(**fields)
    return outcome


def outbox_send(*, now: datetime | None = None, limit: int = 200) -> dict[str, int]:
    """Send up to `limit` due messages, each claimed and settled in its own transaction.

    Per message: claim it (one row, SKIP LOCKED) and mark it handed to the
    provider with one more attempt, commit; call the provider outside any
    transaction; store its answer, commit. Safe to run in several workers at
    once; a worker killed mid-way leaves at most the one message it was
    sending undecided, which the next run after SENDING_TIMEOUT marks failed
    for support rather than sending it twice (see _claim).
    """
    now = now or timezone.now()
    counts = {"sent": 0, "failed": 0, "postponed": 0, "skipped": 0, "retry": 0, "unknown": 0}
    for _n in range(limit):
        claimed = _claim(now)
        if claimed is None:
            break
        outcome, message = claimed
        if outcome == "send":
            try:
                result = _deliver(message)
            except Exception as exc:  # a provider bug: it may or may not have sent it
                logger.exception("outbox message %s: the provider raised", message.pk)
                result = sms.SmsResult(
                    ok=False,
                    answer=_("outcome unknown: the provider failed with %(error)s")
                    % {"error": f"{type(exc).__name__}: {exc}"[:400]},
                    retry=False,
                )
            outcome = _answer_store(message, result, now)
        counts[outcome] += 1
    return counts


# --- a marketer's message to a segment ------------------------------------------------


@dataclass(frozen=True)
class SegmentSendPreview:
    """Who of a segment a message would reach now, by the rules message_enqueue applies."""

    members: int  # active members in the segment's current list
    no_address: int
    no_consent: int
    over_cap: int  # already had MESSAGES_PER_MEMBER_PER_WEEK messages this week
    will_get: int
    quiet_until: datetime | None  # now is in quiet hours: the messages go out then (program time)


def segment_templates(segment: Segment) -> dict[tuple[str, str], list[MessageTemplate]]:
    """The program's templates a segment can be sent, by (kind, channel), all languages."""
    found: dict[tuple[str, str], list[MessageTemplate]] = {}
    for template in MessageTemplate.objects.filter(program_id=segment.program_id).order_by(
        "kind", "channel", "language"
    ):
        found.setdefault((template.kind, template.channel), []).append(template)
    return found


def _segment_members(segment: Segment) -> QuerySet[Member]:
    return Member.objects.filter(
        Exists(SegmentMember.objects.filter(segment=segment, member=OuterRef("pk"))),
        program_id=segment.program_id,
        status=Member.Status.ACTIVE,
    )


def segment_send_preview(
    *, segment: Segment, channel: str, at: datetime | None = None
) -> SegmentSendPreview:
    """Count, in one query, who would get a message and why the others would not.

    The same rules, in the same order, as message_enqueue (address, consent,
    weekly cap), done set-based; message_enqueue checks each member again when
    the messages are queued, and outbox_send the consent once more when sending.
    """
    at = at or timezone.now()
    cap = int(_setting("MESSAGES_PER_MEMBER_PER_WEEK", 3))
    if channel == Channel.SMS:
        has_address = Q(phone__isnull=False) & ~Q(phone="")
    else:
        has_address = ~Q(email="")
    recent = (
        OutboxMessage.objects.filter(member=OuterRef("pk"), created_at__gte=at - timedelta(days=7))
        .exclude(state=OutboxMessage.State.SKIPPED)
        .values("member")
        .annotate(n=Count("id"))
        .values("n")
    )
    consented = Q(_consent=True)
    row = (
        _segment_members(segment)
        .annotate(
            _consent=consent_given_subquery(CONSENT_OF[channel]),
            _recent=Coalesce(Subquery(recent), 0),
        )
        .aggregate(
            members=Count("pk"),
            no_address=Count("pk", filter=~has_address),
            # Never asked (NULL) counts as no consent, as in consents_current.
            no_consent=Count(
                "pk", filter=has_address & (Q(_consent=False) | Q(_consent__isnull=True))
            ),
            over_cap=Count("pk", filter=has_address & consented & Q(_recent__gte=cap)),
            will_get=Count("pk", filter=has_address & consented & Q(_recent__lt=cap)),
        )
    )
    return SegmentSendPreview(
        **{k: int(v or 0) for k, v in row.items()},
        quiet_until=quiet_until(at.astimezone(program_zone(segment.program))),
    )


def segment_send_start(
    *, segment: Segment, kind: str, channel: str, token: str, by: Any = None
) -> None:
    """A marketer confirmed a message to a segment: record who, queue the job after commit.

    `token` (made with the preview) names this sending in the outbox references,
    so a confirmation posted twice, or a job delivered twice, queues each member once.
    """
    from campaigns.tasks import segment_send_task

    with transaction.atomic():
        audit_record(
            user=by,
            action="update",
            obj=segment,
            changes={"message sent": [None, f"{kind} / {channel} / {token}"]},
            program=segment.program,
            source="campaigns",
        )
        transaction.on_commit(lambda: segment_send_task.delay(segment.pk, kind, channel, token))


def segment_send(
    *, segment: Segment, kind: str, channel: str, token: str, at: datetime | None = None
) -> dict[str, int]:
    """Queue the message for every active member of the segment, through message_enqueue.

    Each member's balance, next expiry and tier fill the template; {points} and
    {code} have nothing to say in a mailing and stay empty. Safe to run twice.
    """
    at = at or timezone.now()
    counts = {"queued": 0, "skipped": 0, "no_template": 0}
    members = _segment_members(segment).select_related("tier", "program").order_by("pk")
    for member in members.iterator(chunk_size=500):
        balance = member_balance(member, now=at)
        expiring_on = balance.next_expiry_date
        message = message_enqueue(
            member=member,
            kind=kind,
            channel=channel,
            reference=f"segment:{token}:{member.pk}",
            variables={
                "balance": balance.available,
                "tier": member.tier.name if member.tier else "",
                "expiring_points": balance.next_expiry_points if expiring_on else "",
                "expiring_date": expiring_on.strftime("%d.%m.%Y") if expiring_on else "",
            },
            at=at,
        )
        if message is None:
            counts["no_template"] += 1
        elif message.state == OutboxMessage.State.SKIPPED:
            counts["skipped"] += 1
        else:
            counts["queued"] += 1
    return counts
