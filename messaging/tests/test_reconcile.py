"""Reconciliation of rows whose send outcome is unknown, against a fake Twilio on 127.0.0.1.

Each test tells a timeline Twilio could really have: what our worker posted, what
Twilio stored (and when), and what reconciliation must conclude from Twilio's list.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from members.models import Member
from messaging.models import Blast, Delivery, OutboxMessage
from messaging.services import (
    blast_cancel,
    blast_create,
    blast_retry_failed,
    deliveries_reconcile,
    delivery_reconcile,
)
from messaging.services.callbacks import StatusCallback, delivery_status_callback
from messaging.sms import LIST_PAGE_SIZE
from messaging.tests.conftest import FROM_NUMBER, make_members, phone, run_to_end
from messaging.tests.fake_twilio import Reply

S = Delivery.Status
B = Blast.Status
A = Delivery.Attention


def only_row(blast: Blast) -> Delivery:
    return Delivery.objects.get(blast=blast)


def claimed_ago(row: Delivery, delta: timedelta) -> datetime:
    """Move the attempt back in time (Twilio-side messages are seeded to match)."""
    claimed = timezone.now() - delta
    Delivery.objects.filter(pk=row.pk).update(claimed_at=claimed)
    return claimed


# --- 1. a SID another row holds; an upper bound; one row never stops the run ----------


@pytest.mark.django_db
def test_a_sid_another_delivery_holds_is_never_taken_and_the_run_goes_on(fake_twilio, settings):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(2)
    first = run_to_end(blast_create(body="Hello", community=True))
    assert first.status == B.SENT
    # The same text again, minutes later: to phone 0 Twilio never created it; to
    # phone 1 it did, but the answer was lost.
    fake_twilio.script(
        Reply(status=500, only_to=phone(0)), Reply(status=500, record=True, only_to=phone(1))
    )
    second = run_to_end(blast_create(body="Hello", community=True))
    accepted = fake_twilio.messages[-1]
    assert accepted["to"] == phone(1)

    result = deliveries_reconcile()

    rows = {d.phone: d for d in Delivery.objects.filter(blast=second)}
    # Phone 0's only "Hello" in the window is the first blast's: never taken.
    assert rows[phone(0)].status == S.PENDING
    assert (rows[phone(1)].status, rows[phone(1)].twilio_sid) == (S.SENT, accepted["sid"])
    assert (result["pending"], result["sent"], result["errors"]) == (1, 1, 0)
    assert run_to_end(second).status == B.SENT
    assert fake_twilio.sent_to(phone(0)) == 2  # once per blast
    assert fake_twilio.sent_to(phone(1)) == 2


@pytest.mark.django_db
def test_a_message_after_the_attempts_window_is_not_taken(fake_twilio):
    make_members(1)
    fake_twilio.script(Reply(status=500))  # Twilio never created it
    blast = run_to_end(blast_create(body="Hello", community=True))
    claimed = claimed_ago(only_row(blast), timedelta(minutes=30))
    # Ten minutes after the attempt the same text went to the same number from our
    # number (a staff test, another tool): not this attempt's message.
    fake_twilio.add_message(to=phone(0), body="Hello", date_sent=claimed + timedelta(minutes=10))

    assert deliveries_reconcile()["pending"] == 1
    assert only_row(blast).status == S.PENDING


# --- 2. overlapping runs: a stale answer must not settle a newer attempt -------------


@pytest.mark.django_db(transaction=True)
def test_a_stale_not_found_answer_does_not_send_a_second_time(fake_twilio, settings):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    settings.SMS_HTTP_TIMEOUT_SECONDS = 10.0  # run B's held answer must not time out
    make_members(1)
    fake_twilio.script(Reply(status=500))  # attempt 1: never created
    blast = run_to_end(blast_create(body="Hello", community=True))
    row = only_row(blast)
    assert (row.status, row.attempts) == (S.UNKNOWN, 1)

    # Run B asks Twilio about attempt 1; Twilio's answer ("not there") reaches it late.
    hold = threading.Event()
    fake_twilio.script_list(Reply(hold=hold))
    results: dict[str, dict[str, int]] = {}

    def run_b() -> None:
        try:
            results["b"] = deliveries_reconcile()
        finally:
            connection.close()

    b = threading.Thread(target=run_b)
    b.start()
    try:
        assert fake_twilio.wait_for_list_requests(1)
        # Meanwhile run A settles attempt 1, the row goes out again, and attempt 2's
        # outcome is unknown too.
        assert deliveries_reconcile()["pending"] == 1
        fake_twilio.script(Reply(status=500))
        run_to_end(blast)
        row.refresh_from_db()
        assert (row.status, row.attempts) == (S.UNKNOWN, 2)
    finally:
        hold.set()
        b.join(timeout=20)
    assert not b.is_alive()

    # B's "not found" was about attempt 1: attempt 2 stays unknown, nothing is resent.
    assert results["b"]["pending"] == 0
    row.refresh_from_db()
    assert (row.status, row.attempts) == (S.UNKNOWN, 2)
    assert fake_twilio.create_attempts == 2


# --- 6. what identifies the attempt; text only breaks ties; ambiguity goes to staff ---


@pytest.mark.django_db
def test_a_body_twilio_trimmed_is_found_not_sent_again(fake_twilio, settings):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    Member.objects.create(first_name="Ann", last_name="", phone=phone(0))
    fake_twilio.script(Reply(status=500, record=True))
    blast = run_to_end(blast_create(body="Hi {first_name} {last_name}", community=True))
    row = only_row(blast)
    accepted = fake_twilio.messages[-1]
    assert (row.status, row.body, accepted["body"]) == (S.UNKNOWN, "Hi Ann ", "Hi Ann")

    assert deliveries_reconcile()["sent"] == 1
    row.refresh_from_db()
    assert (row.status, row.twilio_sid) == (S.SENT, accepted["sid"])
    assert fake_twilio.create_attempts == 1


@pytest.mark.django_db
def test_a_body_rewritten_by_smart_encoding_is_picked_among_other_messages(fake_twilio, settings):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(1)
    fake_twilio.smart_encoding = True
    # Another message from our number to the same person in the same minutes.
    fake_twilio.add_message(to=phone(0), from_=FROM_NUMBER, body="Your pickup code is 1234")
    fake_twilio.script(Reply(status=500, record=True))
    blast = run_to_end(
        blast_create(
            body="\u201cChoir\u201d practice \u2014 don\u2019t be late\u2026", community=True
        )
    )
    accepted = fake_twilio.messages[-1]
    assert accepted["body"] == '"Choir" practice - don\'t be late...'

    assert deliveries_reconcile()["sent"] == 1
    row = only_row(blast)
    assert (row.status, row.twilio_sid, row.attention) == (S.SENT, accepted["sid"], "")
    assert fake_twilio.create_attempts == 1


@pytest.mark.django_db
@pytest.mark.parametrize("bodies", [("Hello", "Hello")], ids=["two-with-its-text"])
def test_ambiguous_records_are_left_for_staff_and_never_resent(fake_twilio, settings, bodies):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(1)
    fake_twilio.script(Reply(status=500))
    blast = run_to_end(blast_create(body="Hello", community=True))
    for body in bodies:
        fake_twilio.add_message(to=phone(0), from_=FROM_NUMBER, body=body)

    result = deliveries_reconcile()

    row = only_row(blast)
    assert result["ambiguous"] == 1
    assert (row.status, row.attention) == (S.UNKNOWN, A.AMBIGUOUS)
    assert "2 messages" in row.error_message
    assert "Traceback" not in row.error_message
    # Staff decide: reconciliation does not look at the row again, nothing is resent.
    asked = fake_twilio.list_requests
    deliveries_reconcile()
    assert fake_twilio.list_requests == asked
    run_to_end(blast)
    row.refresh_from_db()
    assert (row.status, row.attention) == (S.UNKNOWN, A.AMBIGUOUS)
    assert fake_twilio.create_attempts == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bodies",
    [("Thanks Dana, see you Tuesday",), ("Your pickup code is 1234", "See you at 7")],
    ids=["one", "two"],
)
def test_messages_without_its_text_are_someone_elses_and_the_row_goes_out_once(
    fake_twilio, settings, bodies
):
    """A HELP reply or a staff member's own text from our number in the same minutes:
    taking it for the blast would leave the person without the blast."""
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(1)
    fake_twilio.script(Reply(status=500))  # not created
    blast = run_to_end(blast_create(body="Vote tomorrow at the hall, 9am", community=True))
    for body in bodies:
        fake_twilio.add_message(to=phone(0), from_=FROM_NUMBER, body=body)

    assert deliveries_reconcile()["pending"] == 1
    blast = run_to_end(blast)
    got = [m for m in fake_twilio.messages if m["body"] == "Vote tomorrow at the hall, 9am"]
    assert len(got) == 1
    assert blast.status == B.SENT


@pytest.mark.django_db
def test_two_unknown_rows_to_one_number_do_not_take_each_others_message(fake_twilio, settings):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(1)
    fake_twilio.smart_encoding = True
    fake_twilio.script(Reply(status=500))  # the bake sale text was never created
    bake = run_to_end(blast_create(body="Bake sale on Sunday", community=True))
    fake_twilio.script(Reply(status=500, record=True))  # the choir text was
    choir = run_to_end(blast_create(body="Choir practice \u2014 7pm", community=True))
    accepted = fake_twilio.messages[-1]
    assert only_row(bake).status == only_row(choir).status == S.UNKNOWN
    assert only_row(bake).pk < only_row(choir).pk  # the bake sale row is looked at first

    result = deliveries_reconcile()

    assert (result["sent"], result["pending"]) == (1, 1)
    assert only_row(bake).status == S.PENDING
    assert (only_row(choir).status, only_row(choir).twilio_sid) == (S.SENT, accepted["sid"])
    run_to_end(bake)
    assert [m["body"] for m in fake_twilio.messages] == [
        "Choir practice - 7pm",
        "Bake sale on Sunday",
    ]


@pytest.mark.django_db
def test_one_message_two_unknown_rows_with_the_same_text_is_ambiguous_for_both(
    fake_twilio, settings
):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(1)
    fake_twilio.script(Reply(status=500, record=True))
    first = run_to_end(blast_create(body="Hello", community=True))
    fake_twilio.script(Reply(status=500))
    second = run_to_end(blast_create(body="Hello", community=True))

    result = deliveries_reconcile()

    assert result["ambiguous"] == 2
    for blast in (first, second):
        row = only_row(blast)
        assert (row.status, row.attention, row.twilio_sid) == (S.UNKNOWN, A.AMBIGUOUS, None)
    assert fake_twilio.create_attempts == 2


@pytest.mark.django_db
def test_with_a_messaging_service_only_its_messages_count(fake_twilio, settings):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    service = "MG" + "1" * 32
    settings.TWILIO_MESSAGING_SERVICE_SID = service
    make_members(1)
    fake_twilio.script(Reply(status=500, record=True))
    blast = run_to_end(blast_create(body="Hello", community=True))
    accepted = fake_twilio.messages[-1]
    assert accepted["messaging_service_sid"] == service
    # The same text from another sender of the account is not ours.
    fake_twilio.add_message(to=phone(0), from_="+15005550007", body="Hello")
    fake_twilio.add_message(
        to=phone(0), from_=None, body="Hello", messaging_service_sid="MG" + "2" * 32
    )

    assert deliveries_reconcile()["sent"] == 1
    assert only_row(blast).twilio_sid == accepted["sid"]


# --- 10. the whole window is read, page after page ----------------------------------


def seed_newer_and_older(fake_twilio, claimed: datetime, *, newer: int, older: int) -> None:
    for i in range(newer):  # after the attempt's window: other blasts to a staff phone
        fake_twilio.add_message(
            to=phone(0),
            body=f"Other blast {i}",
            date_sent=claimed + timedelta(minutes=5, seconds=i),
        )
    for i in range(older):  # long before it
        fake_twilio.add_message(
            to=phone(0), body=f"Old {i}", date_sent=claimed - timedelta(days=1, minutes=i)
        )


@pytest.mark.django_db
def test_reconcile_pages_back_past_newer_messages_and_stops_at_the_window(fake_twilio):
    make_members(1)
    fake_twilio.script(Reply(status=500))  # the answer was lost; Twilio's record is seeded
    blast = run_to_end(blast_create(body="Hello", community=True))
    claimed = claimed_ago(only_row(blast), timedelta(minutes=30))
    ours = fake_twilio.add_message(
        to=phone(0), body="Hello", status="queued", date_created=claimed + timedelta(seconds=1)
    )
    newer = LIST_PAGE_SIZE + 60
    seed_newer_and_older(fake_twilio, claimed, newer=newer, older=2 * LIST_PAGE_SIZE)

    assert deliveries_reconcile()["sent"] == 1
    row = only_row(blast)
    assert (row.status, row.twilio_sid) == (S.SENT, ours["sid"])
    # Every page down to the attempt, none of the older history.
    assert fake_twilio.list_requests == math.ceil((newer + 1) / LIST_PAGE_SIZE)
    assert fake_twilio.create_attempts == 1


@pytest.mark.django_db
def test_a_window_that_cannot_be_read_to_the_end_is_never_taken_as_not_found(fake_twilio):
    make_members(1)
    fake_twilio.script(Reply(status=500))
    blast = run_to_end(blast_create(body="Hello", community=True))
    claimed = claimed_ago(only_row(blast), timedelta(minutes=30))
    seed_newer_and_older(fake_twilio, claimed, newer=LIST_PAGE_SIZE + 60, older=10)
    fake_twilio.script_list(Reply(), Reply(status=500))  # the second page fails

    result = deliveries_reconcile()

    assert result["errors"] == 1 and result["pending"] == 0
    row = only_row(blast)
    assert (row.status, row.attention) == (S.UNKNOWN, "")
    assert fake_twilio.create_attempts == 1


# --- cancelled blasts, claims, escalation, the console backend ---------------------


@pytest.mark.django_db
def test_not_found_row_of_a_cancelled_blast_is_cancelled(fake_twilio, settings):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(2)
    fake_twilio.script(Reply(status=500, only_to=phone(0)))
    blast = run_to_end(blast_create(body="Hello", community=True))
    assert blast_cancel(blast_id=blast.pk) == 0  # nothing pending; the unknown row stays

    deliveries_reconcile()

    row = Delivery.objects.get(blast=blast, phone=phone(0))
    assert (row.status, row.claim_token) == (S.CANCELLED, None)
    assert blast.counts()[S.PENDING] == 0


@pytest.mark.django_db
def test_row_not_found_goes_back_to_pending_without_its_old_claim(fake_twilio, settings):
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(1)
    fake_twilio.script(Reply(status=500))
    blast = run_to_end(blast_create(body="Hello", community=True))
    assert only_row(blast).claim_token is not None

    assert deliveries_reconcile()["pending"] == 1
    row = only_row(blast)
    assert (row.status, row.claim_token, row.attention) == (S.PENDING, None, "")
    assert run_to_end(blast).status == B.SENT
    assert fake_twilio.create_attempts == 2


@pytest.mark.django_db
def test_row_unknown_too_long_is_flagged_overdue_and_settles_when_twilio_answers(fake_twilio):
    make_members(1)
    fake_twilio.script(Reply(status=500))
    blast = run_to_end(blast_create(body="Hello", community=True))
    claimed = claimed_ago(only_row(blast), timedelta(hours=26, minutes=5))
    fake_twilio.script_list(Reply(status=503))  # Twilio cannot be asked this minute

    result = deliveries_reconcile()

    row = only_row(blast)
    assert result["errors"] == 1 and result["overdue"] == 1
    assert (row.status, row.attention) == (S.UNKNOWN, A.OVERDUE)
    assert "26 hours" in row.error_message
    assert "decide whether to send again" in row.error_message

    # Twilio answers the next minute: the message was there all along.
    ours = fake_twilio.add_message(
        to=phone(0), body="Hello", date_sent=claimed + timedelta(seconds=1)
    )
    assert deliveries_reconcile()["sent"] == 1
    row.refresh_from_db()
    assert (row.status, row.twilio_sid, row.attention) == (S.SENT, ours["sid"], "")
    assert fake_twilio.create_attempts == 1
    blast.refresh_from_db()
    assert blast.status == B.SENT


@pytest.mark.django_db
def test_delivery_reconcile_settles_one_row(fake_twilio, settings):
    make_members(1)
    fake_twilio.script(Reply(status=500, record=True))
    blast = run_to_end(blast_create(body="Hello", community=True))
    assert delivery_reconcile(delivery=only_row(blast)) == "sent"
    assert only_row(blast).twilio_sid == fake_twilio.messages[-1]["sid"]


@pytest.mark.django_db
def test_console_backend_looks_in_the_outbox(settings):
    settings.SMS_BACKEND = "console"
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(2)
    blast = blast_create(body="Hello", community=True)
    now = timezone.now()
    Delivery.objects.filter(blast=blast).update(status=S.UNKNOWN, claimed_at=now, attempts=1)
    Blast.objects.filter(pk=blast.pk).update(status=B.SENDING)
    OutboxMessage.objects.create(
        sid="SM" + "c" * 32, to=phone(0), from_number="console", body="Hello"
    )

    result = deliveries_reconcile()

    assert (result["sent"], result["pending"]) == (1, 1)
    assert Delivery.objects.get(blast=blast, phone=phone(0)).twilio_sid == "SM" + "c" * 32
    assert Delivery.objects.get(blast=blast, phone=phone(1)).status == S.PENDING


@pytest.mark.django_db
def test_a_retried_rows_earlier_message_is_never_taken_for_its_new_attempt(fake_twilio, settings):
    """The first message failed at the handset; staff pressed Retry failed a minute later
    and the resend's answer was lost. Twilio's list for the new attempt's window still
    shows the first message (same text, same number, a minute earlier): it is this row's
    failed message, not the resend, so the member must be texted again, not be counted
    as reached by a message that never arrived."""
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    make_members(1)
    blast = run_to_end(blast_create(body="Hello", community=True))
    row = only_row(blast)
    first_sid = row.twilio_sid
    assert row.status == S.SENT and first_sid
    delivery_status_callback(
        StatusCallback(message_sid=first_sid, status="undelivered", error_code=30003)
    )
    assert blast_retry_failed(blast_id=blast.pk).retried == 1
    fake_twilio.script(Reply(status=500))  # the resend: never created, answer lost
    run_to_end(blast)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (S.UNKNOWN, 2)

    outcome = deliveries_reconcile()
    row.refresh_from_db()
    assert outcome["sent"] == 0 and row.status == S.PENDING, (outcome, row.error_message)
    run_to_end(blast)
    row.refresh_from_db()
    assert row.status == S.SENT and row.twilio_sid not in (None, first_sid)
    assert [m["to"] for m in fake_twilio.messages] == [phone(0), phone(0)]
