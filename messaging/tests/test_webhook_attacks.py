"""Hostile tests of the Twilio webhooks and the opt-out / suppression logic.

Every request is signed the way Twilio signs it (``RequestValidator`` over the URL and
the posted fields) and goes through the real views, services and database; the sends go
through the real twilio client to the fake Twilio. A test that fails here is a promise
broken: someone who said STOP texted again, a status going backwards, a bad request that
changes something or answers 500, or a duplicate/reordered callback ending wrong.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from members.models import Member
from messaging.models import Blast, Delivery, InboundMessage
from messaging.services import blast_create, blast_retry_failed
from messaging.tests.conftest import in_thread, make_members, phone, run_threads
from messaging.tests.fake_twilio import FakeTwilio, sign
from messaging.tests.test_engine import run_to_end
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact
from suppression.services import failure_record, suppression_lift

S = Delivery.Status
B = Blast.Status

BASE = "https://sms.example.org"
STATUS_PATH = "/webhooks/twilio/status/"
INBOUND_PATH = "/webhooks/twilio/inbound/"


@pytest.fixture
def hooks(settings, fake_twilio: FakeTwilio) -> FakeTwilio:
    settings.PUBLIC_BASE_URL = BASE
    settings.SMS_HELP_REPLY = ""
    settings.SMS_JOIN_KEYWORD = ""
    return fake_twilio


def web() -> Client:
    """A client that answers what a real server would: a 500 instead of raising."""
    return Client(raise_request_exception=False)


def post_signed(
    path: str,
    params: dict[str, str],
    *,
    query: str = "",
    signed_query: str | None = None,
    client: Client | None = None,
):
    from django.conf import settings

    signed = signed_query if signed_query is not None else query
    url = f"{BASE}{path}" + (f"?{signed}" if signed else "")
    signature = sign(settings.TWILIO_AUTH_TOKEN, url, params)
    return (client or web()).post(
        path + (f"?{query}" if query else ""),
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def status_params(sid: str, status: str, code: int | str | None = None) -> dict[str, str]:
    params = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "From": "+15005550006",
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": phone(0),
    }
    if code is not None:
        params["ErrorCode"] = str(code)
    return params


def inbound(from_: str, body: str, *, sid: str | None = None, **extra: str) -> dict[str, str]:
    sid = sid or "SM" + f"{time.monotonic_ns():032x}"[-32:]
    return {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": from_,
        "To": "+15005550006",
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "NumSegments": "1",
        **extra,
    }


def send_blast(n: int) -> Blast:
    make_members(n)
    return run_to_end(blast_create(body="Hi {first_name}", community=True))


def row(i: int) -> Delivery:
    return Delivery.objects.filter(phone=phone(i)).latest("pk")


def callback(delivery: Delivery, status: str, code: int | None = None, client=None):  # type: ignore[no-untyped-def]
    return post_signed(
        STATUS_PATH,
        status_params(delivery.twilio_sid or "SM" + "f" * 32, status, code),
        query=f"d={delivery.pk}",
        client=client,
    )


def row_exists_with(number: str) -> bool:
    return Delivery.objects.filter(phone=number).exists()


def opted_out(number: str) -> bool:
    return UnsubscribedContact.objects.filter(phone=number, lifted=False).exists()


def suppressed(number: str) -> bool:
    return SuppressedContact.objects.filter(phone=number, lifted=False).exists()


# --- Malformed status callbacks: 4xx, never 500, nothing changes ------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("d", ["\u00b2", "1\u00b9", "\u2460"])
def test_status_callback_with_a_unicode_digit_delivery_id_is_a_400_not_a_500(hooks, d):
    """'²'.isdigit() is True but int('²') raises: the query ?d=² crashes the view."""
    send_blast(1)
    before = row(0)
    response = post_signed(
        STATUS_PATH, status_params(before.twilio_sid, "delivered"), query=urlencode({"d": d})
    )
    assert response.status_code == 400, response.status_code
    assert row(0).status == S.SENT


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["\u00b3\u2070\u2070\u2070\u2076", "3000\u2076"])
def test_status_callback_with_a_unicode_digit_error_code_is_a_400_not_a_500(hooks, code):
    send_blast(1)
    before = row(0)
    response = post_signed(
        STATUS_PATH,
        status_params(before.twilio_sid, "undelivered", code),
        query=f"d={before.pk}",
    )
    assert response.status_code == 400, response.status_code
    assert row(0).status == S.SENT
    assert not suppressed(phone(0))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "query"),
    [
        ({"MessageStatus": "", "SmsStatus": ""}, "d=1"),
        ({"MessageStatus": "exploded", "SmsStatus": "exploded"}, "d=1"),
        ({"ErrorCode": "30006.0"}, "d=1"),
        ({"ErrorCode": "-30006"}, "d=1"),
        ({"ErrorCode": "3" * 40}, "d=1"),
        ({}, "d=" + "9" * 40),
        ({}, "d=1e3"),
        ({"MessageSid": "SM\x00abc", "SmsSid": "SM\x00abc"}, "d=1"),
    ],
)
def test_malformed_status_callbacks_are_refused_with_a_4xx(hooks, change, query):
    send_blast(1)
    params = {**status_params(row(0).twilio_sid, "undelivered", 30006), **change}
    response = post_signed(STATUS_PATH, params, query=query)
    assert 400 <= response.status_code < 500
    assert row(0).status == S.SENT
    assert not SuppressedContact.objects.exists()


@pytest.mark.django_db
def test_a_delivery_id_of_another_message_changes_nothing_on_either_row(hooks):
    send_blast(2)
    other = row(1)
    # A callback for phone(0)'s message whose d= names phone(1)'s row.
    response = post_signed(
        STATUS_PATH, status_params(row(0).twilio_sid, "failed", 21610), query=f"d={other.pk}"
    )
    assert response.status_code == 200
    # Applied to the row holding the SID, never to the named one.
    assert row(1).status == S.SENT and not opted_out(phone(1))
    assert row(0).status == S.FAILED and opted_out(phone(0))


@pytest.mark.django_db
def test_a_signature_over_another_query_order_is_refused(hooks):
    send_blast(1)
    d = row(0)
    response = post_signed(
        STATUS_PATH,
        status_params(d.twilio_sid, "undelivered", 30006),
        query=f"d={d.pk}&x=1",
        signed_query=f"x=1&d={d.pk}",
    )
    assert response.status_code == 403
    assert row(0).status == S.SENT and not suppressed(phone(0))
    # The order Twilio requested validates.
    ok = post_signed(
        STATUS_PATH, status_params(d.twilio_sid, "undelivered", 30006), query=f"d={d.pk}&x=1"
    )
    assert ok.status_code == 200 and suppressed(phone(0))


@pytest.mark.django_db
@pytest.mark.parametrize("path", [STATUS_PATH, INBOUND_PATH])
def test_get_head_and_options_are_refused_without_a_traceback(hooks, path):
    client = web()
    for method in (client.get, client.head, client.options, client.delete):
        response = method(path + "?d=1&MessageSid=SM1&MessageStatus=failed&ErrorCode=21610")
        assert response.status_code == 405
    assert not Delivery.objects.exists() and not UnsubscribedContact.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("path", [STATUS_PATH, INBOUND_PATH])
def test_a_very_large_post_is_a_4xx(hooks, path):
    params = inbound(phone(0), "STOP" + " " * (3 * 1024 * 1024))
    response = post_signed(path, params)
    assert 400 <= response.status_code < 500
    assert not InboundMessage.objects.exists() and not UnsubscribedContact.objects.exists()


@pytest.mark.django_db
def test_unsigned_stop_is_403_and_changes_nothing(hooks):
    response = web().post(
        INBOUND_PATH,
        data=urlencode(inbound(phone(0), "STOP")),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE="",
    )
    assert response.status_code == 403
    assert not InboundMessage.objects.exists() and not opted_out(phone(0))


# --- Unusual inbound messages ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("num_media", ["\u00b2", "\u2463", "1\u00b9"])
def test_inbound_with_a_unicode_digit_num_media_is_not_a_500(hooks, num_media):
    response = post_signed(INBOUND_PATH, inbound(phone(0), "STOP", NumMedia=num_media))
    assert response.status_code < 500, response.status_code


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("Body", "STOP\x00"), ("Body", "hello\x00world"), ("To", "+1500555\x000006")],
)
def test_inbound_with_a_nul_byte_is_not_a_500(hooks, field, value):
    """PostgreSQL refuses NUL in text columns: the view must not crash on it."""
    params = inbound(phone(0), "hello")
    params[field] = value
    response = post_signed(INBOUND_PATH, params)
    assert response.status_code < 500, response.status_code


@pytest.mark.django_db
def test_inbound_stop_with_a_nul_byte_still_opts_out_or_is_refused(hooks):
    response = post_signed(INBOUND_PATH, inbound(phone(3), "STOP\x00"))
    assert response.status_code < 500, response.status_code
    if response.status_code == 200:
        assert opted_out(phone(3))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("from_", "acted"),
    [
        ("2015550003", True),  # no +: the default region's number
        ("+1 (201) 555-0003", True),
        ("12345", False),  # a short code
        ("ACME", False),  # an alphanumeric sender
        ("+", False),
        ("\U0001f600", False),
        ("x" * 500, False),
    ],
)
def test_stop_from_unusual_senders(hooks, from_, acted):
    response = post_signed(INBOUND_PATH, inbound(from_, "stop"))
    assert response.status_code == 200, response.status_code
    assert opted_out(phone(3)) is acted
    assert UnsubscribedContact.objects.count() == (1 if acted else 0)
    assert InboundMessage.objects.count() == 1


@pytest.mark.django_db
def test_empty_from_is_a_400(hooks):
    assert post_signed(INBOUND_PATH, inbound("", "STOP")).status_code == 400
    assert post_signed(INBOUND_PATH, inbound("   ", "STOP")).status_code == 400
    assert not InboundMessage.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        "a" * 5000,
        "\U0001f600" * 1600,
        "\u0645\u0631\u062d\u0628\u0627 \U0001f44b\ufe0f\u200d",
        "\ufffd\ufffd bad bytes",
        "\u202e\u2066RTL",
    ],
)
def test_long_and_unusual_bodies_are_kept_whole(hooks, body):
    make_members(1)
    response = post_signed(INBOUND_PATH, inbound(phone(0), body))
    assert response.status_code == 200
    message = InboundMessage.objects.get()
    assert message.body == body
    assert message.member == Member.objects.get(phone=phone(0))


@pytest.mark.django_db
def test_invalid_utf8_bytes_are_not_a_500(hooks):
    """Raw bytes that are not UTF-8 (a broken gateway): signed over what Django decodes."""
    from django.conf import settings

    params = inbound(phone(0), "\ufffd\ufffdSTOP")
    signature = sign(settings.TWILIO_AUTH_TOKEN, BASE + INBOUND_PATH, params)
    raw = urlencode({k: v for k, v in params.items() if k != "Body"}) + "&Body=%FF%FESTOP"
    response = web().post(
        INBOUND_PATH,
        data=raw,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )
    assert response.status_code in (200, 400, 403)


# --- Duplicates and races (real threads, real connections) ----------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_same_failure_callback_twice_at_once_over_http_records_once(hooks):
    send_blast(1)
    d = row(0)

    results = run_threads(lambda i: callback(d, "undelivered", 30006).status_code, 4)

    assert results == [200] * 4
    d.refresh_from_db()
    assert (d.status, d.twilio_status, d.error_code) == (S.FAILED, "undelivered", 30006)
    assert FailureEvent.objects.filter(delivery=d).count() == 1
    assert SuppressedContact.objects.filter(phone=phone(0)).count() == 1


@pytest.mark.django_db(transaction=True)
def test_delivered_and_sent_racing_end_delivered(hooks):
    send_blast(1)
    d = row(0)
    statuses = ["sent", "delivered", "queued", "sending"] * 2

    results = run_threads(lambda i: callback(d, statuses[i]).status_code, len(statuses))

    assert results == [200] * len(statuses)
    d.refresh_from_db()
    assert (d.status, d.twilio_status) == (S.DELIVERED, "delivered")
    assert d.delivered_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_same_inbound_stop_twice_at_once_is_stored_and_acted_on_once(hooks):
    params = inbound(phone(0), "STOP")
    results = run_threads(lambda i: post_signed(INBOUND_PATH, params).status_code, 4)
    assert results == [200] * 4
    assert InboundMessage.objects.count() == 1
    assert UnsubscribedContact.objects.filter(phone=phone(0)).count() == 1


@pytest.mark.django_db(transaction=True)
def test_join_twice_at_once_makes_one_member_and_no_500(hooks, settings):
    settings.SMS_JOIN_KEYWORD = "JOIN"
    bodies = ["JOIN", "join", "Join!", "JOIN"]
    results = run_threads(
        lambda i: post_signed(INBOUND_PATH, inbound(phone(7), bodies[i])).status_code, 4
    )
    assert results == [200] * 4
    assert Member.objects.filter(phone=phone(7)).count() == 1
    assert InboundMessage.objects.filter(kind=InboundMessage.Kind.JOIN).count() == 4
    assert all(m.member_id is not None for m in InboundMessage.objects.all())


@pytest.mark.django_db(transaction=True)
def test_stop_and_start_at_once_leave_a_consistent_list(hooks):
    """Whichever commits last wins; never two active rows, never a 500."""
    bodies = ["STOP", "START", "STOP", "UNSTOP"]
    for _ in range(5):
        results = run_threads(
            lambda i: post_signed(INBOUND_PATH, inbound(phone(2), bodies[i])).status_code, 4
        )
        assert results == [200] * 4
        assert UnsubscribedContact.objects.filter(phone=phone(2), lifted=False).count() <= 1
    # A final STOP, alone, always ends opted out.
    assert post_signed(INBOUND_PATH, inbound(phone(2), "STOP")).status_code == 200
    assert opted_out(phone(2))


@pytest.mark.django_db
def test_start_arriving_before_its_stop_ends_opted_out(hooks):
    """Twilio gives no order: the later arrival wins, and STOP-last means no more texts."""
    post_signed(INBOUND_PATH, inbound(phone(4), "START"))
    post_signed(INBOUND_PATH, inbound(phone(4), "STOP"))
    assert opted_out(phone(4))
    make_members(5)
    blast = run_to_end(blast_create(body="Hi", community=True))
    assert blast.deliveries.get(phone=phone(4)).status == S.SKIPPED


@pytest.mark.django_db(transaction=True)
def test_failures_of_one_number_from_callbacks_and_a_send_pass_at_once(hooks, settings):
    """Two transient failures arrive by callback while the engine records a third at send
    time: the number is suppressed exactly once."""
    settings.SUPPRESS_AFTER_TRANSIENT = 3
    first = send_blast(1)
    second = run_to_end(blast_create(body="Again", community=True))
    d1, d2 = first.deliveries.get(), second.deliveries.get()
    hooks.fail_number(phone(0), 30003)
    third = blast_create(body="Third", community=True)

    def act(i: int) -> object:
        if i == 0:
            return callback(d1, "undelivered", 30003).status_code
        if i == 1:
            return callback(d2, "undelivered", 30003).status_code
        return run_to_end(third).status

    results = run_threads(act, 3)
    assert results[:2] == [200, 200]
    assert FailureEvent.objects.filter(phone=phone(0)).count() == 3
    assert SuppressedContact.objects.filter(phone=phone(0)).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_stop_arriving_mid_blast_stops_the_next_call_to_that_number(hooks, settings):
    settings.SMS_RATE_PER_SECOND = 5
    make_members(10)
    last = phone(9)
    blast = blast_create(body="Hi", community=True)
    done = threading.Event()

    def work() -> None:
        run_to_end(blast)
        done.set()

    worker = in_thread(work)
    assert hooks.wait_for_messages(2, timeout=10)
    assert hooks.sent_to(last) == 0
    assert post_signed(INBOUND_PATH, inbound(last, "STOP")).status_code == 200
    worker.join(timeout=60)
    assert done.is_set()
    assert hooks.sent_to(last) == 0
    assert Delivery.objects.get(blast=blast, phone=last).status == S.SKIPPED
    assert sum(hooks.sent_to(phone(i)) for i in range(9)) == 9


# --- Callbacks for cancelled blasts, erased rows ----------------------------------------------


@pytest.mark.django_db
def test_a_21610_callback_for_a_cancelled_blasts_delivery_still_unsubscribes(hooks):
    blast = send_blast(1)
    Blast.objects.filter(pk=blast.pk).update(status=B.CANCELLED)
    response = callback(row(0), "failed", 21610)
    assert response.status_code == 200
    assert opted_out(phone(0))
    blast.refresh_from_db()
    assert blast.status == B.CANCELLED


@pytest.mark.django_db
def test_a_callback_for_an_unsent_cancelled_row_does_not_pretend_it_was_sent(hooks):
    make_members(1)
    blast = blast_create(body="Hi", community=True)
    Delivery.objects.filter(blast=blast).update(status=S.CANCELLED)
    d = blast.deliveries.get()
    response = post_signed(
        STATUS_PATH, status_params("SM" + "e" * 32, "delivered"), query=f"d={d.pk}"
    )
    assert response.status_code == 200
    d.refresh_from_db()
    assert (d.status, d.twilio_sid) == (S.CANCELLED, None)


@pytest.mark.django_db
def test_a_late_failure_for_an_erased_row_acts_on_no_number(hooks):
    send_blast(1)
    d = row(0)
    sid = d.twilio_sid
    from messaging.services.retention import messages_erase_older

    messages_erase_older(days=1, now=timezone.now() + timedelta(days=3))
    assert not row_exists_with(phone(0))
    response = post_signed(STATUS_PATH, status_params(sid, "failed", 21610), query=f"d={d.pk}")
    assert response.status_code == 200
    assert not UnsubscribedContact.objects.exists()
    assert not SuppressedContact.objects.exists()
    # And for a row retention deleted altogether.
    Delivery.objects.filter(pk=d.pk).delete()
    again = post_signed(STATUS_PATH, status_params(sid, "failed", 21610), query=f"d={d.pk}")
    assert again.status_code == 200
    assert not UnsubscribedContact.objects.exists()


# --- Lifts, retries and the classifier ---------------------------------------------------------


@pytest.mark.django_db
def test_a_pre_lift_failure_arriving_late_does_not_re_suppress(hooks, admin_user):
    """A message sent three days ago; the number's suppression was lifted yesterday by an
    Admin; the message's undelivered callback arrives now. The failure is older than the
    lift (the message left before it), so the lift must hold."""
    send_blast(1)
    d = row(0)
    three_days_ago = timezone.now() - timedelta(days=3)
    Delivery.objects.filter(pk=d.pk).update(sent_at=three_days_ago, claimed_at=three_days_ago)
    old = SuppressedContact.objects.create(
        phone=phone(0), reason="Landline (30006)", error_code=30006, failure_count=1
    )
    suppression_lift(suppressions=[old], user=admin_user, reason="Ported to a mobile")
    SuppressedContact.objects.filter(pk=old.pk).update(lifted_at=timezone.now() - timedelta(days=1))

    assert callback(d, "undelivered", 30006).status_code == 200

    assert row(0).status == S.FAILED
    assert not suppressed(phone(0)), "a failure from before the lift re-suppressed the number"


@pytest.mark.django_db
def test_a_pre_start_21610_arriving_late_does_not_undo_the_start(hooks):
    """Sent three days ago; the person texted START yesterday; Twilio's 21610 for the old
    message arrives now: they asked for texts after that failure."""
    send_blast(1)
    d = row(0)
    three_days_ago = timezone.now() - timedelta(days=3)
    Delivery.objects.filter(pk=d.pk).update(sent_at=three_days_ago, claimed_at=three_days_ago)
    post_signed(INBOUND_PATH, inbound(phone(0), "STOP"))
    post_signed(INBOUND_PATH, inbound(phone(0), "START"))
    UnsubscribedContact.objects.filter(phone=phone(0)).update(
        created_at=timezone.now() - timedelta(days=2), lifted_at=timezone.now() - timedelta(days=1)
    )
    assert not opted_out(phone(0))

    assert callback(d, "failed", 21610).status_code == 200

    assert not opted_out(phone(0)), "a 21610 from before the START unsubscribed them again"


@pytest.mark.django_db
def test_a_21610_on_a_retried_delivery_unsubscribes(hooks):
    """The row failed 30003 (retryable) first; staff retried it; Twilio now refuses it
    with 21610. The carrier says the person opted out: the number must be unsubscribed."""
    blast = send_blast(1)
    assert callback(row(0), "undelivered", 30003).status_code == 200
    assert row(0).status == S.FAILED
    hooks.fail_number(phone(0), 21610)

    assert blast_retry_failed(blast_id=blast.pk).retried == 1
    run_to_end(blast)

    assert row(0).error_code == 21610
    assert opted_out(phone(0)), "a 21610 after a retry was ignored by the classifier"


@pytest.mark.django_db
def test_a_retried_delivery_failing_by_callback_again_counts(hooks, settings):
    """30008 three times (first send and two staff retries, each a new message): three
    transient failures of the number, which SUPPRESS_AFTER_TRANSIENT=3 suppresses."""
    settings.SUPPRESS_AFTER_TRANSIENT = 3
    blast = send_blast(1)
    for attempt in range(3):
        assert callback(row(0), "undelivered", 30008).status_code == 200
        assert row(0).status == S.FAILED
        if attempt < 2:
            assert blast_retry_failed(blast_id=blast.pk).retried == 1
            run_to_end(blast)
            assert row(0).status == S.SENT
    assert len({m["sid"] for m in hooks.messages}) == 3
    assert suppressed(phone(0)), "only the first failure of a retried delivery was counted"


@pytest.mark.django_db
def test_a_lifted_number_that_fails_permanently_after_the_lift_is_suppressed_again(
    hooks, admin_user
):
    send_blast(1)
    assert callback(row(0), "undelivered", 30006).status_code == 200
    suppression_lift(
        suppressions=SuppressedContact.objects.filter(phone=phone(0)),
        user=admin_user,
        reason="Try again",
    )
    blast = run_to_end(blast_create(body="Again", community=True))
    d = blast.deliveries.get()
    assert d.status == S.SENT
    assert callback(d, "undelivered", 30006).status_code == 200
    assert suppressed(phone(0))
    assert SuppressedContact.objects.filter(phone=phone(0)).count() == 2


@pytest.mark.django_db(transaction=True)
def test_stop_racing_a_21610_and_a_start_never_leaves_two_active_rows(hooks):
    send_blast(1)
    d = row(0)

    def act(i: int) -> int:
        if i == 0:
            return callback(d, "failed", 21610).status_code
        if i == 1:
            return post_signed(INBOUND_PATH, inbound(phone(0), "STOP")).status_code
        return post_signed(INBOUND_PATH, inbound(phone(0), "START")).status_code

    assert run_threads(act, 3) == [200, 200, 200]
    assert UnsubscribedContact.objects.filter(phone=phone(0), lifted=False).count() <= 1


@pytest.mark.django_db(transaction=True)
def test_failure_record_from_two_threads_for_one_delivery_is_idempotent(hooks):
    send_blast(1)
    d = row(0)
    results = run_threads(
        lambda i: failure_record(
            phone=d.phone, code=30006, delivery_id=d.pk, blast_id=d.blast_id, message_sid=""
        ),
        4,
    )
    assert sorted(results) == ["none", "none", "none", "suppressed"]
    assert SuppressedContact.objects.filter(phone=phone(0)).count() == 1
    assert connection.vendor in ("sqlite", "postgresql")


@pytest.mark.django_db
def test_a_late_callback_of_the_old_message_does_not_swallow_a_staff_retry(hooks):
    """Twilio reports undelivered (30003) before the 'sent' it sent earlier; staff press
    Retry failed; the late 'sent' of the OLD message then arrives. The old message is
    still undelivered: the retry must still send the text once more."""
    blast = send_blast(1)
    old = row(0)
    assert callback(old, "undelivered", 30003).status_code == 200
    assert blast_retry_failed(blast_id=blast.pk).retried == 1
    assert row(0).status == S.PENDING

    assert callback(old, "sent").status_code == 200  # the old message's late 'sent'
    assert row(0).status == S.PENDING, "a stale callback marked a retried row as sent"

    run_to_end(blast)
    assert hooks.sent_to(phone(0)) == 2


@pytest.mark.django_db
def test_a_duplicate_failure_callback_after_a_retry_does_not_cancel_it(hooks):
    blast = send_blast(1)
    old = row(0)
    assert callback(old, "undelivered", 30003).status_code == 200
    assert blast_retry_failed(blast_id=blast.pk).retried == 1
    assert callback(old, "undelivered", 30003).status_code == 200  # Twilio's duplicate
    run_to_end(blast)
    assert hooks.sent_to(phone(0)) == 2
