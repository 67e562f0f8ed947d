"""Quiet hours: when nobody is texted unless staff override it for one blast.

``QUIET_HOURS`` is ``HH:MM-HH:MM`` in the organisation's ``TIME_ZONE`` (default
``21:00-09:00``; empty turns it off). A window whose start is later than its end runs
over midnight. Everything is judged on local wall-clock time, so the window follows
daylight-saving changes: 21:00 is 21:00 in winter and in summer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

_FORMAT = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class QuietHoursError(ValueError):
    """QUIET_HOURS is not ``HH:MM-HH:MM``."""


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(settings.TIME_ZONE)

    def _inside(self, wall: time) -> bool:
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (aware) falls inside quiet hours, on local time."""
        return self._inside(moment.astimezone(self.zone).time().replace(tzinfo=None))

    def ends_after(self, moment: datetime) -> datetime:
        """When the quiet hours holding ``moment`` end (aware, in the local zone)."""
        local = moment.astimezone(self.zone)
        day = local.date()
        for offset in (0, 1):
            candidate = datetime.combine(day + timedelta(days=offset), self.end, self.zone)
            if candidate > local:
                return candidate
        raise AssertionError("unreachable")

    def starts_after(self, moment: datetime) -> datetime:
        """The next start of quiet hours after ``moment`` (aware, in the local zone)."""
        local = moment.astimezone(self.zone)
        for offset in (0, 1):
            candidate = datetime.combine(
                local.date() + timedelta(days=offset), self.start, self.zone
            )
            if candidate > local:
                return candidate
        raise AssertionError("unreachable")

    def overlaps(self, start: datetime, seconds: float) -> bool:
        """Whether sending from ``start`` for ``seconds`` would reach quiet hours."""
        if self.contains(start):
            return True
        return self.starts_after(start) < start + timedelta(seconds=seconds)


def parse(text: str) -> QuietHours | None:
    """``"21:00-09:00"`` -> QuietHours; empty -> None; anything else: QuietHoursError."""
    if not text or not text.strip():
        return None
    match = _FORMAT.match(text)
    if not match:
        raise QuietHoursError(
            f"QUIET_HOURS must look like 21:00-09:00 (or be empty to turn it off), not {text!r}."
        )
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise QuietHoursError(f"QUIET_HOURS has a time that does not exist: {text!r}.")
    start, end = time(h1, m1), time(h2, m2)
    if start == end:
        raise QuietHoursError(
            f"QUIET_HOURS starts and ends at the same time ({text!r}); leave it empty to "
            "turn quiet hours off."
        )
    return QuietHours(start, end)


def quiet_hours() -> QuietHours | None:
    """The deployment's quiet hours, or None when they are off."""
    return parse(settings.QUIET_HOURS)


def is_quiet(moment: datetime | None = None) -> bool:
    hours = quiet_hours()
    return hours is not None and hours.contains(moment or timezone.now())
