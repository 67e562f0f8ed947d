"""Repeating blasts as staff manage them: saving one, stopping it, starting it again; and
the scheduler's state (for /healthz and the admin's front page).

The dispatch pass itself (making each occurrence when it is due) is in scheduling.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from messaging.models import Recurrence
from messaging.services.scheduling import SCHEDULER, last_heartbeat, recurrence_start

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def recurrence_schedule(*, recurrence: Recurrence, now: datetime | None = None) -> None:
    """After a repeating blast is saved: an active one's next occurrence counts from now
    (a changed day or time applies from its next occurrence); a stopped one has none.
    One whose last day has passed stops."""
    if not recurrence.active:
        recurrence.next_run_at = None
        Recurrence.objects.filter(pk=recurrence.pk).update(next_run_at=None)
        return
    recurrence_start(recurrence, now=now)
    if recurrence.next_run_at is None:
        recurrence.active = False
        Recurrence.objects.filter(pk=recurrence.pk).update(active=False)


def recurrence_stop(*, recurrences: Iterable[Recurrence] | QuerySet[Recurrence]) -> int:
    """Stop repeating: no occurrence is made from now on. Returns how many stopped (those
    already stopped are not counted)."""
    ids = [r.pk for r in recurrences]
    return Recurrence.objects.filter(pk__in=ids, active=True).update(active=False, next_run_at=None)


def recurrence_resume(
    *, recurrences: Iterable[Recurrence] | QuerySet[Recurrence], now: datetime | None = None
) -> int:
    """Start stopped repeating blasts again, from their next occurrence after now.
    Returns how many started; those already running, or with no day left before their
    last day, are not counted (and stay as they were)."""
    now = now or timezone.now()
    started = 0
    for recurrence in list(Recurrence.objects.filter(pk__in=[r.pk for r in recurrences])):
        if recurrence.active:
            continue
        recurrence_start(recurrence, now=now)
        if recurrence.next_run_at is None:
            continue
        # Only from stopped: a concurrent "Start again" starts it once.
        started += Recurrence.objects.filter(pk=recurrence.pk, active=False).update(active=True)
    return started


# --- In plain words ----------------------------------------------------------------------


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def recurrence_weekdays(recurrence: Recurrence) -> list[int]:
    """The weekdays of a weekly repeating blast, 0 = Monday, in order."""
    days = {int(part) for part in recurrence.weekdays.split(",") if part.strip().isdigit()}
    return sorted(day for day in days if 0 <= day <= 6)


def recurrence_in_words(recurrence: Recurrence) -> str:
    """ "Mondays and Thursdays at 18:00", "Monthly on day 31 at 09:00"."""
    at = f"at {recurrence.time_of_day:%H:%M}" if recurrence.time_of_day else ""
    if recurrence.frequency == Recurrence.Frequency.MONTHLY:
        return f"Monthly on day {recurrence.day_of_month} {at}".strip()
    days = recurrence_weekdays(recurrence)
    if len(days) == 7:
        return f"Every day {at}".strip()
    if days == [0, 1, 2, 3, 4]:
        return f"Weekdays (Monday to Friday) {at}".strip()
    if not days:
        return f"Weekly, on no day {at}".strip()
    names = [f"{WEEKDAY_NAMES[day]}s" for day in days]
    return f"{_join(names)} {at}".strip()


def local_time_in_words(moment: datetime | None) -> str:
    """A moment in the organisation's time zone, naming it: "Mon 2026-12-07 18:00
    America/New_York"; "-" for none."""
    if moment is None:
        return "-"
    local = moment.astimezone(ZoneInfo(settings.TIME_ZONE))
    return f"{local:%a %Y-%m-%d %H:%M} {settings.TIME_ZONE}"


# --- The scheduler's state -----------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerState:
    """``status``: "ok", "late" (no pass for longer than ``late_after``) or "never"."""

    last_run: datetime | None
    status: str
    late_after: timedelta


def scheduler_late_after() -> timedelta:
    """Three missed beats and a minute's slack."""
    return timedelta(seconds=3 * settings.SCHEDULER_POLL_SECONDS + 60)


def scheduler_state(*, now: datetime | None = None) -> SchedulerState:
    now = now or timezone.now()
    late_after = scheduler_late_after()
    last_run = last_heartbeat(name=SCHEDULER)
    if last_run is None:
        status = "never"
    elif now - last_run > late_after:
        status = "late"
    else:
        status = "ok"
    return SchedulerState(last_run=last_run, status=status, late_after=late_after)
