"""Staff decisions on rows whose outcome stays unknown: send again, or mark as sent."""

import pytest

from messaging.models import Blast, Delivery
from messaging.services import blast_create, delivery_mark_sent, delivery_send_again
from messaging.tests.conftest import make_members

pytestmark = pytest.mark.django_db

S = Delivery.Status
B = Blast.Status
AMBIGUOUS = Delivery.Attention.AMBIGUOUS
OVERDUE = Delivery.Attention.OVERDUE


def blast_with_rows(n: int, *, status: str = B.SENDING, start: int = 0) -> Blast:
    """A blast made the usual way, then set (setup only) to the given status."""
    make_members(n, start=start)
    blast = blast_create(body="Hello {first_name}", community=True)
    Blast.objects.filter(pk=blast.pk).update(status=status, enqueued_at=None)
    return blast


def rows_of(blast: Blast) -> list[int]:
    return list(Delivery.objects.filter(blast=blast).order_by("pk").values_list("pk", flat=True))


def set_rows(ids: list[int], **fields) -> None:
    Delivery.objects.filter(pk__in=ids).update(**fields)


def needing_decision(ids: list[int], attention: str = AMBIGUOUS) -> None:
    set_rows(
        ids,
        status=S.UNKNOWN,
        attention=attention,
        error_message="Twilio's records show two messages to this number.",
    )


def row(pk: int) -> Delivery:
    return Delivery.objects.get(pk=pk)


def test_send_again_puts_rows_back_to_pending_and_hands_the_blast_to_a_worker(
    manager_user, django_capture_on_commit_callbacks
):
    blast = blast_with_rows(4)
    ids = rows_of(blast)
    needing_decision(ids[:3])
    set_rows(ids[:3], claim_token="6f1c9d1e-8a0b-4d8e-9a7c-2b7f3b8f1a11")
    set_rows(ids[3:], status=S.SENT)

    with django_capture_on_commit_callbacks(execute=True):
        done = delivery_send_again(delivery_ids=ids[:3], user=manager_user)

    assert done == 3
    for pk in ids[:3]:
        delivery = row(pk)
        assert delivery.status == S.PENDING
        assert delivery.attention == ""
        assert delivery.claim_token is None
        assert "sam-manager" in delivery.error_message
    blast.refresh_from_db()
    assert blast.enqueued_at is not None, "a worker was asked to send the rows"
    assert blast.send_token is not None


def test_a_row_that_settled_meanwhile_is_left_alone(manager_user):
    blast = blast_with_rows(3)
    ids = rows_of(blast)
    needing_decision(ids)
    # Staff chose the rows while all three were unknown; then a late status callback
    # settled one of them.
    set_rows(ids[:1], status=S.DELIVERED, attention="", twilio_sid="SM" + "1" * 32)

    assert delivery_send_again(delivery_ids=ids, user=manager_user) == 2
    settled = row(ids[0])
    assert settled.status == S.DELIVERED
    assert settled.twilio_sid == "SM" + "1" * 32
    assert [row(pk).status for pk in ids[1:]] == [S.PENDING, S.PENDING]

    # Deciding twice does nothing the second time.
    assert delivery_send_again(delivery_ids=ids, user=manager_user) == 0
    assert delivery_mark_sent(delivery_ids=ids, user=manager_user) == 0
    assert [row(pk).status for pk in ids] == [S.DELIVERED, S.PENDING, S.PENDING]


def test_send_again_on_a_cancelled_blast_cancels_the_rows(
    manager_user, django_capture_on_commit_callbacks
):
    blast = blast_with_rows(2, status=B.CANCELLED)
    ids = rows_of(blast)
    needing_decision(ids, OVERDUE)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert delivery_send_again(delivery_ids=ids, user=manager_user) == 2

    assert [row(pk).status for pk in ids] == [S.CANCELLED, S.CANCELLED]
    assert all(row(pk).attention == "" for pk in ids)
    assert "cancelled" in row(ids[0]).error_message
    assert callbacks == [], "nothing to send, so no worker is asked"
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED
    assert blast.enqueued_at is None


def test_send_again_on_a_paused_blast_waits_for_resume(
    manager_user, django_capture_on_commit_callbacks
):
    blast = blast_with_rows(2, status=B.PAUSED)
    ids = rows_of(blast)
    needing_decision(ids)

    with django_capture_on_commit_callbacks(execute=True):
        assert delivery_send_again(delivery_ids=ids, user=manager_user) == 2

    assert [row(pk).status for pk in ids] == [S.PENDING, S.PENDING]
    blast.refresh_from_db()
    assert blast.status == B.PAUSED
    assert blast.enqueued_at is None


def test_unknown_rows_not_handed_to_staff_are_left_to_reconciliation(manager_user):
    blast = blast_with_rows(2)
    ids = rows_of(blast)
    set_rows(ids, status=S.UNKNOWN)  # no attention: reconciliation has not looked yet

    assert delivery_send_again(delivery_ids=ids, user=manager_user) == 0
    assert delivery_mark_sent(delivery_ids=ids, user=manager_user) == 0
    assert [row(pk).status for pk in ids] == [S.UNKNOWN, S.UNKNOWN]


def test_mark_sent_counts_the_rows_as_texted_and_finishes_the_blast(manager_user):
    blast = blast_with_rows(3)
    ids = rows_of(blast)
    set_rows(ids[:1], status=S.DELIVERED)
    needing_decision(ids[1:])

    assert delivery_mark_sent(delivery_ids=ids[1:], user=manager_user) == 2

    for pk in ids[1:]:
        delivery = row(pk)
        assert delivery.status == S.SENT
        assert delivery.attention == ""
        assert delivery.sent_at is not None
        assert "sam-manager" in delivery.error_message
    blast.refresh_from_db()
    assert blast.status == B.SENT
    assert blast.finished_at is not None


def test_mark_sent_keeps_the_blast_going_while_other_rows_are_left(manager_user):
    blast = blast_with_rows(3)
    ids = rows_of(blast)
    needing_decision(ids[:1])

    assert delivery_mark_sent(delivery_ids=ids[:1], user=manager_user) == 1
    blast.refresh_from_db()
    assert blast.status == B.SENDING
    assert [row(pk).status for pk in ids] == [S.SENT, S.PENDING, S.PENDING]


def test_decisions_span_several_blasts(manager_user, django_capture_on_commit_callbacks):
    first = blast_with_rows(2)
    second = blast_with_rows(2, status=B.CANCELLED, start=100)
    ids = rows_of(first) + rows_of(second)
    needing_decision(ids)

    with django_capture_on_commit_callbacks(execute=True):
        assert delivery_send_again(delivery_ids=ids, user=manager_user) == len(ids)

    assert {row(pk).status for pk in rows_of(first)} == {S.PENDING}
    assert {row(pk).status for pk in rows_of(second)} == {S.CANCELLED}
