"""Member import folders (uploads, refused rows: personal data) are deleted after a while."""

from __future__ import annotations

import datetime
import io
import os
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from accounts.csv_jobs import JOBS_DIR, job_create, job_load
from accounts.tasks import import_jobs_purge_task


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEMBER_IMPORT_KEEP_DAYS = 7


def _age(folder: str, days: float) -> None:
    """Make every file of a job folder look last written `days` ago."""
    when = (timezone.now() - datetime.timedelta(days=days)).timestamp()
    path = Path(django_settings.MEDIA_ROOT) / JOBS_DIR / folder
    for file in path.iterdir():
        os.utime(file, (when, when))


def test_folders_older_than_the_retention_are_deleted_and_newer_ones_kept() -> None:
    old = job_create(
        program_id=1,
        upload=io.BytesIO(b"phone\n+79123456789\n"),
        file_name="old.csv",
        dry_run=False,
        user_id=None,
    )
    default_storage.save(old.report_name, ContentFile(b"row,reason\n2,bad\n"))
    recent = job_create(
        program_id=1,
        upload=io.BytesIO(b"phone\n+79120000000\n"),
        file_name="new.csv",
        dry_run=False,
        user_id=None,
    )
    # The admin's confirmed imports keep only a refused-rows report in a folder of its own.
    report_only = f"{JOBS_DIR}/abc123/refused.csv"
    default_storage.save(report_only, ContentFile(b"row,reason\n"))
    _age(old.id, 8)
    _age("abc123", 7.5)
    _age(recent.id, 6)

    assert import_jobs_purge_task() == 2

    folders, _files = default_storage.listdir(JOBS_DIR)
    assert folders == [recent.id]
    assert job_load(old.id) is None
    assert not default_storage.exists(old.upload_name)
    assert not default_storage.exists(old.report_name)
    assert not default_storage.exists(report_only)
    assert default_storage.exists(recent.upload_name)
    assert job_load(recent.id) is not None


def test_the_retention_is_a_setting(settings: Any) -> None:
    job = job_create(
        program_id=1, upload=io.BytesIO(b"phone\n"), file_name="x.csv", dry_run=True, user_id=None
    )
    _age(job.id, 2)
    assert import_jobs_purge_task() == 0
    settings.MEMBER_IMPORT_KEEP_DAYS = 1
    assert import_jobs_purge_task() == 1
    assert not default_storage.exists(job.upload_name)


def test_no_folder_yet_is_nothing_to_purge() -> None:
    assert import_jobs_purge_task() == 0


def test_the_purge_runs_nightly_on_beat() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["accounts-import-jobs-purge"]
    assert entry["task"] == import_jobs_purge_task.name
