"""Member import jobs run by Celery: their file, progress and report, kept in file storage.

A job is a folder `member_imports/<id>/` of Django's default storage: the
uploaded file, `job.json` (state, rows done / total, outcome) and, when rows
were refused, `refused.csv`. Web and worker share that storage (the media
folder on one machine, an object store at scale) exactly as they must share
the uploaded file, so no table is needed; progress is written every 10,000
rows and read by the admin's job page.

The folders hold personal data (the uploaded file, the refused rows), so they
are deleted `MEMBER_IMPORT_KEEP_DAYS` after they were last written to
(`jobs_purge`, nightly on beat): 152-FZ keeps personal data no longer than
the purpose needs, and the purpose of an upload ends with its import.
"""

from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

JOBS_DIR = "member_imports"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass
class ImportJob:
    id: str
    program_id: int
    file_name: str
    dry_run: bool
    user_id: int | None
    created_at: str
    state: str = QUEUED
    phase: str = ""
    done: int = 0
    total: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    finished_at: str = ""

    @property
    def upload_name(self) -> str:
        return f"{JOBS_DIR}/{self.id}/upload.csv"

    @property
    def report_name(self) -> str:
        return f"{JOBS_DIR}/{self.id}/refused.csv"

    @property
    def percent(self) -> int:
        if self.state == DONE:
            return 100
        if not self.total:
            return 0
        return min(99, self.done * 100 // self.total)

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)


def _state_name(job_id: str) -> str:
    return f"{JOBS_DIR}/{job_id}/job.json"


def job_create(
    *, program_id: int, upload: IO[bytes], file_name: str, dry_run: bool, user_id: int | None
) -> ImportJob:
    """Store the uploaded file and a queued job; the caller starts the task."""
    job = ImportJob(
        id=uuid.uuid4().hex,
        program_id=program_id,
        file_name=file_name,
        dry_run=dry_run,
        user_id=user_id,
        created_at=timezone.now().isoformat(),
    )
    default_storage.save(job.upload_name, upload)
    job_save(job)
    return job


def job_save(job: ImportJob) -> None:
    name = _state_name(job.id)
    data = json.dumps(asdict(job), ensure_ascii=False).encode()
    # Storages do not overwrite: remove, then save under the same name.
    default_storage.delete(name)
    default_storage.save(name, ContentFile(data))


def job_load(job_id: str) -> ImportJob | None:
    if not job_id.isalnum():
        return None
    try:
        with default_storage.open(_state_name(job_id)) as f:
            data = json.loads(f.read())
    except (FileNotFoundError, ValueError):
        return None
    return ImportJob(**data)


def jobs_recent(limit: int = 20) -> list[ImportJob]:
    """The latest jobs, newest first."""
    try:
        folders, _files = default_storage.listdir(JOBS_DIR)
    except FileNotFoundError:
        return []
    jobs = [job for job in (job_load(name) for name in folders) if job is not None]
    jobs.sort(key=lambda j: j.created_at, reverse=True)
    return jobs[:limit]


def jobs_purge(*, now: datetime.datetime | None = None) -> int:
    """Delete the job folders nobody wrote to for MEMBER_IMPORT_KEEP_DAYS; how many.

    A folder's age is that of its newest file: a running job rewrites job.json
    every 10,000 rows, so only finished (or long dead) jobs go, and with them
    the admin's refused-row reports, which live in folders of their own.
    """
    cutoff = (now or timezone.now()) - datetime.timedelta(days=settings.MEMBER_IMPORT_KEEP_DAYS)
    try:
        folders, _files = default_storage.listdir(JOBS_DIR)
    except FileNotFoundError:
        return 0
    purged = 0
    for folder in folders:
        path = f"{JOBS_DIR}/{folder}"
        subfolders, names = default_storage.listdir(path)
        files = [f"{path}/{name}" for name in names]
        if not files or max(default_storage.get_modified_time(f) for f in files) >= cutoff:
            continue  # recent, or empty (a job being created has its folder before its file)
        for name in files:
            default_storage.delete(name)
        if not subfolders:
            default_storage.delete(path)  # the folder itself, where the storage has folders
        purged += 1
    return purged
