"""`manage.py send_blast --at / --remind-before / --quiet-hours-ok`: scheduling from the
command line, read in TIME_ZONE across daylight-saving changes, and refused clearly when
the time is in the past, too soon, not a time, or inside quiet hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from events.models import Event
from messaging.models import Blast, Delivery, OutboxMessage
from messaging.tests.conftest import make_event, make_members

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
EXAMPLES = "2026-12-24T18:00 or 2026-12-24T18:00-05:00"
# Always ahead of the clock, whenever the suite runs.
YEAR = date.today().year + 1


@pytest.fixture(autouse=True)
def new_york(settings):
    settings.TIME_ZONE = "America/New_York"
    settings.QUIET_HOURS = ""


def send_blast(*args: str) -> str:
    out = StringIO()
    call_command("send_blast", "--body", "Hi {first_name}", *args, stdout=out)
    return out.getvalue()


def schedule_at(at: str, *args: str) -> str:
    return send_blast("--audience", "community", "--at", at, *args)


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        send_blast(*args)
    assert not Blast.objects.exists()
    return str(caught.value)


def clock_changes(month: int) -> tuple[date, date]:
    """(the last day before, the first day after) New York's clocks change in ``month``."""
    day = date(YEAR, month, 1)
    while True:
        before = datetime(day.year, day.month, day.day, 12, tzinfo=NEW_YORK).utcoffset()
        after_day = day + timedelta(days=1)
        after = datetime(after_day.year, after_day.month, after_day.day, 12, tzinfo=NEW_YORK)
        if after.utcoffset() != before:
            return day, after_day
        day = after_day


def the_blast() -> Blast:
    return Blast.objects.get()


# --- Scheduling ---------------------------------------------------------------------------


def test_a_blast_at_a_time_is_saved_scheduled_with_no_recipients_yet():
    make_members(3)
    out = schedule_at(f"{YEAR}-12-24T18:00")

    blast = the_blast()
    assert out == (
        f"Blast {blast.pk} scheduled for {YEAR}-12-24 18:00 EST (America/New_York); "
        "its recipients are taken when it is due.\n"
    )
    assert blast.status == Blast.Status.SCHEDULED
    assert blast.scheduled_for == datetime(YEAR, 12, 24, 23, 0, tzinfo=UTC)
    assert not blast.quiet_hours_override
    assert not Delivery.objects.exists()
    assert not OutboxMessage.objects.exists()


def test_local_times_follow_the_spring_clock_change():
    make_members(1)
    last_winter_day, first_summer_day = clock_changes(3)

    summer = schedule_at(f"{first_summer_day.isoformat()}T12:00")
    winter = schedule_at(f"{last_winter_day.isoformat()}T12:00")

    stored = list(Blast.objects.order_by("pk").values_list("scheduled_for", flat=True))
    assert stored == [
        datetime.combine(first_summer_day, datetime.min.time(), UTC) + timedelta(hours=16),
        datetime.combine(last_winter_day, datetime.min.time(), UTC) + timedelta(hours=17),
    ]
    assert f"scheduled for {first_summer_day} 12:00 EDT (America/New_York);" in summer
    assert f"scheduled for {last_winter_day} 12:00 EST (America/New_York);" in winter


def test_a_time_with_an_offset_is_converted_and_shown_in_local_time():
    make_members(1)
    out = schedule_at(f"{YEAR}-12-24T18:00-08:00")
    assert the_blast().scheduled_for == datetime(YEAR, 12, 25, 2, 0, tzinfo=UTC)
    assert f"scheduled for {YEAR}-12-24 21:00 EST (America/New_York);" in out

    schedule_at(f"{YEAR}-07-04T16:30Z")
    assert Blast.objects.latest("pk").scheduled_for == datetime(YEAR, 7, 4, 16, 30, tzinfo=UTC)


def test_a_local_time_the_clocks_skip_or_repeat_is_refused():
    make_members(1)
    _, spring_day = clock_changes(3)
    _, fall_day = clock_changes(11)

    skipped = refused("--audience", "community", "--at", f"{spring_day}T02:30")
    assert "does not exist in America/New_York" in skipped

    twice = refused("--audience", "community", "--at", f"{fall_day}T01:30")
    assert "happens twice in America/New_York" in twice
    assert f"{fall_day}T01:30-04:00 or {fall_day}T01:30-05:00" in twice


# --- Refusals -----------------------------------------------------------------------------


def test_a_time_in_the_past_is_refused():
    make_members(1)
    message = refused("--audience", "community", "--at", "2020-01-01T10:00")
    assert "is in the past" in message
    assert "2020-01-01 10:00 EST (America/New_York)" in message


def test_a_time_less_than_a_minute_ahead_is_refused():
    make_members(1)
    soon = (timezone.now() + timedelta(seconds=30)).isoformat(timespec="seconds")
    message = refused("--audience", "community", "--at", soon)
    assert "must be at least a minute ahead" in message


@pytest.mark.parametrize("text", ["tomorrow 6pm", "24/12/2026 18:00", f"{YEAR}-12-24", "18:00"])
def test_text_that_is_not_a_date_and_time_is_refused_naming_the_form(text):
    make_members(1)
    message = refused("--audience", "community", "--at", text)
    assert f"--at {text!r} is not a date and time" in message
    assert EXAMPLES in message


def test_wait_with_a_time_is_refused():
    make_members(1)
    message = refused("--audience", "community", "--at", f"{YEAR}-12-24T18:00", "--wait")
    assert "--wait" in message
    assert "scheduled blast goes out when it is due" in message


def test_help_says_a_time_without_an_offset_is_read_in_the_time_zone(capsys):
    with pytest.raises(SystemExit):
        call_command("send_blast", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    assert "A time without an offset is read in TIME_ZONE (America/New_York)" in help_text
    assert "--quiet-hours-ok" in help_text
    assert "--remind-before DURATION" in help_text


# --- Quiet hours --------------------------------------------------------------------------


def test_a_time_inside_quiet_hours_needs_the_flag(settings):
    settings.QUIET_HOURS = "21:00-09:00"
    make_members(1)

    message = refused("--audience", "community", "--at", f"{YEAR}-12-24T22:30")
    assert f"{YEAR}-12-24 22:30 EST (America/New_York) is inside quiet hours" in message
    assert "21:00-09:00" in message
    assert "--quiet-hours-ok" in message

    out = schedule_at(f"{YEAR}-12-24T22:30", "--quiet-hours-ok")
    assert f"scheduled for {YEAR}-12-24 22:30 EST" in out
    blast = the_blast()
    assert (blast.status, blast.quiet_hours_override) == (Blast.Status.SCHEDULED, True)


def test_a_time_outside_quiet_hours_needs_no_flag(settings):
    settings.QUIET_HOURS = "21:00-09:00"
    make_members(1)
    schedule_at(f"{YEAR}-12-24T20:59")
    assert the_blast().status == Blast.Status.SCHEDULED


def test_sending_now_inside_quiet_hours_needs_the_flag(settings):
    local = timezone.localtime(timezone.now(), NEW_YORK)
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=1)).strftime("%H:%M")
    settings.QUIET_HOURS = f"{start}-{end}"
    make_members(2)

    message = refused("--audience", "community")
    assert f"It is quiet hours now ({start}-{end}, America/New_York)" in message
    assert "--quiet-hours-ok" in message
    assert "--at" in message

    out = send_blast("--audience", "community", "--quiet-hours-ok")
    blast = the_blast()
    assert out.startswith(f"Blast {blast.pk} created: 2 recipients.")
    assert (blast.status, blast.quiet_hours_override) == (Blast.Status.QUEUED, True)


# --- Event reminders ----------------------------------------------------------------------


def test_remind_before_schedules_a_reminder_that_follows_its_event():
    event = make_event(n=2)
    Event.objects.filter(pk=event.pk).update(
        starts_at=datetime(YEAR, 12, 24, 18, 0, tzinfo=NEW_YORK)
    )

    out = send_blast("--audience", f"event:{event.pk}", "--remind-before", "1d")

    blast = the_blast()
    assert out == (
        f"Blast {blast.pk} scheduled for {YEAR}-12-23 18:00 EST (America/New_York), 1 day "
        f"before event {event.pk} (Picnic) starts (it follows the event if its start time "
        "changes); its recipients are taken when it is due.\n"
    )
    assert blast.status == Blast.Status.SCHEDULED
    assert (blast.remind_event_id, blast.remind_before) == (event.pk, timedelta(days=1))
    assert not Delivery.objects.exists()

    event.refresh_from_db()
    event.starts_at += timedelta(hours=2)
    event.save()
    blast.refresh_from_db()
    assert blast.scheduled_for == datetime(YEAR, 12, 23, 20, 0, tzinfo=NEW_YORK)


@pytest.mark.parametrize(
    "text,before",
    [
        ("90m", timedelta(minutes=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2h", timedelta(hours=2)),
    ],
)
def test_remind_before_reads_hours_and_minutes(text, before):
    event = make_event(n=1)
    send_blast("--audience", f"event:{event.pk}", "--remind-before", text)
    assert the_blast().scheduled_for == event.starts_at - before


def test_remind_before_needs_exactly_one_event_audience():
    make_members(1)
    picnic, fair = make_event(n=1), make_event(n=1, name="Fair")
    expected = "give exactly one --audience event:<id>"

    assert expected in refused("--audience", "community", "--remind-before", "1d")
    assert expected in refused(
        "--audience", f"event:{picnic.pk}", "--audience", "community", "--remind-before", "1d"
    )
    assert expected in refused(
        "--audience",
        f"event:{picnic.pk}",
        "--audience",
        f"event:{fair.pk}",
        "--remind-before",
        "1d",
    )
    assert "No event with id 999" in refused("--audience", "event:999", "--remind-before", "1d")


def test_a_reminder_already_due_or_not_a_duration_is_refused():
    event = make_event(n=1)  # starts in 3 days

    late = refused("--audience", f"event:{event.pk}", "--remind-before", "4d")
    assert "A reminder 4 days before event" in late
    assert "which is in the past" in late

    assert "e.g. 1d, 2h, 90m" in refused(
        "--audience", f"event:{event.pk}", "--remind-before", "a day"
    )
    assert "not both" in refused(
        "--audience", f"event:{event.pk}", "--remind-before", "1d", "--at", f"{YEAR}-12-24T18:00"
    )
