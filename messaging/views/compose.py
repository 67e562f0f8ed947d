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
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
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
from messaging.models import Blast, Delivery
from messaging.quiet_hours import quiet_hours
from messaging.segments import MAX_CHARACTERS
from messaging.services.composing import (
    Audience,
    Preflight,
    approval_threshold,
    blast_preflight,
    blast_send_test,
)
from messaging.services.creating import BlastError, blast_create, blast_update_scheduled
from messaging.templatetags.compose_extras import before_words, local_time
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


MIN_AHEAD = timedelta(minutes=1)
# Far enough for any real plan; a typo such as 9999 is refused, not overflowed.
MAX_AHEAD = timedelta(days=731)
REMIND_CHOICES = [
    ("", "---------"),
    (60, "1 hour before"),
    (120, "2 hours before"),
    (24 * 60, "1 day before"),
    (2 * 24 * 60, "2 days before"),
    (7 * 24 * 60, "1 week before"),
]


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
    when = forms.ChoiceField(
        label="When",
        choices=[
            ("now", "Now"),
            ("later", "Later, at a date and time"),
            ("reminder", "Before an event starts (a reminder to its registrants)"),
        ],
        initial="now",
        required=False,  # "now" when left out
        widget=forms.RadioSelect,
    )
    send_at = forms.DateTimeField(
        label="Date and time",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    remind_before = forms.TypedChoiceField(
        label="How long before the event",
        choices=REMIND_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
    )
    quiet_hours_ok = forms.BooleanField(label="Send even in quiet hours", required=False)
    editing = forms.IntegerField(required=False, widget=forms.HiddenInput)
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        zone = ZoneInfo(settings.TIME_ZONE)
        abbreviation = timezone.now().astimezone(zone).strftime("%Z")
        self.fields["send_at"].label = f"Date and time ({settings.TIME_ZONE}, {abbreviation})"
        hours = quiet_hours()
        if hours is not None:
            self.fields["quiet_hours_ok"].help_text = (
                f"Quiet hours are {hours} ({settings.TIME_ZONE}): nobody is texted then unless "
                "this is ticked."
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        now = timezone.now()
        when = data.get("when") or "now"
        moment = now
        if when == "later":
            send_at = data.get("send_at")
            if send_at is None:
                if "send_at" not in self.errors:
                    self.add_error("send_at", "Choose the date and time to send it.")
                return data
            if not (now.year - 1 <= send_at.year <= now.year + 2) or send_at > now + MAX_AHEAD:
                self.add_error("send_at", "Choose a time within two years from now.")
                return data
            if send_at < now + MIN_AHEAD:
                local = timezone.localtime(now)
                self.add_error(
                    "send_at",
                    f"Choose a time at least a minute from now (it is now {local:%H:%M %Z}).",
                )
                return data
            moment = send_at
        elif when == "reminder":
            before = data.get("remind_before")
            events = list(data.get("events") or [])
            if before is None:
                self.add_error("remind_before", "Choose how long before the event to send it.")
                return data
            if data.get("community") or len(events) != 1:
                self.add_error(
                    "remind_before",
                    "A reminder goes to one event's registrants: choose that event alone.",
                )
                return data
            moment = events[0].starts_at - timedelta(minutes=before)
            if moment < now + MIN_AHEAD:
                self.add_error(
                    "remind_before",
                    f"That time has passed: {events[0].name} starts "
                    f"{timezone.localtime(events[0].starts_at):%a %b %d at %H:%M %Z}.",
                )
                return data
        hours = quiet_hours()
        if hours is not None and hours.contains(moment) and not data.get("quiet_hours_ok"):
            local = timezone.localtime(moment)
            self.add_error(
                "quiet_hours_ok",
                f"{'Now' if when == 'now' else local.strftime('%a %b %d %H:%M %Z')} is inside "
                f"quiet hours ({hours}, {settings.TIME_ZONE}). Choose another time, or tick "
                "this box to send in them anyway.",
            )
        data["moment"] = moment
        return data

    def schedule(self) -> dict[str, Any]:
        """blast_create's timing arguments from the cleaned form."""
        data = self.cleaned_data
        when = data.get("when") or "now"
        return {
            "scheduled_for": data["send_at"] if when == "later" else None,
            "remind_before": timedelta(minutes=data["remind_before"])
            if when == "reminder"
            else None,
            "quiet_hours_override": bool(data.get("quiet_hours_ok")),
        }

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
        hours = quiet_hours()
        moment = self.cleaned_data.get("moment") if hasattr(self, "cleaned_data") else None
        if (
            hours is not None
            and moment is not None
            and not self.cleaned_data.get("quiet_hours_ok")
            and result.send_seconds
            and not hours.contains(moment)
            and hours.overlaps(moment, result.send_seconds)
        ):
            starts = hours.starts_after(moment)
            result.warnings.append(
                f"It would still be sending when quiet hours begin at {starts:%H:%M}: it "
                f"pauses then and goes on by itself at {hours.end:%H:%M}."
            )
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


def _initial_from(blast: Blast) -> dict[str, Any]:
    """The compose form filled in from a scheduled blast, to edit it."""
    initial: dict[str, Any] = {
        "idempotency_key": uuid.uuid4(),
        "editing": blast.pk,
        "body": blast.body,
        "name": blast.name,
        "community": blast.audience_community,
        "events": list(blast.audience_events.all()),
        "tags": list(blast.audience_tags.all()),
        "quiet_hours_ok": blast.quiet_hours_override,
    }
    if blast.remind_before is not None:
        initial["when"] = "reminder"
        initial["remind_before"] = int(blast.remind_before.total_seconds() // 60)
    elif blast.scheduled_for is not None:
        initial["when"] = "later"
        initial["send_at"] = timezone.localtime(blast.scheduled_for)
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
        editing = _ids(request.GET.getlist("edit"))
        if editing:
            blast = Blast.objects.filter(pk=editing[0], status=Blast.Status.SCHEDULED).first()
            if blast is None:
                messages.warning(
                    request, "That blast can no longer be edited: it has started or was cancelled."
                )
                return redirect(reverse("messaging:compose"))
            form = ComposeForm(initial=_initial_from(blast))
            audience = Audience.of(
                community=blast.audience_community,
                event_ids=[e.pk for e in form.initial["events"]],
                tag_ids=[t.pk for t in form.initial["tags"]],
            )
            return _page(
                request,
                form,
                blast_preflight(body=blast.body, audience=audience, user=request.user),
            )
        form = ComposeForm(initial=_initial(request))
        preflight = None
        initial = form.initial
        if initial.get("events") or initial.get("community"):
            audience = Audience.of(
                community=bool(initial.get("community")),
                event_ids=[event.pk for event in initial.get("events", [])],
            )
            # Counted under the new form's key: its first keystrokes reuse these counts.
            preflight = blast_preflight(
                body="",
                audience=audience,
                user=request.user,
                reuse_for=str(initial["idempotency_key"]),
            )
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
            sends_words=_sends_words(form),
            scheduled=(form.cleaned_data.get("when") or "now") != "now",
            editing=form.cleaned_data.get("editing"),
        ),
    )


def _sends_words(form: ComposeForm) -> str:
    data = form.cleaned_data
    when = data.get("when") or "now"
    if when == "later":
        return f"At {local_time(data['send_at'])}; its recipients are taken then."
    if when == "reminder":
        event = list(data["events"])[0]
        before = before_words(timedelta(minutes=data["remind_before"]))
        return f"{before.capitalize()} {event.name} starts: {local_time(data['moment'])}."
    return "Now."


def _hidden_copy(form: ComposeForm) -> list[tuple[str, str]]:
    """The form's values as hidden inputs for the confirm step."""
    data = form.cleaned_data
    pairs = [
        ("body", data["body"]),
        ("name", data.get("name") or ""),
        ("idempotency_key", str(data["idempotency_key"])),
        ("when", data.get("when") or "now"),
    ]
    if data.get("send_at"):
        pairs.append(("send_at", timezone.localtime(data["send_at"]).strftime("%Y-%m-%dT%H:%M")))
    if data.get("remind_before") is not None:
        pairs.append(("remind_before", str(data["remind_before"])))
    if data.get("quiet_hours_ok"):
        pairs.append(("quiet_hours_ok", "on"))
    if data.get("editing"):
        pairs.append(("editing", str(data["editing"])))
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
    editing = form.cleaned_data.get("editing")
    try:
        if editing:
            blast = blast_update_scheduled(
                blast_id=editing,
                body=form.cleaned_data["body"],
                community=audience.community,
                event_ids=audience.event_ids,
                tag_ids=audience.tag_ids,
                name=form.cleaned_data.get("name") or "",
                approval_above=approval_threshold(user=request.user),
                **form.schedule(),
            )
            messages.success(request, "Changes saved.")
            return redirect(reverse("messaging:blast", args=[blast.pk]))
        blast = blast_create(
            body=form.cleaned_data["body"],
            community=audience.community,
            event_ids=audience.event_ids,
            tag_ids=audience.tag_ids,
            name=form.cleaned_data.get("name") or "",
            created_by=request.user,  # type: ignore[arg-type]
            idempotency_key=form.cleaned_data["idempotency_key"],
            approval_above=approval_threshold(user=request.user),
            **form.schedule(),
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
    elif blast.status == blast.Status.SCHEDULED:
        messages.success(
            request,
            f"Scheduled for {local_time(blast.scheduled_for)}. Its recipients are taken then.",
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
