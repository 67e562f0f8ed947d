"""The daily clean-up of IMPORT_DIR: no contact file stays there longer than it is needed.

- A preview nobody confirmed within a day is abandoned: the job is marked failed ("upload
  it again") and its upload and problem report removed. So is a job that waited a day
  for a worker that never came (pending or confirmed), and one whose worker stopped.
- The upload of an applied or failed import is removed (import_jobs removes it at once;
  this catches what a crash left behind).
- The problem report of an applied import is kept for REPORT_KEEP (staff fix the rows and
  import them again), then removed.
- A folder no job owns (a process killed during an upload) is removed after a day.

Job rows are never deleted: they are the history of who imported what.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from members.import_jobs import import_job_fail_stalled, job_report_path, job_upload_path
from members.models import ImportJob

logger = logging.getLogger(__name__)

PREVIEW_KEEP = timedelta(days=1)
REPORT_KEEP = timedelta(days=7)

ABANDONED_PREVIEW_MESSAGE = (
    "Abandoned: not confirmed within a day, so the uploaded file was removed. Nothing was "
    "imported; upload it again."
)
ABANDONED_QUEUED_MESSAGE = (
    "Abandoned: no worker took this import up within a day, so the uploaded file was "
    "removed. {written} Is the Celery worker running? Upload the file again."
)

Counts = dict[str, int]


def import_files_clean(*, now: datetime | None = None, dry_run: bool = False) -> Counts:
    """Abandon stale jobs and remove the files nobody needs any more; return the counts.

    ``dry_run`` counts what would be done and changes nothing.
    """
    now = now or timezone.now()
    counts: Counts = {
        "abandoned_jobs": 0,
        "uploads_removed": 0,
        "reports_removed": 0,
        "orphan_folders_removed": 0,
    }
    abandoned = _abandon_stale_jobs(now=now, dry_run=dry_run)
    counts["abandoned_jobs"] = len(abandoned)

    root = Path(settings.IMPORT_DIR)
    if not root.is_dir():
        return counts
    folders = {p.name: p for p in root.iterdir() if p.is_dir() and not p.is_symlink()}
    jobs = {
        job.stored_as: job
        for job in ImportJob.objects.filter(stored_as__in=list(folders)).only(
            "pk", "stored_as", "status", "updated_at"
        )
    }
    report_before = now - REPORT_KEEP
    orphan_before = (now - PREVIEW_KEEP).timestamp()
    for name, folder in sorted(folders.items()):
        job = jobs.get(name)
        if job is None:
            if folder.stat().st_mtime < orphan_before:
                counts["orphan_folders_removed"] += 1
                _remove(folder, dry_run=dry_run)
            continue
        upload = job_upload_path(job)
        report = job_report_path(job)
        status = ImportJob.Status.FAILED if job.pk in abandoned else job.status
        if status == ImportJob.Status.FAILED:
            counts["uploads_removed"] += upload.exists()
            counts["reports_removed"] += report.exists()
            _remove(folder, dry_run=dry_run)
        elif status == ImportJob.Status.APPLIED:
            counts["uploads_removed"] += upload.exists()
            _remove(upload, dry_run=dry_run)
            if job.updated_at < report_before:
                counts["reports_removed"] += report.exists()
                _remove(folder, dry_run=dry_run)
        # Any other status: a preview still within its day, or work under way.
    if not dry_run and any(counts.values()):
        logger.info("Import files cleaned: %s", counts)
    return counts


def _abandon_stale_jobs(*, now: datetime, dry_run: bool) -> set[int]:
    """Mark failed the jobs left waiting over a day; the ids of those marked."""
    cutoff = now - PREVIEW_KEEP
    stale = ImportJob.objects.filter(
        status__in=(
            ImportJob.Status.PENDING,
            ImportJob.Status.PREVIEWED,
            ImportJob.Status.CONFIRMED,
        ),
        updated_at__lt=cutoff,
    ).only("pk", "status")
    abandoned: set[int] = set()
    for job in stale:
        if job.status == ImportJob.Status.PREVIEWED:
            message = ABANDONED_PREVIEW_MESSAGE
        else:
            written = (
                "Nothing was imported."
                if job.status == ImportJob.Status.CONFIRMED
                else "Nothing was read or imported."
            )
            message = ABANDONED_QUEUED_MESSAGE.format(written=written)
        # Conditional on the status, as every move of a job is: a confirm (or a worker
        # claiming it) at this very moment wins, and the job is left alone.
        if dry_run or ImportJob.objects.filter(
            pk=job.pk, status=job.status, updated_at__lt=cutoff
        ).update(status=ImportJob.Status.FAILED, status_message=message, updated_at=now):
            abandoned.add(job.pk)
    # A worker that stopped (killed, machine lost) leaves its job running for ever.
    for job in ImportJob.objects.filter(
        status__in=(ImportJob.Status.PREVIEWING, ImportJob.Status.APPLYING),
        updated_at__lt=cutoff,
    ):
        if dry_run or import_job_fail_stalled(job=job):
            abandoned.add(job.pk)
    return abandoned


def _remove(path: Path, *, dry_run: bool) -> None:
    if dry_run:
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
