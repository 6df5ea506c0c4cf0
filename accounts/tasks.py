"""Celery tasks of accounts: member files too big for a web request."""

from __future__ import annotations

import io
import logging
import tempfile

from celery import shared_task
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.utils import timezone

from accounts.csv_bulk import checkers_for, count_lines, members_import_stream
from accounts.csv_format import FileFormatError
from accounts.csv_jobs import DONE, FAILED, RUNNING, job_load, job_save, jobs_purge
from programs.models import Program

logger = logging.getLogger(__name__)


@shared_task(name="accounts.members_import_task", ignore_result=True)
def members_import_task(job_id: str) -> None:
    """Run a stored member import job (accounts.csv_jobs); safe to run twice.

    The import is one transaction and a re-run of the same file changes
    nothing, so a job delivered again after a worker died simply runs again.
    """
    job = job_load(job_id)
    if job is None or job.finished:
        return
    program = Program.objects.get(pk=job.program_id)
    by = get_user_model().objects.filter(pk=job.user_id).first() if job.user_id else None
    job.state, job.error = RUNNING, ""
    with default_storage.open(job.upload_name, "rb") as counting:
        job.total = count_lines(counting)
    job_save(job)

    def progress(done: int, total: int | None, phase: str) -> None:
        job.done, job.phase = done, phase
        if total:
            job.total = total
        job_save(job)

    try:
        with (
            default_storage.open(job.upload_name, "rb") as stream,
            tempfile.TemporaryFile("w+b") as report_file,
        ):
            report = io.TextIOWrapper(report_file, encoding="utf-8-sig", newline="")
            summary = members_import_stream(
                stream,
                program=program,
                dry_run=job.dry_run,
                by=by,
                refused_out=report,
                progress=progress,
                total=job.total,
                workers=checkers_for(job.total),
            )
            report.flush()
            if summary.refused:
                report_file.seek(0)
                default_storage.delete(job.report_name)
                default_storage.save(job.report_name, File(report_file))
            report.detach()
    except FileFormatError as error:
        job.state, job.error = FAILED, "\n".join(error.messages)
    except Exception as error:
        logger.exception("member import job %s failed", job_id)
        job.state, job.error = FAILED, f"{type(error).__name__}: {error}"
    else:
        job.state, job.summary = DONE, summary.as_dict()
        job.done = summary.total
    job.finished_at = timezone.now().isoformat()
    job_save(job)


@shared_task(name="accounts.import_jobs_purge", ignore_result=True)
def import_jobs_purge_task() -> int:
    """Nightly: delete member import folders older than MEMBER_IMPORT_KEEP_DAYS (152-FZ)."""
    purged = jobs_purge()
    if purged:
        logger.info("deleted %d member import folders", purged)
    return purged
