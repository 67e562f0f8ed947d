"""Retry failed: only rows whose failure may pass now go out again, once each, and the
blast reopens without ever being left finished with rows still to send."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from messaging.models import Blast, Delivery
from messaging.services import blast_create, blast_finish_if_done, blast_resume
from messaging.services.creating import BlastError
from messaging.services.retrying import blast_retry_failed
from messaging.tests.conftest import in_thread, make_members, phone, run_threads, run_to_end
from messaging.tests.fake_twilio import Reply
from suppression.models import SuppressedContact, UnsubscribedContact
from suppression.services import unsubscribe

S = Delivery.Status
B = Blast.Status


@pytest.fixture(autouse=True)
def _no_automatic_pauses(settings):
    # These tests fail many of a few messages on purpose; the engine's own pauses (the
    # canary, a run of one error) have tests of their own.
    settings.SMS_AUTOPAUSE_FAILURE_RATE = 1.0
    settings.SMS_PAUSE_AFTER_SAME_ERROR = 0


def retry_url(blast: Blast) -> str:
    return reverse("messaging:blast_retry_failed", args=[blast.pk])


def row(blast: Blast, i: int) -> Delivery:
    return Delivery.objects.get(blast=blast, phone=phone(i))


def failed_by_twilio(fake_twilio, n: int = 6) -> Blast:
    """A blast sent through the fake Twilio: phone(1) and phone(3) refused once with
    errors that may pass (30008, 20429 exhausted below), phone(2) always invalid."""
    make_members(n)
    fake_twilio.script(
        Reply(status=400, code=30008, only_to=phone(1)),
        Reply(status=400, code=30017, only_to=phone(3)),
    )
    fake_twilio.fail_number(phone(2), 21211)
    return run_to_end(blast_create(body="Hi {first_name}", community=True))


@pytest.mark.django_db
def test_retry_sends_again_only_the_rows_whose_failure_may_pass(fake_twilio, manager_client):
    blast = failed_by_twilio(fake_twilio)
    assert blast.status == B.PARTIALLY_FAILED
    assert row(blast, 1).error_code == 30008 and row(blast, 3).error_code == 30017

    response = manager_client.post(retry_url(blast), follow=True)

    said = [str(m) for m in response.context["messages"]]
    assert said == [
        "2 failed messages will be sent again; 1 cannot be retried: "
        "1 Invalid 'To' Phone Number (21211)."
    ]
    blast.refresh_from_db()
    assert blast.status == B.QUEUED
    assert blast.finished_at is None
    assert row(blast, 1).status == S.PENDING and row(blast, 1).error_code is None
    assert row(blast, 2).status == S.FAILED and row(blast, 2).error_code == 21211

    blast = run_to_end(blast)

    assert row(blast, 1).status == S.SENT and row(blast, 3).status == S.SENT
    assert fake_twilio.sent_to(phone(1)) == 1
    assert fake_twilio.sent_to(phone(0)) == 1  # sent the first time, never again
    assert blast.status == B.PARTIALLY_FAILED  # 21211 is still failed


@pytest.mark.django_db
def test_after_a_retry_every_row_ends_sent(fake_twilio):
    make_members(5)
    fake_twilio.script(
        Reply(status=400, code=30003, only_to=phone(0)),
        Reply(status=400, code=30450, only_to=phone(4)),
    )
    blast = run_to_end(blast_create(body="Hi", community=True))
    assert blast.status == B.PARTIALLY_FAILED

    result = blast_retry_failed(blast_id=blast.pk)
    assert result.retried == 2 and result.not_retried == {}
    assert result.summary == "2 failed messages will be sent again."

    blast = run_to_end(blast)
    assert blast.status == B.SENT
    assert set(Delivery.objects.filter(blast=blast).values_list("status", flat=True)) == {S.SENT}
    assert len(fake_twilio.messages) == 5


@pytest.mark.django_db
def test_numbers_unsubscribed_or_suppressed_since_are_not_retried(fake_twilio):
    make_members(4)
    fake_twilio.script(*(Reply(status=400, code=30008, only_to=phone(i)) for i in range(3)))
    blast = run_to_end(blast_create(body="Hi", community=True))
    unsubscribe(phone=phone(0), source=UnsubscribedContact.Source.KEYWORD, evidence="STOP")
    SuppressedContact.objects.create(phone=phone(1), reason="Bad number")

    result = blast_retry_failed(blast_id=blast.pk)

    assert result.retried == 1
    assert result.not_retried == {
        "the number has unsubscribed": 1,
        "the number is suppressed": 1,
    }
    assert row(blast, 0).status == S.FAILED
    assert row(blast, 1).status == S.FAILED
    assert row(blast, 2).status == S.PENDING
    run_to_end(blast)
    assert fake_twilio.sent_to(phone(0)) == 0
    assert fake_twilio.sent_to(phone(2)) == 1


@pytest.mark.django_db
def test_a_failure_after_three_sender_refusals_is_retried_and_may_pause_again(fake_twilio):
    make_members(3)
    blast = blast_create(body="Hi", community=True)
    Delivery.objects.filter(blast=blast, phone=phone(0)).update(
        status=S.FAILED, error_code=20003, sender_refusals=3
    )
    Delivery.objects.filter(blast=blast).exclude(phone=phone(0)).update(status=S.SENT)
    Blast.objects.filter(pk=blast.pk).update(status=B.PARTIALLY_FAILED)

    assert blast_retry_failed(blast_id=blast.pk).retried == 1
    assert row(blast, 0).sender_refusals == 0
    blast = run_to_end(blast)
    assert blast.status == B.SENT


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "why"),
    [
        (B.CANCELLED, "cancelled"),
        (B.REJECTED, "rejected"),
        (B.AWAITING_APPROVAL, "waiting for approval"),
        (B.SCHEDULED, "scheduled"),
        (B.PREPARING, "still being written"),
    ],
)
def test_retry_is_refused_where_nothing_more_is_sent(status, why, manager_client):
    make_members(3)
    blast = blast_create(body="Hi", community=True)
    Delivery.objects.filter(blast=blast).update(status=S.FAILED, error_code=30008)
    Blast.objects.filter(pk=blast.pk).update(status=status)

    with pytest.raises(BlastError, match=why):
        blast_retry_failed(blast_id=blast.pk)
    response = manager_client.post(retry_url(blast), follow=True)
    assert any(why in str(m) for m in response.context["messages"])

    blast.refresh_from_db()
    assert blast.status == status
    assert not Delivery.objects.filter(blast=blast, status=S.PENDING).exists()


@pytest.mark.django_db
def test_a_paused_blast_stays_paused_and_its_retried_rows_wait_for_resume(fake_twilio):
    make_members(4)
    blast = blast_create(body="Hi", community=True)
    Delivery.objects.filter(blast=blast, phone=phone(0)).update(status=S.FAILED, error_code=30008)
    Delivery.objects.filter(blast=blast, phone=phone(1)).update(status=S.SENT)
    Blast.objects.filter(pk=blast.pk).update(status=B.PAUSED, pause_cause="staff")

    result = blast_retry_failed(blast_id=blast.pk)

    assert result.retried == 1
    assert result.summary == "1 failed message will be sent again when the blast is resumed."
    blast.refresh_from_db()
    assert blast.status == B.PAUSED
    assert row(blast, 0).status == S.PENDING
    run_to_end(blast)
    assert fake_twilio.messages == []


@pytest.mark.django_db
def test_a_paused_blast_with_nothing_left_is_retried_and_does_not_finish_meanwhile(fake_twilio):
    make_members(2)
    blast = blast_create(body="Hi", community=True)
    Delivery.objects.filter(blast=blast, phone=phone(0)).update(status=S.FAILED, error_code=30008)
    Delivery.objects.filter(blast=blast, phone=phone(1)).update(status=S.SENT)
    Blast.objects.filter(pk=blast.pk).update(status=B.PAUSED, pause_cause="staff")

    assert blast_retry_failed(blast_id=blast.pk).retried == 1
    # The engine's finish now sees a row waiting: the paused blast stays paused.
    assert not blast_finish_if_done(blast_id=blast.pk)
    blast.refresh_from_db()
    assert blast.status == B.PAUSED
    assert blast_resume(blast_id=blast.pk)
    assert run_to_end(blast).status == B.SENT
    assert fake_twilio.sent_to(phone(0)) == 1


@pytest.mark.django_db
def test_nothing_to_retry_says_so(manager_client):
    make_members(2)
    blast = blast_create(body="Hi", community=True)
    Delivery.objects.filter(blast=blast).update(status=S.SENT)
    Blast.objects.filter(pk=blast.pk).update(status=B.SENT)
    response = manager_client.post(retry_url(blast), follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "There are no failed messages to retry."
    ]
    blast.refresh_from_db()
    assert blast.status == B.SENT


@pytest.mark.django_db
def test_a_get_does_not_retry(manager_client):
    make_members(1)
    blast = blast_create(body="Hi", community=True)
    Delivery.objects.filter(blast=blast).update(status=S.FAILED, error_code=30008)
    Blast.objects.filter(pk=blast.pk).update(status=B.FAILED)
    assert manager_client.get(retry_url(blast)).status_code == 405
    assert row(blast, 0).status == S.FAILED


# --- Concurrency: real threads, each with its own connection ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_retries_at_once_retry_each_row_once(fake_twilio):
    make_members(40)
    fake_twilio.script(*(Reply(status=400, code=30008, only_to=phone(i)) for i in range(0, 40, 2)))
    blast = run_to_end(blast_create(body="Hi", community=True))
    assert Delivery.objects.filter(blast=blast, status=S.FAILED).count() == 20

    results = run_threads(lambda _: blast_retry_failed(blast_id=blast.pk), 2)

    assert sorted(r.retried for r in results) == [0, 20]  # type: ignore[union-attr]
    blast = run_to_end(blast)
    assert blast.status == B.SENT
    assert all(fake_twilio.sent_to(phone(i)) == 1 for i in range(40))


@pytest.mark.django_db(transaction=True)
def test_a_retry_racing_the_finish_never_leaves_pending_rows_in_a_finished_blast(
    fake_twilio, monkeypatch
):
    """The engine counts the rows, finds nothing left, and finishes the blast with an
    UPDATE on the status it read. A retry committed between the count and that UPDATE
    must not end in a finished blast holding pending rows."""
    make_members(3)
    blast = blast_create(body="Hi", community=True)
    Delivery.objects.filter(blast=blast, phone=phone(0)).update(status=S.FAILED, error_code=30008)
    Delivery.objects.filter(blast=blast).exclude(phone=phone(0)).update(status=S.SENT)
    Blast.objects.filter(pk=blast.pk).update(status=B.SENDING)

    counts = Blast.counts
    raced: list[int] = []
    threads = []

    def counts_then_retry(self: Blast) -> dict[str, int]:
        seen = counts(self)
        if not threads:
            # The retry starts while the finish holds what it counted; it must wait for
            # the finish (same lock) and then reopen the blast, or be counted by it.
            threads.append(
                in_thread(lambda: raced.append(blast_retry_failed(blast_id=self.pk).retried))
            )
            time.sleep(0.5)
        return seen

    monkeypatch.setattr(Blast, "counts", counts_then_retry)
    blast_finish_if_done(blast_id=blast.pk)
    monkeypatch.setattr(Blast, "counts", counts)
    threads[0].join(timeout=60)

    assert raced == [1]
    blast.refresh_from_db()
    assert row(blast, 0).status == S.PENDING
    assert blast.status not in Blast.FINAL_STATUSES
    blast = run_to_end(blast)
    assert blast.status == B.SENT
    assert fake_twilio.sent_to(phone(0)) == 1
