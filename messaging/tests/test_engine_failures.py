"""The engine's promise under the failures a review found: each test is one way it broke.

Fake Twilio at the network, the real client; real threads where two things race. These
run on SQLite and again on PostgreSQL in the suite's second pass.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from members.models import Member
from messaging.models import Blast, Delivery
from messaging.services import (
    blast_cancel,
    blast_create,
    blast_enqueue,
    blast_pause,
    blast_process,
    blast_resume,
    blasts_sweep,
    sending,
)
from messaging.tests.conftest import in_thread, make_members, phone, run_to_end, statuses
from messaging.tests.fake_twilio import Reply
from smsadmin.celery import app as celery_app
from suppression.models import SuppressedContact, UnsubscribedContact

S = Delivery.Status
B = Blast.Status


# --- 3. One recipient's error never wedges the blast ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("code", [21408, 21617, 21602])
def test_an_error_about_one_recipient_fails_that_row_and_the_blast_goes_on(fake_twilio, code):
    make_members(30)
    fake_twilio.fail_number(phone(4), code)
    blast = run_to_end(blast_create(body="Hello", community=True))

    assert blast.status == B.PARTIALLY_FAILED
    row = Delivery.objects.get(blast=blast, phone=phone(4))
    assert (row.status, row.error_code) == (S.FAILED, code)
    assert statuses(blast) == {S.SENT: 29, S.FAILED: 1}


@pytest.mark.django_db
def test_a_row_refused_again_after_resume_does_not_wedge_the_blast(
    fake_twilio, settings, monkeypatch
):
    """A code read as 'the sender is broken' that really is about one row."""
    monkeypatch.setattr(sending, "REFUSAL_DEFER_SECONDS", 0.3)
    make_members(30)
    fake_twilio.fail_number(phone(4), 21606)
    blast = run_to_end(blast_create(body="Hello", community=True))
    assert blast.status == B.PAUSED
    assert blast.pause_cause == Blast.PauseCause.SENDER

    assert blast_resume(blast_id=blast.pk)
    blast = run_to_end(blast)

    # Resumed once, it finished: the others went out, the refused row failed with why.
    assert blast.status == B.PARTIALLY_FAILED
    row = Delivery.objects.get(blast=blast, phone=phone(4))
    assert row.status == S.FAILED
    assert row.error_code == 21606
    assert "refused this message 3 times" in row.error_message
    sent = Counter(m["to"] for m in fake_twilio.messages)
    assert sent == {phone(i): 1 for i in range(30) if i != 4}


@pytest.mark.django_db
def test_a_run_of_one_error_code_pauses_the_blast_with_the_reason(fake_twilio, settings):
    settings.SMS_MAX_IN_FLIGHT = 1  # answers in order
    make_members(60)
    # The first 20 go out (the canary passes); then a list of members abroad.
    for i in range(20, 50):
        fake_twilio.fail_number(phone(i), 21408)
    blast = run_to_end(blast_create(body="Hello", community=True))

    assert blast.status == B.PAUSED
    assert blast.pause_cause == Blast.PauseCause.ERROR_RUN
    assert "the last 10 messages all failed with 21408" in blast.status_reason
    counts = statuses(blast)
    assert counts[S.SENT] == 20
    assert counts[S.FAILED] == 10
    assert counts[S.PENDING] == 30


# --- 4. An opt-out during a blast is honoured before the next call ----------------------


@pytest.mark.django_db(transaction=True)
def test_an_opt_out_committed_mid_blast_stops_every_later_call(fake_twilio, settings):
    settings.SMS_RATE_PER_SECOND = 5  # one every 0.2 s: the chunk of 20 is claimed at once
    settings.SMS_MAX_IN_FLIGHT = 1
    make_members(20)
    blast = blast_create(body="Hello", community=True)
    worker = in_thread(lambda: blast_process(blast_id=blast.pk, time_budget=60))

    deadline = time.monotonic() + 10
    while fake_twilio.create_attempts < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    UnsubscribedContact.objects.bulk_create(
        UnsubscribedContact(phone=phone(i), reason="Replied STOP") for i in range(20)
    )
    attempts_at_commit = fake_twilio.create_attempts
    worker.join(timeout=30)
    assert not worker.is_alive()

    # At most the one call already past its check when the opt-out committed.
    assert len(fake_twilio.messages) <= attempts_at_commit + 1
    skipped = Delivery.objects.filter(blast=blast, status=S.SKIPPED, skip_reason="unsubscribed")
    assert skipped.count() == 20 - len(fake_twilio.messages)
    blast.refresh_from_db()
    assert blast.status == B.SENT


# --- 5. A Twilio outage pauses the blast instead of burning it into 'unknown' -------------


@pytest.mark.django_db
def test_twilio_answering_5xx_backs_off_then_pauses_with_a_reason_staff_understand(
    fake_twilio, settings
):
    make_members(300)
    # Slow 500s, as in an outage: the requests in flight all fail together.
    fake_twilio.latency = 0.3
    fake_twilio.script(*(Reply(status=500) for _ in range(300)))
    blast = run_to_end(blast_create(body="Hello", community=True))

    assert blast.status == B.PAUSED
    assert blast.pause_cause == Blast.PauseCause.NO_ANSWER
    assert "Twilio is not answering: 10 requests in a row failed" in blast.status_reason
    counts = statuses(blast)
    # Only the requests in flight when it broke, not the list.
    assert counts[S.UNKNOWN] <= 2 * settings.SMS_MAX_IN_FLIGHT
    assert counts[S.PENDING] >= 300 - 2 * settings.SMS_MAX_IN_FLIGHT
    assert fake_twilio.create_attempts == counts[S.UNKNOWN]


@pytest.mark.django_db
def test_twilio_unreachable_pauses_and_loses_nothing(fake_twilio, settings):
    # Refused connections come back at once, so the pass probes one at a time with
    # growing waits; a short run keeps the test quick.
    settings.SMS_PAUSE_AFTER_NO_ANSWER = 3
    make_members(50)
    blast = blast_create(body="Hello", community=True)
    port = fake_twilio.port
    fake_twilio.stop()  # connection refused: nothing reached Twilio
    blast = run_to_end(blast)
    assert blast.status == B.PAUSED
    assert blast.pause_cause == Blast.PauseCause.NO_ANSWER
    assert statuses(blast) == {S.PENDING: 50}

    fake_twilio.port = port
    fake_twilio.start()
    assert blast_resume(blast_id=blast.pk)
    blast = run_to_end(blast)
    assert blast.status == B.SENT
    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(50)}


# --- 7. Creating a big blast leaves the database to other writers -----------------------


@pytest.mark.django_db(transaction=True)
def test_creating_a_big_blast_never_locks_out_another_writer():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's single writer lock; PostgreSQL locks rows")
    Member.objects.bulk_create(
        Member(first_name=f"M{i}", phone=f"+1201{5550000 + i}") for i in range(30_000)
    )
    path = connection.settings_dict["NAME"]
    done = threading.Event()
    writes_while_preparing = 0
    errors: list[str] = []

    def other_writer() -> None:
        # Another process's writer (a worker recording outcomes) with a short busy
        # timeout: it fails if one transaction holds the write lock for over two seconds
        # (creating 30,000 rows in one transaction held it about four).
        nonlocal writes_while_preparing
        db = sqlite3.connect(path, timeout=2.0, isolation_level=None)
        try:
            while not done.is_set():
                try:
                    db.execute("BEGIN IMMEDIATE")
                    preparing = db.execute(
                        "SELECT COUNT(*) FROM messaging_blast WHERE status = 'preparing'"
                    ).fetchone()[0]
                    db.execute("UPDATE messaging_sendratelimiter SET next_slot = next_slot")
                    db.execute("COMMIT")
                    writes_while_preparing += bool(preparing)
                except sqlite3.OperationalError as exc:
                    errors.append(str(exc))
                    db.execute("ROLLBACK") if db.in_transaction else None
                time.sleep(0.02)
        finally:
            db.close()

    writer = threading.Thread(target=other_writer)
    writer.start()
    try:
        blast = blast_create(body="Hello {first_name}", community=True)
    finally:
        done.set()
        writer.join()
    assert errors == []
    assert writes_while_preparing > 0
    assert blast.status == B.QUEUED
    assert blast.recipient_count == 30_000
    assert Delivery.objects.filter(blast=blast).count() == 30_000


@pytest.mark.django_db
def test_a_blast_whose_creation_died_is_never_sent_and_is_removed(fake_twilio):
    make_members(5)
    blast = Blast.objects.create(body="Hello", audience_community=True, status=B.PREPARING)
    Delivery.objects.bulk_create(
        Delivery(blast=blast, phone=phone(i), body="Hello") for i in range(3)
    )
    assert blast_process(blast_id=blast.pk) is None
    assert blasts_sweep()["discarded"] == 0  # might still be being written
    Blast.objects.filter(pk=blast.pk).update(updated_at=timezone.now() - timedelta(minutes=11))
    assert blasts_sweep()["discarded"] == 1
    assert not Blast.objects.filter(pk=blast.pk).exists()
    assert not Delivery.objects.filter(blast_id=blast.pk).exists()
    assert fake_twilio.create_attempts == 0


# --- 8. A cancelled blast has no pending row, ever -------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "late_answer",
    [Reply(status=429, delay=1.0), Reply(status=401, code=20003, delay=1.0)],
    ids=["429", "sender-error"],
)
def test_answers_arriving_after_cancel_never_make_rows_pending(fake_twilio, late_answer):
    make_members(5)
    blast = blast_create(body="Hello", community=True)
    fake_twilio.script(*(late_answer for _ in range(5)))
    worker = in_thread(lambda: blast_process(blast_id=blast.pk, time_budget=30))
    deadline = time.monotonic() + 10
    while fake_twilio.in_flight < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert blast_cancel(blast_id=blast.pk) is not None
    worker.join(timeout=30)

    assert statuses(blast) == {S.CANCELLED: 5}
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED


# --- Sweeper, pause ------------------------------------------------------------------------


def queued_send_tasks(blast_id: int) -> int:
    """Send tasks for this blast waiting in the (in-memory) broker."""
    count = 0
    with celery_app.connection_for_write() as conn, conn.channel() as channel:
        while (message := channel.basic_get("celery")) is not None:
            if message.headers.get("task") == "messaging.send_blast" and message.headers.get(
                "argsrepr", ""
            ).startswith(f"[{blast_id}]"):
                count += 1
    return count


@pytest.mark.django_db
def test_a_blast_waiting_behind_busy_workers_keeps_one_send_task(
    django_capture_on_commit_callbacks,
):
    make_members(3)
    with celery_app.connection_for_write() as conn, conn.channel() as channel:
        channel.queue_purge("celery")
    with django_capture_on_commit_callbacks(execute=True):
        blast = blast_create(body="Hello", community=True)
    # Minutes pass and nobody takes the task: every worker is busy with other blasts.
    for minutes in range(2, 12, 2):
        Blast.objects.filter(pk=blast.pk).update(
            enqueued_at=timezone.now() - timedelta(minutes=minutes)
        )
        blasts_sweep()
    assert queued_send_tasks(blast.pk) == 1


@pytest.mark.django_db
def test_an_older_copy_of_the_send_task_does_nothing(fake_twilio):
    make_members(3)
    blast = blast_create(body="Hello", community=True)
    assert blast_enqueue(blast_id=blast.pk)
    old = Blast.objects.get(pk=blast.pk).send_token
    assert blast_enqueue(blast_id=blast.pk)  # a newer task replaces it (a resume, a sweep)
    current = Blast.objects.get(pk=blast.pk).send_token
    assert current != old

    assert blast_process(blast_id=blast.pk, token=old) is None
    assert fake_twilio.create_attempts == 0
    assert Blast.objects.get(pk=blast.pk).status == B.QUEUED
    assert blast_process(blast_id=blast.pk, token=current) is None
    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(3)}


@pytest.mark.django_db(transaction=True)
def test_a_blast_paused_while_its_last_sends_finish_finishes(fake_twilio):
    make_members(3)
    blast = blast_create(body="Hello", community=True)
    fake_twilio.script(*(Reply(delay=0.8) for _ in range(3)))
    worker = in_thread(lambda: blast_process(blast_id=blast.pk, time_budget=30))
    deadline = time.monotonic() + 10
    while fake_twilio.in_flight < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert blast_pause(blast_id=blast.pk)
    worker.join(timeout=30)

    blast.refresh_from_db()
    assert statuses(blast) == {S.SENT: 3}
    assert blast.status == B.SENT


# --- What a failure at send time says about the number --------------------------------------


@pytest.mark.django_db
def test_a_21610_at_send_time_unsubscribes_and_the_next_blast_skips_the_number(fake_twilio):
    make_members(3)
    fake_twilio.fail_number(phone(0), 21610)
    fake_twilio.fail_number(phone(1), 21211)
    run_to_end(blast_create(body="Hello", community=True))

    unsubscribed = UnsubscribedContact.objects.get(phone=phone(0))
    assert unsubscribed.source == UnsubscribedContact.Source.CARRIER
    assert SuppressedContact.objects.filter(phone=phone(1), lifted=False).exists()

    fake_twilio.reset()
    later = run_to_end(blast_create(body="Meeting moved", community=True))
    skipped = dict(
        Delivery.objects.filter(blast=later, status=S.SKIPPED).values_list("phone", "skip_reason")
    )
    assert skipped == {phone(0): "unsubscribed", phone(1): "suppressed"}
    assert [m["to"] for m in fake_twilio.messages] == [phone(2)]
