"""django-import-export for members: the admin's preview/confirm flow over accounts.csv_bulk.

django-import-export drives the admin pages (upload, dry-run preview,
confirmation, export form) and its Result carries the per-row outcome. The
work itself is the set-based import of accounts.csv_bulk, the same one the
`members_import` command and the Celery task run, so a file gives the same
outcome through every door. Compared with django-import-export's defaults
(one instance loaded, diffed and saved per row) this is its bulk mode taken
to the end: `skip_diff`, no instance per row, one COPY and a few set-based
statements for the whole file (bench/members.py measures both).

Preview and confirmation: the dry run plans the import and keeps a digest of
every row's outcome; the confirmation plans again inside one transaction and
writes only when the digest is the same, so what is written is exactly what
was previewed. Anything that fails rolls the whole confirmation back.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import tablib
from django.core.files.base import ContentFile
from django.db.models import QuerySet
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export import resources
from import_export.formats import base_formats
from import_export.results import Result, RowResult

from accounts.csv_bulk import (
    CREATE,
    REFUSED,
    UPDATE,
    ImportSummary,
    MemberImport,
    RowOutcome,
    members_export_rows,
)
from accounts.csv_format import (
    COLUMNS,
    FileFormatError,
    decode_bytes,
    export_headers,
    open_text,
)
from accounts.models import Member
from programs.models import Program

# How many rows the preview lists (all counts are always shown; the refused
# rows of a confirmed import are all in the downloadable report).
PREVIEW_REFUSED = 1000
PREVIEW_OTHERS = 300
# How long a preview or confirmation waits for another import into the same program
# before it says so (a web request cannot wait for a million-row job to end).
ADMIN_WAIT_SECONDS = 10


class PlanChanged(RuntimeError):
    """The members changed between the preview and the confirmation."""


class MemberCsvFormat(base_formats.CSV):
    """CSV as people have it: encoding and delimiter detected; exported for Excel.

    Read as bytes (is_binary) so the encoding can be detected, not assumed.
    Export: UTF-8 with BOM (Excel needs it to see UTF-8), `;` between cells
    when the admin speaks Russian (what Russian Excel expects).
    """

    def is_binary(self) -> bool:
        return True

    def get_read_mode(self) -> str:
        return "rb"

    def get_title(self) -> str:
        return "csv"

    def create_dataset(self, in_stream: bytes | str, **kwargs: Any) -> tablib.Dataset:
        text = in_stream if isinstance(in_stream, str) else decode_bytes(in_stream)
        source = open_text(text)
        rows = list(source.rows)
        # A row longer than the header keeps its overflow (under empty headers):
        # the row check refuses it rather than the cells being lost.
        width = max([len(source.header), *(len(r) for r in rows)])
        dataset = tablib.Dataset(headers=source.header + [""] * (width - len(source.header)))
        for cells in rows:
            dataset.append(cells + [""] * (width - len(cells)))
        return dataset

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> str:
        delimiter = ";" if _russian() else ","
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerow(dataset.headers)
        writer.writerows(dataset)
        return "\ufeff" + out.getvalue()


def _russian() -> bool:
    return (translation.get_language() or "").startswith("ru")


class MemberResource(resources.ModelResource):
    """Members in and out of the admin, columns of API.md "Member CSV"."""

    class Meta:
        model = Member
        name = gettext_lazy("Members (CSV columns of the member file)")
        fields = ()
        import_id_fields = ()
        # Tuned for big files: no per-row diff or instance, bulk everything.
        skip_diff = True
        skip_html_diff = True
        use_bulk = True
        batch_size = 10_000
        store_instance = False
        report_skipped = True
        use_transactions = True

    def __init__(
        self,
        program: Program | None = None,
        expected_digest: str = "",
        on_plan: Callable[[ImportSummary], None] | None = None,
        report_name: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.program = program
        self.expected_digest = expected_digest
        self.on_plan = on_plan
        self.report_name = report_name
        self.dry_run = True
        self.run: MemberImport | None = None
        self.summary: ImportSummary | None = None
        self.outcomes: dict[int, RowOutcome] = {}

    # -- what the admin shows of the columns ------------------------------
    def get_user_visible_fields(self) -> list[Any]:
        return []

    def get_import_fields(self) -> list[Any]:
        return []

    def column_help(self) -> list[tuple[str, str]]:
        return [(en, ru) for en, ru, _more in COLUMNS.values()]

    # -- import -----------------------------------------------------------
    def import_data(self, dataset: tablib.Dataset, dry_run: bool = False, **kwargs: Any) -> Result:
        kwargs.pop("use_transactions", None)
        self.dry_run = dry_run
        # All or nothing: the whole import (dry or not) is one transaction.
        return super().import_data(dataset, dry_run=dry_run, use_transactions=True, **kwargs)

    def before_import(self, dataset: tablib.Dataset, **kwargs: Any) -> None:
        if self.program is None:
            raise FileFormatError([_("Choose the program to import the members into.")])
        self.run = MemberImport(
            program=self.program, by=kwargs.get("user"), wait_seconds=ADMIN_WAIT_SECONDS
        )
        self.run.stage(dataset.headers or [], dataset)
        summary = self.run.plan(digest=True)
        summary.dry_run = self.dry_run
        if not self.dry_run and self.expected_digest != summary.digest:
            raise PlanChanged(
                _(
                    "The members changed since the preview, so the import would no longer "
                    "do what the preview showed. Nothing was imported: upload the file "
                    "again to see a new preview."
                )
            )
        self.summary = summary
        self.outcomes = {o.line: o for o in self.run.outcomes()}
        if self.on_plan is not None:
            self.on_plan(summary)

    def import_row(self, row: Any, instance_loader: Any, **kwargs: Any) -> RowResult:
        result = self.get_row_result_class()()
        # django-import-export counts data rows from 1; the file's line 1 is the header.
        outcome = self.outcomes.get(kwargs["row_number"] + 1)
        if outcome is None:  # a blank line
            result.import_type = RowResult.IMPORT_TYPE_SKIP
            return result
        if outcome.action == CREATE:
            result.import_type = RowResult.IMPORT_TYPE_NEW
        elif outcome.action == UPDATE:
            result.import_type = RowResult.IMPORT_TYPE_UPDATE
        else:
            result.import_type = RowResult.IMPORT_TYPE_SKIP
        result.object_id = outcome.member_id
        return result

    def after_import(self, dataset: tablib.Dataset, result: Result, **kwargs: Any) -> None:
        run, summary = self.run, self.summary
        if run is None or summary is None or result.has_errors():
            return  # before_import failed: there is nothing to show or write
        result.member_summary = summary
        result.member_preview = _preview(self.outcomes)
        if self.dry_run:
            return
        run.apply()
        if summary.refused and self.report_name:
            from django.core.files.storage import default_storage

            out = io.StringIO()
            run.write_refused(out, delimiter=";" if _russian() else ",")
            report = ContentFile(("\ufeff" + out.getvalue()).encode())
            default_storage.save(self.report_name, report)
            result.member_report = self.report_name

    def import_instance(self, instance: Any, row: Any, **kwargs: Any) -> None:
        raise NotImplementedError("members are written set-based by accounts.csv_bulk")

    # -- export -----------------------------------------------------------
    def get_export_headers(self, selected_fields: Any = None) -> list[str]:
        return export_headers(translation.get_language())

    def export(self, queryset: QuerySet[Member] | None = None, **kwargs: Any) -> tablib.Dataset:
        """The members of `queryset` (the admin's filtered list), one row each, formulae escaped."""
        dataset = tablib.Dataset(headers=self.get_export_headers())
        for cells in members_export_rows(Member.objects.all() if queryset is None else queryset):
            dataset.append(cells)
        return dataset


def _preview(outcomes: dict[int, RowOutcome]) -> list[RowOutcome]:
    """The rows the preview lists: refused ones first (they need the user), then a sample."""
    refused = [o for o in outcomes.values() if o.action == REFUSED][:PREVIEW_REFUSED]
    others = [o for o in outcomes.values() if o.action != REFUSED][:PREVIEW_OTHERS]
    return sorted(refused + others, key=lambda o: o.line)
