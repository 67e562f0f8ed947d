"""One blast's page: status, live progress, pause/resume/cancel, its recipients."""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from messaging.models import Blast, Delivery
from messaging.services import blast_cancel, blast_pause, blast_resume
from messaging.services.creating import BlastError
from messaging.services.retrying import RETRYABLE_STATUSES, blast_retry_failed
from messaging.services.scheduling import blast_send_missed_now
from messaging.twilio_errors import describe, meaning
from messaging.views.access import admin_context, send_blast_required, view_blast_required
from smsadmin.csv_export import csv_rows, export_columns
from smsadmin.phones import phone_display

S = Delivery.Status
B = Blast.Status

PER_PAGE = 50
POLL_SECONDS = 3

# Counts in the order staff read them; "unknown" is the engine's word for a message
# that may or may not have gone out.
COUNT_LABELS: list[tuple[str, str]] = [
    (S.PENDING, "Pending"),
    (S.SENDING, "Being sent"),
    (S.SENT, "Sent"),
    (S.DELIVERED, "Delivered"),
    (S.FAILED, "Failed"),
    (S.UNKNOWN, "Outcome unknown"),
    (S.SKIPPED, "Skipped"),
    (S.CANCELLED, "Cancelled"),
]
STATUS_FILTER_CHOICES = [("", "Any status"), *COUNT_LABELS]

PAUSABLE = (B.QUEUED, B.SENDING)
CANCELLABLE = (B.SCHEDULED, B.MISSED, B.DISPATCHING, B.QUEUED, B.SENDING, B.PAUSED)

STATUS_WORDS: dict[str, str] = {
    B.PREPARING: "Its list of recipients is being written; nothing is sent yet.",
    B.AWAITING_APPROVAL: "It waits for an Admin's approval; nothing is sent until then.",
    B.SCHEDULED: "It will start sending at the scheduled time. Its recipients are taken "
    "then: people who join before are included, people who opt out are not.",
    B.DISPATCHING: "Its time has come: its list of recipients is being written.",
    B.MISSED: "It was not sent: the scheduler found it long after its time (the system was "
    "down). Send it now, or cancel it.",
    B.QUEUED: "It is about to start sending.",
    B.SENDING: "It is sending now.",
    B.PAUSED: "Nothing new is sent until someone resumes it.",
    B.SENT: "Finished: every recipient who could be texted was.",
    B.PARTIALLY_FAILED: "Finished: some messages could not be sent.",
    B.FAILED: "Finished: no message could be sent.",
    B.CANCELLED: "Cancelled: what was not sent will not be.",
    B.REJECTED: "It was not approved and will not be sent.",
}

WHAT_TO_DO: dict[str, str] = {
    Blast.PauseCause.STAFF: "Resume it to send the rest, or cancel it.",
    Blast.PauseCause.QUIET: "Nothing: it goes on by itself when quiet hours end. Resume it "
    "to send now anyway.",
    Blast.PauseCause.SENDER: "Fix the sender number or the Twilio account, then resume.",
    Blast.PauseCause.CANARY: (
        "Look at the failed recipients below. If the list looks right, resume; "
        "if it is wrong, cancel."
    ),
    Blast.PauseCause.NO_ANSWER: "Resume once Twilio is answering again (status.twilio.com).",
    Blast.PauseCause.ERROR_RUN: (
        "Look at the failures below. If the rest would fail the same way, fix that "
        "first; then resume, or cancel."
    ),
}


# --- What the page and the progress endpoint show --------------------------------------------


def eta_words(*, pending: int, status: str) -> str:
    """How long what is pending takes at the deployment's rate; empty when not sending."""
    rate = float(settings.SMS_RATE_PER_SECOND or 0)
    if status not in PAUSABLE or pending <= 0 or rate <= 0:
        return ""
    seconds = pending / rate
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} minute{'' if minutes == 1 else 's'}"
    hours = round(seconds / 3600)
    return f"about {hours} hour{'' if hours == 1 else 's'}"


def progress_figures(counts: dict[str, int]) -> dict[str, Any]:
    """Rows handled so far (anything not pending or being sent) out of all rows."""
    total = counts.get("total", 0)
    handled = total - counts.get(S.PENDING, 0) - counts.get(S.SENDING, 0)
    percent = math.floor(100 * handled / total) if total else 100
    return {"total": total, "handled": handled, "percent": percent}


def audience_words(blast: Blast) -> str:
    """E.g. "Community members tagged volunteers or north side; registrations of Spring
    Gala (Apr 12)"."""
    parts: list[str] = []
    if blast.audience_community:
        tags = [tag.name for tag in blast.audience_tags.all()]
        if tags:
            parts.append(f"Community members tagged {' or '.join(tags)}")
        else:
            parts.append("Community members")
    for event in blast.audience_events.all():
        when = timezone.localtime(event.starts_at)
        parts.append(f"Registrations of {event.name} ({when:%b} {when.day})")
    if len(parts) > 1:
        parts[1:] = [part[0].lower() + part[1:] for part in parts[1:]]
    return "; ".join(parts) or "No audience recorded"


def _controls(*, blast: Blast, counts: dict[str, int], user: Any) -> dict[str, bool]:
    if not user.has_perm("messaging.send_blast"):
        return {"pause": False, "resume": False, "cancel": False, "retry": False}
    is_author = blast.created_by_id is not None and blast.created_by_id == user.pk
    return {
        "edit": blast.status == B.SCHEDULED,
        "send_now": blast.status == B.MISSED
        and (is_author or user.has_perm("messaging.approve_blast")),
        "pause": blast.status in PAUSABLE,
        "resume": blast.status == B.PAUSED,
        "cancel": blast.status in CANCELLABLE,
        "retry": blast.status in RETRYABLE_STATUSES and counts[S.FAILED] > 0,
    }


def _progress(blast: Blast) -> dict[str, Any]:
    counts = blast.counts()
    return {
        "status": blast.status,
        "status_label": blast.get_status_display(),
        "final": blast.is_final,
        "counts": counts,
        "eta": eta_words(pending=counts[S.PENDING], status=blast.status),
        **progress_figures(counts),
    }


# --- The recipients table ----------------------------------------------------------------------


class RecipientFilterForm(forms.Form):
    status = forms.ChoiceField(label="Status", required=False, choices=STATUS_FILTER_CHOICES)
    code = forms.TypedChoiceField(
        label="Error", required=False, coerce=int, empty_value=None, choices=[]
    )

    def __init__(self, *args: Any, codes: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["code"].choices = [("", "Any error or none")] + [
            (code, describe(code)) for code in codes
        ]


def _codes_present(blast_id: int) -> list[int]:
    return sorted(
        Delivery.objects.filter(blast_id=blast_id, error_code__isnull=False)
        .order_by()
        .values_list("error_code", flat=True)
        .distinct()
    )


def _recipients(request: HttpRequest, blast: Blast) -> tuple[RecipientFilterForm, QuerySet]:
    """The blast's rows as the filter asks; every row (and the form's errors) if it asks
    for something that is not one of its choices."""
    form = RecipientFilterForm(request.GET or None, codes=_codes_present(blast.pk))
    rows = Delivery.objects.filter(blast_id=blast.pk).order_by("pk")
    if form.is_bound and form.is_valid():
        if form.cleaned_data["status"]:
            rows = rows.filter(status=form.cleaned_data["status"])
        if form.cleaned_data["code"] is not None:
            rows = rows.filter(error_code=form.cleaned_data["code"])
    return form, rows


def _row(delivery: Delivery) -> dict[str, Any]:
    labels = dict(COUNT_LABELS)
    status = labels.get(delivery.status, delivery.get_status_display())
    if delivery.status == S.UNKNOWN and delivery.attention:
        status += ", needs a decision"
    if delivery.status == S.SKIPPED and delivery.skip_reason:
        status += f" ({delivery.get_skip_reason_display().lower()})"
    return {
        "phone": delivery.phone,
        "phone_shown": phone_display(delivery.phone),
        "name": delivery.full_name,
        "status": status,
        "failed": delivery.status == S.FAILED,
        "error_code": delivery.error_code,
        "error_meaning": meaning(delivery.error_code) if delivery.error_code else "",
        "sent_at": delivery.sent_at,
        "delivered_at": delivery.delivered_at,
    }


# --- Views -----------------------------------------------------------------------------------


def _blast(pk: int) -> Blast:
    return get_object_or_404(Blast.objects.select_related("created_by", "reviewed_by"), pk=pk)


def _back(blast: Blast) -> HttpResponse:
    return redirect("messaging:blast", pk=blast.pk)


@view_blast_required
@require_GET
def blast_detail(request: HttpRequest, pk: int) -> HttpResponse:
    blast = _blast(pk)
    progress = _progress(blast)
    counts = progress["counts"]
    form, rows = _recipients(request, blast)
    page = Paginator(
        rows.only(
            "pk",
            "phone",
            "first_name",
            "last_name",
            "status",
            "skip_reason",
            "attention",
            "error_code",
            "sent_at",
            "delivered_at",
        ),
        PER_PAGE,
    ).get_page(request.GET.get("page"))
    user = request.user
    is_author = blast.created_by_id is not None and blast.created_by_id == user.pk
    awaiting = blast.status == B.AWAITING_APPROVAL
    export_query = request.GET.copy()
    export_query.pop("page", None)
    context = admin_context(
        request,
        title=str(blast),
        blast=blast,
        progress=progress,
        count_rows=[(key, label, counts[key]) for key, label in COUNT_LABELS],
        status_words=STATUS_WORDS.get(blast.status, ""),
        paused_by_engine=blast.status == B.PAUSED
        and blast.pause_cause not in ("", Blast.PauseCause.STAFF),
        what_to_do=WHAT_TO_DO.get(blast.pause_cause or Blast.PauseCause.STAFF, ""),
        audience=audience_words(blast),
        controls=_controls(blast=blast, counts=counts, user=user),
        can_review=awaiting and user.has_perm("messaging.approve_blast") and not is_author,
        can_withdraw=awaiting and is_author,
        form=form,
        page=page,
        rows=[_row(delivery) for delivery in page.object_list],
        export_query=export_query.urlencode(),
        poll_seconds=POLL_SECONDS,
    )
    return render(request, "messaging/blast_detail.html", context)


@view_blast_required
@require_GET
def blast_progress(request: HttpRequest, pk: int) -> HttpResponse:
    blast = get_object_or_404(Blast, pk=pk)
    return JsonResponse(_progress(blast))


@send_blast_required
@require_POST
def blast_pause_view(request: HttpRequest, pk: int) -> HttpResponse:
    blast = _blast(pk)
    if blast_pause(blast_id=blast.pk, reason=f"Paused by {request.user}"):
        messages.success(
            request,
            "Paused. Messages already on their way finish; nothing new is sent until "
            "someone resumes the blast.",
        )
    else:
        blast.refresh_from_db(fields=["status"])
        messages.warning(request, f"Nothing was paused: {_not_running(blast)}")
    return _back(blast)


@send_blast_required
@require_POST
def blast_resume_view(request: HttpRequest, pk: int) -> HttpResponse:
    blast = _blast(pk)
    if blast_resume(blast_id=blast.pk):
        messages.success(request, "Resumed: the rest of the list is being sent.")
    else:
        blast.refresh_from_db(fields=["status"])
        messages.warning(
            request,
            f"Nothing was resumed: the blast is not paused "
            f"(it is {blast.get_status_display().lower()}).",
        )
    return _back(blast)


@send_blast_required
@require_POST
def blast_send_now_view(request: HttpRequest, pk: int) -> HttpResponse:
    """A missed blast, sent now by an Admin or its author."""
    blast = _blast(pk)
    try:
        blast_send_missed_now(blast_id=blast.pk, user=request.user)  # type: ignore[arg-type]
    except BlastError as exc:
        messages.warning(request, f"Nothing was sent: {exc}")
    else:
        messages.success(request, "It goes out within a minute; its recipients are taken now.")
    return _back(blast)


@send_blast_required
@require_http_methods(["GET", "POST"])
def blast_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what cancelling would leave unsent, and a confirm button. POST: cancel."""
    blast = _blast(pk)
    if request.method == "POST":
        cancelled = blast_cancel(blast_id=blast.pk, reason=f"Cancelled by {request.user}")
        if cancelled is None:
            blast.refresh_from_db(fields=["status"])
            messages.warning(request, f"Nothing was cancelled: {_not_running(blast)}")
        else:
            messages.success(
                request,
                f"Cancelled. {_recipients_text(cancelled)} not texted yet will not be texted.",
            )
        return _back(blast)
    if blast.status not in CANCELLABLE:
        messages.warning(request, f"There is nothing to cancel: {_not_running(blast)}")
        return _back(blast)
    not_texted = Delivery.objects.filter(blast_id=blast.pk, status=S.PENDING).count()
    context = admin_context(request, title=f"Cancel {blast}?", blast=blast, not_texted=not_texted)
    return render(request, "messaging/blast_cancel.html", context)


@send_blast_required
@require_POST
def blast_retry_failed_view(request: HttpRequest, pk: int) -> HttpResponse:
    blast = _blast(pk)
    try:
        result = blast_retry_failed(blast_id=blast.pk)
    except BlastError as exc:
        messages.warning(request, str(exc))
        return _back(blast)
    level = messages.SUCCESS if result.retried else messages.WARNING
    messages.add_message(request, level, result.summary)
    return _back(blast)


@view_blast_required
@require_GET
def blast_export_csv(request: HttpRequest, pk: int) -> HttpResponse:
    """The recipients the page's filters show, every page of them, as CSV."""
    blast = _blast(pk)
    _, rows = _recipients(request, blast)
    response = StreamingHttpResponse(
        csv_rows(rows, export_columns(Delivery)), content_type="text/csv; charset=utf-8"
    )
    name = f"blast-{blast.pk}-recipients-{timezone.localdate():%Y-%m-%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _recipients_text(n: int) -> str:
    return f"{n} recipient{'' if n == 1 else 's'}"


def _not_running(blast: Blast) -> str:
    status = blast.get_status_display().lower()
    if blast.is_final:
        return f"the blast already finished ({status})."
    return f"the blast is {status}."


def blast_url(blast: Blast) -> str:
    return reverse("messaging:blast", args=[blast.pk])
