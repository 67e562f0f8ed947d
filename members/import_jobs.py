"""An uploaded CSV file kept from preview to confirm: the admin's and the worker's side.

Confirm applies exactly what the preview showed: the stored bytes must still hash to the
SHA-256 taken at upload, and a fresh plan of the file against the database must hash to
the preview's plan digest, or nothing is written and the new preview is shown instead.

The files are the app user's only (folders 0700, files 0600: smsadmin.files). The upload
is removed as soon as its import is applied or fails; the problem report of an applied
import stays for members.cleanup to remove a week later, with previews never confirmed.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from events.models import Event
from members.importing import (
    CsvFormat,
    ImportConsent,
    ImportFileError,
    ImportSummary,
    ProgressCallback,
    describe_columns,
    import_apply,
    import_preview,
    inspect_file,
    too_big_message,
    validate_pool,
)
from members.models import ImportJob
from smsadmin.files import PRIVATE_DIR_MODE, private_dir, private_opener

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_UPLOAD_NAME = "upload.csv"
_REPORT_NAME = "problems.csv"
# New tag names kept on the job for its page; a file inventing more is shown the first.
_SHOWN_NEW_TAGS = 50


def job_dir(job: ImportJob) -> Path:
    return Path(settings.IMPORT_DIR) / job.stored_as


def job_upload_path(job: ImportJob) -> Path:
    return job_dir(job) / _UPLOAD_NAME


def job_report_path(job: ImportJob) -> Path:
    return job_dir(job) / _REPORT_NAME


def import_job_create(
    *,
    upload: IO[bytes] | Iterable[bytes],
    file_name: str,
    pool: str,
    event: Event | None,
    user: Any | None,
) -> ImportJob:
    """Keep an uploaded file and record a job waiting for its preview.

    ``upload`` is a binary file or an iterable of byte chunks (an UploadedFile's
    chunks()). The file is checked through ``inspect_file`` first; a file that cannot be
    imported raises ImportFileError and leaves nothing behind, neither file nor row.
    """
    validate_pool(pool=pool, event_id=event.pk if event else None)
    stored_as = f"{timezone.now():%Y%m%d}-{uuid.uuid4().hex}"
    folder = private_dir(settings.IMPORT_DIR) / stored_as
    folder.mkdir(mode=PRIVATE_DIR_MODE)
    folder.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is masked by the umask
    path = folder / _UPLOAD_NAME
    try:
        _store(upload, path)
        fmt = inspect_file(path=path)
        return ImportJob.objects.create(
            pool=pool,
            event=event,
            file_name=Path(file_name).name[:255] or _UPLOAD_NAME,
            stored_as=stored_as,
            size=fmt.size,
            sha256=fmt.sha256,
            line_count=fmt.line_count,
            columns=describe_columns(fmt=fmt, pool=pool),
            created_by=user,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _store(upload: IO[bytes] | Iterable[bytes], path: Path) -> None:
    chunks: Iterable[bytes] = (
        iter(lambda: upload.read(_CHUNK), b"")  # type: ignore[union-attr]
        if hasattr(upload, "read")
        else upload  # type: ignore[assignment]
    )
    size = 0
    with open(path, "wb", opener=private_opener) as out:
        for chunk in chunks:
            size += len(chunk)
            # Checked while copying, so an oversized upload never fills the disk.
            if size > settings.IMPORT_MAX_BYTES:
                raise ImportFileError(too_big_message(size))
            out.write(chunk)


def import_job_start(*, job: ImportJob) -> None:
    """Preview (or, once confirmed, import) now for a small file, or in a worker.

    A worker gets the job only when the surrounding transaction commits, so it never
    looks for a row it cannot see yet.
    """
    if job.line_count > settings.IMPORT_SYNC_MAX_ROWS:
        from members.tasks import run_import_job

        transaction.on_commit(lambda: run_import_job.delay(job.pk))
    else:
        import_job_run(job_id=job.pk)


def import_job_run(*, job_id: int) -> None:
    """Do whatever the job is waiting for; a no-op when someone else already does."""
    if _claim(job_id, ImportJob.Status.PENDING, ImportJob.Status.PREVIEWING):
        _guarded(job_id, _preview_job)
    elif _claim(job_id, ImportJob.Status.CONFIRMED, ImportJob.Status.APPLYING):
        _guarded(job_id, _apply_job)


def import_job_confirm(*, job_id: int) -> bool:
    """Staff said yes to the preview. False when the job was not waiting for that."""
    return (
        ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.PREVIEWED).update(
            status=ImportJob.Status.CONFIRMED,
            status_message="",
            progress_done=0,
            updated_at=timezone.now(),
        )
        == 1
    )


def import_job_fail_stalled(*, job: ImportJob) -> bool:
    """Mark a job failed when its worker stopped sending progress (killed, machine lost).

    Past the Celery hard time limit no worker can still be on it, so the job would
    otherwise show a frozen progress bar for ever.
    """
    if job.status not in (ImportJob.Status.PREVIEWING, ImportJob.Status.APPLYING):
        return False
    cutoff = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    if job.updated_at >= cutoff:
        return False
    message = "The worker stopped while reading the file. Upload it again."
    if job.status == ImportJob.Status.APPLYING:
        message = (
            f"The worker stopped after line {job.progress_done // 2} of {job.line_count}: "
            "the batches before it were imported. Importing the same file again is safe: "
            "contacts are matched by phone, so none is duplicated."
        )
    failed = (
        ImportJob.objects.filter(pk=job.pk, status=job.status, updated_at__lt=cutoff).update(
            status=ImportJob.Status.FAILED, status_message=message, updated_at=timezone.now()
        )
        == 1
    )
    if failed:
        import_job_remove_files(job=job)
    return failed


def import_job_remove_files(*, job: ImportJob, keep_report: bool = False) -> None:
    """Remove the job's upload (and its problem report unless kept) once the work commits.

    The row stays, as history. After the commit only: a rolled-back status change keeps
    the file it still needs.
    """
    if not job.stored_as or "/" in job.stored_as or ".." in job.stored_as:
        return
    folder = job_dir(job)
    if keep_report:
        transaction.on_commit(lambda: job_upload_path(job).unlink(missing_ok=True))
    else:
        transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


def _claim(job_id: int, from_status: str, to_status: str) -> bool:
    return (
        ImportJob.objects.filter(pk=job_id, status=from_status).update(
            status=to_status, progress_done=0, updated_at=timezone.now()
        )
        == 1
    )


def _guarded(job_id: int, work: Callable[[ImportJob], None]) -> None:
    job = ImportJob.objects.select_related("event").get(pk=job_id)
    try:
        work(job)
    except ImportFileError as exc:
        _finish(job, status=ImportJob.Status.FAILED, message=str(exc))
        import_job_remove_files(job=job)
    except Exception as exc:
        logger.exception("CSV import %s failed", job_id)
        message = f"The import stopped on an unexpected error ({type(exc).__name__})."
        if job.status == ImportJob.Status.APPLYING:
            message += (
                " Batches written before it, if any, stay. Importing the same file again is safe: "
                "contacts are matched by phone, so none is duplicated."
            )
        else:
            message += " Nothing was written."
        _finish(job, status=ImportJob.Status.FAILED, message=message)
        import_job_remove_files(job=job)


def _finish(job: ImportJob, *, status: str, message: str, **fields: Any) -> None:
    ImportJob.objects.filter(pk=job.pk).update(
        status=status, status_message=message, updated_at=timezone.now(), **fields
    )


def _progress(job: ImportJob, *, offset: int = 0) -> ProgressCallback:
    def report(line: int) -> None:
        ImportJob.objects.filter(pk=job.pk).update(
            progress_done=offset + line, updated_at=timezone.now()
        )

    return report


def _checked_format(job: ImportJob) -> CsvFormat:
    fmt = inspect_file(path=job_upload_path(job))
    if fmt.sha256 != job.sha256:
        raise ImportFileError(
            "The stored file is not the one that was uploaded (its SHA-256 changed). "
            "Nothing was written; upload the file again."
        )
    return fmt


def _summary_fields(summary: ImportSummary) -> dict[str, Any]:
    """The summary as ImportJob fields: rows, new_count, updated_count, ..."""
    return {
        name if name == "rows" else f"{name}_count": value
        for name, value in summary.counts().items()
    }


def _preview_job(job: ImportJob) -> None:
    ImportJob.objects.filter(pk=job.pk).update(progress_total=job.line_count)
    fmt = _checked_format(job)
    report_path = job_report_path(job)
    with open(report_path, "w", encoding="utf-8-sig", newline="", opener=private_opener) as report:
        summary = import_preview(
            path=job_upload_path(job),
            pool=job.pool,
            event_id=job.event_id,
            fmt=fmt,
            report=report,
            on_progress=_progress(job),
        )
    if not summary.invalid and not summary.duplicate:
        report_path.unlink()
    _finish(
        job,
        status=ImportJob.Status.PREVIEWED,
        message="",
        columns=_with_new_tags(job, summary),
        plan_digest=summary.plan_digest,
        problems=[[p.line, p.kind, p.reason] for p in summary.problems],
        progress_done=job.line_count,
        previewed_at=timezone.now(),
        **_summary_fields(summary),
    )


def _apply_job(job: ImportJob) -> None:
    # Two passes, each reported as half the bar: a read-only check that the file would
    # still do what the preview said, then the writes.
    total = job.line_count
    ImportJob.objects.filter(pk=job.pk).update(progress_total=2 * total)
    path = job_upload_path(job)
    fmt = _checked_format(job)
    now_planned = import_preview(
        path=path, pool=job.pool, event_id=job.event_id, fmt=fmt, on_progress=_progress(job)
    )
    if now_planned.plan_digest != job.plan_digest:
        _finish(
            job,
            status=ImportJob.Status.PREVIEWED,
            message=(
                "Nothing was imported: the contacts changed since this preview "
                f"({_difference(job, now_planned)}). The numbers below are a new preview "
                "of the same file; confirm again to import them."
            ),
            plan_digest=now_planned.plan_digest,
            columns=_with_new_tags(job, now_planned),
            progress_done=0,
            previewed_at=timezone.now(),
            **_summary_fields(now_planned),
        )
        return
    who = job.created_by.get_username() if job.created_by else "unknown user"
    done = import_apply(
        path=path,
        pool=job.pool,
        event_id=job.event_id,
        fmt=fmt,
        on_progress=_progress(job, offset=total),
        consent=ImportConsent(
            evidence=f"{job.file_name} imported by {who} (import #{job.pk})", by=job.created_by
        ),
    )
    message = ""
    if done.plan_digest != job.plan_digest:
        # Only a write by someone else in the seconds between the check and our batch
        # gets here; contacts are matched by phone, so the result is still right.
        message = (
            "Someone changed contacts while this file was being imported, so the result "
            f"differs from the preview ({_difference(job, done)}). No contact was "
            "duplicated."
        )
    _finish(
        job,
        status=ImportJob.Status.APPLIED,
        message=message,
        progress_done=2 * total,
        applied_at=timezone.now(),
        **_summary_fields(done),
    )
    # Its bytes are in the database now; the problem report stays a week (members.cleanup).
    import_job_remove_files(job=job, keep_report=True)


def _with_new_tags(job: ImportJob, summary: ImportSummary) -> dict[str, Any]:
    """The job's columns plus the tags the file would create, so staff spot a typo."""
    return {**job.columns, "new_tags": summary.new_tags[:_SHOWN_NEW_TAGS]}


def _difference(job: ImportJob, summary: ImportSummary) -> str:
    before = job.counts()
    after = summary.counts()
    changes = [
        f"{name} {before[name]} -> {after[name]}"
        for name in ("new", "updated", "unchanged")
        if before[name] != after[name]
    ]
    return ", ".join(changes) or "the same counts, for different contacts"
