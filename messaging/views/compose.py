"""Compose: write a blast, see what it will cost and who gets it, test it, confirm it.

The flow is compose -> confirm -> the blast page. Only the confirm step creates the
blast; the form carries an idempotency key from the moment the compose page is shown,
so the same form confirmed twice (double click, back button, a retried request)
creates one blast. The pre-flight panel is rendered by the server from
``blast_preflight`` both on the page and for each update the browser asks for as the
manager types; the browser only swaps the panel in.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from events.models import Event
from members.models import Tag
from messaging.models import Delivery
from messaging.segments import MAX_CHARACTERS
from messaging.services.composing import (
    Audience,
    Preflight,
    approval_threshold,
    blast_preflight,
    blast_send_test,
)
from messaging.services.creating import BlastError, blast_create
from messaging.templating import PLACEHOLDERS
from messaging.views.access import admin_context, send_blast_required

PLACEHOLDER_HELP = {
    "first_name": "First name",
    "last_name": "Last name",
    "full_name": "Full name",
    "org_name": "Organisation's name",
    "event_name": "Event name (event audiences only)",
    "event_date": "Event date and time (event audiences only)",
    "event_location": "Event location (event audiences only)",
}


class EventChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Event) -> str:  # type: ignore[override]
        return f"{obj.name} ({obj.starts_at:%b %d, %Y})"


class ComposeForm(forms.Form):
    body = forms.CharField(
        label="Message",
        widget=forms.Textarea(attrs={"rows": 7, "maxlength": MAX_CHARACTERS * 2}),
        help_text="Placeholders such as {first_name} are filled in for each recipient.",
        strip=False,
        error_messages={"required": "Write the message."},
    )
    community = forms.BooleanField(label="Community members (every active member)", required=False)
    tags = forms.ModelMultipleChoiceField(
        label="Only members tagged (any of)",
        queryset=Tag.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave empty for every active member.",
    )
    events = EventChoiceField(
        label="Registrations of these events",
        queryset=Event.objects.order_by("-starts_at", "id"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    name = forms.CharField(
        label="Name for staff (optional)",
        required=False,
        max_length=200,
        help_text="Shown in the blast list; the first line of the message if empty.",
    )
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def audience(self) -> Audience:
        data = self.cleaned_data
        return Audience.of(
            community=bool(data.get("community")),
            event_ids=[event.pk for event in data.get("events") or []],
            tag_ids=[tag.pk for tag in data.get("tags") or []] if data.get("community") else [],
        )

    def check(self, *, user: Any, reuse: bool = False) -> Preflight | None:
        """Validate, then run the pre-flight: its errors go next to their fields.

        ``reuse``: what this form learned about its audience in the last minute may be
        reused (the review step); the confirm step looks afresh."""
        if not self.is_valid():
            return None
        result = blast_preflight(
            body=self.cleaned_data["body"],
            audience=self.audience(),
            user=user,
            reuse_for=str(self.cleaned_data["idempotency_key"]) if reuse else None,
        )
        for where, problems in result.errors.items():
            for problem in problems:
                self.add_error("community" if where == "audience" else "body", problem)
        return result


def people(n: int) -> str:
    return f"{n:,} {'person' if n == 1 else 'people'}"


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _ids(values: list[str]) -> list[int]:
    """The ids among ``values`` that can be ids at all; others are left out (an id that
    names nothing is the form's business, with a message)."""
    ids = []
    for value in values:
        value = value.strip()
        if value.isascii() and value.isdecimal() and 0 < int(value) < 2**31:
            ids.append(int(value))
    return ids


def _initial(request: HttpRequest) -> dict[str, Any]:
    initial: dict[str, Any] = {"idempotency_key": uuid.uuid4()}
    event_ids = _ids(request.GET.getlist("event"))
    if event_ids:
        initial["events"] = list(Event.objects.filter(pk__in=event_ids))
    if request.GET.get("community") in ("1", "true", "yes"):
        initial["community"] = True
    return initial


def _page(
    request: HttpRequest,
    form: ComposeForm,
    preflight: Preflight | None,
    *,
    status: int = 200,
) -> HttpResponse:
    return TemplateResponse(
        request,
        "messaging/compose.html",
        admin_context(
            request,
            title="Compose a blast",
            form=form,
            preflight=preflight,
            placeholders=[(f"{{{name}}}", PLACEHOLDER_HELP[name]) for name in PLACEHOLDERS],
            approval_threshold=approval_threshold(user=request.user),
        ),
        status=status,
    )


@send_blast_required
@require_http_methods(["GET", "POST"])
def compose(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        form = ComposeForm(initial=_initial(request))
        preflight = None
        initial = form.initial
        if initial.get("events") or initial.get("community"):
            audience = Audience.of(
                community=bool(initial.get("community")),
                event_ids=[event.pk for event in initial.get("events", [])],
            )
            preflight = blast_preflight(body="", audience=audience, user=request.user)
        return _page(request, form, preflight)

    form = ComposeForm(request.POST)
    preflight = form.check(user=request.user, reuse=True)
    if preflight is None or not preflight.ok or form.errors:
        return _page(request, form, preflight, status=400)
    return TemplateResponse(
        request,
        "messaging/compose_confirm.html",
        admin_context(
            request,
            title="Check and confirm",
            form=form,
            preflight=preflight,
            hidden=_hidden_copy(form),
        ),
    )


def _hidden_copy(form: ComposeForm) -> list[tuple[str, str]]:
    """The form's values as hidden inputs for the confirm step."""
    data = form.cleaned_data
    pairs = [
        ("body", data["body"]),
        ("name", data.get("name") or ""),
        ("idempotency_key", str(data["idempotency_key"])),
    ]
    if data.get("community"):
        pairs.append(("community", "on"))
    pairs += [("tags", str(tag.pk)) for tag in data.get("tags") or []]
    pairs += [("events", str(event.pk)) for event in data.get("events") or []]
    return pairs


@send_blast_required
@require_POST
def confirm(request: HttpRequest) -> HttpResponse:
    form = ComposeForm(request.POST)
    if "edit" in request.POST:
        return _page(request, form, form.check(user=request.user))
    preflight = form.check(user=request.user)
    if preflight is None or form.errors:
        return _page(request, form, preflight, status=400)
    audience = form.audience()
    started = timezone.now()
    try:
        blast = blast_create(
            body=form.cleaned_data["body"],
            community=audience.community,
            event_ids=audience.event_ids,
            tag_ids=audience.tag_ids,
            name=form.cleaned_data.get("name") or "",
            created_by=request.user,  # type: ignore[arg-type]
            idempotency_key=form.cleaned_data["idempotency_key"],
            approval_above=approval_threshold(user=request.user),
        )
    except BlastError as exc:
        form.add_error("community" if exc.field == "audience" else "body", str(exc))
        return _page(request, form, preflight, status=400)
    to_text = blast.recipient_count - blast.counts()[Delivery.Status.SKIPPED]
    if blast.created_at < started:
        # Confirmed before (double click, back button, a retried request): one blast.
        if blast.status == blast.Status.PREPARING:
            messages.info(
                request,
                "This form was already sent and its recipient list is still being "
                "written: this page shows it once it is ready.",
            )
        else:
            messages.info(request, "This form was already sent: here is the blast it created.")
    elif blast.status == blast.Status.AWAITING_APPROVAL:
        messages.warning(
            request,
            f"Saved. It goes to {people(to_text)}, more than "
            f"{approval_threshold(user=request.user):,}, so it waits for an Admin's approval "
            "before anything is sent.",
        )
    else:
        messages.success(request, f"Sending to {people(to_text)}.")
    return redirect(reverse("messaging:blast", args=[blast.pk]))


@send_blast_required
@require_POST
def preflight(request: HttpRequest) -> HttpResponse:
    data = {
        "body": request.POST.get("body", ""),
        "community": request.POST.get("community") in ("on", "true", "1"),
    }
    audience = Audience.of(
        community=data["community"],
        event_ids=_ids(request.POST.getlist("events")),
        tag_ids=_ids(request.POST.getlist("tags")) if data["community"] else [],
    )
    key = request.POST.get("idempotency_key", "")
    result = blast_preflight(
        body=data["body"],
        audience=audience,
        user=request.user,
        reuse_for=key if _is_uuid(key) else None,
    )
    html = render_to_string("messaging/compose_panel.html", {"preflight": result}, request=request)
    text = result.text
    return JsonResponse(
        {
            "ok": result.ok,
            "html": html,
            "errors": result.errors,
            "encoding": text.encoding if text else "",
            "segments": text.segments if text else 0,
            "characters": text.characters if text else 0,
            "replacements": text.replacements if text else {},
            "recipients": result.breakdown.recipients if result.breakdown else None,
        }
    )


@send_blast_required
@require_POST
def send_test(request: HttpRequest) -> HttpResponse:
    form = ComposeForm(request.POST)
    preflight = form.check(user=request.user)
    if preflight is not None and "body" not in form.errors:
        try:
            phone = blast_send_test(
                user=request.user,  # type: ignore[arg-type]
                body=form.cleaned_data["body"],
                audience=form.audience(),
            )
        except BlastError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Test sent to your mobile, {phone}.")
    else:
        messages.error(request, "Fix the message first; then send the test.")
    return _page(request, form, preflight)
