"""The send engine's features acting on one blast at the same time.

Each feature was reviewed on its own; these tests run two of them at once, on real
threads (and on PostgreSQL too with DATABASE_URL), against the fake Twilio through the
real twilio client, and check what a member or staff would notice: texts per number,
row statuses, the blast's status and counts, nothing left pending in a cancelled blast,
nothing left 'sending'.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services import (
    blast_cancel,
    blast_create,
    blast_pause,
    blast_process,
    blast_resume,
    blast_retry_failed,
    blasts_sweep,
    creating,
    delivery_status_callback,
)
from messaging.services.callbacks import StatusCallback
from messaging.services.scheduling import scheduled_dispatch
from messaging.tests.conftest import in_thread, make_members, phone, run_to_end, statuses
from messaging.tests.fake_twilio import FakeTwilio, Reply

S = Delivery.Status
B = Blast.Status


def wait_until(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def callback(row: Delivery, sid: str, status: str, code: int | None = None) -> str:
    return delivery_status_callback(
        StatusCallback(message_sid=sid, status=status, delivery_id=row.pk, error_code=code)
    )


# -- Retry failed x a late duplicate status callback of the first message -----------


@pytest.mark.django_db(transaction=True)
def test_duplicate_callback_of_the_old_message_does_not_fail_the_retried_send_in_flight(
    fake_twilio: FakeTwilio,
):
    """A message undelivered (30003, busy handset): staff retry it; while the new message
    is being created, Twilio re-posts the old message's 'undelivered' callback (it does
    retry webhooks). The new message reached the member, so the row must end sent with
    the new SID, not failed: a failed row is what staff retry again, texting twice."""
    make_members(1)
    blast = run_to_end(blast_create(body="Hi {first_name}", community=True))
    row = Delivery.objects.get(blast=blast)
    old_sid = row.twilio_sid
    assert old_sid and row.status == S.SENT
    assert callback(row, old_sid, "undelivered", 30003) == "updated"
    assert blast_retry_failed(blast_id=blast.pk).retried == 1

    fake_twilio.script(Reply(delay=1.0))  # the retried create takes a moment
    worker = in_thread(lambda: blast_process(blast_id=blast.pk, time_budget=20))
    assert wait_until(lambda: fake_twilio.in_flight == 1)
    # Twilio retries the old message's callback while the new create is in flight.
    callback(row, old_sid, "undelivered", 30003)
    worker.join(timeout=20)

    messages = fake_twilio.messages
    assert len(messages) == 2  # the first text and the retried one
    new_sid = messages[-1]["sid"]
    # The new message's own callback arrives.
    callback(row, new_sid, "delivered")
    row.refresh_from_db()
    blast.refresh_from_db()
    assert (row.status, row.twilio_sid) == (S.DELIVERED, new_sid), (
        f"the retried text reached the member, but the row is {row.status} holding "
        f"{row.twilio_sid} ({row.error_message!r}); blast {blast.status}"
    )


# -- helpers for workers running side by side ----------------------------------------


def worker_loop(blast_id: int, stop: threading.Event, deadline: float = 15.0) -> None:
    """What a Celery worker does with every send task it is handed: pass after pass,
    taking the blast up again whenever it was queued (a retry or a resume enqueued it)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end and not stop.is_set():
        again = blast_process(blast_id=blast_id, time_budget=10)
        status = Blast.objects.filter(pk=blast_id).values_list("status", flat=True).first()
        if status in Blast.FINAL_STATUSES and again is None:
            return
        time.sleep(min(again or 0.02, 0.2))


def texts_per_number(fake: FakeTwilio) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in fake.messages:
        counts[message["to"]] = counts.get(message["to"], 0) + 1
    return counts


# -- Retry failed while two workers are still sending the same blast ------------------


@pytest.mark.django_db(transaction=True)
def test_retry_failed_while_two_workers_send_texts_each_member_once(
    fake_twilio: FakeTwilio, settings
):
    settings.SMS_MAX_IN_FLIGHT = 2
    settings.SMS_CHUNK_SIZE = 5
    fake_twilio.latency = 0.02
    make_members(40)
    failing = [phone(i) for i in range(3)]
    fake_twilio.script(*(Reply(status=400, code=30003, only_to=p) for p in failing))
    blast = blast_create(body="Hi {first_name}", community=True)
    stop = threading.Event()
    workers = [in_thread(lambda: worker_loop(blast.pk, stop)) for _ in range(2)]
    assert wait_until(lambda: Delivery.objects.filter(blast=blast, status=S.FAILED).count() == 3)
    assert Delivery.objects.filter(blast=blast, status=S.PENDING).exists(), "too late"
    assert blast_retry_failed(blast_id=blast.pk).retried == 3
    for worker in workers:
        worker.join(timeout=20)
    stop.set()
    blast.refresh_from_db()
    texts = texts_per_number(fake_twilio)
    assert {p: n for p, n in texts.items() if n != 1} == {}
    assert len(texts) == 40
    assert dict(statuses(blast)) == {S.SENT: 40}
    assert blast.status == B.SENT


# -- Retry failed, then cancel while the retried rows are in flight --------------------


@pytest.mark.django_db(transaction=True)
def test_cancel_while_retried_rows_are_in_flight_leaves_nothing_pending_or_sending(
    fake_twilio: FakeTwilio, settings
):
    settings.SMS_MAX_IN_FLIGHT = 2
    settings.SMS_AUTOPAUSE_FAILURE_RATE = 1.0  # the failures are the test's, not a canary's
    make_members(10)
    fake_twilio.script(*(Reply(status=400, code=30003, only_to=phone(i)) for i in range(6)))
    blast = run_to_end(blast_create(body="Hi {first_name}", community=True))
    assert statuses(blast)[S.FAILED] == 6
    assert blast_retry_failed(blast_id=blast.pk).retried == 6
    fake_twilio.script(Reply(delay=0.8), Reply(delay=0.8))
    worker = in_thread(lambda: blast_process(blast_id=blast.pk, time_budget=20))
    assert wait_until(lambda: fake_twilio.in_flight == 2)
    assert blast_cancel(blast_id=blast.pk) is not None
    worker.join(timeout=20)
    blast.refresh_from_db()
    counts = statuses(blast)
    assert blast.status == B.CANCELLED
    assert counts[S.PENDING] == 0 and counts[S.SENDING] == 0 and counts[S.UNKNOWN] == 0
    assert counts[S.SENT] == 4 + 2 and counts[S.CANCELLED] == 4
    assert max(texts_per_number(fake_twilio).values()) == 1


# -- Pause and resume, quickly and again, while two workers send ----------------------


@pytest.mark.django_db(transaction=True)
def test_rapid_pause_resume_with_two_workers_sends_each_once_and_strands_nothing(
    fake_twilio: FakeTwilio, settings
):
    settings.SMS_MAX_IN_FLIGHT = 3
    settings.SMS_CHUNK_SIZE = 7
    fake_twilio.latency = 0.03
    make_members(60)
    blast = blast_create(body="Hi {first_name}", community=True)
    stop = threading.Event()
    workers = [in_thread(lambda: worker_loop(blast.pk, stop)) for _ in range(2)]
    end = time.monotonic() + 2.0
    toggles = 0
    while time.monotonic() < end:
        toggles += blast_pause(blast_id=blast.pk)
        time.sleep(0.03)
        toggles += blast_resume(blast_id=blast.pk)
        time.sleep(0.05)
    blast_resume(blast_id=blast.pk)
    for worker in workers:
        worker.join(timeout=20)
    stop.set()
    blast.refresh_from_db()
    texts = texts_per_number(fake_twilio)
    assert toggles > 10
    assert {p: n for p, n in texts.items() if n != 1} == {}
    assert len(texts) == 60
    assert dict(statuses(blast)) == {S.SENT: 60}, blast.status_reason
    assert blast.status == B.SENT


# -- The same number in two blasts sending at once; one hits 21610 --------------------


@pytest.mark.django_db(transaction=True)
def test_21610_in_one_blast_stops_the_other_blast_texting_that_number(
    fake_twilio: FakeTwilio, settings
):
    settings.SMS_MAX_IN_FLIGHT = 1
    fake_twilio.latency = 0.1
    make_members(10)
    opted_out = phone(4)
    fake_twilio.script(Reply(status=400, code=21610, only_to=opted_out))
    first = blast_create(body="First {first_name}", community=True)
    second = blast_create(body="Second {first_name}", community=True)
    a = in_thread(lambda: blast_process(blast_id=first.pk, time_budget=20))
    time.sleep(0.25)  # the second blast runs a few numbers behind
    b = in_thread(lambda: blast_process(blast_id=second.pk, time_budget=20))
    a.join(timeout=20)
    b.join(timeout=20)
    assert fake_twilio.sent_to(opted_out) == 0
    assert Delivery.objects.get(blast=second, phone=opted_out).status == S.SKIPPED
    for blast in (first, second):
        counts = statuses(blast)
        assert counts[S.PENDING] == counts[S.SENDING] == 0


# -- A scheduled blast cancelled while its dispatch pass writes its rows ---------------


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_cancel_during_dispatch_leaves_no_pending_row(monkeypatch):
    """Staff cancel a scheduled blast while the dispatch pass is writing its rows. The
    cancel's UPDATE of the rows runs while one batch is inserted but not committed (a
    large blast's cancel takes a moment; here a row lock held elsewhere stretches it):
    that batch commits pending after the cancel, the next batch finds the blast taken
    from it and the pass stops, and nobody cancels those rows."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's IMMEDIATE transactions serialise the two writers")
    monkeypatch.setattr(creating, "CREATE_BATCH", 50)  # many short batches
    make_members(4000)
    blast = blast_create(
        body="Hi {first_name}", community=True, scheduled_for=timezone.now() + timedelta(hours=1)
    )
    Blast.objects.filter(pk=blast.pk).update(scheduled_for=timezone.now() - timedelta(seconds=1))
    rows = Delivery.objects.filter(blast=blast)
    dispatch = in_thread(scheduled_dispatch)
    assert wait_until(lambda: rows.count() >= 100)

    locked, release = threading.Event(), threading.Event()

    def hold_a_row() -> None:
        with transaction.atomic():
            Delivery.objects.select_for_update().filter(pk=rows.order_by("pk")[0].pk).get()
            locked.set()
            release.wait(10)

    holder = in_thread(hold_a_row)
    assert locked.wait(5)
    cancel = in_thread(lambda: blast_cancel(blast_id=blast.pk))
    # The cancel waits for the held row; the pass's next batch waits for the cancel.
    assert wait_until(lambda: lock_waiters() >= 2, timeout=5), "dispatch ended first"
    release.set()
    for thread in (holder, cancel, dispatch):
        thread.join(timeout=20)
    # Not even until the sweeper's next minute: none at all.
    blast.refresh_from_db()
    counts = statuses(blast)
    assert blast.status == B.CANCELLED
    assert counts[S.PENDING] == 0, f"a cancelled blast holds {counts[S.PENDING]} pending rows"


@pytest.mark.django_db
def test_the_sweeper_cancels_rows_left_pending_in_a_cancelled_blast():
    """Whatever left them (a process killed half-way through a cancel of 100k rows), the
    minute sweeper cancels them: nothing would ever send them, and counts would lie."""
    make_members(3)
    blast = blast_create(body="Hi", community=True)
    Blast.objects.filter(pk=blast.pk).update(status=B.CANCELLED)
    blasts_sweep()
    assert statuses(blast) == {S.CANCELLED: 3}


# -- A status callback arriving before the worker records Twilio's 201 ----------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("news", ["failed", "delivered"])
def test_callback_before_the_201_is_recorded_keeps_twilios_word(fake_twilio: FakeTwilio, news):
    make_members(1)
    blast = blast_create(body="Hi {first_name}", community=True)
    fake_twilio.script(Reply(delay=0.6))
    worker = in_thread(lambda: blast_process(blast_id=blast.pk, time_budget=20))
    assert wait_until(lambda: fake_twilio.in_flight == 1)
    row = Delivery.objects.get(blast=blast)
    assert row.status == S.SENDING
    # Twilio's callback about the message (its SID is not ours yet) comes first.
    sid = "SM" + "a" * 32
    assert callback(row, sid, news, 30003 if news == "failed" else None) == "updated"
    worker.join(timeout=20)
    row.refresh_from_db()
    blast.refresh_from_db()
    assert (row.status, row.twilio_sid) == (S.FAILED if news == "failed" else S.DELIVERED, sid)
    assert not Delivery.objects.filter(status__in=[S.SENDING, S.PENDING, S.UNKNOWN]).exists()
    assert blast.status in Blast.FINAL_STATUSES
    assert fake_twilio.sent_to(phone(0)) == 1
