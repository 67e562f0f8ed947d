"""One blast's page: status, live progress, pause/resume/cancel, its recipients."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from messaging.views.access import send_blast_required, view_blast_required


@view_blast_required
def blast_detail(request: HttpRequest, pk: int) -> HttpResponse:
    raise NotImplementedError


@view_blast_required
def blast_progress(request: HttpRequest, pk: int) -> HttpResponse:
    raise NotImplementedError


@send_blast_required
def blast_pause_view(request: HttpRequest, pk: int) -> HttpResponse:
    raise NotImplementedError


@send_blast_required
def blast_resume_view(request: HttpRequest, pk: int) -> HttpResponse:
    raise NotImplementedError


@send_blast_required
def blast_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    raise NotImplementedError


@send_blast_required
def blast_retry_failed_view(request: HttpRequest, pk: int) -> HttpResponse:
    raise NotImplementedError


@view_blast_required
def blast_export_csv(request: HttpRequest, pk: int) -> HttpResponse:
    raise NotImplementedError
