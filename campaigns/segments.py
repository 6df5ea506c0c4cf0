"""Segments: who is in them, recalculated with set-based SQL, and static lists from CSV.

A dynamic segment is a predicate over the member facts kept on accounts.Member
(registration, last purchase, qualifying spend, tier, store, birthday) and the
consent history. Recalculation is two statements per segment, whatever the
number of members: delete those who left, insert those who joined. It runs
nightly on beat and on demand from the admin, under a per-segment advisory
lock, so two runs at once end with the same result as one.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import ExtractMonth
from django.utils import timezone

from accounts.models import Card, Member
from accounts.phones import InvalidPhone, normalize_phone
from accounts.selectors import consent_given_subquery
from campaigns.models import Segment, SegmentMember, SegmentSize
from campaigns.selectors import program_zone
from loyalty_site.db import transaction_lock
from programs.audit import audit_record

# Conditions that apps to the right compute (campaigns may not import them):
# kind -> fn(segment) -> Q over Member. analytics registers "probably_lost"
# from its AppConfig.ready().
SegmentSource = Callable[[Segment], Q]
SEGMENT_SOURCES: dict[str, SegmentSource] = {}


def segment_source_register(kind: str, source: SegmentSource) -> SegmentSource:
    """Let another app compute the members of segments of `kind`."""
    SEGMENT_SOURCES[kind] = source
    return source


def segment_members(segment: Segment, *, at: datetime | None = None) -> QuerySet[Member]:
    """The members a dynamic segment holds at `at`, as a queryset (not evaluated)."""
    at = at or timezone.now()
    members = Member.objects.filter(program_id=segment.program_id, status=Member.Status.ACTIVE)
    days = timedelta(days=segment.days or 0)
    kind = segment.kind
    if kind == Segment.Kind.NEW:
        return members.filter(registered_at__gte=at - days)
    if kind == Segment.Kind.ACTIVE:
        return members.filter(last_purchase_at__gte=at - days)
    if kind == Segment.Kind.SLEEPING:
        return members.filter(
            Q(last_purchase_at__lt=at - days)
            | Q(last_purchase_at__isnull=True, registered_at__lt=at - days)
        )
    if kind == Segment.Kind.VIP:
        return members.filter(qualifying_spend__gte=segment.min_spend or 0)
    if kind == Segment.Kind.TIER:
        return members.filter(tier_id=segment.tier_id)
    if kind == Segment.Kind.STORE:
        return members.filter(store_id=segment.store_id)
    if kind == Segment.Kind.BIRTHDAY_MONTH:
        month = at.astimezone(program_zone(segment.program)).month
        return members.annotate(_month=ExtractMonth("birth_date")).filter(_month=month)
    if kind == Segment.Kind.CONSENT:
        return members.annotate(_consent=consent_given_subquery(segment.consent_kind)).filter(
            _consent=True
        )
    if kind in SEGMENT_SOURCES:
        return members.filter(SEGMENT_SOURCES[kind](segment))
    raise ValueError(f"segment kind {kind!r} is not computed")


def segment_recalculate(*, segment: Segment, at: datetime | None = None) -> int:
    """Bring a segment's member list up to date; returns its size. Static lists are kept."""
    with transaction.atomic():
        transaction_lock(f"campaigns.segment:{segment.pk}")
        with connection.cursor() as cursor:
            if segment.kind != Segment.Kind.STATIC:
                sql, params = segment_members(segment, at=at).values("id").query.sql_with_params()
                # The wanted members once, then two hash anti-joins (NOT IN over a large
                # subquery can turn quadratic when it does not fit in work_mem).
                cursor.execute("DROP TABLE IF EXISTS _segment_wanted")
                cursor.execute(f"CREATE TEMP TABLE _segment_wanted ON COMMIT DROP AS {sql}", params)
                cursor.execute("ANALYZE _segment_wanted")
                cursor.execute(
                    "DELETE FROM campaigns_segmentmember sm WHERE sm.segment_id = %s "
                    "AND NOT EXISTS (SELECT 1 FROM _segment_wanted w WHERE w.id = sm.member_id)",
                    [segment.pk],
                )
                cursor.execute(
                    "INSERT INTO campaigns_segmentmember (segment_id, member_id) "
                    "SELECT %s, w.id FROM _segment_wanted w WHERE NOT EXISTS ("
                    "SELECT 1 FROM campaigns_segmentmember sm "
                    "WHERE sm.segment_id = %s AND sm.member_id = w.id)",
                    [segment.pk, segment.pk],
                )
            cursor.execute(
                "SELECT count(*) FROM campaigns_segmentmember WHERE segment_id = %s", [segment.pk]
            )
            size = cursor.fetchone()[0]
        now = timezone.now()
        Segment.objects.filter(pk=segment.pk).update(size=size, computed_at=now)
        SegmentSize.objects.create(segment=segment, size=size, computed_at=now)
    segment.size, segment.computed_at = size, now
    return size


def segments_recalculate_all(*, at: datetime | None = None) -> dict[int, int]:
    """Every dynamic segment, one transaction each (the nightly job)."""
    return {
        segment.pk: segment_recalculate(segment=segment, at=at)
        for segment in Segment.objects.exclude(kind=Segment.Kind.STATIC).select_related("program")
    }


@dataclass(frozen=True)
class UploadResult:
    found: int
    missing: int


_COLUMNS = {
    "phone": "phone",
    "телефон": "phone",
    "card_number": "card",
    "номер карты": "card",
    "member_id": "id",
    "id": "id",
}


def segment_upload(*, segment: Segment, text: str, by: Any = None) -> UploadResult:
    """Replace a static segment's members with those listed in a CSV text.

    Each row names a member by phone (any local form), card number or member id.
    """
    reader = csv.DictReader(io.StringIO(text), delimiter=";" if ";" in text[:200] else ",")
    program = segment.program
    phones: set[str] = set()
    cards: set[str] = set()
    ids: set[uuid.UUID] = set()
    rows = 0
    for row in reader:
        rows += 1
        for header, value in row.items():
            kind = _COLUMNS.get((header or "").strip().lower())
            value = (value or "").strip()
            if not kind or not value:
                continue
            if kind == "phone":
                try:
                    phones.add(normalize_phone(value, program.default_region))
                except InvalidPhone:
                    pass
            elif kind == "card":
                cards.add(value)
            else:
                try:
                    ids.add(uuid.UUID(value))
                except ValueError:
                    pass
            break
    member_ids = set(
        Member.objects.filter(program=program)
        .filter(
            Q(phone__in=phones)
            | Q(pk__in=ids)
            | Q(pk__in=Card.objects.filter(number__in=cards).values("member_id"))
        )
        .values_list("id", flat=True)
    )
    with transaction.atomic():
        SegmentMember.objects.filter(segment=segment).delete()
        SegmentMember.objects.bulk_create(
            [SegmentMember(segment=segment, member_id=m) for m in member_ids], batch_size=5000
        )
        audit_record(
            user=by,
            action="update",
            obj=segment,
            changes={"members": [segment.size, len(member_ids)]},
            program=program,
            source="campaigns",
        )
    segment_recalculate(segment=segment)
    return UploadResult(found=len(member_ids), missing=max(0, rows - len(member_ids)))
