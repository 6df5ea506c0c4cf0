"""Member CSV in the admin: import with preview and confirmation, export, big-file jobs.

`MemberCsvAdminMixin` goes in front of MemberAdmin's bases. Import needs the
permission `accounts.import_members` (administrators), export
`accounts.export_members` (support, finance). Files too big for a web
request go to a Celery job (accounts.tasks) whose progress the admin shows.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export.admin import ImportExportMixin
from import_export.formats import base_formats
from import_export.forms import ConfirmImportForm, ExportForm, ImportForm

from accounts.csv_format import COLUMNS, FileFormatError
from accounts.csv_jobs import JOBS_DIR, job_create, job_load, jobs_recent
from accounts.resources import MemberCsvFormat, MemberResource
from programs.models import Program

IMPORT_PERMISSION = "accounts.import_members"
EXPORT_PERMISSION = "accounts.export_members"
# Above this size the admin import sends the user to a background job.
REQUEST_IMPORT_MAX_BYTES = 30 * 1024 * 1024


def _program_field() -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        queryset=Program.objects.all(),
        label=gettext_lazy("Program"),
        help_text=gettext_lazy("The members are imported into this program."),
    )


class MemberImportForm(ImportForm):
    program = _program_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        programs = Program.objects.all()
        if len(programs) == 1:
            self.fields["program"].initial = programs[0].pk

    def clean_import_file(self) -> Any:
        upload = self.cleaned_data.get("import_file")
        if upload is not None and upload.size > REQUEST_IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                _("The file is too big to import while you wait: use 'Import a large file'.")
            )
        return upload


class MemberConfirmImportForm(ConfirmImportForm):
    program = forms.ModelChoiceField(queryset=Program.objects.all(), widget=forms.HiddenInput)
    plan_digest = forms.CharField(widget=forms.HiddenInput)


class LargeImportForm(forms.Form):
    program = _program_field()
    import_file = forms.FileField(label=gettext_lazy("Member CSV file"))
    dry_run = forms.BooleanField(
        label=gettext_lazy("Check only (write nothing)"),
        required=False,
        help_text=gettext_lazy("Produces the report of refused rows without importing."),
    )


class MemberCsvAdminMixin(ImportExportMixin):
    """Import/export of the member list; put it first in MemberAdmin's bases."""

    resource_classes = [MemberResource]
    import_formats = [MemberCsvFormat, base_formats.XLSX]
    export_formats = [MemberCsvFormat, base_formats.XLSX]
    import_form_class = MemberImportForm
    confirm_form_class = MemberConfirmImportForm
    export_form_class = ExportForm
    import_template_name = "admin/accounts/member/csv_import.html"
    import_export_change_list_template = "admin/accounts/member/csv_change_list.html"
    skip_admin_log = True  # one import can be 100,000 rows; the outcome is in the report

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(IMPORT_PERMISSION)

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(EXPORT_PERMISSION)

    # -- import with preview ----------------------------------------------
    def get_import_resource_kwargs(self, request: HttpRequest, **kwargs: Any) -> dict[str, Any]:
        form = kwargs.get("form")
        resource_kwargs: dict[str, Any] = {}
        data = getattr(form, "cleaned_data", None) or {}
        if data.get("program") is not None:
            resource_kwargs["program"] = data["program"]
        if isinstance(form, MemberConfirmImportForm):
            resource_kwargs["expected_digest"] = data.get("plan_digest", "")
            resource_kwargs["report_name"] = f"{JOBS_DIR}/{uuid.uuid4().hex}/refused.csv"
        elif form is not None:

            def remember(summary: Any) -> None:
                form.member_plan_digest = summary.digest

            resource_kwargs["on_plan"] = remember
        return resource_kwargs

    def add_data_read_fail_error_to_form(self, form: Any, e: Exception) -> None:
        """Say why the file cannot be read (UTF-16, mixed encodings, an unclosed quote...),
        not only the name of the exception, which is all django-import-export shows."""
        if isinstance(e, FileFormatError):
            for message in e.messages:
                form.add_error("import_file", message)
            return
        super().add_data_read_fail_error_to_form(form, e)

    def get_confirm_form_initial(self, request: HttpRequest, import_form: Any) -> dict[str, Any]:
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            initial["program"] = import_form.cleaned_data["program"].pk
            initial["plan_digest"] = getattr(import_form, "member_plan_digest", "")
        return initial

    def get_import_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_import_context_data(**kwargs)
        context["member_columns"] = [(en, ru) for en, ru, _more in COLUMNS.values()]
        return context

    def process_result(self, result: Any, request: HttpRequest) -> HttpResponse:
        if result.has_errors():
            for error in result.base_errors:
                messages.error(request, str(error.error))
            return HttpResponseRedirect(reverse("admin:accounts_member_import"))
        summary = result.member_summary
        text = _(
            "Import finished: %(created)d members created, %(updated)d updated, "
            "%(unchanged)d unchanged, %(refused)d rows refused."
        ) % {
            "created": summary.created,
            "updated": summary.updated,
            "unchanged": summary.unchanged,
            "refused": summary.refused,
        }
        report = getattr(result, "member_report", "")
        if report:
            job_id = report.split("/")[1]
            url = reverse("admin:accounts_member_csv_report", args=[job_id])
            messages.warning(
                request,
                format_html('{} <a href="{}">{}</a>', text, url, _("Download the refused rows")),
            )
        else:
            messages.success(request, text)
        return HttpResponseRedirect(reverse("admin:accounts_member_changelist"))

    # -- big files: Celery jobs -------------------------------------------
    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        own = [
            path(
                "import-large/",
                view(self.large_import_view),
                name="accounts_member_import_large",
            ),
            path(
                "import-jobs/<str:job_id>/",
                view(self.import_job_view),
                name="accounts_member_import_job",
            ),
            path(
                "import-jobs/<str:job_id>/refused.csv",
                view(self.refused_report_view),
                name="accounts_member_csv_report",
            ),
        ]
        return own + super().get_urls()

    def large_import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = LargeImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            from accounts.tasks import members_import_task

            upload = form.cleaned_data["import_file"]
            job = job_create(
                program_id=form.cleaned_data["program"].pk,
                upload=upload,
                file_name=upload.name,
                dry_run=form.cleaned_data["dry_run"],
                user_id=request.user.pk,
            )
            members_import_task.delay(job.id)
            return HttpResponseRedirect(reverse("admin:accounts_member_import_job", args=[job.id]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Import a large member file"),
            "form": form,
            "jobs": jobs_recent(),
            "member_columns": [(en, ru) for en, ru, _more in COLUMNS.values()],
        }
        return TemplateResponse(request, "admin/accounts/member/csv_import_large.html", context)

    def import_job_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        job = job_load(job_id)
        if job is None:
            raise Http404
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Member import: %(file)s") % {"file": job.file_name},
            "job": job,
            "program": Program.objects.filter(pk=job.program_id).first(),
            "has_report": default_storage.exists(job.report_name),
        }
        return TemplateResponse(request, "admin/accounts/member/csv_import_job.html", context)

    def refused_report_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        name = f"{JOBS_DIR}/{job_id}/refused.csv"
        if not job_id.isalnum() or not default_storage.exists(name):
            raise Http404
        return FileResponse(
            default_storage.open(name, "rb"),
            as_attachment=True,
            filename=f"refused-{job_id[:8]}.csv",
            content_type="text/csv",
        )
