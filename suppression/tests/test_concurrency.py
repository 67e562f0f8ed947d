"""Failures of one number recorded at the same moment (status callbacks on several
workers, the engine and a callback at once) are counted as if one after the other."""

from __future__ import annotations

import pytest

from messaging.models import Blast, Delivery
from messaging.tests.conftest import run_threads
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact
from suppression.services import failure_record, unsubscribe

PHONE = "+12015550181"


def deliveries(code: int, n: int) -> list[Delivery]:
    rows = []
    for i in range(n):
        blast = Blast.objects.create(name=f"b{i}", body="hi", status=Blast.Status.SENT)
        rows.append(
            Delivery.objects.create(
                blast=blast, phone=PHONE, status="failed", error_code=code, twilio_sid=f"SM{i}"
            )
        )
    return rows


def record(delivery: Delivery) -> str:
    return failure_record(
        phone=delivery.phone,
        code=delivery.error_code,
        delivery_id=delivery.pk,
        blast_id=delivery.blast_id,
        message_sid=delivery.twilio_sid,
    )


@pytest.mark.django_db(transaction=True)
def test_three_transient_failures_at_once_suppress_exactly_once():
    rows = deliveries(30003, 3)
    results = run_threads(lambda i: record(rows[i]), 3)
    assert sorted(results) == ["counted", "counted", "suppressed"]
    assert SuppressedContact.objects.filter(phone=PHONE, lifted=False).count() == 1


@pytest.mark.django_db(transaction=True)
def test_one_failure_reported_several_times_at_once_is_recorded_once():
    (row,) = deliveries(21211, 1)
    results = run_threads(lambda i: record(row), 4)
    assert sorted(results) == ["none", "none", "none", "suppressed"]
    assert FailureEvent.objects.count() == 1
    assert SuppressedContact.objects.get().failure_count == 1


@pytest.mark.django_db(transaction=True)
def test_stop_and_21610_at_once_leave_one_active_unsubscribe():
    (row,) = deliveries(21610, 1)

    def either(i: int) -> object:
        if i == 0:
            return record(row)
        return unsubscribe(phone=PHONE, source="keyword", evidence="STOP SM9")

    run_threads(either, 2)
    assert UnsubscribedContact.objects.filter(phone=PHONE, lifted=False).count() == 1
