"""Member CSV import and export, set-based: the one write path of every member file.

An import runs in the caller's transaction, in four steps:

1. `stage`: rows are checked one by one by `accounts.csv_format.RowParser`
   and streamed with PostgreSQL COPY into a temporary staging table, so
   memory does not grow with the file;
2. `plan`: one SQL statement matches every row to a member (by phone, then
   by active card), finds duplicates inside the file and card conflicts, and
   decides per row: create, update, unchanged or refused (with the reasons);
3. `apply` (not in a dry run): members, cards and consent entries are
   inserted and updated with a handful of set-based statements;
4. `write_refused`: the refused rows, as they were in the file, with a
   `reason` column, so they can be fixed and imported again.

The admin import (accounts.resources), the `members_import` command and the
Celery task (accounts.tasks) all run exactly this, so the same file gives the
same outcome whatever the door. Running the same file twice changes nothing
the second time: a row only writes what differs from the member as stored,
and a consent entry (channel `import`) only when it changes the member's
current consent.

The SQL writes what `accounts.services.member_enroll` writes (a member with
the lowest tier, an active card, consent entries dated at registration);
per-row service calls would take an hour for a million rows.
"""

from __future__ import annotations

import csv
import datetime
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import billiard
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, models, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.cards import card_number_candidate
from accounts.csv_format import (
    RAW_SEPARATOR,
    ColumnMap,
    RowParser,
    cell_text,
    escape_formula,
    export_headers,
    open_binary,
)
from accounts.models import Card, Channel, Consent, Member
from accounts.selectors import consent_given_subquery
from loyalty_site.db import statistics_refresh
from programs.models import Program, Store, Tier

# done rows, total rows (None: unknown), phase ("reading", "checking", "writing", "done")
Progress = Callable[[int, int | None, str], None]

ROWS_TABLE = "member_import_rows"
MATCHED_TABLE = "member_import_matched"
PLAN_TABLE = "member_import_plan"
STAGING_COLUMNS = (
    "line",
    "raw",
    "errors",
    "phone",
    "card_number",
    "new_card_number",
    "first_name",
    "last_name",
    "email",
    "birth_date",
    "store",
    "registered_at",
    "c_personal_data",
    "c_marketing_sms",
    "c_marketing_email",
)
# Changes that touch the member row itself (the rest are a card or consents).
MEMBER_CHANGES = (
    "phone",
    "first_name",
    "last_name",
    "email",
    "birth_date",
    "store",
    "registered_at",
)
PROGRESS_EVERY = 10_000
COPY_BATCH = 2_000
# Checking rows in forked processes pays from about this many rows on; more than a
# few processes do not keep up with one reader and the database.
PARALLEL_FROM = 20_000
MAX_WORKERS = 4
APPLY_CHUNK = 100_000  # file rows written (and their foreign keys checked) per step

CREATE = "create"
UPDATE = "update"
UNCHANGED = "unchanged"
REFUSED = "refused"


@dataclass
class ImportSummary:
    """What an import did (or, in a dry run, would do)."""

    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    dry_run: bool = False
    ignored_columns: list[str] = field(default_factory=list)
    digest: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "refused": self.refused,
            "dry_run": self.dry_run,
            "ignored_columns": self.ignored_columns,
        }


@dataclass(frozen=True)
class RowOutcome:
    line: int
    action: str
    reason: str
    changes: tuple[str, ...]
    member_id: uuid.UUID | None


class ImportBusy(RuntimeError):
    """Another import into the same program is running; nothing was imported."""


def _quiet(done: int, total: int | None, phase: str) -> None:
    """The default progress callback: report nothing."""


class MemberImport:
    """One import of member rows into one program; use inside `transaction.atomic()`."""

    def __init__(
        self,
        *,
        program: Program,
        by: Any = None,
        progress: Progress | None = None,
        total: int | None = None,
        wait_seconds: float | None = None,
        workers: int = 1,
    ) -> None:
        self.program = program
        # Processes that check rows while this one reads the file (see _copy_texts).
        self.workers = workers
        self.by_id = getattr(by, "pk", None)
        self.progress = progress or _quiet
        self.total = total
        # How long plan() waits for another import into the program to end; None: as long
        # as it takes (the command, the Celery task), a web request waits a few seconds.
        self.wait_seconds = wait_seconds
        self.header: list[str] = []
        self.columns: ColumnMap | None = None
        self.staged = 0
        self.planned = False
        # Seconds per step (stage, plan, apply), for the benchmark and `-v 2`.
        self.timings: dict[str, float] = {}
        # How apply() checked the foreign keys: True once per referenced row, False by
        # the per-row triggers, None: it wrote nothing.
        self.references_in_bulk: bool | None = None

    # -- 1. stage ----------------------------------------------------------
    def stage(self, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> None:
        """Check each row and COPY it into the staging table. Raises FileFormatError."""
        started = time.perf_counter()
        self.header = [cell_text(h) for h in header]
        self.columns = ColumnMap.from_header(self.header)
        parser = RowParser(
            self.columns, region=self.program.default_region, time_zone=self.program.time_zone
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"DROP TABLE IF EXISTS {PLAN_TABLE}; DROP TABLE IF EXISTS {MATCHED_TABLE}; "
                f"DROP TABLE IF EXISTS {ROWS_TABLE}"
            )
            cursor.execute(
                f"""
                CREATE TEMP TABLE {ROWS_TABLE} (
                    line integer PRIMARY KEY,
                    raw text NOT NULL,
                    errors text,
                    phone text,
                    card_number text,
                    new_card_number text,
                    first_name text,
                    last_name text,
                    email text,
                    birth_date date,
                    store text,
                    registered_at timestamptz,
                    c_personal_data boolean,
                    c_marketing_sms boolean,
                    c_marketing_email boolean,
                    new_id uuid NOT NULL DEFAULT {_uuid7_sql()}
                ) ON COMMIT DROP
                """
            )
            done = 0
            statement = f"COPY {ROWS_TABLE} ({', '.join(STAGING_COLUMNS)}) FROM STDIN"
            with cursor.copy(statement) as copy:
                for count, text in _copy_texts(parser, _batches(rows), self.workers):
                    copy.write(text)
                    if (done + count) // PROGRESS_EVERY > done // PROGRESS_EVERY:
                        self.progress(done + count, self.total, "reading")
                    done += count
            cursor.execute(f"ANALYZE {ROWS_TABLE}")
        self.staged = done
        self.timings["stage"] = time.perf_counter() - started
        self.progress(done, self.total or done, "reading")

    # -- 2. plan -----------------------------------------------------------
    def plan(self, *, digest: bool = False) -> ImportSummary:
        """Decide every row's outcome with one set-based statement; writes nothing."""
        started = time.perf_counter()
        self.progress(self.staged, self.total or self.staged, "checking")
        self._program_lock()
        # The plan and the writes join the file with these tables (loyalty_site.db).
        statistics_refresh(Member, Card, Consent)
        program_id = self.program.pk
        params = {
            "program": program_id,
            "msg_store": _("There is no store with the code %s in this program."),
            "msg_dup_phone": _("The same phone is also in row %s of the file."),
            "msg_dup_card": _("The same card number is also in row %s of the file."),
            "msg_card_program": _("Card %s belongs to a member of another program."),
            "msg_card_member": _("Card %s belongs to another member."),
            "msg_card_blocked": _(
                "Card %s is blocked (it was replaced): give the member's current card "
                "or leave the cell empty."
            ),
            "msg_other_card": _(
                "The member already has card %s: replace the card on the member's page."
            ),
            "msg_same_member": _(
                "Row %s of the file is the same member (found by phone or card number)."
            ),
        }
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '256MB'")
            # Each row with what it finds, as a table of its own: its statistics let the
            # planner see how many members a file matches (a re-run matches them all).
            cursor.execute(
                f"""
                CREATE TEMP TABLE {MATCHED_TABLE} ON COMMIT DROP AS
                -- Grouped byte-wise (COLLATE "C"): a million phones sort several times
                -- faster than in the database's language rules, and equality is the same.
                WITH dup_phone AS (
                    SELECT phone COLLATE "C" AS phone, array_agg(line ORDER BY line) AS lines
                    FROM {ROWS_TABLE} WHERE phone IS NOT NULL
                    GROUP BY 1 HAVING count(*) > 1
                ),
                dup_card AS (
                    SELECT card_number COLLATE "C" AS card_number,
                           array_agg(line ORDER BY line) AS lines
                    FROM {ROWS_TABLE} WHERE card_number IS NOT NULL
                    GROUP BY 1 HAVING count(*) > 1
                ),
                matched AS (
                    SELECT r.line, r.errors, r.phone, r.card_number, r.new_card_number,
                           r.first_name, r.last_name, r.email, r.birth_date, r.store,
                           r.registered_at, r.c_personal_data, r.c_marketing_sms,
                           r.c_marketing_email, r.new_id,
                           pm.id AS phone_member,
                           c.member_id AS card_member, c.status AS card_status,
                           cm.program_id AS card_program,
                           st.id AS store_id,
                           COALESCE(
                               pm.id,
                               CASE WHEN c.status = 'active' AND cm.program_id = %(program)s
                                    THEN c.member_id END
                           ) AS target,
                           dp.lines AS dup_phone_lines,
                           dc.lines AS dup_card_lines
                    FROM {ROWS_TABLE} r
                    LEFT JOIN accounts_member pm
                           ON pm.program_id = %(program)s AND pm.phone = r.phone
                    LEFT JOIN accounts_card c ON c.number = r.card_number
                    LEFT JOIN accounts_member cm ON cm.id = c.member_id
                    LEFT JOIN programs_store st
                           ON st.program_id = %(program)s AND st.code = r.store
                    LEFT JOIN dup_phone dp ON dp.phone = r.phone COLLATE "C"
                    LEFT JOIN dup_card dc ON dc.card_number = r.card_number COLLATE "C"
                )
                SELECT * FROM matched
                """,
                params,
            )
            cursor.execute(f"ANALYZE {MATCHED_TABLE}")
            cursor.execute(
                f"""
                CREATE TEMP TABLE {PLAN_TABLE} ON COMMIT DROP AS
                WITH dup_target AS (
                    SELECT target, array_agg(line ORDER BY line) AS lines
                    FROM {MATCHED_TABLE} WHERE target IS NOT NULL
                    GROUP BY target HAVING count(*) > 1
                ),
                -- The matched members' current consents (latest entry per kind), found in
                -- one pass: a million index probes per kind cost far more than a hash join.
                latest AS (
                    SELECT DISTINCT ON (x.member_id, x.kind) x.member_id, x.kind, x.granted
                    FROM accounts_consent x
                    WHERE x.member_id IN (
                        SELECT target FROM {MATCHED_TABLE} WHERE target IS NOT NULL
                    )
                    ORDER BY x.member_id, x.kind, x.created_at DESC, x.id DESC
                ),
                current_consents AS (
                    SELECT member_id,
                        bool_or(granted) FILTER (WHERE kind = 'personal_data') AS personal_data,
                        bool_or(granted) FILTER (WHERE kind = 'marketing_sms') AS marketing_sms,
                        bool_or(granted) FILTER (WHERE kind = 'marketing_email')
                            AS marketing_email
                    FROM latest GROUP BY member_id
                ),
                judged AS (
                    SELECT m.*,
                        array_remove(ARRAY[
                            m.errors,
                            CASE WHEN m.store IS NOT NULL AND m.store_id IS NULL
                                 THEN format(%(msg_store)s, m.store) END,
                            CASE WHEN m.dup_phone_lines IS NOT NULL
                                 THEN format(%(msg_dup_phone)s, array_to_string(
                                     array_remove(m.dup_phone_lines, m.line), ', ')) END,
                            CASE WHEN m.dup_card_lines IS NOT NULL
                                 THEN format(%(msg_dup_card)s, array_to_string(
                                     array_remove(m.dup_card_lines, m.line), ', ')) END,
                            CASE
                                WHEN m.card_member IS NOT NULL
                                     AND m.card_program <> %(program)s
                                    THEN format(%(msg_card_program)s, m.card_number)
                                WHEN m.card_member IS NOT NULL AND m.phone_member IS NOT NULL
                                     AND m.card_member <> m.phone_member
                                    THEN format(%(msg_card_member)s, m.card_number)
                                WHEN m.card_member IS NOT NULL AND m.phone_member IS NULL
                                     AND m.card_status <> 'active'
                                    THEN format(%(msg_card_blocked)s, m.card_number)
                                WHEN m.card_number IS NOT NULL AND m.card_member IS NULL
                                     AND ac.number IS NOT NULL
                                    THEN format(%(msg_other_card)s, ac.number)
                            END,
                            CASE WHEN dt.lines IS NOT NULL AND m.dup_phone_lines IS NULL
                                      AND m.dup_card_lines IS NULL
                                 THEN format(%(msg_same_member)s, array_to_string(
                                     array_remove(dt.lines, m.line), ', ')) END
                        ]::text[], NULL) AS reasons,
                        array_remove(ARRAY[
                            CASE WHEN m.phone IS DISTINCT FROM t.phone THEN 'phone' END,
                            CASE WHEN m.first_name IS DISTINCT FROM t.first_name
                                      AND m.first_name IS NOT NULL THEN 'first_name' END,
                            CASE WHEN m.last_name IS DISTINCT FROM t.last_name
                                      AND m.last_name IS NOT NULL THEN 'last_name' END,
                            CASE WHEN m.email IS DISTINCT FROM t.email
                                      AND m.email IS NOT NULL THEN 'email' END,
                            CASE WHEN m.birth_date IS DISTINCT FROM t.birth_date
                                      AND m.birth_date IS NOT NULL THEN 'birth_date' END,
                            CASE WHEN m.store_id IS DISTINCT FROM t.store_id
                                      AND m.store_id IS NOT NULL THEN 'store' END,
                            CASE WHEN m.registered_at IS NOT NULL
                                      AND m.registered_at
                                          <> date_trunc('second', t.registered_at)
                                 THEN 'registered_at' END,
                            CASE WHEN m.card_number IS NOT NULL AND m.card_member IS NULL
                                 THEN 'card_number' END,
                            CASE WHEN m.c_personal_data IS DISTINCT FROM cur.personal_data
                                      AND m.c_personal_data IS NOT NULL
                                 THEN 'consent_personal_data' END,
                            CASE WHEN m.c_marketing_sms IS DISTINCT FROM cur.marketing_sms
                                      AND m.c_marketing_sms IS NOT NULL
                                 THEN 'consent_marketing_sms' END,
                            CASE WHEN m.c_marketing_email IS DISTINCT FROM cur.marketing_email
                                      AND m.c_marketing_email IS NOT NULL
                                 THEN 'consent_marketing_email' END
                        ]::text[], NULL) AS changes
                    FROM {MATCHED_TABLE} m
                    LEFT JOIN dup_target dt ON dt.target = m.target
                    LEFT JOIN accounts_member t ON t.id = m.target
                    LEFT JOIN accounts_card ac
                           ON ac.member_id = m.target AND ac.status = 'active'
                    LEFT JOIN current_consents cur ON cur.member_id = m.target
                )
                SELECT
                    j.line,
                    CASE WHEN cardinality(j.reasons) > 0 THEN '{REFUSED}'
                         WHEN j.target IS NULL THEN '{CREATE}'
                         WHEN cardinality(j.changes) > 0 THEN '{UPDATE}'
                         ELSE '{UNCHANGED}' END AS action,
                    array_to_string(j.reasons, ' ') AS reason,
                    CASE WHEN j.target IS NULL THEN ARRAY[]::text[] ELSE j.changes END AS changes,
                    COALESCE(j.target, j.new_id) AS member_id,
                    j.store_id,
                    CASE WHEN j.target IS NULL THEN COALESCE(j.card_number, j.new_card_number)
                         WHEN 'card_number' = ANY(j.changes) THEN j.card_number
                    END AS card_add,
                    j.card_number IS NULL AND j.target IS NULL AS card_issued,
                    j.changes && %(member_changes)s::text[] AS member_changed,
                    CASE WHEN j.target IS NULL OR 'consent_personal_data' = ANY(j.changes)
                         THEN j.c_personal_data END AS add_personal_data,
                    CASE WHEN j.target IS NULL OR 'consent_marketing_sms' = ANY(j.changes)
                         THEN j.c_marketing_sms END AS add_marketing_sms,
                    CASE WHEN j.target IS NULL OR 'consent_marketing_email' = ANY(j.changes)
                         THEN j.c_marketing_email END AS add_marketing_email
                FROM judged j
                """,
                {**params, "member_changes": list(MEMBER_CHANGES)},
            )
            cursor.execute(f"CREATE UNIQUE INDEX ON {PLAN_TABLE} (line)")
            cursor.execute(f"ANALYZE {PLAN_TABLE}")
            cursor.execute(f"SELECT action, count(*) FROM {PLAN_TABLE} GROUP BY action")
            counts = dict(cursor.fetchall())
            summary = ImportSummary(
                total=sum(counts.values()),
                created=counts.get(CREATE, 0),
                updated=counts.get(UPDATE, 0),
                unchanged=counts.get(UNCHANGED, 0),
                refused=counts.get(REFUSED, 0),
                ignored_columns=list(self.columns.ignored) if self.columns else [],
            )
            if digest:
                cursor.execute(
                    f"""
                    SELECT md5(coalesce(string_agg(
                        line || ':' || action || ':' || reason || ':'
                        || array_to_string(changes, ','), '|' ORDER BY line), ''))
                    FROM {PLAN_TABLE}
                    """
                )
                summary.digest = cursor.fetchone()[0]
        self.planned = True
        self.timings["plan"] = time.perf_counter() - started
        return summary

    def _program_lock(self) -> None:
        """One import into a program at a time, until the end of the transaction.

        The plan matches rows to the members as they are: two imports planned side
        by side would both create a member with the same phone, and the second
        would fail on the unique constraint. So the second waits (a transaction
        advisory lock, which tills never take) and then plans against what the
        first wrote; with `wait_seconds` it gives up after that long: ImportBusy.
        """
        key = f"accounts.member_import:{self.program.pk}"
        with connection.cursor() as cursor:
            if self.wait_seconds is None:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])
                return
            deadline = time.monotonic() + self.wait_seconds
            while True:
                cursor.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", [key])
                if cursor.fetchone()[0]:
                    return
                if time.monotonic() >= deadline:
                    raise ImportBusy(
                        _(
                            "Another import into the program %(program)s is running. Nothing "
                            "was imported: try again when it has finished."
                        )
                        % {"program": self.program.name}
                    )
                time.sleep(0.2)

    def outcomes(self, *, limit: int | None = None) -> Iterator[RowOutcome]:
        """Each row's planned outcome, in file order."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT line, action, reason, changes, member_id FROM {PLAN_TABLE} "
                "ORDER BY line LIMIT %s",
                [limit],
            )
            for line, action, reason, changes, member_id in cursor.fetchall():
                yield RowOutcome(line, action, reason, tuple(changes), member_id)

    # -- 3. apply ----------------------------------------------------------
    def apply(self) -> None:
        """Write what the plan decided: members, cards, consent entries."""
        if not self.planned:
            raise RuntimeError("plan() before apply()")
        started = time.perf_counter()
        total = self.total or self.staged
        self.progress(self.staged, total, "writing")
        now = timezone.now()
        tier = self.program.tiers.order_by("threshold").values_list("pk", flat=True).first()
        # Both tables by line range: the planner does not carry a range across the join.
        chunk = "p.line >= %(lo)s AND p.line < %(hi)s"
        chunk_r = f"{chunk} AND r.line >= %(lo)s AND r.line < %(hi)s"
        inserts: list[tuple[str, dict[str, Any]]] = []
        columns, values, params = _insert_parts(
            Member,
            {
                "id": "p.member_id",
                "program_id": "%(program)s",
                "phone": "r.phone",
                "first_name": "COALESCE(r.first_name, '')",
                "last_name": "COALESCE(r.last_name, '')",
                "email": "COALESCE(r.email, '')",
                "birth_date": "r.birth_date",
                "status": "%(active)s",
                "registered_at": "COALESCE(r.registered_at, %(now)s)",
                "channel": "%(channel)s",
                "store_id": "p.store_id",
                "tier_id": "%(tier)s",
            },
            now,
        )
        inserts.append(
            (
                f"""
                INSERT INTO accounts_member ({columns})
                SELECT {values}
                FROM {PLAN_TABLE} p JOIN {ROWS_TABLE} r USING (line)
                WHERE p.action = '{CREATE}' AND {chunk_r}
                ORDER BY p.line
                """,
                {
                    **params,
                    "program": self.program.pk,
                    "active": Member.Status.ACTIVE,
                    "now": now,
                    "channel": Channel.IMPORT,
                    "tier": tier,
                },
            )
        )
        update = (
            f"""
                UPDATE accounts_member t SET
                    phone = COALESCE(r.phone, t.phone),
                    first_name = COALESCE(r.first_name, t.first_name),
                    last_name = COALESCE(r.last_name, t.last_name),
                    email = COALESCE(r.email, t.email),
                    birth_date = COALESCE(r.birth_date, t.birth_date),
                    store_id = COALESCE(p.store_id, t.store_id),
                    registered_at = CASE WHEN 'registered_at' = ANY(p.changes)
                                         THEN r.registered_at ELSE t.registered_at END,
                    updated_at = %(now)s
                FROM {PLAN_TABLE} p JOIN {ROWS_TABLE} r USING (line)
                WHERE p.action = '{UPDATE}' AND p.member_changed AND t.id = p.member_id
                      AND {chunk_r}
                """,
            {"now": now},
        )
        columns, values, params = _insert_parts(
            Card,
            {
                "number": "p.card_add",
                "member_id": "p.member_id",
                "status": "%(active)s",
                "issued_at": "%(now)s",
            },
            now,
        )
        inserts.append(
            (
                f"""
                INSERT INTO accounts_card ({columns})
                SELECT {values} FROM {PLAN_TABLE} p
                WHERE p.action IN ('{CREATE}', '{UPDATE}') AND p.card_add IS NOT NULL
                      AND {chunk}
                ORDER BY p.line
                """,
                {**params, "active": Card.Status.ACTIVE, "now": now},
            )
        )
        columns, values, params = _insert_parts(
            Consent,
            {
                "member_id": "p.member_id",
                "kind": "v.kind",
                "granted": "v.granted",
                "channel": "%(channel)s",
                "text_version": "''",
                # As member_enroll does: a new member's consents date from registration.
                "created_at": f"CASE WHEN p.action = '{CREATE}' "
                "THEN COALESCE(r.registered_at, %(now)s) ELSE %(now)s END",
                "created_by_id": "%(by)s",
            },
            now,
        )
        inserts.append(
            (
                f"""
                INSERT INTO accounts_consent ({columns})
                SELECT {values}
                FROM {PLAN_TABLE} p JOIN {ROWS_TABLE} r USING (line)
                CROSS JOIN LATERAL (VALUES
                    ('{Consent.Kind.PERSONAL_DATA.value}', p.add_personal_data),
                    ('{Consent.Kind.MARKETING_SMS.value}', p.add_marketing_sms),
                    ('{Consent.Kind.MARKETING_EMAIL.value}', p.add_marketing_email)
                ) AS v(kind, granted)
                WHERE p.action IN ('{CREATE}', '{UPDATE}') AND v.granted IS NOT NULL
                      AND {chunk_r}
                ORDER BY p.line
                """,
                {**params, "channel": Channel.IMPORT, "now": now, "by": self.by_id},
            )
        )
        with connection.cursor() as cursor:
            self._issued_numbers_free(cursor)
            cursor.execute(
                f"SELECT min(line), max(line) FROM {PLAN_TABLE} "
                f"WHERE action IN ('{CREATE}', '{UPDATE}')"
            )
            first, last = cursor.fetchone()
            if first is not None:  # else nothing to write (a file imported before)
                in_bulk = self.references_in_bulk = self._references_checked_in_bulk(cursor, tier)
                if not in_bulk:
                    # The foreign keys are checked as each chunk is written, not all at
                    # commit: the same checks, while the rows they read are still in the
                    # cache, and the server does not hold millions of pending checks.
                    foreign_keys = _foreign_keys(cursor)
                    cursor.execute(f"SET CONSTRAINTS {foreign_keys} IMMEDIATE")
                chunks = [(lo, lo + APPLY_CHUNK) for lo in range(first, last + 1, APPLY_CHUNK)]
                # Existing members are updated over the whole file before any insert:
                # while accounts_member holds only committed rows, the server's statistics
                # of it hold (see plan()); the rows this transaction inserts are not in
                # them, and an update planned against a table thought empty can scan it
                # once per row.
                sql, statement_params = update
                for lo, hi in chunks:
                    cursor.execute(sql, {**statement_params, "lo": lo, "hi": hi})
                for lo, hi in chunks:
                    for sql, statement_params in inserts:
                        cursor.execute(sql, {**statement_params, "lo": lo, "hi": hi})
                    self.progress(min(hi - first, total), total, "writing")
                if in_bulk:
                    cursor.execute("SET LOCAL session_replication_role = origin")
                else:
                    cursor.execute(f"SET CONSTRAINTS {foreign_keys} DEFERRED")
        self.timings["apply"] = time.perf_counter() - started
        self.progress(total, total, "done")

    def _references_checked_in_bulk(self, cursor: Any, tier: int | None) -> bool:
        """Check the foreign keys once per referenced row, not once per written row.

        PostgreSQL checks a foreign key with a trigger per written row: an index
        probe and a lock on the referenced row. For an import that is about half
        of the writing time, spent re-checking the same program, tier and stores
        and the members the statement before has just inserted. A role allowed to
        set `session_replication_role` (a superuser, as on the embedded server)
        can skip those triggers, as `pg_restore --disable-triggers` does. The
        import then takes the locks the checks would have taken, once per
        referenced row (FOR KEY SHARE: no one can delete them until commit), and
        makes sure each of them exists; the new members are its own rows. True:
        the triggers are off until apply() turns them on again. False (the role
        may not, or the tables have a trigger of their own, which would be
        skipped too): the triggers check as usual.
        """
        cursor.execute(
            """
            SELECT count(*) FROM pg_trigger
            WHERE NOT tgisinternal AND tgenabled <> 'D' AND (
                (tgrelid = %s::regclass AND tgtype & (4 | 16) <> 0)  -- INSERT or UPDATE
                OR (tgrelid IN (%s::regclass, %s::regclass) AND tgtype & 4 <> 0))
            """,
            [Member._meta.db_table, Card._meta.db_table, Consent._meta.db_table],
        )
        if cursor.fetchone()[0]:
            return False
        # Each referenced table with the ids the written rows refer to.
        wanted = [
            (Program._meta.db_table, "SELECT %(program)s"),
            (
                Store._meta.db_table,
                f"SELECT DISTINCT store_id FROM {PLAN_TABLE} "
                f"WHERE store_id IS NOT NULL AND action IN ('{CREATE}', '{UPDATE}')",
            ),
            (
                Member._meta.db_table,
                f"SELECT member_id FROM {PLAN_TABLE} WHERE action = '{UPDATE}'",
            ),
        ]
        if tier is not None:
            wanted.append((Tier._meta.db_table, "SELECT %(tier)s"))
        if self.by_id is not None:
            wanted.append((get_user_model()._meta.db_table, "SELECT %(by)s"))
        params = {"program": self.program.pk, "tier": tier, "by": self.by_id}
        for table, ids in wanted:
            cursor.execute(
                f"""
                WITH wanted AS ({ids}),
                locked AS (SELECT id FROM {table} WHERE id IN (SELECT * FROM wanted)
                           FOR KEY SHARE)
                SELECT (SELECT count(*) FROM wanted) - (SELECT count(*) FROM locked)
                """,
                params,
            )
            if cursor.fetchone()[0]:
                return False  # a referenced row is gone: the triggers raise the error
        try:
            with transaction.atomic():
                cursor.execute("SET LOCAL session_replication_role = replica")
        except DatabaseError:  # the role may not: insufficient privilege
            return False
        return True

    def _issued_numbers_free(self, cursor: Any) -> None:
        """Redraw the rare issued card numbers that are taken (by a card or another row).

        The first pass checks every issued number; later ones only those just
        redrawn (a million rows give a few redraws, not worth a second full pass).
        """
        taken: list[int] | None = None  # None: every issued number
        for _attempt in range(20):
            cursor.execute(
                f"""
                WITH checked AS (
                    SELECT line, card_add FROM {PLAN_TABLE}
                    WHERE card_issued AND action = '{CREATE}'
                          AND (%(all)s OR line = ANY(%(lines)s))
                ), twice AS (
                    SELECT card_add FROM {PLAN_TABLE}
                    WHERE card_add IS NOT NULL AND action IN ('{CREATE}', '{UPDATE}')
                          AND (%(all)s OR card_add IN (SELECT card_add FROM checked))
                    GROUP BY card_add HAVING count(*) > 1
                )
                SELECT line FROM checked
                WHERE EXISTS (SELECT 1 FROM accounts_card c WHERE c.number = checked.card_add)
                      OR card_add IN (SELECT card_add FROM twice)
                """,
                {"all": taken is None, "lines": taken or []},
            )
            taken = [line for (line,) in cursor.fetchall()]
            if not taken:
                return
            cursor.executemany(
                f"UPDATE {PLAN_TABLE} SET card_add = %s WHERE line = %s",
                [(card_number_candidate(), line) for line in taken],
            )
        raise RuntimeError("could not draw free card numbers")

    # -- 4. report ---------------------------------------------------------
    def write_refused(self, out: IO[str], *, delimiter: str = ",") -> int:
        """Write the refused rows as they were in the file, after `row` and `reason` columns."""
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerow([_("row"), _("reason"), *self.header])
        written = 0
        with connection.connection.cursor(name="member_import_refused") as cursor:
            cursor.itersize = 5000
            cursor.execute(
                f"SELECT p.line, p.reason, r.raw FROM {PLAN_TABLE} p "
                f"JOIN {ROWS_TABLE} r USING (line) WHERE p.action = '{REFUSED}' ORDER BY p.line"
            )
            for line, reason, raw in cursor:
                writer.writerow([line, reason, *raw.split(RAW_SEPARATOR)])
                written += 1
        return written


def _batches(rows: Iterable[Sequence[Any]]) -> Iterator[list[tuple[int, Sequence[Any]]]]:
    """The rows with their line numbers, COPY_BATCH at a time.

    Line 1 is the header: row numbers are those a spreadsheet shows.
    """
    batch: list[tuple[int, Sequence[Any]]] = []
    for numbered in enumerate(rows, start=2):
        batch.append(numbered)
        if len(batch) == COPY_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _copy_text(parser: RowParser, batch: list[tuple[int, Sequence[Any]]]) -> tuple[int, str]:
    """(rows, COPY text) of a batch; blank lines carry no member and are left out."""
    lines = [
        parser.parse(cells, line).copy_line()
        for line, cells in batch
        if any(cells) and any(cell_text(c).strip() for c in cells)
    ]
    return len(lines), "".join(lines)


def checkers_for(total: int | None) -> int:
    """How many processes check rows for a file of `total` lines (MemberImport's workers)."""
    if total is None or total < PARALLEL_FROM:
        return 1
    return min(os.cpu_count() or 1, MAX_WORKERS)


def _copy_texts(
    parser: RowParser, batches: Iterator[list[tuple[int, Sequence[Any]]]], workers: int
) -> Iterator[tuple[int, str]]:
    """(rows, COPY text) of each batch, in file order; checked by `workers` processes.

    Checking rows is most of the reading time and runs in Python, one core at a
    time: with workers > 1, forked processes check the batches while this one
    reads the file and feeds COPY. At most two batches per worker are in
    flight, so memory stays flat. The children only compute (no database:
    the connection they inherit is never used there).

    The pool is billiard's (Celery's own multiprocessing): a Celery worker's
    process is daemonic, and the standard library's pools refuse to start
    children there, so the admin's import job would check in one process.
    """
    if workers <= 1:
        for batch in batches:
            yield _copy_text(parser, batch)
        return
    pool = billiard.get_context("fork").Pool(
        workers, initializer=_worker_start, initargs=(parser, translation.get_language())
    )
    try:
        pending: deque[Any] = deque()
        for batch in batches:
            pending.append(pool.apply_async(_worker_copy_text, (batch,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
    finally:
        pool.terminate()
        pool.join()


_worker_parser: RowParser | None = None


def _worker_start(parser: RowParser, language: str | None) -> None:
    """In a child of _copy_texts: the parent's parser, and its language for the reasons."""
    global _worker_parser
    _worker_parser = parser
    translation.activate(language or settings.LANGUAGE_CODE)


def _worker_copy_text(batch: list[tuple[int, Sequence[Any]]]) -> tuple[int, str]:
    assert _worker_parser is not None
    return _copy_text(_worker_parser, batch)


def _uuid7_sql() -> str:
    """SQL for a time-ordered UUID (version 7, RFC 9562) for each new member's id.

    Ids drawn in file order go to the right end of the primary key, and the cards'
    and consents' foreign-key checks then read it in order: a million random
    (version 4) ids scatter both over the whole index. They stay as opaque as
    ever (62 random bits); what they tell is the import's time, which the member
    rows already say. PostgreSQL 18 has uuidv7(); before, the same layout is
    made from a random UUID (millisecond time in its first 48 bits, version 7).
    """
    if connection.pg_version >= 180000:
        return "uuidv7()"
    return (
        "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
        "substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) "
        "FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid"
    )


def _foreign_keys(cursor: Any) -> str:
    """The foreign keys of the tables an import writes, quoted, for SET CONSTRAINTS."""
    names = []
    for model in (Member, Card, Consent):
        table = model._meta.db_table
        constraints = connection.introspection.get_constraints(cursor, table)
        names += [name for name, info in constraints.items() if info["foreign_key"]]
    return ", ".join(connection.ops.quote_name(name) for name in sorted(names))


def _insert_parts(
    model: type[models.Model], given: dict[str, str], now: datetime.datetime
) -> tuple[str, str, dict[str, Any]]:
    """Column list, SELECT expressions and parameters for a set-based INSERT into `model`.

    Columns not `given` get their model default, so a field added to the model
    later with a default does not break the import; one without a default
    (and not nullable) stops it loudly here rather than with a SQL error.
    """
    columns: list[str] = []
    values: list[str] = []
    params: dict[str, Any] = {}
    for f in model._meta.concrete_fields:
        column = f.column
        if column in given:
            expression = given[column]
        elif f.primary_key and isinstance(f, models.AutoField | models.BigAutoField):
            continue
        elif getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            expression = "%(now)s"
        elif f.has_default():
            name = f"default_{column}"
            params[name] = f.get_db_prep_save(f.get_default(), connection)
            expression = f"%({name})s"
        elif f.null:
            continue
        else:
            raise RuntimeError(
                f"{model.__name__}.{f.name} has no default: teach accounts.csv_bulk to fill it"
            )
        columns.append(connection.ops.quote_name(column))
        values.append(expression)
    params.setdefault("now", now)
    return ", ".join(columns), ", ".join(values), params


def members_import_stream(
    stream: IO[bytes],
    *,
    program: Program,
    dry_run: bool = False,
    by: Any = None,
    refused_out: IO[str] | None = None,
    progress: Progress | None = None,
    total: int | None = None,
    workers: int = 1,
) -> ImportSummary:
    """Import a member CSV file (binary stream) into `program`, all or nothing.

    In a dry run nothing is written. Refused rows go to `refused_out` (a text
    file opened with newline=""), with their reasons. Raises FileFormatError
    when the file as a whole cannot be read. `workers`: see MemberImport.
    """
    source = open_binary(stream)
    with transaction.atomic():
        run = MemberImport(program=program, by=by, progress=progress, total=total, workers=workers)
        run.stage(source.header, source.rows)
        summary = run.plan()
        summary.dry_run = dry_run
        if refused_out is not None:
            run.write_refused(refused_out, delimiter=source.delimiter)
        if dry_run:
            transaction.set_rollback(True)
        else:
            run.apply()
        ending = time.perf_counter()
    # The end of the transaction: a commit (or, in a dry run, the rollback).
    summary.timings = {**run.timings, "commit": time.perf_counter() - ending}
    return summary


def count_lines(stream: IO[bytes]) -> int:
    """Rows of a CSV file below its header, counted by line breaks (for progress only)."""
    lines = 0
    last = b"\n"
    while chunk := stream.read(1 << 20):
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


# --- Export -----------------------------------------------------------------


def members_export_rows(queryset: QuerySet[Member]) -> Iterator[list[str]]:
    """The members of `queryset` as export cells (COLUMNS order), formulae escaped.

    One query (active card and current consents as subqueries), read in
    chunks through a server-side cursor, so memory does not grow with the list.
    Anonymised members have nothing left to export and are skipped.
    """
    import zoneinfo

    active_card = Card.objects.filter(member=OuterRef("pk"), status=Card.Status.ACTIVE)
    rows = (
        queryset.exclude(status=Member.Status.ANONYMISED)
        .annotate(
            csv_card=Subquery(active_card.values("number")[:1]),
            csv_pd=consent_given_subquery(Consent.Kind.PERSONAL_DATA),
            csv_sms=consent_given_subquery(Consent.Kind.MARKETING_SMS),
            csv_email=consent_given_subquery(Consent.Kind.MARKETING_EMAIL),
        )
        .order_by("registered_at", "id")
        .values_list(
            "phone",
            "csv_card",
            "first_name",
            "last_name",
            "email",
            "birth_date",
            "store__code",
            "registered_at",
            "csv_pd",
            "csv_sms",
            "csv_email",
            "program__time_zone",
        )
    )
    zones: dict[str, zoneinfo.ZoneInfo] = {}
    for *values, zone_name in rows.iterator(chunk_size=5000):
        zone = zones.get(zone_name) or zones.setdefault(zone_name, zoneinfo.ZoneInfo(zone_name))
        phone, card, first, last, email, born, store, registered, *consents = values
        cells = [
            phone or "",
            card or "",
            first or "",
            last or "",
            email or "",
            born.isoformat() if born else "",
            store or "",
            registered.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if registered else "",
            *("" if c is None else ("1" if c else "0") for c in consents),
        ]
        yield [escape_formula(c) for c in cells]


def members_export_stream(
    out: IO[str],
    *,
    program: Program,
    language: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the program's members as CSV (header in `language`; `;` for Russian).

    The caller writes the BOM if the target wants one.
    """
    progress = progress or _quiet
    russian = (language or "").lower().startswith("ru")
    writer = csv.writer(out, delimiter=";" if russian else ",")
    writer.writerow(export_headers(language))
    members = Member.objects.filter(program=program)
    total = members.exclude(status=Member.Status.ANONYMISED).count()
    written = 0
    with transaction.atomic():  # server-side cursors live in a transaction
        for cells in members_export_rows(members):
            writer.writerow(cells)
            written += 1
            if written % PROGRESS_EVERY == 0:
                progress(written, total, "writing")
    progress(written, total, "done")
    return written
