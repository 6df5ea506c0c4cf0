"""The admin's import job for big files, run by a real Celery worker as deployed (prefork)."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.utils import translation

from accounts import csv_bulk
from accounts.csv_jobs import JOBS_DIR, job_create, job_load
from accounts.tasks import members_import_task
from bench.members_data import members_csv_write
from programs.models import Store
from tests.accounts.csv_support import counts, program_with_store, run_import


def _job_done(job_id: str, seconds: float = 120) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = job_load(job_id)
        if job is not None and job.finished:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish within {seconds} s")


@pytest.mark.django_db(transaction=True)
def test_a_big_file_job_checks_rows_in_several_processes_inside_a_prefork_worker(
    celery_processes, tmp_path: Path
) -> None:
    # A prefork worker's process is daemonic: the standard library's process pools
    # refuse to start there, so the job failed (or, before, checked in one process).
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: the import checks rows in one process anyway")
    rows = csv_bulk.PARALLEL_FROM
    assert csv_bulk.checkers_for(rows + 1) > 1
    path = members_csv_write(tmp_path / "members.csv", rows, russian=True)
    program = program_with_store()
    for code in ("S2", "S3", "S4", "S5"):  # the stores the generated file names
        Store.objects.create(program=program, code=code, name=code)
    # What the command, checking in this one process, would do (a dry run: card
    # numbers are unique across programs, so the file can be imported only once).
    refused_by_command = tmp_path / "refused.csv"
    with translation.override("ru"):  # the worker's language, as deployed
        said = run_import(path, program, "--dry-run", "--workers", "1", refused=refused_by_command)
    assert counts(program) == (0, 0, 0)

    with path.open("rb") as upload:
        job = job_create(
            program_id=program.pk, upload=upload, file_name=path.name, dry_run=False, user_id=None
        )
    try:
        celery_processes("worker", "--pool", "prefork", "--concurrency", "1")
        members_import_task.delay(job.id)
        done = _job_done(job.id)
        assert (done.state, done.error) == ("done", "")
        created = done.summary["created"]
        assert counts(program)[0] == created > rows * 0.9
        assert f"rows: {created} " in said
        with default_storage.open(done.report_name, "rb") as report:
            refused_by_job = list(csv.reader(report.read().decode("utf-8-sig").splitlines()))
        with refused_by_command.open(encoding="utf-8-sig", newline="") as f:
            assert refused_by_job == list(csv.reader(f))
        assert done.summary["refused"] == len(refused_by_job) - 1 > 0
    finally:
        for name in default_storage.listdir(f"{JOBS_DIR}/{job.id}")[1]:
            default_storage.delete(f"{JOBS_DIR}/{job.id}/{name}")
