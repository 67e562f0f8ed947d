"""An Admin approves or rejects a blast that waits for approval."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from messaging.views.access import staff_permission_required

approve_blast_required = staff_permission_required("messaging.approve_blast")


@approve_blast_required
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    raise NotImplementedError


@approve_blast_required
def reject(request: HttpRequest, pk: int) -> HttpResponse:
    raise NotImplementedError
