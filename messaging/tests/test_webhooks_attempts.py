"""News of one attempt taken for another's: the attempt in the StatusCallback URL (a=),
staff decisions on rows that already hold an earlier attempt's SID, and failures per
attempt (the classifier, the backfill, the 0004 data migration).

Messages are sent by the engine through the real twilio client to the fake Twilio;
callbacks are the fake's own forms, signed over the StatusCallback URL the engine gave
and posted through Django's test client. Setup writes only what a test cannot reach
otherwise (a row flagged for a decision, data from before the upgrade).
"""

from __future__ import annotations

import importlib
import time
from urllib.parse import urlencode, urlsplit

import pytest
from django.apps import apps
from django.test import Client

from messaging.models import Blast, Delivery
from messaging.services import (
    blast_create,
    blast_process,
    blast_retry_failed,
    delivery_mark_sent,
    delivery_send_again,
)
from messaging.tests.conftest import in_thread, make_members, phone, run_to_end
from messaging.tests.fake_twilio import FakeTwilio, Reply, sign
from suppression.backfill import backfill
from suppression.models import FailureEvent, UnsubscribedContact

S = Delivery.Status
B = Blast.Status
OVERDUE = Delivery.Attention.OVERDUE

BASE = "https://sms.example.org"


@pytest.fixture
def hooks(settings, fake_twilio: FakeTwilio) -> FakeTwilio:
    settings.PUBLIC_BASE_URL = BASE
    return fake_twilio


def post_news(
    client: Client, fake: FakeTwilio, message: dict, status: str, code: int | None = None
) -> int:
    """Twilio reports ``status`` of ``message`` to the StatusCallback it was created with."""
    from django.conf import settings

    url = message["status_callback"]
    params = fake.callback_params(message["sid"], status, code)
    parts = urlsplit(url)
    response = client.post(
        f"{parts.path}?{parts.query}",
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=sign(settings.TWILIO_AUTH_TOKEN, url, params),
    )
    assert response.status_code == 200, response.content
    return response.status_code


def messages_to(fake: FakeTwilio, number: str) -> list[dict]:
    return [m for m in fake.messages if m["to"] == number]


def flag_for_staff(delivery: Delivery) -> None:
    """Setup: the row stayed unknown for SMS_UNKNOWN_ESCALATE_HOURS (callbacks lost,
    Twilio's records unreadable), so it waits for a decision."""
    Delivery.objects.filter(pk=delivery.pk, status=S.UNKNOWN).update(attention=OVERDUE)


def failed_then_retried_resend_unknown(client: Client, fake: FakeTwilio) -> tuple:
    """A member's first text is undelivered (30003, may pass); staff retry; Twilio creates
    the resend but its answer is lost (500), so the row is unknown at attempt 2 while it
    still holds the first message's SID."""
    make_members(1)
    blast = run_to_end(blast_create(body="Hi {first_name}", community=True))
    [first] = messages_to(fake, phone(0))
    post_news(client, fake, first, "undelivered", 30003)
    row = Delivery.objects.get(blast=blast)
    assert (row.status, row.twilio_sid) == (S.FAILED, first["sid"])
    assert blast_retry_failed(blast_id=blast.pk).retried == 1
    fake.script(Reply(status=500, record=True))
    run_to_end(blast)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.twilio_sid) == (S.UNKNOWN, 2, first["sid"])
    [_, resend] = messages_to(fake, phone(0))
    assert resend["status_callback"].endswith("&a=2")
    return blast, row, first, resend


# -- Send again on a row that holds an earlier attempt's SID --------------------------


@pytest.mark.django_db(transaction=True)
def test_resend_news_settles_a_retried_row_staff_sent_again_before_it_goes_out_twice(
    hooks, client, manager_user
):
    """Retry failed -> the resend's answer is lost -> staff "Send again". Then the
    resend's own callback (a=2, the row's current attempt) arrives while the row is
    pending: Twilio has the message, so the row must settle and never go out a third
    time. A row that never held a SID is settled this way (reopened); one holding the
    failed first message's SID is not, and the member is texted twice."""
    blast, row, _first, resend = failed_then_retried_resend_unknown(client, hooks)
    flag_for_staff(row)
    assert delivery_send_again(delivery_ids=[row.pk], user=manager_user) == 1

    post_news(client, hooks, resend, "delivered")
    row.refresh_from_db()
    run_to_end(blast)
    row.refresh_from_db()
    delivered = [m for m in messages_to(hooks, phone(0)) if m["sid"] != _first["sid"]]
    assert len(delivered) == 1, (
        f"the resend was delivered, yet the row was sent again: {len(delivered)} texts "
        f"reached the member; row {row.status} holding {row.twilio_sid}"
    )
    assert (row.status, row.twilio_sid) == (S.DELIVERED, resend["sid"])


# -- Mark as sent on a row that holds an earlier attempt's SID ------------------------


@pytest.mark.django_db(transaction=True)
def test_resend_21610_after_mark_as_sent_unsubscribes_the_number(hooks, client, manager_user):
    """Retry failed -> resend's answer lost -> staff "Mark as sent". The resend then fails
    with 21610 (a=2, the current attempt): the member opted out. The row still holds the
    first message's SID, so _find ignores the news: the row stays 'sent' (for a message
    that failed) and the opt-out is never recorded."""
    _blast, row, _first, resend = failed_then_retried_resend_unknown(client, hooks)
    flag_for_staff(row)
    assert delivery_mark_sent(delivery_ids=[row.pk], user=manager_user) == 1

    post_news(client, hooks, resend, "failed", 21610)
    row.refresh_from_db()
    assert UnsubscribedContact.objects.filter(phone=phone(0), lifted=False).exists(), (
        f"the resend failed 21610 but nothing was recorded: row {row.status} holding "
        f"{row.twilio_sid} (twilio_status {row.twilio_status!r}), resend {resend['sid']}"
    )
    assert (row.status, row.twilio_sid, row.error_code) == (S.FAILED, resend["sid"], 21610)


@pytest.mark.django_db(transaction=True)
def test_resend_delivered_after_mark_as_sent_replaces_the_failed_first_sid(
    hooks, client, manager_user
):
    """Same, the resend delivered: the row must end delivered holding the resend's SID,
    not 'sent' holding the undelivered first message (twilio_status still 'undelivered',
    which the backfill then picks up as a failure on every run)."""
    _blast, row, first, resend = failed_then_retried_resend_unknown(client, hooks)
    flag_for_staff(row)
    assert delivery_mark_sent(delivery_ids=[row.pk], user=manager_user) == 1

    post_news(client, hooks, resend, "delivered")
    row.refresh_from_db()
    assert (row.status, row.twilio_sid, row.twilio_status) == (
        S.DELIVERED,
        resend["sid"],
        "delivered",
    ), f"row {row.status} holds {row.twilio_sid} ({row.twilio_status}); first {first['sid']}"
    assert backfill(dry_run=True).considered == 0


# -- Send again, resend claimed but not yet sent, then the unknown attempt's news -----


@pytest.mark.django_db(transaction=True)
def test_news_of_the_unknown_attempt_stops_a_claimed_resend_not_yet_sent(
    hooks, client, manager_user, settings
):
    """Row A's first create reaches Twilio but the answer is lost (unknown); staff send it
    again. A worker claims A (attempts 1 -> 2) in a chunk and is still busy with the row
    before it. Now A's first message reports 'delivered' (a=1). Before the a= URL this
    settled the claimed row (in flight, no SID) and the worker found it gone; now a=1 !=
    attempts=2, so the news is dropped and the worker texts A a second time."""
    settings.SMS_MAX_IN_FLIGHT = 1
    settings.SMS_AUTOPAUSE_FAILURE_RATE = 1.0  # B's failure must not pause the blast
    make_members(2)
    a_phone, b_phone = phone(1), phone(0)  # B's row comes first in the chunk
    hooks.script(
        Reply(status=400, code=30003, only_to=b_phone),
        Reply(status=500, record=True, only_to=a_phone),
    )
    blast = run_to_end(blast_create(body="Hi {first_name}", community=True))
    row_a = Delivery.objects.get(blast=blast, phone=a_phone)
    assert (row_a.status, row_a.twilio_sid) == (S.UNKNOWN, None)
    [first_a] = messages_to(hooks, a_phone)
    flag_for_staff(row_a)
    assert delivery_send_again(delivery_ids=[row_a.pk], user=manager_user) == 1
    assert blast_retry_failed(blast_id=blast.pk).retried == 1  # B goes out again too

    hooks.script(Reply(delay=1.5, only_to=b_phone))
    worker = in_thread(lambda: blast_process(blast_id=blast.pk, time_budget=20))
    deadline = time.monotonic() + 10
    while hooks.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    row_a.refresh_from_db()
    assert (row_a.status, row_a.attempts) == (S.SENDING, 2), "A not claimed yet"
    post_news(client, hooks, first_a, "delivered")
    worker.join(timeout=20)
    run_to_end(blast)
    texts = messages_to(hooks, a_phone)
    row_a.refresh_from_db()
    assert len(texts) == 1, (
        f"A's first message was delivered before its resend went out, yet A got "
        f"{len(texts)} texts; row {row_a.status} holding {row_a.twilio_sid}"
    )


# -- A failure of an earlier attempt, reported after the resend went out --------------


def first_unknown_then_sent_again(fake: FakeTwilio, user) -> tuple[Delivery, dict]:  # type: ignore[no-untyped-def]
    """Twilio created the first message but its answer was lost; staff chose Send again,
    and the resend went out (attempt 2)."""
    make_members(1)
    fake.script(Reply(status=500, record=True))
    blast = run_to_end(blast_create(body="Hi {first_name}", community=True))
    row = Delivery.objects.get(blast=blast)
    [first] = messages_to(fake, phone(0))
    flag_for_staff(row)
    assert delivery_send_again(delivery_ids=[row.pk], user=user) == 1
    run_to_end(blast)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (S.SENT, 2)
    return row, first


@pytest.mark.django_db(transaction=True)
def test_opt_out_of_the_unknown_first_message_is_recorded_after_staff_sent_again(
    hooks, client, manager_user
):
    """The first message's answer was lost; staff sent it again and the resend went out.
    Then Twilio reports the first message failed with 21610: the member opted out. The
    row rightly stays with the resend, but the failure is a real one of attempt 1 (a
    message Twilio had), and nothing records it."""
    row, first = first_unknown_then_sent_again(hooks, manager_user)

    post_news(client, hooks, first, "failed", 21610)
    events = list(FailureEvent.objects.filter(delivery_id=row.pk).values("attempt", "action"))
    assert events == [{"attempt": 1, "action": "unsubscribed"}], events
    assert UnsubscribedContact.objects.filter(phone=phone(0), lifted=False).exists()


@pytest.mark.django_db
def test_a_late_failure_of_the_first_message_does_not_undo_a_start_sent_since(
    hooks, client, manager_user
):
    """As above, but the member texted STOP and then START after the resend went out.
    The first message's 21610 arrives after that: it is older than the START (the row
    was made before it), so the member stays subscribed."""
    from suppression.services import resubscribe, unsubscribe

    row, first = first_unknown_then_sent_again(hooks, manager_user)
    unsubscribe(phone=phone(0), source=UnsubscribedContact.Source.KEYWORD, evidence="STOP")
    resubscribe(phone=phone(0), source=UnsubscribedContact.LiftSource.KEYWORD, evidence="START")

    post_news(client, hooks, first, "failed", 21610)
    assert not UnsubscribedContact.objects.filter(phone=phone(0), lifted=False).exists()
    events = list(FailureEvent.objects.filter(delivery_id=row.pk).values("attempt", "action"))
    assert events == [{"attempt": 1, "action": "none"}], events


# -- The 0004 data migration on a delivery retried before the upgrade -----------------


@pytest.mark.django_db
def test_migration_dates_an_old_event_to_the_attempt_it_was_for_so_backfill_sees_the_resend():
    """Before the upgrade, one FailureEvent per delivery: a delivery failed (30003, SID1),
    staff retried, and the resend failed with 21610 (SID2) — which the old classifier
    dropped as 'already recorded'. The migration labels the SID1 event with the
    delivery's current attempts (2), so the backfill thinks attempt 2 is recorded and
    the opt-out is never applied, although 5f8770e exists to record exactly that."""
    make_members(1)
    blast = blast_create(body="Hi {first_name}", community=True)
    sid1, sid2 = "SM" + "1" * 32, "SM" + "2" * 32
    Delivery.objects.filter(blast=blast).update(
        status=S.FAILED,
        attempts=2,
        twilio_sid=sid2,
        twilio_status="failed",
        error_code=21610,
    )
    row = Delivery.objects.get(blast=blast)
    FailureEvent.objects.create(
        phone=row.phone,
        error_code=30003,
        category="transient",
        action="counted",
        delivery_id=row.pk,
        attempt=0,  # the column's default when the migration adds it
        blast_id=blast.pk,
        message_sid=sid1,
    )
    migration = importlib.import_module("suppression.migrations.0004_failure_per_attempt")
    migration.attempts_from_deliveries(apps, None)
    event = FailureEvent.objects.get(message_sid=sid1)

    summary = backfill()
    assert UnsubscribedContact.objects.filter(phone=row.phone, lifted=False).exists(), (
        f"the event of {sid1} was labelled attempt {event.attempt}; backfill considered "
        f"{summary.considered} rows: the resend's 21610 is never recorded"
    )


# -- What held ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_held_news_of_the_unknown_attempt_settles_the_row_staff_sent_again(
    hooks, client, manager_user
):
    """No SID held: unknown -> Send again (pending, attempts 1) -> a=1 'delivered' settles
    the row with its SID, and nothing goes out again; a huge a= is acknowledged, not 500."""
    make_members(1)
    hooks.script(Reply(status=500, record=True))
    blast = run_to_end(blast_create(body="Hi {first_name}", community=True))
    row = Delivery.objects.get(blast=blast)
    [first] = messages_to(hooks, phone(0))
    flag_for_staff(row)
    assert delivery_send_again(delivery_ids=[row.pk], user=manager_user) == 1
    post_news(client, hooks, first, "delivered")
    run_to_end(blast)
    row.refresh_from_db()
    assert (row.status, row.twilio_sid) == (S.DELIVERED, first["sid"])
    assert len(messages_to(hooks, phone(0))) == 1
    huge = dict(first, status_callback=first["status_callback"].replace("&a=1", "&a=99999"))
    post_news(client, hooks, huge, "failed", 21610)
    row.refresh_from_db()
    assert row.status == S.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_held_duplicate_of_the_failed_first_message_never_touches_the_retried_row(hooks, client):
    """Retry failed -> pending holding SID1: the old message's re-posted 'undelivered',
    with a=1 or through an older URL without a=, neither fails nor settles the row, and
    records no second failure."""
    make_members(1)
    blast = run_to_end(blast_create(body="Hi {first_name}", community=True))
    [first] = messages_to(hooks, phone(0))
    post_news(client, hooks, first, "undelivered", 30003)
    assert blast_retry_failed(blast_id=blast.pk).retried == 1
    legacy = dict(first, status_callback=first["status_callback"].replace("&a=1", ""))
    for message in (first, legacy):
        post_news(client, hooks, message, "undelivered", 30003)
        post_news(client, hooks, message, "delivered")
    row = Delivery.objects.get(blast=blast)
    assert (row.status, row.attempts) == (S.PENDING, 1)
    assert FailureEvent.objects.filter(delivery_id=row.pk).count() == 1
    run_to_end(blast)
    row.refresh_from_db()
    assert row.status == S.SENT and row.twilio_sid != first["sid"]
