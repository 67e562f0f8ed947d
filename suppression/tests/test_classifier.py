"""failure_record: every category of the one table leads to the right action, with
evidence, idempotently; and the send engine skips what it put on the lists."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services import blast_create, blast_process
from messaging.tests.conftest import make_members, phone
from suppression.backfill import backfill
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact
from suppression.services import blocked_phones, failure_record, resubscribe, suppression_lift

pytestmark = pytest.mark.django_db

BAD_NUMBER = [21211, 21214, 21217, 21614, 21635, 30005, 30006]
TRANSIENT = [30003, 30004, 30008]
NOT_THE_NUMBER = [20003, 21408, 21606, 21612, 30007, 20429, 30032, 30034]
UNKNOWN = [None, 12345, 39999]
PHONE = "+12015550101"


def failed_delivery(code, *, phone=PHONE, sid=None, blast=None) -> Delivery:
    blast = blast or Blast.objects.create(name="b", body="hi", status=Blast.Status.SENT)
    return Delivery.objects.create(
        blast=blast,
        phone=phone,
        status=Delivery.Status.FAILED,
        error_code=code,
        twilio_sid=sid,
    )


def record(delivery: Delivery, at=None) -> str:
    return failure_record(
        phone=delivery.phone,
        code=delivery.error_code,
        delivery_id=delivery.pk,
        blast_id=delivery.blast_id,
        message_sid=delivery.twilio_sid or "",
        at=at,
    )


@pytest.mark.parametrize("code", BAD_NUMBER)
def test_bad_numbers_are_suppressed_at_once_with_evidence(code):
    delivery = failed_delivery(code, sid=f"SM{code}")
    at = timezone.now() - timedelta(hours=1)

    assert record(delivery, at=at) == "suppressed"

    row = SuppressedContact.objects.get()
    assert (row.phone, row.error_code, row.failure_count) == (PHONE, code, 1)
    assert row.error_meaning and row.error_meaning in row.reason
    assert (row.delivery_id, row.blast_id, row.message_sid) == (
        delivery.pk,
        delivery.blast_id,
        f"SM{code}",
    )
    assert row.created_at == at == row.last_failed_at
    assert blocked_phones(phones=[PHONE]) == {PHONE: "suppressed"}
    assert not UnsubscribedContact.objects.exists()


def test_21610_unsubscribes_with_the_carrier_as_source():
    delivery = failed_delivery(21610, sid="SM21610")

    assert record(delivery) == "unsubscribed"

    row = UnsubscribedContact.objects.get()
    assert row.source == UnsubscribedContact.Source.CARRIER
    assert (row.error_code, row.delivery_id, row.blast_id, row.message_sid) == (
        21610,
        delivery.pk,
        delivery.blast_id,
        "SM21610",
    )
    assert "21610" in row.evidence and "SM21610" in row.evidence
    assert blocked_phones(phones=[PHONE]) == {PHONE: "unsubscribed"}
    assert not SuppressedContact.objects.exists()


@pytest.mark.parametrize("code", TRANSIENT)
def test_one_transient_failure_is_only_counted(code):
    assert record(failed_delivery(code)) == "counted"
    assert blocked_phones(phones=[PHONE]) == {}
    event = FailureEvent.objects.get()
    assert (event.category, event.action) == ("transient", "counted")


@pytest.mark.parametrize("code", NOT_THE_NUMBER + UNKNOWN)
def test_sender_content_and_unknown_codes_never_touch_the_number(code):
    for _ in range(5):
        assert record(failed_delivery(code)) == "none"
    assert blocked_phones(phones=[PHONE]) == {}
    assert not SuppressedContact.objects.exists()
    assert FailureEvent.objects.filter(action="none").count() == 5
    expected = "unknown" if code in UNKNOWN else "none"
    assert set(FailureEvent.objects.values_list("category", flat=True)) == {expected}


def test_three_transient_failures_across_blasts_suppress_two_do_not():
    now = timezone.now()
    first = record(failed_delivery(30003), at=now - timedelta(days=30))
    second = record(failed_delivery(30004), at=now - timedelta(days=10))
    assert (first, second) == ("counted", "counted")
    assert blocked_phones(phones=[PHONE]) == {}

    third = failed_delivery(30008, sid="SM3")
    assert record(third, at=now) == "suppressed"

    row = SuppressedContact.objects.get()
    assert row.failure_count == 3
    assert (row.error_code, row.delivery_id, row.message_sid) == (30008, third.pk, "SM3")
    assert row.first_failed_at == now - timedelta(days=30)
    assert "3 transient failures within 90 days" in row.reason
    assert Delivery.objects.values("blast_id").distinct().count() == 3


def test_transient_failures_reported_out_of_order_still_suppress_on_the_third():
    # Status callbacks arrive late and in any order: the failure of 10 days ago can be
    # recorded after today's. Three within 90 days is three, whatever the order.
    now = timezone.now()
    assert record(failed_delivery(30003), at=now) == "counted"
    assert record(failed_delivery(30003), at=now - timedelta(days=20)) == "counted"
    assert record(failed_delivery(30003), at=now - timedelta(days=10)) == "suppressed"
    row = SuppressedContact.objects.get()
    assert row.failure_count == 3
    assert row.first_failed_at == now - timedelta(days=20)


def test_out_of_order_failures_further_apart_than_90_days_do_not_add_up():
    now = timezone.now()
    assert record(failed_delivery(30003), at=now) == "counted"
    assert record(failed_delivery(30003), at=now - timedelta(days=100)) == "counted"
    # 95 days ago is within 90 days of 100 days ago, but not with today as well.
    assert record(failed_delivery(30003), at=now - timedelta(days=95)) == "counted"
    assert not SuppressedContact.objects.exists()


def test_transient_threshold_follows_the_setting(settings):
    settings.SUPPRESS_AFTER_TRANSIENT = 2
    assert record(failed_delivery(30003)) == "counted"
    assert record(failed_delivery(30003)) == "suppressed"


def test_transient_failures_older_than_90_days_do_not_count():
    now = timezone.now()
    record(failed_delivery(30003), at=now - timedelta(days=120))
    record(failed_delivery(30003), at=now - timedelta(days=95))
    record(failed_delivery(30003), at=now - timedelta(days=5))
    assert record(failed_delivery(30003), at=now) == "counted"
    assert not SuppressedContact.objects.exists()


def test_the_same_delivery_recorded_twice_changes_nothing():
    delivery = failed_delivery(30003, sid="SM1")
    assert record(delivery) == "counted"
    assert record(delivery) == "none"
    # The same message reported without the delivery (a status callback) is the same.
    assert failure_record(phone=PHONE, code=30003, message_sid="SM1") == "none"
    assert FailureEvent.objects.count() == 1

    bad = failed_delivery(21211)
    assert record(bad) == "suppressed"
    before = list(SuppressedContact.objects.values())
    assert record(bad) == "none"
    assert list(SuppressedContact.objects.values()) == before


def test_a_lifted_number_that_fails_permanently_again_is_suppressed_again(admin_user):
    record(failed_delivery(21211))
    suppression_lift(
        suppressions=SuppressedContact.objects.all(), user=admin_user, reason="new SIM"
    )
    assert blocked_phones(phones=[PHONE]) == {}

    assert record(failed_delivery(30005)) == "suppressed"

    rows = list(SuppressedContact.objects.order_by("id"))
    assert [(r.lifted, r.error_code) for r in rows] == [(True, 21211), (False, 30005)]
    assert rows[0].lift_reason == "new SIM"  # history kept
    assert blocked_phones(phones=[PHONE]) == {PHONE: "suppressed"}


def test_transient_count_starts_again_after_a_lift(admin_user, settings):
    now = timezone.now()
    for days in (30, 20, 10):
        record(failed_delivery(30003), at=now - timedelta(days=days))
    suppression_lift(suppressions=SuppressedContact.objects.all(), user=admin_user, reason="ok")
    assert record(failed_delivery(30003)) == "counted"
    assert record(failed_delivery(30003)) == "counted"
    assert record(failed_delivery(30003)) == "suppressed"


def test_a_failure_older_than_a_lift_does_not_undo_it(admin_user):
    now = timezone.now()
    record(failed_delivery(21211), at=now - timedelta(days=2))
    suppression_lift(suppressions=SuppressedContact.objects.all(), user=admin_user, reason="ok")
    # Reported late (or found by the backfill): it failed before the Admin lifted it.
    assert record(failed_delivery(21211), at=now - timedelta(days=1)) == "none"
    assert blocked_phones(phones=[PHONE]) == {}


def test_a_21610_older_than_a_start_does_not_unsubscribe_again():
    now = timezone.now()
    record(failed_delivery(21610), at=now - timedelta(days=2))
    resubscribe(phone=PHONE, source="keyword", evidence="START SM9")
    assert record(failed_delivery(21610), at=now - timedelta(days=1)) == "none"
    assert blocked_phones(phones=[PHONE]) == {}
    # A new one after the START counts.
    assert record(failed_delivery(21610)) == "unsubscribed"
    assert UnsubscribedContact.objects.count() == 2


# --- with the send engine and the fake Twilio --------------------------------------------


def run_to_end(blast: Blast) -> Blast:
    for _ in range(50):
        again = blast_process(blast_id=blast.pk, time_budget=60)
        if again is None:
            break
        time.sleep(again)
    blast.refresh_from_db()
    return blast


def record_failures_of(blast: Blast) -> None:
    """What the engine's send-time call does (or the backfill, for history)."""
    backfill()


def test_21610_unsubscribes_and_the_next_blast_skips_the_number(fake_twilio):
    make_members(10)
    fake_twilio.fail_number(phone(3), 21610)
    first = run_to_end(blast_create(body="Hello", community=True))
    assert Delivery.objects.get(blast=first, phone=phone(3)).status == Delivery.Status.FAILED
    record_failures_of(first)

    unsub = UnsubscribedContact.objects.get(phone=phone(3))
    assert unsub.source == UnsubscribedContact.Source.CARRIER
    assert unsub.blast_id == first.pk

    second = run_to_end(blast_create(body="Hello again", community=True))
    row = Delivery.objects.get(blast=second, phone=phone(3))
    assert (row.status, row.skip_reason) == (Delivery.Status.SKIPPED, "unsubscribed")
    assert fake_twilio.create_attempts == 10 + 9


def test_transient_failures_across_blasts_suppress_on_the_third(fake_twilio):
    make_members(5)
    fake_twilio.fail_number(phone(1), 30003)
    for n in range(3):
        blast = run_to_end(blast_create(body=f"Hello {n}", community=True))
        record_failures_of(blast)
        expected = {} if n < 2 else {phone(1): "suppressed"}
        assert blocked_phones(phones=[phone(1)]) == expected, n

    fourth = run_to_end(blast_create(body="Hello 4", community=True))
    row = Delivery.objects.get(blast=fourth, phone=phone(1))
    assert (row.status, row.skip_reason) == (Delivery.Status.SKIPPED, "suppressed")
