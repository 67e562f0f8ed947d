from __future__ import annotations

import re
import sys
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count
from django.utils import timezone

from events.models import Event
from members.models import Tag
from messaging.models import Blast, Delivery
from messaging.quiet_hours import quiet_hours
from messaging.services import BlastError, blast_create

S = Delivery.Status

AT_EXAMPLES = "2026-12-24T18:00 or 2026-12-24T18:00-05:00"
# A blast scheduled closer than this would be due before anyone could check it.
MIN_AHEAD = timedelta(minutes=1)
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


def _audience(values: list[str]) -> tuple[bool, list[int]]:
    community = False
    event_ids: list[int] = []
    for value in values:
        if value == "community":
            community = True
        elif value.startswith("event:") and value[6:].isdigit():
            event_ids.append(int(value[6:]))
        else:
            raise CommandError(
                f"--audience {value!r} is not understood: use 'community' or 'event:<id>'."
            )
    return community, event_ids


def _tags(names: list[str]) -> list[int]:
    ids = []
    for name in names:
        tag = Tag.objects.filter(name__iexact=name.strip()).first()
        if tag is None:
            known = ", ".join(Tag.objects.values_list("name", flat=True)[:30]) or "none yet"
            raise CommandError(f"No tag named {name!r}. Tags: {known}.")
        ids.append(tag.pk)
    return ids


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _local(moment: datetime) -> str:
    """``2026-12-24 18:00 EST (America/New_York)``: how staff read a time back."""
    local = moment.astimezone(_zone())
    shown = local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")
    abbreviation = local.tzname() or ""
    if abbreviation == settings.TIME_ZONE:
        return f"{shown} {abbreviation}"
    return f"{shown} {abbreviation} ({settings.TIME_ZONE})"


# Far enough for any real plan; a typo such as 9999 is refused, not overflowed.
MAX_AHEAD = timedelta(days=731)
MAX_YEARS_AHEAD = 2


def _parse_at(text: str) -> datetime:
    """``--at`` as an aware datetime; a time without an offset is read in TIME_ZONE."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or not re.search(r"\d[T ]\d", value):
        raise CommandError(
            f"--at {text!r} is not a date and time: use ISO 8601, e.g. {AT_EXAMPLES} "
            f"(without an offset the time is read in {settings.TIME_ZONE})."
        )
    if parsed.year < 1970:
        raise CommandError(f"--at {text!r} is in the past.")
    if parsed.year > date.today().year + MAX_YEARS_AHEAD:
        raise CommandError(
            f"--at {text!r}: a blast is scheduled at most two years ahead; choose a nearer time."
        )
    if parsed.tzinfo is not None:
        return parsed
    zone = _zone()
    first = parsed.replace(tzinfo=zone, fold=0)
    second = parsed.replace(tzinfo=zone, fold=1)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != parsed:
        raise CommandError(
            f"--at {text!r}: {parsed:%Y-%m-%d %H:%M} does not exist in {settings.TIME_ZONE} "
            "(the clocks go forward past it). Choose another time."
        )
    if first.utcoffset() != second.utcoffset():
        raise CommandError(
            f"--at {text!r}: {parsed:%Y-%m-%d %H:%M} happens twice in {settings.TIME_ZONE} "
            "(the clocks go back). Add the offset to say which: "
            f"{first.isoformat(timespec='minutes')} or {second.isoformat(timespec='minutes')}."
        )
    return first


def _parse_duration(text: str) -> timedelta:
    """``--remind-before``: ``1d``, ``2h``, ``90m``, or combined like ``1d12h`` or ``1h30m``."""
    match = _DURATION.match(text.strip().lower())
    if match is None or not any(match.groups()):
        raise CommandError(
            f"--remind-before {text!r} is not understood: use days, hours or minutes, "
            "e.g. 1d, 2h, 90m or 1h30m."
        )
    days, hours, minutes = (int(part or 0) for part in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes)
    if not duration:
        raise CommandError("--remind-before must be more than 0.")
    return duration


def _duration_words(duration: timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    parts = []
    for size, unit in ((1440, "day"), (60, "hour"), (1, "minute")):
        count, minutes = divmod(minutes, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts)


def _check_ahead(when: datetime, what: str, *, option: str) -> None:
    """``what`` reads as the start of a sentence ending in the time: "--at X is"."""
    ahead = when - timezone.now()
    if ahead > MAX_AHEAD:
        raise CommandError(f"{what} {_local(when)}: at most two years ahead; choose a nearer time.")
    if ahead <= timedelta(0):
        raise CommandError(f"{what} {_local(when)}, which is in the past.")
    if ahead < MIN_AHEAD:
        raise CommandError(
            f"{what} {_local(when)}, only {int(ahead.total_seconds())} seconds from now: a "
            f"scheduled blast must be at least a minute ahead (to send it now, leave out {option})."
        )


class Command(BaseCommand):
    help = (
        "Create a blast the way the compose page (/compose/) does, with no approval step, "
        "and hand it to the workers; with --at, schedule it instead (its recipients are "
        "taken when it is due), and with --remind-before, make an event reminder."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--audience",
            action="append",
            required=True,
            help="'community' (all active members) or 'event:<id>' (its registrations); repeatable.",
        )
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            help="With --audience community: only members having any of these tags; repeatable.",
        )
        parser.add_argument("--body", required=True, help="The text, with {placeholders}.")
        parser.add_argument("--name", default="", help="A name for staff (optional).")
        parser.add_argument(
            "--wait",
            action="store_true",
            help=(
                "Show progress until the blast finishes (sent, failed or cancelled); exit "
                "non-zero unless it was sent. A pause is reported and waited out: staff may "
                "resume it, and quiet hours end by themselves. Not with --at or "
                "--remind-before."
            ),
        )
        parser.add_argument(
            "--until-paused",
            action="store_true",
            help="With --wait: stop waiting (and exit non-zero) when the blast pauses.",
        )
        parser.add_argument(
            "--timeout", type=float, default=0, help="With --wait: give up after N seconds."
        )
        parser.add_argument(
            "--at",
            metavar="TIME",
            help=(
                "Schedule the blast for this time instead of sending it now: ISO 8601, e.g. "
                f"{AT_EXAMPLES}. A time without an offset is read in TIME_ZONE "
                f"({settings.TIME_ZONE}); one with an offset is converted to it. At least a "
                "minute ahead. Its recipients are taken from the audience when it is due."
            ),
        )
        parser.add_argument(
            "--remind-before",
            metavar="DURATION",
            help=(
                "An event reminder: with exactly one --audience event:<id>, send this long "
                "before the event starts (e.g. 1d, 2h, 90m, 1h30m); it follows the event if "
                "its start time changes."
            ),
        )
        parser.add_argument(
            "--quiet-hours-ok",
            action="store_true",
            help=(
                "Allow sending inside quiet hours (QUIET_HOURS, in TIME_ZONE); without it, a "
                "blast sent now or scheduled inside them is refused."
            ),
        )

    def handle(self, *args: object, **options: object) -> None:
        community, event_ids = _audience(options["audience"])  # type: ignore[arg-type]
        tag_ids = _tags(options["tag"])  # type: ignore[arg-type]
        at = _parse_at(str(options["at"])) if options["at"] else None
        remind_before = (
            _parse_duration(str(options["remind_before"])) if options["remind_before"] else None
        )
        if at is not None and remind_before is not None:
            raise CommandError(
                "Use --at or --remind-before, not both: a reminder's time comes from its event."
            )
        if options["until_paused"] and not options["wait"]:
            raise CommandError("--until-paused goes with --wait.")
        if options["wait"] and (at is not None or remind_before is not None):
            raise CommandError(
                "--wait follows a blast being sent now; a scheduled blast goes out when it is "
                "due. Leave out --wait (the blast's page shows its progress then), or leave "
                "out --at / --remind-before to send now."
            )
        event = None
        due = at
        if remind_before is not None:
            event = self._reminded_event(community, event_ids)
            due = event.starts_at - remind_before
            _check_ahead(
                due,
                f"A reminder {_duration_words(remind_before)} before event {event.pk} "
                f"({event.name}, starting {_local(event.starts_at)}) would be due at",
                option="--remind-before",
            )
        elif at is not None:
            _check_ahead(at, f"--at {options['at']} is", option="--at")
        override = bool(options["quiet_hours_ok"])
        self._check_quiet_hours(due, override=override)
        try:
            blast = blast_create(
                body=str(options["body"]),
                community=community,
                event_ids=event_ids,
                tag_ids=tag_ids,
                name=str(options["name"]),
                scheduled_for=at,
                quiet_hours_override=override,
                remind_before=remind_before,
            )
        except BlastError as exc:
            raise CommandError(str(exc)) from None
        if blast.status == Blast.Status.SCHEDULED:
            assert blast.scheduled_for is not None
            line = f"Blast {blast.pk} scheduled for {_local(blast.scheduled_for)}"
            if event is not None and remind_before is not None:
                line += (
                    f", {_duration_words(remind_before)} before event {event.pk} ({event.name}) "
                    "starts (it follows the event if its start time changes)"
                )
            self.stdout.write(line + "; its recipients are taken when it is due.")
            return
        counts = blast.counts()
        skipped = counts[S.SKIPPED]
        line = f"Blast {blast.pk} created: {blast.recipient_count} recipients"
        if skipped:
            reasons = dict(
                Delivery.objects.filter(blast=blast, status=S.SKIPPED)
                .values_list("skip_reason")
                .annotate(n=Count("id"))
            )
            detail = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
            line += f" ({skipped} skipped: {detail})"
        self.stdout.write(line + ".")
        if blast.enqueued_at is None:
            self.stdout.write(
                "The task queue cannot be reached right now. The blast is saved and will "
                "go out within a minute or two of it coming back."
            )
        if options["wait"]:
            self._wait(
                blast,
                float(options["timeout"]),  # type: ignore[arg-type]
                until_paused=bool(options["until_paused"]),
            )

    def _reminded_event(self, community: bool, event_ids: list[int]) -> Event:
        if community or len(event_ids) != 1:
            raise CommandError(
                "--remind-before makes a reminder for one event's registrations: give exactly "
                "one --audience event:<id>, and no other audience."
            )
        event = Event.objects.filter(pk=event_ids[0]).first()
        if event is None:
            raise CommandError(f"No event with id {event_ids[0]}.")
        return event

    def _check_quiet_hours(self, due: datetime | None, *, override: bool) -> None:
        hours = quiet_hours()
        if override or hours is None:
            return
        zone = settings.TIME_ZONE
        if due is None:
            if hours.contains(timezone.now()):
                ends = _local(hours.ends_after(timezone.now()))
                raise CommandError(
                    f"It is quiet hours now ({hours}, {zone}): nobody is texted until "
                    f"{ends}. Schedule it for later with --at, or add --quiet-hours-ok to "
                    "send it now anyway."
                )
        elif hours.contains(due):
            raise CommandError(
                f"{_local(due)} is inside quiet hours ({hours}), when nobody is "
                "texted. Choose a time outside them, or add --quiet-hours-ok to send then "
                "anyway."
            )

    def _wait(self, blast: Blast, timeout: float, *, until_paused: bool = False) -> None:
        """Progress until the blast is final; a pause is reported once and waited out
        (or, with ``until_paused``, ends the wait)."""
        started = time.monotonic()
        tty = sys.stdout.isatty()
        last_line = ""
        pause_reported = False
        while True:
            blast.refresh_from_db()
            counts = blast.counts()
            addressable = counts["total"] - counts[S.SKIPPED]
            done = addressable - counts[S.PENDING] - counts[S.SENDING]
            width = 30
            filled = int(width * done / addressable) if addressable else width
            line = (
                f"[{'#' * filled}{'.' * (width - filled)}] {done}/{addressable} "
                f"sent {counts[S.SENT] + counts[S.DELIVERED]}, failed {counts[S.FAILED]}, "
                f"unknown {counts[S.UNKNOWN]}, cancelled {counts[S.CANCELLED]} - {blast.get_status_display()}"
            )
            if line != last_line:
                self.stdout.write(("\r" + line) if tty else line, ending="" if tty else "\n")
                self.stdout.flush()
                last_line = line
            if blast.is_final:
                break
            paused = blast.status == Blast.Status.PAUSED
            if paused and until_paused:
                break
            if paused and not pause_reported:
                if tty:
                    self.stdout.write("")
                self.stdout.write(self._pause_note(blast))
                self.stdout.flush()
            pause_reported = paused
            if timeout and time.monotonic() - started > timeout:
                if tty:
                    self.stdout.write("")
                raise CommandError(
                    f"Still {blast.get_status_display().lower()} after {timeout:g}s."
                )
            time.sleep(0.5)
        if tty:
            self.stdout.write("")
        self.stdout.write(f"Blast {blast.pk}: {blast.get_status_display()}.")
        if blast.status_reason:
            self.stdout.write(blast.status_reason)
        if blast.status == Blast.Status.PAUSED:
            raise CommandError(
                f"Blast {blast.pk} is paused (--until-paused stops waiting there); resume or "
                "cancel it on its page."
            )
        if blast.status in (Blast.Status.FAILED, Blast.Status.CANCELLED, Blast.Status.REJECTED):
            raise CommandError(f"Blast {blast.pk} ended {blast.get_status_display().lower()}.")

    def _pause_note(self, blast: Blast) -> str:
        """What a pause means for the wait, said once when the blast pauses."""
        reason = f": {blast.status_reason}" if blast.status_reason else ""
        if blast.pause_cause == Blast.PauseCause.QUIET:
            hours = quiet_hours()
            ends = ""
            if hours is not None and hours.contains(timezone.now()):
                ends = f" at {_local(hours.ends_after(timezone.now()))}"
            return (
                f"Blast {blast.pk} paused for quiet hours{reason}. It goes on by itself when "
                f"they end{ends}; still waiting (Ctrl-C stops waiting, not the blast)."
            )
        return (
            f"Blast {blast.pk} paused{reason}. Still waiting until it is resumed and sent, "
            "or cancelled, on its page (Ctrl-C stops waiting, not the blast)."
        )
