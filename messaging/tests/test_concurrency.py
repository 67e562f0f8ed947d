"""Workers racing for the same blast, on real threads with their own database connections.

These run on SQLite here and on PostgreSQL in the suite's second pass (make test with
TEST_POSTGRES_URL), since the two databases lock differently.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connections

from messaging.models import Blast, Delivery
from messaging.services import (
    blast_cancel,
    blast_create,
    blast_enqueue,
    blast_pause,
    blast_process,
    blast_resume,
    blasts_sweep,
    delivery_claim,
)
from messaging.tests.conftest import busiest_second, make_members, phone, run_threads
from messaging.tests.fake_twilio import Reply
from smsadmin.celery import app as celery_app

S = Delivery.Status
B = Blast.Status


def worker_thread(blast: Blast) -> threading.Thread:
    """A worker's pass over the blast on a thread of its own (and its own connection)."""

    def work() -> None:
        try:
            blast_process(blast_id=blast.pk, time_budget=60)
        finally:
            connections.close_all()

    return threading.Thread(target=work)


def finish(blast: Blast) -> None:
    for _ in range(20):
        again = blast_process(blast_id=blast.pk, time_budget=60)
        if again is None:
            return
        time.sleep(again)


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_hand_one_row_to_two_workers():
    make_members(600)
    blast = blast_create(body="Hello", community=True)

    def claim_all(_: int) -> list[int]:
        mine: list[int] = []
        while True:
            _, rows = delivery_claim(blast_id=blast.pk, limit=25)
            if not rows and not Delivery.objects.filter(blast=blast, status=S.PENDING).exists():
                return mine
            mine.extend(row.pk for row in rows)

    claimed = run_threads(claim_all, 4)
    every = [pk for part in claimed for pk in part]  # type: ignore[union-attr]
    assert len(every) == 600
    assert len(set(every)) == 600
    assert sum(1 for part in claimed if part) >= 2  # the workers really did share the work


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_blast_send_each_recipient_once(fake_twilio):
    fake_twilio.latency = 0.005
    make_members(400)
    blast = blast_create(body="Hi {first_name}", community=True)

    run_threads(lambda _: blast_process(blast_id=blast.pk, time_budget=120), 2)
    finish(blast)

    blast.refresh_from_db()
    assert blast.status == B.SENT
    assert fake_twilio.create_attempts == 400
    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(400)}
    assert Counter(Delivery.objects.filter(blast=blast).values_list("status", flat=True)) == {
        S.SENT: 400
    }


@pytest.mark.django_db(transaction=True)
def test_the_same_task_delivered_twice_sends_once(fake_twilio):
    """A broker may hand the same task to two workers (acks_late, a lost connection)."""
    make_members(150)
    blast = blast_create(body="Hello", community=True)
    run_threads(lambda _: blast_process(blast_id=blast.pk, time_budget=120), 3)
    finish(blast)
    assert fake_twilio.create_attempts == 150
    assert len({m["to"] for m in fake_twilio.messages}) == 150


@pytest.mark.django_db(transaction=True)
def test_rate_holds_at_the_network_across_workers_whatever_the_latencies(fake_twilio, settings):
    """Two workers, replies slow and fast by turns: no second holds more than rate + 1.

    A worker that waited for slow replies must not spend its share of the rate late,
    on top of what the other worker sends on time.
    """
    settings.SMS_RATE_PER_SECOND = 10
    settings.SMS_MAX_IN_FLIGHT = 2
    # Small claims, so both workers take turns through the list; the first two sends of
    # each claim answer slowly, blocking that worker while the other goes on.
    settings.SMS_CHUNK_SIZE = 10
    make_members(70)
    blast = blast_create(body="Hello", community=True)
    fake_twilio.script(*(Reply(delay=1.5, only_to=phone(i)) for i in range(70) if i % 10 in (0, 1)))

    run_threads(lambda _: blast_process(blast_id=blast.pk, time_budget=60), 2)
    finish(blast)

    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(70)}
    assert busiest_second(fake_twilio.create_times) <= 11


@pytest.mark.django_db(transaction=True)
def test_pause_stops_sends_within_seconds_and_resume_sends_the_rest_once(fake_twilio, settings):
    settings.SMS_RATE_PER_SECOND = 50
    fake_twilio.latency = 0.01
    make_members(300)
    blast = blast_create(body="Hello", community=True)
    worker = worker_thread(blast)
    worker.start()
    assert fake_twilio.wait_for_messages(20, timeout=10)
    assert blast_pause(blast_id=blast.pk)
    worker.join(timeout=10)
    assert not worker.is_alive()  # the pass noticed the pause and stopped
    sent_when_paused = len(fake_twilio.messages)
    assert sent_when_paused < 300
    time.sleep(0.6)
    assert len(fake_twilio.messages) == sent_when_paused  # nothing more goes out
    counts = Counter(Delivery.objects.filter(blast=blast).values_list("status", flat=True))
    assert counts[S.SENDING] == 0  # claimed-but-unsent rows were handed back
    assert counts[S.PENDING] == 300 - sent_when_paused

    settings.SMS_RATE_PER_SECOND = 0
    assert blast_resume(blast_id=blast.pk)
    finish(blast)
    blast.refresh_from_db()
    assert blast.status == B.SENT
    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(300)}


@pytest.mark.django_db(transaction=True)
def test_cancel_while_sending_marks_the_rest_cancelled(fake_twilio, settings):
    settings.SMS_RATE_PER_SECOND = 50
    make_members(300)
    blast = blast_create(body="Hello", community=True)
    worker = worker_thread(blast)
    worker.start()
    assert fake_twilio.wait_for_messages(20, timeout=10)
    assert blast_cancel(blast_id=blast.pk) is not None
    worker.join(timeout=10)
    assert not worker.is_alive()
    sent = len(fake_twilio.messages)
    counts = Counter(Delivery.objects.filter(blast=blast).values_list("status", flat=True))
    assert counts == {S.SENT: sent, S.CANCELLED: 300 - sent}
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED
    assert blast_process(blast_id=blast.pk) is None
    assert len(fake_twilio.messages) == sent


def use_broker(url: str) -> None:
    celery_app.conf.broker_url = url
    celery_app.conf.broker_write_url = url
    celery_app.conf.broker_read_url = url
    # Producers are cached per connection; drop ours so the next publish uses the URL.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker_down():
    """Point the Celery app at a Redis port where nothing listens, then restore it."""
    original = celery_app.conf.broker_write_url or celery_app.conf.broker_url
    use_broker("redis://127.0.0.1:1/0")
    try:
        yield
    finally:
        use_broker(original)


@pytest.mark.django_db(transaction=True)
def test_broker_down_at_creation_saves_the_blast_and_the_sweeper_sends_it(
    fake_twilio, settings, broker_down
):
    make_members(5)
    started = time.monotonic()
    blast = blast_create(body="Hello", community=True)
    assert time.monotonic() - started < 15  # the user is not kept waiting on the broker
    assert blast.status == B.QUEUED
    assert blast.enqueued_at is None  # what the page and the command tell the user
    assert Delivery.objects.filter(blast=blast, status=S.PENDING).count() == 5
    assert not blast_enqueue(blast_id=blast.pk)

    # The broker is back; the sweeper's enqueue runs the task (eagerly here; the
    # end-to-end tests run it through a real broker and worker).
    use_broker("memory://")
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    try:
        assert blasts_sweep()["requeued"] == 1
    finally:
        celery_app.conf.task_always_eager = False
    blast.refresh_from_db()
    assert blast.status == B.SENT
    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(5)}


@pytest.mark.django_db(transaction=True)
def test_a_slow_workers_expired_claims_are_not_sent_twice(fake_twilio, settings):
    """The sweeper may take a live but stalled worker's rows for a dead one's."""
    settings.SMS_RATE_PER_SECOND = 6
    settings.SMS_MAX_IN_FLIGHT = 1
    settings.SMS_CLAIM_STALE_SECONDS = 1
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(30)
    blast = blast_create(body="Hello", community=True)
    # The fourth request hangs: the worker, alive, is stuck waiting for its answer.
    fake_twilio.script(*(Reply() for _ in range(3)), Reply(delay=2.0))
    slow = worker_thread(blast)
    slow.start()
    deadline = time.monotonic() + 10
    while fake_twilio.create_attempts < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.2)
    from messaging.services import deliveries_expire_stale_claims, deliveries_reconcile

    assert deliveries_expire_stale_claims() > 0
    # Reconciliation runs once Twilio has the hanging message (it never looks sooner
    # than SMS_RECONCILE_AFTER_MINUTES, far longer than a request can take).
    assert fake_twilio.wait_for_messages(4, timeout=10)
    assert deliveries_reconcile()["pending"] > 0
    finish(blast)
    slow.join(timeout=30)
    finish(blast)

    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(30)}
    blast.refresh_from_db()
    assert blast.status == B.SENT
