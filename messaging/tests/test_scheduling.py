"""The scheduler: each due blast dispatched once, from the audience as it is when due;
missed after downtime; quiet hours; repeating blasts; event reminders following their
event; recovery of a pass that died. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone

from members.models import Member
from messaging.models import Blast, Delivery, OutboxMessage, Recurrence
from messaging.services import blast_cancel, blast_create
from messaging.services.scheduling import (
    blast_send_missed_now,
    last_heartbeat,
    recurrence_next_run,
    recurrence_start,
    scheduled_dispatch,
)
from messaging.tests.conftest import make_event, make_members, phone, run_threads, run_to_end
from suppression.services import unsubscribe

pytestmark = pytest.mark.django_db

B = Blast.Status
S = Delivery.Status
BODY = "Hi {first_name}. Reply STOP to opt out."


def later(minutes: float = 10) -> datetime:
    return timezone.now() + timedelta(minutes=minutes)


def schedule(minutes: float = 10, **kwargs) -> Blast:
    kwargs.setdefault("community", True)
    return blast_create(body=BODY, scheduled_for=later(minutes), **kwargs)


def make_due(blast: Blast, minutes_ago: float = 0.5) -> None:
    Blast.objects.filter(pk=blast.pk).update(
        scheduled_for=timezone.now() - timedelta(minutes=minutes_ago)
    )


def outbox_to(number: str) -> int:
    return OutboxMessage.objects.filter(to=number).count()


def test_a_scheduled_blast_waits_with_no_rows_and_goes_out_when_due():
    make_members(3)
    blast = schedule()
    assert blast.status == B.SCHEDULED
    assert not Delivery.objects.filter(blast=blast).exists()

    assert scheduled_dispatch().dispatched == []  # not due yet
    make_due(blast)
    assert scheduled_dispatch().dispatched == [blast.pk]
    blast.refresh_from_db()
    assert (blast.status, blast.recipient_count) == (B.QUEUED, 3)
    assert run_to_end(blast).status == B.SENT
    assert OutboxMessage.objects.count() == 3


def test_the_audience_is_taken_when_the_blast_is_due():
    make_members(3)
    blast = schedule()
    unsubscribe(phone=phone(0), source="keyword", evidence="STOP after scheduling")
    Member.objects.create(first_name="Newbie", last_name="N", phone=phone(10))
    make_due(blast)
    scheduled_dispatch()
    run_to_end(Blast.objects.get(pk=blast.pk))
    assert outbox_to(phone(0)) == 0
    assert OutboxMessage.objects.get(to=phone(10)).body.startswith("Hi Newbie.")
    assert Delivery.objects.get(blast=blast, phone=phone(0)).status == S.SKIPPED


def test_a_blast_cancelled_before_its_time_never_sends():
    make_members(2)
    blast = schedule()
    assert blast_cancel(blast_id=blast.pk) == 0  # cancelled; no row existed yet
    make_due(blast)
    scheduled_dispatch()
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED
    assert not Delivery.objects.filter(blast=blast).exists()
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_passes_at_once_dispatch_a_due_blast_once():
    make_members(30)
    blasts = [schedule() for _ in range(3)]
    for blast in blasts:
        make_due(blast)

    results = run_threads(lambda i: scheduled_dispatch(), 4)

    dispatched = sorted(pk for result in results for pk in result.dispatched)  # type: ignore[union-attr]
    assert dispatched == sorted(b.pk for b in blasts)
    for blast in blasts:
        assert Delivery.objects.filter(blast=blast).count() == 30
        run_to_end(Blast.objects.get(pk=blast.pk))
    assert OutboxMessage.objects.count() == 90
    assert all(outbox_to(phone(i)) == 3 for i in range(30))


def test_dispatch_scheduled_command_runs_one_pass(capsys):
    make_members(2)
    blast = schedule()
    make_due(blast)
    call_command("dispatch_scheduled")
    assert "dispatched: 1" in capsys.readouterr().out
    blast.refresh_from_db()
    assert blast.status == B.QUEUED
    assert last_heartbeat() is not None


# --- Downtime and recovery -------------------------------------------------------------------


def test_a_blast_found_two_hours_late_is_missed_not_sent(manager_user):
    make_members(2)
    blast = schedule(created_by=manager_user)
    make_due(blast, minutes_ago=120)
    result = scheduled_dispatch()
    assert result.missed == [blast.pk]
    blast.refresh_from_db()
    assert blast.status == B.MISSED
    assert "more than 60 minutes after its time" in blast.status_reason
    assert not Delivery.objects.filter(blast=blast).exists()

    # Its author sends it now: the next pass dispatches it.
    blast_send_missed_now(blast_id=blast.pk, user=manager_user)
    scheduled_dispatch()
    assert run_to_end(Blast.objects.get(pk=blast.pk)).status == B.SENT
    assert OutboxMessage.objects.count() == 2


def test_a_missed_blast_can_be_cancelled():
    make_members(1)
    blast = schedule()
    make_due(blast, minutes_ago=120)
    scheduled_dispatch()
    assert blast_cancel(blast_id=blast.pk) == 0
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED


def test_within_the_grace_a_late_blast_still_goes(settings):
    settings.SCHEDULE_GRACE_MINUTES = 60
    make_members(1)
    blast = schedule()
    make_due(blast, minutes_ago=59)
    assert scheduled_dispatch().dispatched == [blast.pk]


def test_a_dispatch_that_died_half_way_is_taken_up_without_duplicates(settings):
    settings.SCHEDULER_STALE_MINUTES = 5
    make_members(4)
    blast = schedule()
    # A pass claimed it and wrote two rows, then died (no progress for 6 minutes).
    stamp = timezone.now() - timedelta(minutes=6)
    Blast.objects.filter(pk=blast.pk).update(
        status=B.DISPATCHING, processing_started_at=stamp, scheduled_for=stamp
    )
    Delivery.objects.create(blast=blast, phone=phone(0), body="Hi First0. Reply STOP to opt out.")
    Delivery.objects.create(blast=blast, phone=phone(1), body="Hi First1. Reply STOP to opt out.")
    Blast.objects.filter(pk=blast.pk).update(updated_at=stamp)

    assert scheduled_dispatch().recovered == [blast.pk]
    assert Delivery.objects.filter(blast=blast).count() == 4
    assert run_to_end(Blast.objects.get(pk=blast.pk)).status == B.SENT
    assert all(outbox_to(phone(i)) == 1 for i in range(4))


def test_a_dispatch_still_making_progress_is_left_alone(settings):
    settings.SCHEDULER_STALE_MINUTES = 5
    make_members(2)
    blast = schedule()
    Blast.objects.filter(pk=blast.pk).update(
        status=B.DISPATCHING, processing_started_at=timezone.now()
    )
    assert scheduled_dispatch().recovered == []
    blast.refresh_from_db()
    assert blast.status == B.DISPATCHING


# --- Quiet hours -----------------------------------------------------------------------------


def window_around(moment: datetime, zone: str = "UTC") -> str:
    local = moment.astimezone(ZoneInfo(zone))
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=1)).strftime("%H:%M")
    return f"{start}-{end}"


def test_a_running_blast_pauses_in_quiet_hours_and_goes_on_after(settings):
    make_members(5)
    blast = blast_create(body=BODY, community=True)
    settings.QUIET_HOURS = window_around(timezone.now())
    blast = run_to_end(blast)
    assert blast.status == B.PAUSED
    assert blast.pause_cause == Blast.PauseCause.QUIET
    assert "Quiet hours" in blast.status_reason
    assert not OutboxMessage.objects.exists()

    # Still quiet: a pass leaves it paused.
    assert scheduled_dispatch().resumed == []
    settings.QUIET_HOURS = window_around(timezone.now() + timedelta(hours=6))
    assert scheduled_dispatch().resumed == [blast.pk]
    assert run_to_end(Blast.objects.get(pk=blast.pk)).status == B.SENT
    assert OutboxMessage.objects.count() == 5


def test_a_blast_allowed_in_quiet_hours_keeps_sending(settings):
    make_members(3)
    blast = blast_create(body=BODY, community=True, quiet_hours_override=True)
    settings.QUIET_HOURS = window_around(timezone.now())
    assert run_to_end(blast).status == B.SENT


def test_quiet_hours_follow_local_time_across_a_daylight_saving_change(settings):
    from messaging.quiet_hours import parse

    settings.TIME_ZONE = "America/New_York"
    hours = parse("21:00-09:00")
    zone = ZoneInfo("America/New_York")
    # 2026-03-08 is the spring change in New York; 2026-11-01 the autumn one.
    for day in (date(2026, 3, 7), date(2026, 3, 8), date(2026, 10, 31), date(2026, 11, 1)):
        assert hours.contains(datetime.combine(day, time(21, 30), zone))
        assert hours.contains(datetime.combine(day, time(8, 59), zone))
        assert not hours.contains(datetime.combine(day, time(9, 0), zone))
        assert not hours.contains(datetime.combine(day, time(20, 59), zone))
    end = hours.ends_after(datetime(2026, 3, 7, 23, 0, tzinfo=zone))
    assert end == datetime(2026, 3, 8, 9, 0, tzinfo=zone)
    assert end.utcoffset() == timedelta(hours=-4)  # after the change


# --- Repeating blasts ------------------------------------------------------------------------


def weekly(**kwargs) -> Recurrence:
    values = {
        "name": "Garden",
        "body": BODY,
        "audience_community": True,
        "frequency": Recurrence.Frequency.WEEKLY,
        "weekdays": "0,3",  # Mondays and Thursdays
        "time_of_day": time(18, 0),
        "starts_on": date(2026, 3, 1),
        "ends_on": date(2026, 3, 19),
    }
    values.update(kwargs)
    return Recurrence.objects.create(**values)


def test_a_weekly_blast_fires_on_its_days_and_stops_after_its_end_date(settings):
    settings.TIME_ZONE = "America/New_York"
    zone = ZoneInfo("America/New_York")
    make_members(2)
    recurrence = weekly()
    recurrence_start(recurrence, now=datetime(2026, 3, 1, 12, 0, tzinfo=zone))
    recurrence.refresh_from_db()
    fired = []
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=zone)
    while moment < datetime(2026, 3, 25, tzinfo=zone):
        moment += timedelta(hours=1)
        result = scheduled_dispatch(now=moment)
        fired += [Blast.objects.get(pk=pk).scheduled_for for pk in result.dispatched]
    local = [f"{t.astimezone(zone):%a %d %H:%M}" for t in fired]
    # Mondays and Thursdays at 18:00 local, across the change on Sunday March 8.
    assert local == [
        "Mon 02 18:00",
        "Thu 05 18:00",
        "Mon 09 18:00",
        "Thu 12 18:00",
        "Mon 16 18:00",
        "Thu 19 18:00",
    ]
    recurrence.refresh_from_db()
    assert recurrence.next_run_at is None and not recurrence.active
    assert Blast.objects.filter(recurrence=recurrence).count() == 6


def test_a_monthly_blast_on_the_31st_falls_on_the_last_day_of_shorter_months():
    recurrence = weekly(
        frequency=Recurrence.Frequency.MONTHLY,
        weekdays="",
        day_of_month=31,
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 4, 30),
    )
    runs = []
    after = datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC"))
    while (nxt := recurrence_next_run(recurrence, after=after)) is not None:
        runs.append(nxt.date().isoformat())
        after = nxt
    assert runs == ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]


@pytest.mark.django_db(transaction=True)
def test_two_passes_at_once_make_an_occurrence_once():
    make_members(3)
    recurrence = weekly(starts_on=date.today(), ends_on=date.today() + timedelta(days=30))
    Recurrence.objects.filter(pk=recurrence.pk).update(
        next_run_at=timezone.now() - timedelta(seconds=5)
    )
    run_threads(lambda i: scheduled_dispatch(), 4)
    occurrences = Blast.objects.filter(recurrence=recurrence)
    assert occurrences.count() == 1
    assert Delivery.objects.filter(blast=occurrences.get()).count() == 3


# --- Event reminders -------------------------------------------------------------------------


def test_an_event_reminder_follows_its_event_and_includes_later_registrations():
    event = make_event(n=2)
    event.starts_at = timezone.now() + timedelta(days=3)
    event.save()
    reminder = blast_create(
        body="See you at {event_name}!", event_ids=[event.pk], remind_before=timedelta(days=1)
    )
    assert reminder.status == B.SCHEDULED
    assert reminder.scheduled_for == event.starts_at - timedelta(days=1)

    # Staff move the event a day later: the reminder moves with it.
    event.starts_at += timedelta(days=1)
    event.save()
    reminder.refresh_from_db()
    assert reminder.scheduled_for == event.starts_at - timedelta(days=1)

    # Someone registers after the reminder was set up, then it comes due.
    event.registrations.create(first_name="Late", last_name="L", phone=phone(50))
    make_due(reminder)
    scheduled_dispatch()
    run_to_end(Blast.objects.get(pk=reminder.pk))
    assert OutboxMessage.objects.count() == 3
    assert outbox_to(phone(50)) == 1


def test_a_blast_cancelled_while_its_rows_are_written_sends_nothing(monkeypatch):
    from messaging.services import creating

    make_members(3)
    blast = schedule()
    make_due(blast)
    real = creating.blocked_phones

    def cancel_meanwhile(*, phones):
        blast_cancel(blast_id=blast.pk)
        return real(phones=phones)

    monkeypatch.setattr(creating, "blocked_phones", cancel_meanwhile)
    assert scheduled_dispatch().dispatched == []
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED
    assert not Delivery.objects.filter(blast=blast, status=S.PENDING).exists()


def test_a_social_managers_large_repeating_blast_waits_for_approval_each_time(
    settings, manager_user
):
    settings.BLAST_APPROVAL_THRESHOLD = 2
    make_members(3)
    recurrence = weekly(
        starts_on=date.today(), ends_on=date.today() + timedelta(days=30), created_by=manager_user
    )
    Recurrence.objects.filter(pk=recurrence.pk).update(
        next_run_at=timezone.now() - timedelta(seconds=5)
    )
    scheduled_dispatch()
    occurrence = Blast.objects.get(recurrence=recurrence)
    assert occurrence.status == B.AWAITING_APPROVAL
    assert not OutboxMessage.objects.exists()
