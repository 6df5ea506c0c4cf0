"""Member CSV in the admin: preview, confirmation, export, permissions, big-file jobs."""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.urls import reverse

from accounts.csv_jobs import job_create, job_load
from accounts.models import Member
from accounts.tasks import members_import_task
from tests.accounts.csv_support import (
    DATA,
    counts,
    members_state,
    program_with_store,
    run_import,
)
from tests.accounts.factories import UserFactory, member_create

pytestmark = pytest.mark.django_db

IMPORT_URL = "admin:accounts_member_import"


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def preview(client: Client, path: Path, program: Any) -> Any:
    upload = SimpleUploadedFile(path.name, path.read_bytes(), content_type="text/csv")
    response = client.post(
        reverse(IMPORT_URL),
        {"resource": "0", "format": "0", "program": program.pk, "import_file": upload},
    )
    assert response.status_code == 200
    return response


def confirm(client: Client, preview_response: Any) -> Any:
    form = preview_response.context["confirm_form"]
    return client.post(reverse("admin:accounts_member_process_import"), form.initial)


def refused_in_preview(response: Any) -> dict[int, str]:
    return {
        row.line: row.reason
        for row in response.context["result"].member_preview
        if row.action == "refused"
    }


def test_the_preview_lists_each_row_and_writes_nothing(admin_client: Client) -> None:
    program = program_with_store()

    response = preview(admin_client, DATA / "members_bad_rows.csv", program)

    summary = response.context["result"].member_summary
    assert (summary.created, summary.refused) == (2, 11)
    refused = refused_in_preview(response)
    assert refused[3] == "12345 is too short for a phone number."
    assert refused[12] == "There is no store with the code NOPE in this program."
    assert "There is no store with the code NOPE in this program." in response.content.decode()
    assert response.context["confirm_form"] is not None
    assert counts(program) == (0, 0, 0)


def test_the_confirmation_writes_exactly_what_the_preview_showed(admin_client: Client) -> None:
    program = program_with_store()
    member_create(program, phone="+79123456789", first_name="A.")
    shown = preview(admin_client, DATA / "members_cp1251_semicolon.csv", program)
    planned = {row.line: row.action for row in shown.context["result"].member_preview}

    response = confirm(admin_client, shown)

    assert response.status_code == 302
    assert planned == {2: "update", 3: "create", 4: "create", 5: "refused"}
    assert counts(program)[0] == 3
    assert Member.objects.get(phone="+79123456789").first_name == "Анна"


def test_a_confirmation_after_the_members_changed_writes_nothing(admin_client: Client) -> None:
    program = program_with_store()
    shown = preview(admin_client, DATA / "members_utf8_bom.csv", program)
    member_create(program, phone="+79125550001", first_name="Enrolled meanwhile")
    before = counts(program)

    response = confirm(admin_client, shown)

    assert response.status_code == 302
    assert response.url == reverse(IMPORT_URL)
    assert counts(program) == before
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("changed since the preview" in m for m in messages)


def test_the_command_and_the_admin_give_the_same_outcome(
    admin_client: Client, tmp_path: Path
) -> None:
    program = program_with_store()
    member_create(program, phone="+79126660001", first_name="Existing")
    path = DATA / "members_bad_rows.csv"

    with transaction.atomic():
        shown = preview(admin_client, path, program)
        confirm(admin_client, shown)
        by_admin = members_state(program)
        transaction.set_rollback(True)
    refused_path = tmp_path / "refused.csv"
    run_import(path, program, refused=refused_path)
    by_command = members_state(program)

    assert by_admin == by_command
    assert [m[1] for m in by_command] == ["Good", "Good"]  # one updated, one created
    with refused_path.open(encoding="utf-8-sig", newline="") as f:
        command_refused = {int(row[0]): row[1] for row in list(csv.reader(f))[1:]}
    assert refused_in_preview(shown) == command_refused


def test_support_may_export_but_not_import(client: Client) -> None:
    user = UserFactory(username="support1")
    user.groups.add(Group.objects.get(name="support"))
    client.force_login(user)

    assert client.get(reverse(IMPORT_URL)).status_code == 403
    assert client.get(reverse("admin:accounts_member_import_large")).status_code == 403
    assert export(client, "0").startswith("\ufeffphone".encode())


def export(client: Client, fmt: str, **headers: str) -> bytes:
    response = client.post(
        reverse("admin:accounts_member_export"), {"format": fmt, "resource": "0"}, **headers
    )
    assert response.status_code == 200
    return response.content


def test_the_export_escapes_spreadsheet_formulae(admin_client: Client) -> None:
    program = program_with_store()
    member_create(program, first_name='=HYPERLINK("http://x","y")', last_name="@SUM(A1)")

    text = export(admin_client, "0").decode("utf-8")

    assert text.startswith("\ufeffphone,card_number,first_name,last_name,")
    row = next(csv.reader(io.StringIO(text.splitlines()[1])))
    assert row[0].startswith("'+7")
    assert row[2] == '\'=HYPERLINK("http://x","y")'
    assert row[3] == "'@SUM(A1)"
    sheet = openpyxl.load_workbook(io.BytesIO(export(admin_client, "1"))).active
    cell = sheet.cell(row=2, column=3)
    assert cell.data_type == "s" and cell.value == '\'=HYPERLINK("http://x","y")'


def test_a_russian_admin_exports_russian_headers_and_semicolons(admin_client: Client) -> None:
    program = program_with_store()
    member_create(program, first_name="Анна")

    text = export(admin_client, "0", HTTP_ACCEPT_LANGUAGE="ru").decode("utf-8")

    assert text.startswith("\ufeffтелефон;номер карты;имя;фамилия;эл. почта;")
    assert ";Анна;" in text


def test_export_then_import_changes_nothing(admin_client: Client) -> None:
    program = program_with_store()
    run_import(DATA / "members_cp1251_semicolon.csv", program)
    run_import(DATA / "members_formulas.csv", program)
    before = counts(program)
    upload = SimpleUploadedFile("exported.csv", export(admin_client, "0"))

    response = admin_client.post(
        reverse(IMPORT_URL),
        {"resource": "0", "format": "0", "program": program.pk, "import_file": upload},
    )
    summary = response.context["result"].member_summary
    assert (summary.total, summary.unchanged) == (5, 5)
    confirm(admin_client, response)
    assert counts(program) == before
    assert Member.objects.filter(first_name='=HYPERLINK("http://x","y")').exists()


def test_a_large_file_job_reports_progress_outcome_and_refused_rows(
    admin_client: Client,
) -> None:
    program = program_with_store()
    with (DATA / "members_bad_rows.csv").open("rb") as f:
        job = job_create(
            program_id=program.pk, upload=f, file_name="bad.csv", dry_run=False, user_id=None
        )

    members_import_task(job.id)

    done = job_load(job.id)
    assert (done.state, done.done, done.total) == ("done", 13, 13)
    assert (done.summary["created"], done.summary["refused"]) == (2, 11)
    page = admin_client.get(reverse("admin:accounts_member_import_job", args=[job.id]))
    assert "100%" in page.content.decode()
    report = admin_client.get(reverse("admin:accounts_member_csv_report", args=[job.id]))
    lines = b"".join(report.streaming_content).decode("utf-8-sig").splitlines()
    assert len(lines) == 12 and lines[1].startswith("3,12345 is too short")


def test_the_large_import_page_starts_a_job(admin_client: Client, settings: Any) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from loyalty_site.celery import app

    app.conf.task_always_eager = True
    try:
        program = program_with_store()
        upload = SimpleUploadedFile("m.csv", (DATA / "members_utf8_bom.csv").read_bytes())
        response = admin_client.post(
            reverse("admin:accounts_member_import_large"),
            {"program": program.pk, "import_file": upload},
        )
    finally:
        app.conf.task_always_eager = False
    assert response.status_code == 302
    assert counts(program)[0] == 3


def test_an_xlsx_file_with_typed_cells_imports_like_its_csv(admin_client: Client) -> None:
    program = program_with_store()
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Телефон", "Имя", "Дата рождения", "Согласие на обработку ПД"])
    sheet.append([79123456789, "Анна", datetime.datetime(1985, 3, 12), "да"])
    data = io.BytesIO()
    book.save(data)
    upload = SimpleUploadedFile("members.xlsx", data.getvalue())

    shown = admin_client.post(
        reverse(IMPORT_URL),
        {"resource": "0", "format": "1", "program": program.pk, "import_file": upload},
    )
    confirm(admin_client, shown)

    member = Member.objects.get(program=program)
    assert (member.phone, member.first_name) == ("+79123456789", "Анна")
    assert member.birth_date == datetime.date(1985, 3, 12)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("phone,first_name\r\n+79123456780,Anna\r\n".encode("utf-16"), "The file is in UTF-16."),
        (
            b'phone,first_name,consent_personal_data\r\n+79123456781,"Bad,yes\r\n'
            + b"+79123456782,B,yes\r\n" * 8000,
            "Line 2 is not valid CSV",
        ),
    ],
    ids=["utf-16", "unclosed quote"],
)
def test_a_file_that_cannot_be_read_is_refused_saying_why(
    admin_client: Client, data: bytes, reason: str
) -> None:
    program = program_with_store()
    upload = SimpleUploadedFile("members.csv", data, content_type="text/csv")
    response = admin_client.post(
        reverse(IMPORT_URL),
        {"resource": "0", "format": "0", "program": program.pk, "import_file": upload},
    )
    assert response.status_code == 200
    assert reason in " ".join(response.context["form"].errors["import_file"])
    assert counts(program) == (0, 0, 0)
