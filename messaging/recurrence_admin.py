"""Repeating blasts in the admin: weekly on chosen days or monthly on a day, at a local
time, from a first to a last day. Each occurrence is a blast of its own, made by the
dispatch pass when it is due (messaging/services/scheduling.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from events.models import Event
from members.models import Tag
from messaging.models import Blast, Recurrence
from messaging.quiet_hours import quiet_hours
from messaging.segments import MAX_CHARACTERS
from messaging.services.creating import (
    BlastError,
    blast_check_audience,
    blast_check_fit,
    blast_check_text,
)
from messaging.services.repeating import (
    WEEKDAY_NAMES,
    local_time_in_words,
    recurrence_in_words,
    recurrence_resume,
    recurrence_schedule,
    recurrence_stop,
    recurrence_weekdays,
)
from messaging.services.scheduling import recurrence_next_run

# The change page lists this many of the latest occurrences and links to the rest.
OCCURRENCES_SHOWN = 10

F = Recurrence.Frequency


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


class _EventChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Event) -> str:  # type: ignore[override]
        return f"{obj.name} ({obj.starts_at.astimezone(_zone()):%b %d, %Y})"


class RecurrenceForm(forms.ModelForm):
    days = forms.TypedMultipleChoiceField(
        label="On these days (weekly)",
        choices=list(enumerate(WEEKDAY_NAMES)),
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    day_of_month = forms.IntegerField(
        label="On this day of the month (monthly)",
        required=False,
        widget=forms.NumberInput(attrs={"min": 1, "max": 31}),
        help_text="1 to 31; in shorter months the last day of the month.",
        error_messages={"invalid": "Write the day of the month as a number, 1 to 31."},
    )
    audience_events = _EventChoiceField(
        label="Registrations of these events",
        queryset=Event.objects.order_by("-starts_at", "id"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    audience_tags = forms.ModelMultipleChoiceField(
        label="Only members tagged (any of)",
        queryset=Tag.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="With community members: only those having any of these tags. Leave "
        "empty for every active member.",
    )

    class Meta:
        model = Recurrence
        fields = (
            "name",
            "body",
            "audience_community",
            "audience_tags",
            "audience_events",
            "frequency",
            "day_of_month",
            "time_of_day",
            "starts_on",
            "ends_on",
            "quiet_hours_override",
            "active",
        )
        labels = {
            "name": "Name for staff",
            "body": "Message",
            "audience_community": "Community members (every active member)",
            "frequency": "Repeats",
            "time_of_day": "At",
            "starts_on": "First day",
            "ends_on": "Last day",
            "active": "Repeating",
        }
        help_texts = {
            "name": "Each occurrence is named after it, with its date.",
            "body": "Placeholders such as {first_name} are filled in for each recipient. "
            "The audience is taken as it is when each occurrence is due.",
            "ends_on": "No occurrence after this day.",
            "active": "Untick to stop it: no occurrence is made while it is stopped.",
        }
        widgets = {
            "body": forms.Textarea(attrs={"rows": 6, "maxlength": MAX_CHARACTERS * 2}),
        }
        error_messages = {
            "name": {"required": "Give it a name staff will recognise."},
            "body": {"required": "Write the message."},
            "frequency": {"required": "Choose weekly or monthly."},
            "time_of_day": {
                "required": "Choose the time of day.",
                "invalid": "Write the time as HH:MM, e.g. 18:00.",
            },
            "starts_on": {
                "required": "Choose the first day.",
                "invalid": "Write the day as YYYY-MM-DD.",
            },
            "ends_on": {
                "required": "Choose the last day.",
                "invalid": "Write the day as YYYY-MM-DD.",
            },
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        zone = settings.TIME_ZONE
        if "body" in self.fields:
            self.fields["body"].strip = False  # type: ignore[attr-defined]
        if "time_of_day" in self.fields:
            self.fields["time_of_day"].help_text = f"Local time ({zone})."
        if "quiet_hours_override" in self.fields:
            hours = quiet_hours()
            self.fields["quiet_hours_override"].help_text = (
                f"Quiet hours are {hours} ({zone}): nobody is texted then unless this is ticked."
                if hours is not None
                else "Quiet hours are off in this deployment."
            )
        if self.instance.pk and not self.is_bound:
            self.initial["days"] = recurrence_weekdays(self.instance)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        self._clean_schedule(data)
        self._clean_dates(data)
        self._clean_message(data)
        self._clean_quiet_hours(data)
        if not self.errors and data.get("active", True):
            probe = self._schedule_of(data)
            if recurrence_next_run(probe, after=timezone.now()) is None:
                self.add_error(
                    None,
                    f"No occurrence is left: {recurrence_in_words(probe).lower()} falls on no "
                    f"day from now to {data['ends_on']:%Y-%m-%d}. Change the days or the last "
                    "day.",
                )
        return data

    def _clean_schedule(self, data: dict[str, Any]) -> None:
        frequency = data.get("frequency")
        if frequency == F.WEEKLY:
            if not data.get("days"):
                self.add_error("days", "Choose at least one day of the week.")
            data["day_of_month"] = None
        elif frequency == F.MONTHLY:
            day = data.get("day_of_month")
            if "day_of_month" in self.errors:
                pass
            elif day is None:
                self.add_error("day_of_month", "Choose the day of the month (1 to 31).")
            elif not 1 <= day <= 31:
                self.add_error(
                    "day_of_month",
                    f"There is no day {day} in a month: choose 1 to 31 (in shorter months, "
                    "31 means the last day).",
                )
            data["days"] = []

    def _clean_dates(self, data: dict[str, Any]) -> None:
        starts_on, ends_on = data.get("starts_on"), data.get("ends_on")
        if ends_on is None:
            return
        if starts_on is not None and ends_on < starts_on:
            self.add_error(
                "ends_on",
                f"The last day ({ends_on:%Y-%m-%d}) is before the first day "
                f"({starts_on:%Y-%m-%d}).",
            )
            return
        today = timezone.localdate(timezone=_zone())
        if ends_on < today:
            self.add_error(
                "ends_on",
                f"The last day ({ends_on:%Y-%m-%d}) has passed: choose today "
                f"({today:%Y-%m-%d}) or later.",
            )

    def _clean_message(self, data: dict[str, Any]) -> None:
        """The text and audience, checked exactly as a blast's."""
        body = data.get("body")
        template = None
        if body:
            try:
                template = blast_check_text(body=body)
            except BlastError as exc:
                self.add_error("body", str(exc))
        community = bool(data.get("audience_community"))
        events = data.get("audience_events")
        tags = data.get("audience_tags")
        if events is None or tags is None:
            return  # a choice that no longer exists: its field says so
        try:
            blast_check_audience(
                community=community,
                event_ids=[event.pk for event in events],
                tag_ids=[tag.pk for tag in tags],
            )
        except BlastError as exc:
            self.add_error("audience_community", str(exc))
        if template is not None:
            try:
                blast_check_fit(template=template, community=community)
            except BlastError as exc:
                self.add_error("body", str(exc))

    def _clean_quiet_hours(self, data: dict[str, Any]) -> None:
        hours = quiet_hours()
        at = data.get("time_of_day")
        if hours is None or at is None or data.get("quiet_hours_override"):
            return
        moment = datetime.combine(timezone.localdate(timezone=_zone()), at, _zone())
        if hours.contains(moment):
            self.add_error(
                "time_of_day",
                f"{at:%H:%M} is inside quiet hours ({hours}, {settings.TIME_ZONE}), when "
                "nobody is texted. Choose another time, or tick “may send in quiet hours” "
                "to send in them anyway.",
            )

    def _schedule_of(self, data: dict[str, Any]) -> Recurrence:
        return Recurrence(
            frequency=data["frequency"],
            weekdays=",".join(str(day) for day in sorted(set(data.get("days") or []))),
            day_of_month=data.get("day_of_month"),
            time_of_day=data["time_of_day"],
            starts_on=data["starts_on"],
            ends_on=data["ends_on"],
        )

    def save(self, commit: bool = True) -> Recurrence:
        days = self.cleaned_data.get("days") or []
        weekly = self.cleaned_data.get("frequency") == F.WEEKLY
        self.instance.weekdays = ",".join(str(day) for day in sorted(set(days))) if weekly else ""
        return super().save(commit)


class OccurrenceCount(admin.SimpleListFilter):
    title = "occurrences so far"
    parameter_name = "occurrences"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [("none", "None yet"), ("some", "At least one")]

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        if self.value() == "none":
            return queryset.filter(_occurrences=0)
        if self.value() == "some":
            return queryset.filter(_occurrences__gt=0)
        return queryset


@admin.register(Recurrence)
class RecurrenceAdmin(admin.ModelAdmin):
    form = RecurrenceForm
    list_display = (
        "name",
        "schedule",
        "until",
        "next_occurrence",
        "active",
        "occurrence_count",
        "created_by",
    )
    list_filter = ("active", "frequency", OccurrenceCount)
    list_select_related = ("created_by",)
    search_fields = ("name", "body")
    radio_fields = {"frequency": admin.HORIZONTAL}
    actions = ["stop_repeating", "start_again", "delete_selected"]
    fieldsets = (
        (None, {"fields": ("name", "body")}),
        ("Who gets it", {"fields": ("audience_community", "audience_tags", "audience_events")}),
        (
            "When",
            {
                "fields": (
                    "frequency",
                    "days",
                    "day_of_month",
                    "time_of_day",
                    "starts_on",
                    "ends_on",
                    "quiet_hours_override",
                    "active",
                )
            },
        ),
        (
            "So far",
            {"fields": ("next_occurrence", "occurrence_count", "created_by", "created_at")},
        ),
    )
    readonly_fields = ("next_occurrence", "occurrence_count", "created_by", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Recurrence]:
        return super().get_queryset(request).annotate(_occurrences=Count("occurrences"))

    # --- What the pages show ---------------------------------------------------------------

    @admin.display(description="schedule")
    def schedule(self, obj: Recurrence) -> str:
        return recurrence_in_words(obj)

    @admin.display(description="until", ordering="ends_on")
    def until(self, obj: Recurrence) -> str:
        return f"{obj.ends_on:%Y-%m-%d}"

    @admin.display(description="next occurrence", ordering="next_run_at")
    def next_occurrence(self, obj: Recurrence) -> str:
        if obj.pk is None:
            return "Set when it is saved."
        if obj.active and obj.next_run_at is not None:
            return local_time_in_words(obj.next_run_at)
        if obj.ends_on < timezone.localdate(timezone=_zone()):
            return "None: its last day has passed."
        return "None: stopped."

    @admin.display(description="occurrences so far", ordering="_occurrences")
    def occurrence_count(self, obj: Recurrence) -> int:
        if obj.pk is None:
            return 0
        n = getattr(obj, "_occurrences", None)
        return n if n is not None else Blast.objects.filter(recurrence_id=obj.pk).count()

    def change_view(self, request, object_id, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = {**self._occurrences_context(object_id), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def _occurrences_context(self, object_id: str) -> dict[str, Any]:
        """The latest occurrences, each linking to its blast page (one query)."""
        if not str(object_id).isdigit():
            return {}
        latest = list(
            Blast.objects.filter(recurrence_id=int(object_id)).order_by("-scheduled_for", "-id")[
                :OCCURRENCES_SHOWN
            ]
        )
        return {
            "occurrences_shown": [
                (blast, local_time_in_words(blast.scheduled_for or blast.created_at))
                for blast in latest
            ],
            "occurrences_limit": OCCURRENCES_SHOWN,
            "occurrences_url": reverse("admin:messaging_blast_changelist")
            + f"?recurrence__id__exact={int(object_id)}",
        }

    # --- Saving --------------------------------------------------------------------------

    def save_model(self, request, obj, form, change) -> None:  # type: ignore[no-untyped-def]
        if not change:
            obj.created_by = request.user
        obj.changed_by = request.user
        super().save_model(request, obj, form, change)
        # Its next occurrence counts from now: a changed day or time applies from the next one.
        recurrence_schedule(recurrence=obj)
        if obj.active:
            self.message_user(
                request,
                f"“{obj}” repeats {recurrence_in_words(obj).lower()}; the next occurrence is "
                f"{local_time_in_words(obj.next_run_at)}.",
                messages.INFO,
            )

    # --- Actions -------------------------------------------------------------------------

    def _report(self, request, verb: str, done: int, total: int, why_not: str) -> None:  # type: ignore[no-untyped-def]
        text = f"{verb} {done} of {_plural(total, 'selected repeating blast')}."
        if done < total:
            text += f" The other {total - done} {why_not}."
        self.message_user(request, text, messages.SUCCESS if done else messages.WARNING)

    @admin.action(description="Stop repeating", permissions=["change"])
    def stop_repeating(self, request, queryset):  # type: ignore[no-untyped-def]
        chosen = list(queryset)
        done = recurrence_stop(recurrences=chosen)
        self._report(request, "Stopped", done, len(chosen), "had already stopped")

    @admin.action(description="Start again (from the next occurrence)", permissions=["change"])
    def start_again(self, request, queryset):  # type: ignore[no-untyped-def]
        chosen = list(queryset)
        done = recurrence_resume(recurrences=chosen)
        self._report(
            request,
            "Started again",
            done,
            len(chosen),
            "were already repeating, or have no day left before their last day (change "
            "the last day first)",
        )
