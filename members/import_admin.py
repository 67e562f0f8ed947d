"""Admin pages of the CSV import: upload, preview and confirm, progress, problem report.

The upload page hangs off MemberAdmin and EventAdmin (one per pool); every page after
it belongs to ImportJobAdmin, so both pools share one preview and progress page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from events.models import Event
from members.cleanup import REPORT_KEEP
from members.import_jobs import (
    import_job_confirm,
    import_job_create,
    import_job_fail_stalled,
    import_job_start,
    job_report_path,
)
from members.importing import COLUMN_ALIASES, MAX_COLUMNS, SHOWN_PROBLEMS, ImportFileError
from members.models import ImportJob

_COLUMN_LABELS = {
    "phone": "Phone (required)",
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "name": "Name (split into first and last)",
    "tags": "Tags (added to the contact's tags; several separated by ; or ,)",
}
# A job still waiting this long for a worker gets a hint that none may be running.
_WORKER_HINT_AFTER_SECONDS = 15


_REPORT_REMOVED = (
    f"The problem report (every problem row as CSV) was removed: reports are kept "
    f"{REPORT_KEEP.days} days. The first problems are still listed below."
)


def _report_removed(job: ImportJob, *, has_report: bool) -> bool:
    """The job had a problem report on its page, and the clean-up has removed it since."""
    shown = job.status in (ImportJob.Status.PREVIEWED, ImportJob.Status.APPLIED)
    return shown and job.problem_count > 0 and not has_report


def can_import(user: Any, pool: str) -> bool:
    """Importing creates and changes contacts, so it takes both permissions on the pool."""
    if pool == ImportJob.Pool.MEMBERS:
        pool_perms = ["members.add_member", "members.change_member"]
    else:
        pool_perms = ["events.add_registration", "events.change_registration"]
    return user.has_perms(["members.add_importjob", *pool_perms])


class ImportUploadForm(forms.Form):
    # Our own check gives the empty file a message that says what to do.
    file = forms.FileField(label="CSV file", allow_empty_file=True)


class _SizeLimitHandler(FileUploadHandler):
    """Stops reading a file past IMPORT_MAX_BYTES, so a huge upload never reaches disk."""

    too_big = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > settings.IMPORT_MAX_BYTES:
            self.too_big = True
            # Read and drop the rest of the body, so the browser gets our page, not a reset.
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def upload_view(
    request: HttpRequest, *, model_admin: admin.ModelAdmin, pool: str, event: Event | None
) -> HttpResponse:
    """The upload form; on a readable file, a job is created and its preview started.

    Callers mark their view csrf_exempt and this function checks the token itself: the
    size limit must be installed before anything reads the body, and the CSRF
    middleware would read it first.
    """
    limiter = _SizeLimitHandler(request)
    request.upload_handlers.insert(0, limiter)
    return csrf_protect(_upload)(request, model_admin, pool, event, limiter)


def _upload(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    pool: str,
    event: Event | None,
    limiter: _SizeLimitHandler,
) -> HttpResponse:
    if not can_import(request.user, pool):
        raise PermissionDenied
    form = ImportUploadForm()
    if request.method == "POST":
        form = ImportUploadForm(request.POST, request.FILES)
        if limiter.too_big:
            limit_mb = settings.IMPORT_MAX_BYTES / (1024 * 1024)
            form.add_error(
                None,
                f"The file is larger than the {limit_mb:.0f} MB an import may be "
                "(IMPORT_MAX_BYTES). Split it into smaller files. Nothing was imported.",
            )
        elif form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                job = import_job_create(
                    upload=upload.chunks(),
                    file_name=upload.name,
                    pool=pool,
                    event=event,
                    user=request.user,
                )
            except ImportFileError as exc:
                form.add_error("file", f"{exc} Nothing was imported.")
            else:
                import_job_start(job=job)
                return redirect("admin:members_importjob_change", job.pk)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": f"Import {ImportJob.Pool(pool).label.lower()} from CSV",
        "subtitle": str(event) if event else None,
        "form": form,
        "event": event,
        "column_help": [
            (label, COLUMN_ALIASES[name])
            for name, label in _COLUMN_LABELS.items()
            if name != "email" or pool == ImportJob.Pool.MEMBERS
        ],
        "region": settings.SMS_DEFAULT_REGION,
        "max_mb": settings.IMPORT_MAX_BYTES / (1024 * 1024),
        "max_columns": MAX_COLUMNS,
        "recent_jobs": ImportJob.objects.filter(pool=pool, event=event).select_related(
            "created_by"
        )[:10],
    }
    return TemplateResponse(request, "admin/members/import_upload.html", context)


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = (
        "file_name",
        "pool",
        "event",
        "status",
        "rows",
        "new_count",
        "updated_count",
        "unchanged_count",
        "invalid_count",
        "duplicate_count",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "pool")
    list_select_related = ("event", "created_by")
    search_fields = ("file_name", "=sha256")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A job comes from an upload on the members or event page.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self):  # type: ignore[no-untyped-def]
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:job_id>/confirm/", wrap(self.confirm_view), name="members_importjob_confirm"
            ),
            path(
                "<int:job_id>/progress/",
                wrap(self.progress_view),
                name="members_importjob_progress",
            ),
            path(
                "<int:job_id>/problems.csv",
                wrap(self.problems_view),
                name="members_importjob_problems",
            ),
            *super().get_urls(),
        ]

    def _job(self, request: HttpRequest, job_id: Any) -> ImportJob:
        job = get_object_or_404(ImportJob.objects.select_related("event", "created_by"), pk=job_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        if import_job_fail_stalled(job=job):
            job.refresh_from_db()
        return job

    def change_view(  # type: ignore[override]
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if not str(object_id).isdigit():
            raise Http404
        job = self._job(request, object_id)
        if job.pool == ImportJob.Pool.MEMBERS:
            contacts_url = reverse("admin:members_member_changelist")
            upload_url = reverse("admin:members_member_import")
        else:
            contacts_url = (
                reverse("admin:events_registration_changelist")
                + f"?event__id__exact={job.event_id}"
            )
            upload_url = reverse("admin:events_event_import", args=[job.event_id])
        has_report = job.problem_count > 0 and job_report_path(job).exists()
        if _report_removed(job, has_report=has_report):
            messages.info(request, _REPORT_REMOVED)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"CSV import: {job.file_name}",
            "subtitle": str(job.event) if job.event else job.get_pool_display(),
            "job": job,
            "original": job,
            "can_confirm": job.status == ImportJob.Status.PREVIEWED
            and can_import(request.user, job.pool),
            "has_report": has_report,
            "shown_problems": SHOWN_PROBLEMS,
            "contacts_url": contacts_url,
            "upload_url": upload_url,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/members/importjob/detail.html", context)

    @method_decorator(require_POST)
    def confirm_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = self._job(request, job_id)
        if not can_import(request.user, job.pool):
            raise PermissionDenied
        if import_job_confirm(job_id=job.pk):
            job.refresh_from_db()
            import_job_start(job=job)
        else:
            messages.warning(request, "This import was already confirmed.")
        return redirect("admin:members_importjob_change", job.pk)

    @method_decorator(never_cache)
    def progress_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        job = self._job(request, job_id)
        hint = ""
        waiting = (timezone.now() - job.updated_at).total_seconds()
        queued = job.status in (ImportJob.Status.PENDING, ImportJob.Status.CONFIRMED)
        if queued and waiting > _WORKER_HINT_AFTER_SECONDS:
            hint = (
                "No worker has taken this up yet. Is the Celery worker running? "
                "(make run starts one.)"
            )
        return JsonResponse(
            {
                "status": job.status,
                "label": job.get_status_display(),
                "running": job.is_running,
                "done": job.progress_done,
                "total": job.progress_total or job.line_count,
                "hint": hint,
            }
        )

    def problems_view(self, request: HttpRequest, job_id: int) -> HttpResponseBase:
        job = self._job(request, job_id)
        report = job_report_path(job)
        if not report.exists():
            if not _report_removed(job, has_report=False):
                raise Http404("This import has no problem report.")
            # A link from a page opened before the clean-up: say why, on the job's page.
            return redirect("admin:members_importjob_change", job.pk)
        stem = job.file_name.rsplit(".", 1)[0]
        return FileResponse(
            report.open("rb"),
            as_attachment=True,
            filename=f"{stem}-problems.csv",
            content_type="text/csv; charset=utf-8",
        )
