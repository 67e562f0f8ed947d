"""An Admin approves or rejects a blast that waits for approval; its author may withdraw it."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from messaging.models import Blast, Delivery
from messaging.services.approval import blast_approve, blast_reject
from messaging.services.creating import BlastError
from messaging.views.access import send_blast_required, staff_permission_required
from messaging.views.compose import people

approve_blast_required = staff_permission_required("messaging.approve_blast")


@approve_blast_required
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(Blast, pk=pk)
    try:
        blast = blast_approve(blast_id=pk, user=request.user, note=request.POST.get("note", ""))  # type: ignore[arg-type]
    except BlastError as exc:
        messages.error(request, str(exc))
    else:
        if blast.status == Blast.Status.SCHEDULED:
            messages.success(request, "Approved: it will be sent at its scheduled time.")
        else:
            to_text = blast.recipient_count - blast.counts()[Delivery.Status.SKIPPED]
            messages.success(request, f"Approved: sending to {people(to_text)}.")
    return redirect(reverse("messaging:blast", args=[pk]))


# The author withdraws with the same form, so sending blasts is enough to reach it;
# the service decides who may reject.
@send_blast_required
@require_POST
def reject(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(Blast, pk=pk)
    try:
        blast = blast_reject(blast_id=pk, user=request.user, note=request.POST.get("note", ""))  # type: ignore[arg-type]
    except BlastError as exc:
        messages.error(request, str(exc))
    else:
        own = blast.created_by_id == request.user.pk
        messages.success(
            request, "Withdrawn: nothing was sent." if own else "Rejected: nothing was sent."
        )
    return redirect(reverse("messaging:blast", args=[pk]))
