"""Attacks on the scheduler (issue 10): races between a dispatch pass and staff's edits,
approval bypasses through editing, event reminders outliving or outrunning their
event, quiet hours, and input at the limits.

Tests that FAIL today show a defect (their docstring says what breaks and why it
matters); the others are regressions for attacks that held. Run on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import date, datetime, time, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from events.models import Event
from messaging.models import Blast, Delivery, OutboxMessage, Recurrence
from messaging.services import blast_cancel, blast_create
from messaging.services import scheduling as scheduling_module
from messaging.services.approval import blast_approve
from messaging.services.creating import BlastError, blast_update_scheduled
from messaging.services.scheduling import (
    blast_send_missed_now,
    recurrence_next_run,
    scheduled_dispatch,
)
from messaging.tests.conftest import make_event, make_members, phone, run_threads, run_to_end
from messaging.tests.test_scheduling import later, make_due, outbox_to, schedule
from suppression.services import unsubscribe

pytestmark = pytest.mark.django_db

B = Blast.Status
S = Delivery.Status
BODY = "Hi {first_name}. Reply STOP to opt out."
NEW_YORK = "America/New_York"


def window_around(moment: datetime, zone: str = "UTC") -> str:
    """QUIET_HOURS holding ``moment`` (an hour either side)."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{(local - timedelta(hours=1)):%H:%M}-{(local + timedelta(hours=1)):%H:%M}"


def compose_form(**extra) -> dict:
    data = {"body": BODY, "community": "on", "idempotency_key": str(uuid.uuid4()), "when": "now"}
    data.update(extra)
    return {key: value for key, value in data.items() if value is not None}


def on_thread(target) -> None:
    """Run ``target`` to the end on another thread (its own connection): another request."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


def before_claiming(monkeypatch, action) -> None:
    """Run ``action`` (on another thread, committed) once, right before the pass's first
    claim: after the pass listed the due blasts, before its conditional UPDATE. With
    several due blasts, each dispatch (rows for a large audience) takes a while, so the
    later ones are claimed long after they were listed."""
    real = scheduling_module.retry_when_busy
    done = []

    def probe(fn, *, what):
        if what == "claiming a scheduled blast" and not done:
            done.append(True)
            on_thread(action)
        return real(fn, what=what)

    monkeypatch.setattr(scheduling_module, "retry_when_busy", probe)


# --- 1. A pass claims a blast whose time an edit just moved ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_edit_postponing_a_due_blast_is_not_overridden_by_a_pass_that_listed_it(
    monkeypatch,
):
    """Staff edit a blast that is due (still 'scheduled': no pass has claimed it) to go
    tomorrow, and are told "Changes saved". A pass that listed it as due a moment
    earlier claims it anyway: the claim re-checks only the status, not scheduled_for.
    Everyone is texted today, against the time staff just set: the blast fires at a
    time nobody chose."""
    make_members(3)
    blast = schedule()
    make_due(blast)
    tomorrow = timezone.now() + timedelta(days=1)

    before_claiming(
        monkeypatch,
        lambda: blast_update_scheduled(
            blast_id=blast.pk, body=BODY, community=True, scheduled_for=tomorrow
        ),
    )
    scheduled_dispatch()

    blast.refresh_from_db()
    assert blast.scheduled_for == tomorrow
    assert blast.status == B.SCHEDULED, "the pass sent it today, after it was moved to tomorrow"
    assert not Delivery.objects.filter(blast=blast).exists()


@pytest.mark.django_db(transaction=True)
def test_a_reminder_whose_event_moved_a_day_later_is_not_sent_at_the_old_time(monkeypatch):
    """An event reminder comes due; staff move the event a day later in the admin (the
    reminder follows it: scheduled_for moves a day). A pass that had listed the reminder
    as due claims it anyway (status-only claim), so registrants get "see you in an hour"
    a whole day early."""
    event = make_event(n=2)
    reminder = blast_create(
        body="See you at {event_name}!", event_ids=[event.pk], remind_before=timedelta(hours=1)
    )
    Event.objects.filter(pk=event.pk).update(starts_at=timezone.now() + timedelta(minutes=59))
    make_due(reminder, minutes_ago=1)

    def move_the_event() -> None:
        moved = Event.objects.get(pk=event.pk)
        moved.starts_at += timedelta(days=1)
        moved.save()

    before_claiming(monkeypatch, move_the_event)
    scheduled_dispatch()

    reminder.refresh_from_db()
    assert reminder.status == B.SCHEDULED, "the reminder went out a day before its time"
    assert not Delivery.objects.filter(blast=reminder).exists()


@pytest.mark.django_db(transaction=True)
def test_a_blast_cancelled_after_it_was_listed_sends_nothing(monkeypatch):
    """Held: cancel between listing and claim; the claim is conditional on the status."""
    make_members(3)
    blast = schedule()
    make_due(blast)
    before_claiming(monkeypatch, lambda: blast_cancel(blast_id=blast.pk))
    scheduled_dispatch()
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED
    assert not Delivery.objects.filter(blast=blast, status=S.PENDING).exists()
    assert not OutboxMessage.objects.exists()


# --- 2. Editing as a way around approval -----------------------------------------------------


def test_editing_a_blast_waiting_for_approval_does_not_send_its_unapproved_rows(
    settings, manager_user
):
    """A Social manager composes a blast "now" to 10 members; above the threshold (3) it
    waits for an Admin, with its 10 rows already written. They then post the compose
    form with the hidden ``editing`` field set to that blast and a one-person audience.
    blast_update_scheduled accepts 'awaiting_approval', finds 1 <= 3, and makes it
    'scheduled' for now; the pass adds one row and keeps the 10 unapproved ones
    (ignore_conflicts), so all 10 members are texted the text no Admin approved."""
    settings.BLAST_APPROVAL_THRESHOLD = 3
    make_members(10)
    event = make_event(n=1, start=100, name="Tiny")
    client = Client()
    client.force_login(manager_user)
    first = compose_form(body="Unapproved: {first_name}, vote for X!")
    client.post("/compose/confirm/", first)
    blast = Blast.objects.get(idempotency_key=first["idempotency_key"])
    assert blast.status == B.AWAITING_APPROVAL
    assert Delivery.objects.filter(blast=blast).count() == 10

    client.post(
        "/compose/confirm/",
        compose_form(
            body="Hello {first_name}", community=None, events=[str(event.pk)], editing=blast.pk
        ),
    )
    scheduled_dispatch()
    blast.refresh_from_db()
    if blast.status in (B.QUEUED, B.SENDING):
        run_to_end(blast)

    members_texted = sum(outbox_to(phone(i)) for i in range(10))
    assert members_texted == 0, f"{members_texted} members got a blast no Admin approved"


def test_a_manager_who_edits_an_admins_repeating_blast_cannot_skip_approval(
    settings, admin_user, manager_user
):
    """An Admin sets up a weekly blast to one event's 1 registrant. A Social manager
    (who has change_recurrence) edits it in the admin to text every member (10, above
    the threshold of 3) with new text. Occurrences take their approval threshold from
    ``created_by`` (the Admin, none), so each occurrence goes to all 10 members without
    any Admin having seen it: the manager's edit escapes the approval rule their own
    blasts obey."""
    settings.TIME_ZONE = NEW_YORK
    settings.BLAST_APPROVAL_THRESHOLD = 3
    make_members(10)
    event = make_event(n=1, start=100, name="Tiny")
    today = timezone.now().astimezone(ZoneInfo(NEW_YORK)).date()
    recurrence = Recurrence.objects.create(
        name="Weekly",
        body="Hi {first_name}",
        audience_community=False,
        frequency=Recurrence.Frequency.WEEKLY,
        weekdays="0,1,2,3,4,5,6",
        time_of_day=time(18, 0),
        starts_on=today,
        ends_on=today + timedelta(days=30),
        created_by=admin_user,
    )
    recurrence.audience_events.set([event])

    client = Client()
    client.force_login(manager_user)
    response = client.post(
        reverse("admin:messaging_recurrence_change", args=[recurrence.pk]),
        {
            "name": "Weekly",
            "body": "Everyone: {first_name}, vote for X!",
            "audience_community": "on",
            "frequency": "weekly",
            "days": ["0", "1", "2", "3", "4", "5", "6"],
            "day_of_month": "",
            "time_of_day": "18:00",
            "starts_on": today.isoformat(),
            "ends_on": (today + timedelta(days=30)).isoformat(),
            "active": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    recurrence.refresh_from_db()
    assert recurrence.audience_community
    # Its next occurrence comes due.
    Recurrence.objects.filter(pk=recurrence.pk).update(
        next_run_at=timezone.now() - timedelta(seconds=5)
    )
    scheduled_dispatch()
    occurrence = Blast.objects.get(recurrence=recurrence)
    assert occurrence.status == B.AWAITING_APPROVAL, (
        f"the manager's 10-member occurrence is {occurrence.status}, not waiting for an Admin"
    )


def test_a_manager_editing_an_approved_scheduled_blast_sends_it_back_for_approval(
    settings, admin_user, manager_user
):
    """Held: an Admin approves a manager's large scheduled blast; the manager then
    changes its text. Still above the threshold, it waits for an Admin again."""
    settings.BLAST_APPROVAL_THRESHOLD = 3
    make_members(10)
    client = Client()
    client.force_login(manager_user)
    when = timezone.localtime(later(120)).strftime("%Y-%m-%dT%H:%M")
    data = compose_form(when="later", send_at=when)
    client.post("/compose/confirm/", data)
    blast = Blast.objects.get(idempotency_key=data["idempotency_key"])
    assert blast.status == B.AWAITING_APPROVAL
    blast_approve(blast_id=blast.pk, user=admin_user)
    assert Blast.objects.get(pk=blast.pk).status == B.SCHEDULED

    client.post(
        "/compose/confirm/",
        compose_form(body="Changed after approval", when="later", send_at=when, editing=blast.pk),
    )
    blast.refresh_from_db()
    assert blast.body == "Changed after approval"
    assert blast.status == B.AWAITING_APPROVAL
    assert blast.reviewed_by is None


# --- 3. Event reminders and their event ------------------------------------------------------


def test_deleting_an_event_keeps_the_record_of_the_reminder_already_sent(settings):
    """A reminder went out to an event's registrants; later staff delete the event.
    Blast.remind_event is on_delete=CASCADE, so the sent reminder and every Delivery row
    (who was texted, Twilio SIDs, failures) vanish with it, while Delivery.event is
    SET_NULL precisely to keep that history. Status callbacks and STOP replies for those
    messages no longer find their row."""
    event = make_event(n=3)
    reminder = blast_create(
        body="See you at {event_name}!", event_ids=[event.pk], remind_before=timedelta(hours=1)
    )
    make_due(reminder)
    scheduled_dispatch()
    assert run_to_end(Blast.objects.get(pk=reminder.pk)).status == B.SENT

    Event.objects.get(pk=event.pk).delete()

    assert Blast.objects.filter(pk=reminder.pk).exists(), "the sent reminder was deleted"
    assert Delivery.objects.filter(blast_id=reminder.pk).count() == 3


def test_a_reminder_approved_after_its_event_started_is_not_sent(
    settings, manager_user, admin_user
):
    """A Social manager's reminder ("starts in 1 hour") to more people than the threshold
    waits for an Admin. The Admin approves it only after the event has started;
    blast_approve sets scheduled_for = max(its time, now) and the next pass sends it:
    registrants are told the event is about to start when it is already under way (or
    over). Plain blasts may go late by design; a reminder cannot."""
    settings.BLAST_APPROVAL_THRESHOLD = 1
    event = make_event(n=3)
    reminder = blast_create(
        body="{event_name} starts in an hour!",
        event_ids=[event.pk],
        remind_before=timedelta(hours=1),
        created_by=manager_user,
        approval_above=1,
    )
    assert reminder.status == B.AWAITING_APPROVAL
    # The Admin gets to it 3 hours later: the event started 2 hours ago.
    started = timezone.now() - timedelta(hours=2)
    Event.objects.filter(pk=event.pk).update(starts_at=started)
    Blast.objects.filter(pk=reminder.pk).update(scheduled_for=started - timedelta(hours=1))

    with contextlib.suppress(BlastError):  # refusing is a fine answer
        blast_approve(blast_id=reminder.pk, user=admin_user)
    scheduled_dispatch()
    reminder.refresh_from_db()
    if reminder.status in (B.QUEUED, B.SENDING):
        run_to_end(reminder)
    assert not OutboxMessage.objects.exists(), "a reminder went out after its event started"


def test_a_reminder_whose_event_moved_into_the_past_is_marked_missed(settings):
    """Held: the event is moved earlier so its 1-day reminder is long overdue: the pass
    marks it missed instead of texting it."""
    event = make_event(n=2)
    reminder = blast_create(
        body="See you at {event_name}!", event_ids=[event.pk], remind_before=timedelta(days=1)
    )
    moved = Event.objects.get(pk=event.pk)
    moved.starts_at = timezone.now() + timedelta(hours=2)
    moved.save()
    scheduled_dispatch()
    reminder.refresh_from_db()
    assert reminder.status == B.MISSED
    assert not OutboxMessage.objects.exists()


# --- 4. Quiet hours --------------------------------------------------------------------------


def test_resuming_a_quiet_hours_pause_by_hand_sends_as_the_page_says(settings, admin_client):
    """A blast paused by quiet hours tells staff: "Nothing: it goes on by itself when
    quiet hours end. Resume it to send now anyway." Staff press Resume (it is urgent).
    blast_resume clears the pause but not the quiet-hours check, so the very first
    status check of the next send pass pauses it again: the button does nothing but
    flip the status, and what the page promised does not happen."""
    make_members(3)
    blast = blast_create(body=BODY, community=True)
    settings.QUIET_HOURS = window_around(timezone.now())
    blast = run_to_end(blast)
    assert (blast.status, blast.pause_cause) == (B.PAUSED, Blast.PauseCause.QUIET)
    page = admin_client.get(f"/blasts/{blast.pk}/").content.decode()
    assert "Resume it to send now anyway" in page

    admin_client.post(f"/blasts/{blast.pk}/resume/")
    blast = run_to_end(Blast.objects.get(pk=blast.pk))

    assert OutboxMessage.objects.count() == 3, (
        f"after Resume it is {blast.status} ({blast.status_reason}); nothing was sent"
    )


def test_nothing_is_texted_in_quiet_hours_without_the_override(settings):
    """Held: a scheduled blast without the override, due inside quiet hours (the hours
    changed after it was scheduled), is dispatched but pauses before the first text,
    and goes on once they are over."""
    make_members(3)
    blast = schedule()
    make_due(blast)
    settings.QUIET_HOURS = window_around(timezone.now())
    scheduled_dispatch()
    blast = run_to_end(Blast.objects.get(pk=blast.pk))
    assert (blast.status, blast.pause_cause) == (B.PAUSED, Blast.PauseCause.QUIET)
    assert not OutboxMessage.objects.exists()
    # A pass inside quiet hours leaves it alone.
    assert scheduled_dispatch().resumed == []
    settings.QUIET_HOURS = window_around(timezone.now() + timedelta(hours=6))
    assert scheduled_dispatch().resumed == [blast.pk]
    assert run_to_end(Blast.objects.get(pk=blast.pk)).status == B.SENT
    assert OutboxMessage.objects.count() == 3


def test_quiet_hours_over_midnight_hold_both_sides():
    """Held: 21:00-09:00 holds 23:59 and 00:00 and 08:59, not 09:00 or 20:59."""
    from messaging.quiet_hours import parse

    hours = parse("21:00-09:00")
    utc = ZoneInfo("UTC")
    day = date(2027, 1, 5)
    inside = [time(21, 0), time(23, 59), time(0, 0), time(8, 59)]
    outside = [time(9, 0), time(20, 59), time(12, 0)]
    assert all(hours.contains(datetime.combine(day, t, utc)) for t in inside)
    assert not any(hours.contains(datetime.combine(day, t, utc)) for t in outside)
    assert hours.ends_after(datetime(2027, 1, 5, 23, 0, tzinfo=utc)).date() == date(2027, 1, 6)


# --- 5. Input at the limits ------------------------------------------------------------------


def test_compose_in_year_9999_is_a_clear_error_not_a_crash(settings, manager_user):
    """ "Later" at 9999-12-31 23:59 in New York is valid to the form (a minute ahead, a
    real local time) but is 10000-01-01 in UTC: saving it overflows. Staff get a server
    error page (a traceback in the logs) instead of "choose a real date"."""
    settings.TIME_ZONE = NEW_YORK
    make_members(1)
    client = Client(raise_request_exception=False)
    client.force_login(manager_user)
    response = client.post(
        "/compose/confirm/", compose_form(when="later", send_at="9999-12-31T23:59")
    )
    assert response.status_code == 400, f"got {response.status_code}"
    assert not Blast.objects.exists()


def test_send_blast_at_year_9999_is_a_clear_error_not_a_traceback(settings):
    """``send_blast --at 9999-12-31T23:59`` in New York: _parse_at converts it to UTC to
    check it exists, and that overflows; the operator gets an OverflowError traceback
    instead of a CommandError saying what is wrong."""
    settings.TIME_ZONE = NEW_YORK
    make_members(1)
    with pytest.raises(CommandError):
        call_command(
            "send_blast",
            "--body",
            "Hi {first_name}",
            "--audience",
            "community",
            "--at",
            "9999-12-31T23:59",
            stdout=StringIO(),
        )
    assert not Blast.objects.exists()


@pytest.mark.parametrize(
    "text", ["2027-02-30T10:00", "tomorrow", "2027-13-01T10:00", "10:00", "2027-01-01T25:00"]
)
def test_compose_nonsense_times_are_refused_plainly(settings, manager_user, text):
    """Held: times that are not times are a form error, and nothing is made."""
    make_members(1)
    client = Client(raise_request_exception=False)
    client.force_login(manager_user)
    response = client.post("/compose/confirm/", compose_form(when="later", send_at=text))
    assert response.status_code == 400
    assert not Blast.objects.exists()


def test_a_recurrence_in_a_dst_gap_and_fold_fires_once_each_day(settings):
    """Held: a daily 02:30 repeat across New York's spring gap fires once that day (at
    03:30 EDT), and a daily 01:30 repeat across the autumn fold fires once, not twice."""
    settings.TIME_ZONE = NEW_YORK
    zone = ZoneInfo(NEW_YORK)
    for at, first, last in (
        (time(2, 30), date(2027, 3, 13), date(2027, 3, 15)),
        (time(1, 30), date(2027, 11, 6), date(2027, 11, 8)),
    ):
        recurrence = Recurrence(
            name="Daily",
            body=BODY,
            frequency=Recurrence.Frequency.WEEKLY,
            weekdays="0,1,2,3,4,5,6",
            time_of_day=at,
            starts_on=first,
            ends_on=last,
        )
        runs = []
        after = datetime(first.year, first.month, first.day, tzinfo=ZoneInfo("UTC"))
        while (nxt := recurrence_next_run(recurrence, after=after)) is not None:
            runs.append(nxt)
            # As the pass does: the time comes back from the database in UTC.
            after = nxt.astimezone(ZoneInfo("UTC"))
        assert [r.astimezone(zone).date() for r in runs] == [
            first,
            first + timedelta(days=1),
            last,
        ]


# --- 6. Two passes, dead passes, send now ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_four_passes_at_once_text_each_member_once_and_never_an_opt_out():
    """Held: four passes at the same moment dispatch a due blast once; someone who said
    STOP after it was scheduled is skipped."""
    make_members(5)
    blast = schedule()
    unsubscribe(phone=phone(2), source="keyword", evidence="STOP after scheduling")
    make_due(blast)
    results = run_threads(lambda i: scheduled_dispatch(), 4)
    assert sum(len(r.dispatched) for r in results) == 1
    run_to_end(Blast.objects.get(pk=blast.pk))
    assert outbox_to(phone(2)) == 0
    assert all(outbox_to(phone(i)) == 1 for i in (0, 1, 3, 4))


class Killed(BaseException):
    """The process was killed."""


def test_a_pass_killed_after_its_rows_is_recovered_once(settings, monkeypatch):
    """Held: a pass dies after writing every row but before queueing; after the stale
    time another pass takes it up and it goes to each member once."""
    settings.SCHEDULER_STALE_MINUTES = 5
    make_members(4)
    blast = schedule()
    make_due(blast)
    real = scheduling_module.retry_when_busy

    def die_at_queueing(fn, *, what):
        if what == "queueing a scheduled blast":
            raise Killed
        return real(fn, what=what)

    monkeypatch.setattr(scheduling_module, "retry_when_busy", die_at_queueing)
    with pytest.raises(Killed):
        scheduled_dispatch()
    monkeypatch.setattr(scheduling_module, "retry_when_busy", real)
    assert Blast.objects.get(pk=blast.pk).status == B.DISPATCHING
    assert scheduled_dispatch().recovered == []  # not stale yet
    Blast.objects.filter(pk=blast.pk).update(updated_at=timezone.now() - timedelta(minutes=6))
    assert scheduled_dispatch().recovered == [blast.pk]
    assert run_to_end(Blast.objects.get(pk=blast.pk)).status == B.SENT
    assert all(outbox_to(phone(i)) == 1 for i in range(4))


@pytest.mark.django_db(transaction=True)
def test_a_slow_pass_overtaken_by_recovery_adds_no_row_to_a_finished_blast(settings, monkeypatch):
    """A pass claims a blast and stalls (a long database wait) before its first insert;
    after SCHEDULER_STALE_MINUTES another pass takes it up, writes the rows, queues it,
    and it is sent. Then the slow pass wakes up and writes its rows into the blast that
    is already finished: a member who joined meanwhile gets a 'pending' row in a 'sent'
    blast that nothing will ever send, and recipient_count no longer matches the rows.
    The slow pass should stop writing once the blast is no longer its (the recovery
    should take it from the claim stamp, and the writer check it per batch)."""
    from members.models import Member
    from messaging.services import creating

    settings.SCHEDULER_STALE_MINUTES = 5
    make_members(3)
    blast = schedule()
    make_due(blast)
    real_check = creating.blast_check_text
    stalled = threading.Event()
    wake = threading.Event()

    def slow_first_time(*, body):
        # The slow pass stalls after its claim, before it reads the audience.
        if threading.current_thread().name == "slow-pass" and not wake.is_set():
            stalled.set()
            wake.wait(timeout=30)
        return real_check(body=body)

    monkeypatch.setattr(creating, "blast_check_text", slow_first_time)

    errors: list[BaseException] = []

    def slow_pass() -> None:
        try:
            scheduled_dispatch()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    slow = threading.Thread(target=slow_pass, name="slow-pass")
    slow.start()
    assert stalled.wait(timeout=30)
    # Five minutes pass with no progress: another pass takes it up.
    Blast.objects.filter(pk=blast.pk).update(updated_at=timezone.now() - timedelta(minutes=6))
    assert scheduled_dispatch().recovered == [blast.pk]
    assert run_to_end(Blast.objects.get(pk=blast.pk)).status == B.SENT
    Member.objects.create(first_name="Newbie", last_name="N", phone=phone(50))
    wake.set()
    slow.join(timeout=60)
    assert not errors, errors

    blast.refresh_from_db()
    rows = Delivery.objects.filter(blast=blast)
    assert blast.status == B.SENT
    assert not rows.filter(status=S.PENDING).exists(), "a finished blast has a pending row"
    assert blast.recipient_count == rows.count()
    assert all(outbox_to(phone(i)) == 1 for i in range(3))


def test_send_now_of_a_missed_blast_by_another_social_manager_is_refused(
    settings, django_user_model, manager_user
):
    """Held: only the author or an Admin may send a missed blast now."""
    from conftest import make_staff_user
    from smsadmin.roles import SOCIAL_MANAGER

    other = make_staff_user(django_user_model, "other-manager", SOCIAL_MANAGER)
    make_members(2)
    blast = schedule(created_by=manager_user)
    make_due(blast, minutes_ago=settings.SCHEDULE_GRACE_MINUTES + 5)
    scheduled_dispatch()
    assert Blast.objects.get(pk=blast.pk).status == B.MISSED
    with pytest.raises(Exception, match="Only an Admin or the blast's author"):
        blast_send_missed_now(blast_id=blast.pk, user=other)
    client = Client()
    client.force_login(other)
    client.post(f"/blasts/{blast.pk}/send-now/")
    assert Blast.objects.get(pk=blast.pk).status == B.MISSED
    blast_send_missed_now(blast_id=blast.pk, user=manager_user)
    scheduled_dispatch()
    assert run_to_end(Blast.objects.get(pk=blast.pk)).status == B.SENT
    assert OutboxMessage.objects.count() == 2
