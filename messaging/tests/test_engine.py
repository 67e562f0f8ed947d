"""The send engine against a fake Twilio on 127.0.0.1, through the real twilio client."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services import (
    BlastError,
    blast_cancel,
    blast_create,
    blast_pause,
    blast_process,
    blast_resume,
    blasts_sweep,
    deliveries_expire_stale_claims,
    deliveries_reconcile,
    delivery_claim,
)
from messaging.services.scheduling import scheduled_dispatch
from messaging.tests.conftest import make_event, make_members, phone, run_to_end, statuses
from messaging.tests.fake_twilio import Reply
from suppression.models import SuppressedContact, UnsubscribedContact

S = Delivery.Status
B = Blast.Status


@pytest.mark.django_db
def test_thousand_recipients_each_get_exactly_one_rendered_message(fake_twilio):
    make_members(1000)
    blast = blast_create(body="Hi {first_name} {last_name}!", community=True)
    assert blast.recipient_count == 1000

    blast = run_to_end(blast)

    assert blast.status == B.SENT
    assert blast.finished_at is not None
    messages = fake_twilio.messages
    assert len(messages) == 1000
    per_to = Counter(m["to"] for m in messages)
    assert set(per_to.values()) == {1}
    bodies = {m["to"]: m["body"] for m in messages}
    assert bodies[phone(7)] == "Hi First7 Last7!"
    assert bodies[phone(999)] == "Hi First999 Last999!"
    sids = dict(Delivery.objects.filter(blast=blast).values_list("phone", "twilio_sid"))
    assert {m["to"]: m["sid"] for m in messages} == sids
    assert blast.counts()[S.SENT] == 1000


@pytest.mark.django_db
def test_several_requests_are_kept_in_flight(fake_twilio, settings):
    settings.SMS_MAX_IN_FLIGHT = 8
    fake_twilio.latency = 0.05
    make_members(60)
    run_to_end(blast_create(body="Hello", community=True))
    assert len(fake_twilio.messages) == 60
    assert fake_twilio.max_concurrent >= 4


@pytest.mark.django_db
def test_status_callback_names_the_delivery(fake_twilio, settings):
    settings.PUBLIC_BASE_URL = "https://sms.example.org"
    make_members(2)
    blast = run_to_end(blast_create(body="Hello", community=True))
    delivery = Delivery.objects.get(blast=blast, phone=phone(1))
    sent = {m["to"]: m for m in fake_twilio.messages}
    assert (
        sent[phone(1)]["status_callback"]
        == f"https://sms.example.org/webhooks/twilio/status/?d={delivery.pk}&a=1"
    )


@pytest.mark.django_db
def test_member_and_registrant_get_one_message_with_event_details(fake_twilio):
    make_members(3)  # phones 0..2
    event = make_event(n=2, start=1, name="Winter Fair")  # phones 1..2 registered too
    blast = blast_create(body="Hi {first_name}", community=True, event_ids=[event.pk])
    assert blast.recipient_count == 3
    run_to_end(blast)
    assert Counter(m["to"] for m in fake_twilio.messages) == {
        phone(0): 1,
        phone(1): 1,
        phone(2): 1,
    }
    # Registrants are taken first, so the event's own sign-up names are used.
    assert {m["to"]: m["body"] for m in fake_twilio.messages}[phone(1)] == "Hi Reg1"


@pytest.mark.django_db
def test_event_placeholders_need_an_event_only_audience():
    make_members(1)
    event = make_event(n=1)
    with pytest.raises(BlastError, match="Event placeholders"):
        blast_create(body="See you at {event_name}", community=True, event_ids=[event.pk])
    assert not Blast.objects.exists()
    blast = blast_create(body="See you at {event_name}, {event_location}", event_ids=[event.pk])
    assert Delivery.objects.get(blast=blast).body == "See you at Picnic, Riverside Park"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"body": "Hi {nickname}", "community": True}, "Unknown placeholder {nickname}"),
        ({"body": "Hi", "community": False}, "Choose an audience"),
        ({"body": "Hi", "event_ids": [999]}, "No event with id 999"),
        ({"body": "Hi", "community": True}, "Nobody to send to"),
    ],
)
def test_bad_blasts_are_refused_and_nothing_is_saved(kwargs, message):
    with pytest.raises(BlastError, match=message.replace("{", r"\{")):
        blast_create(**kwargs)
    assert not Blast.objects.exists()
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_opted_out_numbers_are_skipped_at_compose_with_the_reason(fake_twilio):
    make_members(4)
    UnsubscribedContact.objects.create(phone=phone(0), source="keyword")
    SuppressedContact.objects.create(phone=phone(1), error_code=21211)
    SuppressedContact.objects.create(phone=phone(2), error_code=21211, lifted=True)
    blast = blast_create(body="Hello", community=True)
    reasons = dict(Delivery.objects.filter(blast=blast).values_list("phone", "skip_reason"))
    assert reasons == {phone(0): "unsubscribed", phone(1): "suppressed", phone(2): "", phone(3): ""}
    run_to_end(blast)
    assert sorted(m["to"] for m in fake_twilio.messages) == [phone(2), phone(3)]


@pytest.mark.django_db
def test_inactive_members_get_nothing(fake_twilio):
    make_members(2)
    make_members(1, start=2, is_active=False)
    blast = run_to_end(blast_create(body="Hello", community=True))
    assert blast.recipient_count == 2
    assert fake_twilio.sent_to(phone(2)) == 0


@pytest.mark.django_db
def test_number_unsubscribed_after_compose_gets_nothing(fake_twilio):
    make_members(5)
    blast = blast_create(body="Hello", community=True)
    UnsubscribedContact.objects.create(phone=phone(2), source="keyword", evidence="SMin")
    blast = run_to_end(blast)
    assert fake_twilio.sent_to(phone(2)) == 0
    assert len(fake_twilio.messages) == 4
    row = Delivery.objects.get(blast=blast, phone=phone(2))
    assert (row.status, row.skip_reason) == (S.SKIPPED, "unsubscribed")
    assert blast.status == B.SENT


@pytest.mark.django_db
def test_429_then_201_is_sent_once(fake_twilio):
    make_members(1)
    fake_twilio.script(Reply(status=429))
    blast = blast_create(body="Hello", community=True)

    again = blast_process(blast_id=blast.pk, time_budget=30)
    row = Delivery.objects.get(blast=blast)
    assert row.status == S.PENDING and row.error_code == 20429
    assert again is not None and 0 <= again <= 60  # the task comes back after the backoff

    blast = run_to_end(blast)
    row.refresh_from_db()
    assert row.status == S.SENT and row.attempts == 2
    assert fake_twilio.create_attempts == 2
    assert fake_twilio.sent_to(phone(0)) == 1
    assert blast.status == B.SENT


@pytest.mark.django_db
def test_connection_refused_is_retried_not_unknown(fake_twilio, settings):
    make_members(1)
    blast = blast_create(body="Hello", community=True)
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    again = blast_process(blast_id=blast.pk, time_budget=30)
    row = Delivery.objects.get(blast=blast)
    assert row.status == S.PENDING
    assert "Could not connect" in row.error_message
    assert again is not None
    settings.TWILIO_API_BASE_URL = fake_twilio.base_url
    assert run_to_end(blast).status == B.SENT
    assert fake_twilio.sent_to(phone(0)) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "reply",
    [Reply(status=500), Reply(status=503), Reply(drop=True), Reply(delay=3.0)],
    ids=["500", "503", "dropped", "timeout"],
)
def test_unknown_outcome_is_never_resent_automatically(fake_twilio, settings, reply):
    settings.SMS_HTTP_TIMEOUT_SECONDS = 0.5
    make_members(1)
    fake_twilio.script(reply)
    blast = run_to_end(blast_create(body="Hello", community=True))
    row = Delivery.objects.get(blast=blast)
    assert row.status == S.UNKNOWN
    assert blast.status == B.SENDING  # not finished while an outcome is unknown

    # Nothing a worker or the sweeper does now sends it again before reconciliation.
    assert blast_process(blast_id=blast.pk) is None
    blasts_sweep()
    deliveries_reconcile()  # too early: SMS_RECONCILE_AFTER_MINUTES has not passed
    assert fake_twilio.create_attempts == 1
    row.refresh_from_db()
    assert row.status == S.UNKNOWN


@pytest.mark.django_db
def test_stale_sending_row_becomes_unknown(fake_twilio, settings):
    make_members(2)
    blast = blast_create(body="Hello", community=True)
    # A worker claimed the rows and died before recording anything.
    _, claimed = delivery_claim(blast_id=blast.pk, limit=10)
    assert len(claimed) == 2
    assert deliveries_expire_stale_claims() == 0  # still fresh
    Delivery.objects.filter(blast=blast).update(
        claimed_at=timezone.now() - timedelta(seconds=settings.SMS_CLAIM_STALE_SECONDS + 1)
    )
    assert deliveries_expire_stale_claims() == 2
    assert statuses(blast) == {S.UNKNOWN: 2}
    Blast.objects.filter(pk=blast.pk).update(status=B.SENDING)
    assert blast_process(blast_id=blast.pk) is None
    assert fake_twilio.create_attempts == 0


def age_unknown_rows(blast: Blast, minutes: int = 11) -> None:
    Delivery.objects.filter(blast=blast, status=S.UNKNOWN).update(
        claimed_at=timezone.now() - timedelta(minutes=minutes)
    )


@pytest.mark.django_db
def test_unknown_row_found_in_twilios_list_becomes_sent_with_its_sid(fake_twilio, settings):
    make_members(1)
    fake_twilio.add_message(to=phone(0), from_="+15005550006", body="Another text")
    fake_twilio.script(Reply(status=500, record=True))  # Twilio took it, then failed to say so
    blast = run_to_end(blast_create(body="Hello", community=True))
    assert Delivery.objects.get(blast=blast).status == S.UNKNOWN
    accepted = fake_twilio.messages[-1]["sid"]

    # Reconciliation looks at once; the attempt's time window is the one it ran in.
    settings.SMS_RECONCILE_AFTER_MINUTES = 0
    result = deliveries_reconcile()

    row = Delivery.objects.get(blast=blast)
    assert result["sent"] == 1
    assert (row.status, row.twilio_sid) == (S.SENT, accepted)
    assert fake_twilio.create_attempts == 1
    blast.refresh_from_db()
    assert blast.status == B.SENT


@pytest.mark.django_db
def test_unknown_row_missing_from_twilios_list_is_sent_once_more_and_only_once(fake_twilio):
    make_members(3)
    fake_twilio.script(Reply(status=500, only_to=phone(1)))  # not recorded: never created
    blast = run_to_end(blast_create(body="Hello {first_name}", community=True))
    assert statuses(blast) == {S.SENT: 2, S.UNKNOWN: 1}

    age_unknown_rows(blast)
    assert deliveries_reconcile()["pending"] == 1
    blast = run_to_end(blast)
    assert blast.status == B.SENT
    assert fake_twilio.sent_to(phone(1)) == 1

    # Running everything again changes nothing.
    deliveries_reconcile()
    blasts_sweep()
    run_to_end(blast)
    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(3)}


@pytest.mark.django_db
@pytest.mark.parametrize("code", [21211, 21614, 21610])
def test_recipient_errors_fail_the_row_with_the_code(fake_twilio, code):
    make_members(30)
    fake_twilio.fail_number(phone(4), code)
    blast = run_to_end(blast_create(body="Hello", community=True))
    row = Delivery.objects.get(blast=blast, phone=phone(4))
    assert row.status == S.FAILED
    assert row.error_code == code
    assert row.error_message
    assert statuses(blast) == {S.SENT: 29, S.FAILED: 1}
    assert blast.status == B.PARTIALLY_FAILED


@pytest.mark.django_db
def test_every_recipient_failing_ends_the_blast_failed(fake_twilio):
    make_members(2)
    fake_twilio.fail_number(phone(0), 21211)
    fake_twilio.fail_number(phone(1), 21614)
    blast = blast_create(body="Hello", community=True)
    # Both fail at once: nobody is left for the canary to protect, so no pause.
    assert run_to_end(blast).status == B.FAILED


@pytest.mark.django_db
def test_account_error_pauses_the_blast_and_resume_sends_the_rest(fake_twilio, settings):
    make_members(25)
    blast = blast_create(body="Hello", community=True)
    settings.TWILIO_AUTH_TOKEN = "wrong-token"  # Twilio answers 401 / 20003 for everything

    blast = run_to_end(blast)

    assert blast.status == B.PAUSED
    assert blast.pause_cause == Blast.PauseCause.SENDER
    assert "20003" in blast.status_reason
    assert fake_twilio.messages == []
    # The first answers stopped the blast: it did not burn through the list.
    assert fake_twilio.create_attempts <= settings.SMS_MAX_IN_FLIGHT + 1
    assert statuses(blast) == {S.PENDING: 25}

    settings.TWILIO_AUTH_TOKEN = fake_twilio.auth_token
    assert blast_resume(blast_id=blast.pk)
    blast = run_to_end(blast)
    assert blast.status == B.SENT
    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(25)}


@pytest.mark.django_db
def test_canary_pauses_a_blast_whose_first_messages_fail(fake_twilio, settings):
    settings.SMS_MAX_IN_FLIGHT = 1  # one at a time, so the canary sees each answer in order
    settings.SMS_CHUNK_SIZE = 5
    make_members(100)
    for i in range(0, 100, 2):  # half the list is bad numbers
        fake_twilio.fail_number(phone(i), 21211)
    blast = run_to_end(blast_create(body="Hello", community=True))

    assert blast.status == B.PAUSED
    assert blast.pause_cause == Blast.PauseCause.CANARY
    assert "of the first" in blast.status_reason
    counts = statuses(blast)
    assert counts[S.FAILED] > 4  # more than 20% of the first 20
    assert counts[S.PENDING] >= 60  # most of the list was not attempted

    # Staff decide to go on: the canary does not stop it again.
    assert blast_resume(blast_id=blast.pk)
    blast = run_to_end(blast)
    assert blast.status == B.PARTIALLY_FAILED
    assert fake_twilio.create_attempts == 100
    assert statuses(blast) == {S.SENT: 50, S.FAILED: 50}


@pytest.mark.django_db
def test_canary_passes_when_failures_stay_under_the_rate(fake_twilio):
    make_members(40)
    fake_twilio.fail_number(phone(3), 21211)
    blast = run_to_end(blast_create(body="Hello", community=True))
    assert blast.status == B.PARTIALLY_FAILED
    assert blast.canary_passed


@pytest.mark.django_db
def test_pause_before_sending_sends_nothing_and_resume_sends_once(fake_twilio):
    make_members(10)
    blast = blast_create(body="Hello", community=True)
    assert blast_pause(blast_id=blast.pk)
    assert blast_process(blast_id=blast.pk) is None
    assert fake_twilio.create_attempts == 0
    assert blast_resume(blast_id=blast.pk)
    assert not blast_resume(blast_id=blast.pk)  # only a paused blast resumes
    assert run_to_end(blast).status == B.SENT
    assert Counter(m["to"] for m in fake_twilio.messages) == {phone(i): 1 for i in range(10)}


@pytest.mark.django_db
def test_cancel_marks_what_is_left_cancelled(fake_twilio):
    make_members(10)
    blast = blast_create(body="Hello", community=True)
    assert blast_cancel(blast_id=blast.pk) == 10
    assert blast_cancel(blast_id=blast.pk) is None  # already over
    assert blast_process(blast_id=blast.pk) is None
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED
    assert statuses(blast) == {S.CANCELLED: 10}
    assert fake_twilio.create_attempts == 0
    assert not blast_resume(blast_id=blast.pk)


@pytest.mark.django_db
def test_counts_are_derived_from_rows(fake_twilio):
    make_members(6)
    UnsubscribedContact.objects.create(phone=phone(5))
    fake_twilio.fail_number(phone(0), 21211)
    blast = blast_create(body="Hello", community=True)
    Blast.objects.filter(pk=blast.pk).update(canary_passed=True)
    blast = run_to_end(blast)
    counts = blast.counts()
    assert (counts[S.SENT], counts[S.FAILED], counts[S.SKIPPED], counts["total"]) == (4, 1, 1, 6)
    assert counts[S.PENDING] == counts[S.UNKNOWN] == counts[S.CANCELLED] == 0


@pytest.mark.django_db
def test_due_scheduled_blast_is_dispatched_once(fake_twilio, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    make_members(3)
    blast = blast_create(
        body="Hello", community=True, scheduled_for=timezone.now() + timedelta(hours=1)
    )
    assert blast.status == B.SCHEDULED
    assert scheduled_dispatch().dispatched == []
    Blast.objects.filter(pk=blast.pk).update(scheduled_for=timezone.now() - timedelta(seconds=1))
    assert scheduled_dispatch().dispatched == [blast.pk]
    assert scheduled_dispatch().dispatched == []
    blast = run_to_end(blast)
    assert blast.status == B.SENT
    assert len(fake_twilio.messages) == 3


@pytest.mark.django_db
def test_console_backend_records_in_the_outbox_and_answers_test_numbers():
    from messaging.models import OutboxMessage

    make_members(2)
    from members.models import Member

    Member.objects.create(first_name="Bad", phone="+15005550001")
    Member.objects.create(first_name="Stop", phone="+15005550004")
    blast = blast_create(body="Hi {first_name}", community=True)
    Blast.objects.filter(pk=blast.pk).update(canary_passed=True)
    blast = run_to_end(blast)
    assert sorted(OutboxMessage.objects.values_list("to", "body")) == [
        (phone(0), "Hi First0"),
        (phone(1), "Hi First1"),
    ]
    failed = dict(
        Delivery.objects.filter(blast=blast, status=S.FAILED).values_list("phone", "error_code")
    )
    assert failed == {"+15005550001": 21211, "+15005550004": 21610}
    assert blast.status == B.PARTIALLY_FAILED
