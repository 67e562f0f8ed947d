"""The service API the webhooks and the engine call: unsubscribe, resubscribe,
failure_record, and the active-only checks the engine sends through."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Delivery
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact
from suppression.services import (
    LiftError,
    blocked_phones,
    failure_record,
    phone_blocked_q,
    resubscribe,
    unsubscribe,
)

pytestmark = pytest.mark.django_db

PHONE = "+12015550101"


def test_unsubscribe_is_true_once_and_keeps_the_first_evidence():
    assert unsubscribe(phone="(201) 555-0101", source="keyword", evidence="STOP SM1") is True
    assert unsubscribe(phone=PHONE, source="keyword", evidence="STOP SM2") is False
    row = UnsubscribedContact.objects.get()
    assert (row.phone, row.source, row.evidence) == (PHONE, "keyword", "STOP SM1")
    assert blocked_phones(phones=[PHONE]) == {PHONE: "unsubscribed"}


def test_unsubscribe_rejects_a_bad_source_or_number():
    with pytest.raises(ValueError, match="source"):
        unsubscribe(phone=PHONE, source="telepathy")
    with pytest.raises(ValueError):
        unsubscribe(phone="not a phone", source="manual")
    assert not UnsubscribedContact.objects.exists()


def test_resubscribe_lifts_and_keeps_history(admin_user):
    unsubscribe(phone=PHONE, source="keyword", evidence="STOP SM1")
    assert resubscribe(phone=PHONE, source="keyword", evidence="START SM2") is True
    assert resubscribe(phone=PHONE, source="keyword", evidence="START SM3") is False
    assert blocked_phones(phones=[PHONE]) == {}
    row = UnsubscribedContact.objects.get()
    assert row.lifted and row.lift_source == "keyword" and row.lift_evidence == "START SM2"
    # Opting out again makes a new row; the old one stays as history.
    assert unsubscribe(phone=PHONE, source="keyword", evidence="STOP SM4") is True
    assert UnsubscribedContact.objects.filter(phone=PHONE).count() == 2
    assert blocked_phones(phones=[PHONE]) == {PHONE: "unsubscribed"}


def test_staff_resubscribe_needs_a_reason(admin_user):
    unsubscribe(phone=PHONE, source="manual", user=admin_user, reason="asked")
    with pytest.raises(LiftError):
        resubscribe(phone=PHONE, source="manual", user=admin_user, reason="  ")
    assert blocked_phones(phones=[PHONE]) == {PHONE: "unsubscribed"}
    assert resubscribe(phone=PHONE, source="manual", user=admin_user, reason="asked back")


def test_phone_blocked_q_sees_active_rows_only(admin_user):
    from messaging.models import Blast

    blast = Blast.objects.create(name="b", body="hi")
    Delivery.objects.create(blast=blast, phone=PHONE)
    blocked = Delivery.objects.filter(phone_blocked_q())
    assert not blocked.exists()
    unsubscribe(phone=PHONE, source="keyword")
    assert blocked.exists()
    resubscribe(phone=PHONE, source="join")
    assert not blocked.exists()
    failure_record(phone=PHONE, code=21211)
    assert blocked.exists()


def test_failure_record_is_idempotent_per_delivery():
    assert failure_record(phone=PHONE, code=30003, delivery_id=None, message_sid="SM1") == (
        "counted"
    )
    assert failure_record(phone=PHONE, code=30003, message_sid="SM1") == "none"
    assert FailureEvent.objects.count() == 1


def test_three_transient_failures_within_90_days_suppress():
    now = timezone.now()
    for i, days in enumerate((80, 40)):
        at = now - timedelta(days=days)
        assert failure_record(phone=PHONE, code=30003, message_sid=f"SM{i}", at=at) == "counted"
    assert failure_record(phone=PHONE, code=30008, message_sid="SM9", at=now) == "suppressed"
    row = SuppressedContact.objects.get()
    assert row.failure_count == 3 and row.error_code == 30008


def test_transient_failures_outside_the_window_do_not_count():
    now = timezone.now()
    failure_record(phone=PHONE, code=30003, message_sid="SM1", at=now - timedelta(days=100))
    failure_record(phone=PHONE, code=30003, message_sid="SM2", at=now - timedelta(days=10))
    assert failure_record(phone=PHONE, code=30003, message_sid="SM3", at=now) == "counted"
    assert not SuppressedContact.objects.exists()
