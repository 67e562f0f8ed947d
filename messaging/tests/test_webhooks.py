"""Status callbacks: POST /webhooks/twilio/status/, signed as Twilio signs them.

Messages are really sent by the engine through the twilio client to the fake Twilio, with
PUBLIC_BASE_URL set, so each one carries the StatusCallback URL the engine gives Twilio.
The callbacks are the fake's own (the form Twilio posts), signed over that URL with
``twilio.request_validator.RequestValidator`` and the auth token, and posted through
Django's test client.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services import blast_create, deliveries_reconcile
from messaging.services.callbacks import StatusCallback, delivery_status_callback
from messaging.tests.conftest import make_members, phone
from messaging.tests.fake_twilio import FakeTwilio, Reply, sign
from messaging.tests.test_concurrency import run_threads
from messaging.tests.test_engine import run_to_end
from suppression.models import SuppressedContact, UnsubscribedContact

S = Delivery.Status
B = Blast.Status

BASE = "https://sms.example.org"
STATUS_PATH = "/webhooks/twilio/status/"


@pytest.fixture
def hooks(settings, fake_twilio: FakeTwilio) -> FakeTwilio:
    """Sending through the fake Twilio, with status callbacks requested at BASE."""
    settings.PUBLIC_BASE_URL = BASE
    return fake_twilio


def send_blast(n: int, *, start: int = 0) -> Blast:
    make_members(n, start=start)
    blast = run_to_end(blast_create(body="Hi {first_name}", community=True))
    return blast


def row(i: int) -> Delivery:
    return Delivery.objects.get(phone=phone(i))


def post(
    client: Client,
    url: str,
    params: dict[str, str],
    *,
    signature: str | None = None,
    signed_url: str | None = None,
    **headers: str,
):
    """POST the form to ``url``'s path and query, signed over ``signed_url`` (default url)."""
    if signature is None:
        from django.conf import settings

        signature = sign(settings.TWILIO_AUTH_TOKEN, signed_url or url, params)
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return client.post(
        target,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
        **headers,
    )


def callback(client: Client, fake: FakeTwilio, delivery: Delivery, status: str, code=None):  # type: ignore[no-untyped-def]
    """Twilio's callback for this delivery's message, signed over its StatusCallback URL."""
    [message] = [m for m in fake.messages if m["sid"] == delivery.twilio_sid]
    params = fake.callback_params(message["sid"], status, code)
    return post(client, message["status_callback"], params)


# --- The URL Twilio is given, and the happy paths ---------------------------------------


@pytest.mark.django_db
def test_the_engine_asks_for_callbacks_at_the_public_url(hooks):
    send_blast(2)
    assert {m["to"]: m["status_callback"] for m in hooks.messages} == {
        phone(0): f"{BASE}{STATUS_PATH}?d={row(0).pk}&a=1",
        phone(1): f"{BASE}{STATUS_PATH}?d={row(1).pk}&a=1",
    }


@pytest.mark.django_db
def test_delivered_records_the_time(hooks, client):
    send_blast(1)
    before = timezone.now()
    for status in ("sent", "delivered"):
        response = callback(client, hooks, row(0), status)
        assert response.status_code == 200, response.content
    delivery = row(0)
    assert delivery.status == S.DELIVERED
    assert delivery.twilio_status == "delivered"
    assert delivery.delivered_at is not None and delivery.delivered_at >= before
    assert delivery.error_code is None


@pytest.mark.django_db
def test_undelivered_30006_fails_the_row_and_suppresses_the_number(hooks, client):
    send_blast(2)
    response = callback(client, hooks, row(0), "undelivered", 30006)
    assert response.status_code == 200
    delivery = row(0)
    assert (delivery.status, delivery.twilio_status, delivery.error_code) == (
        S.FAILED,
        "undelivered",
        30006,
    )
    assert "30006" in delivery.error_message
    assert delivery.delivered_at is None
    suppressed = SuppressedContact.objects.get(phone=phone(0), lifted=False)
    assert suppressed.error_code == 30006
    assert suppressed.delivery_id == delivery.pk
    assert row(1).status == S.SENT
    assert not SuppressedContact.objects.filter(phone=phone(1)).exists()


@pytest.mark.django_db
def test_failed_21610_unsubscribes_the_number_and_the_next_blast_skips_it(hooks, client):
    send_blast(2)
    response = callback(client, hooks, row(1), "failed", 21610)
    assert response.status_code == 200
    delivery = row(1)
    assert (delivery.status, delivery.error_code) == (S.FAILED, 21610)
    opt_out = UnsubscribedContact.objects.get(phone=phone(1), lifted=False)
    assert opt_out.source == UnsubscribedContact.Source.CARRIER
    assert not SuppressedContact.objects.filter(phone=phone(1)).exists()

    second = run_to_end(blast_create(body="Again", community=True))
    rows = dict(Delivery.objects.filter(blast=second).values_list("phone", "status"))
    assert rows == {phone(0): S.SENT, phone(1): S.SKIPPED}
    assert hooks.sent_to(phone(1)) == 1


# --- Signatures ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_unsigned_wrongly_signed_and_tampered_callbacks_change_nothing(hooks, client):
    send_blast(1)
    delivery = row(0)
    [message] = hooks.messages
    url = message["status_callback"]
    params = hooks.callback_params(delivery.twilio_sid, "failed", 21610)
    good = sign(hooks.auth_token, url, params)
    path = urlsplit(url).path + "?" + urlsplit(url).query

    unsigned = client.post(
        path, data=urlencode(params), content_type="application/x-www-form-urlencoded"
    )
    wrong_key = post(client, url, params, signature=sign("another-token", url, params))
    garbage = post(client, url, params, signature="not-a-signature")
    # A captured callback replayed with one field changed: the signature no longer fits.
    replayed = post(client, url, {**params, "ErrorCode": "30006"}, signature=good)
    other_status = post(client, url, {**params, "MessageStatus": "delivered"}, signature=good)
    extra_field = post(client, url, {**params, "Extra": "1"}, signature=good)
    # ... or sent to another delivery's URL.
    other_row = post(client, url.replace(f"d={delivery.pk}", "d=999"), params, signature=good)
    # Signed over the URL without its query.
    no_query = post(client, url, params, signed_url=url.split("?")[0])

    for response in (
        unsigned,
        wrong_key,
        garbage,
        replayed,
        other_status,
        extra_field,
        other_row,
        no_query,
    ):
        assert response.status_code == 403
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code, delivery.twilio_status) == (
        S.SENT,
        None,
        "queued",
    )
    assert not UnsubscribedContact.objects.exists()
    assert not SuppressedContact.objects.exists()

    # The same request, untouched, is accepted.
    assert post(client, url, params, signature=good).status_code == 200
    assert row(0).status == S.FAILED


@pytest.mark.django_db
def test_nothing_is_accepted_without_an_auth_token(hooks, client, settings):
    send_blast(1)
    settings.TWILIO_AUTH_TOKEN = ""
    delivery = row(0)
    [message] = hooks.messages
    params = hooks.callback_params(delivery.twilio_sid, "delivered")
    # Anyone can compute an HMAC with an empty key.
    response = post(
        client,
        message["status_callback"],
        params,
        signature=sign("", message["status_callback"], params),
    )
    assert response.status_code == 403
    assert row(0).status == S.SENT


@pytest.mark.django_db
def test_webhooks_need_no_csrf_token_but_the_rest_of_the_site_still_does(hooks, admin_user):
    send_blast(1)
    strict = Client(enforce_csrf_checks=True)
    assert callback(strict, hooks, row(0), "delivered").status_code == 200
    assert row(0).status == S.DELIVERED
    strict.force_login(admin_user)
    response = strict.post("/admin/members/member/add/", {"phone": "+12015550999"})
    assert response.status_code == 403


# --- Behind a proxy -------------------------------------------------------------------


@pytest.mark.django_db
def test_behind_nginx_with_public_base_url_the_https_url_validates(hooks, settings):
    """Twilio requests https://sms.example.org/...; nginx passes plain http to gunicorn."""
    settings.ALLOWED_HOSTS = ["sms.example.org"]
    settings.TRUSTED_PROXY_COUNT = 1
    send_blast(1)
    response = callback(
        Client(HTTP_HOST="sms.example.org", HTTP_X_FORWARDED_PROTO="https"),
        hooks,
        row(0),
        "delivered",
    )
    assert response.status_code == 200
    assert row(0).status == S.DELIVERED


@pytest.mark.django_db
def test_without_public_base_url_the_trusted_proxys_proto_and_host_are_used(hooks, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "sms.example.org"]
    send_blast(2)
    settings.PUBLIC_BASE_URL = ""
    signed_over = [m["status_callback"] for m in hooks.messages]
    assert signed_over[0].startswith("https://sms.example.org/")

    def deliver(client: Client, i: int):  # type: ignore[no-untyped-def]
        params = hooks.callback_params(row(i).twilio_sid, "delivered")
        return post(client, signed_over[i], params)

    behind_nginx = {
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_HOST": "sms.example.org",
    }
    # Not trusted: the forwarded headers are not read, and http://127.0.0.1:8000/ is
    # not what Twilio signed.
    settings.TRUSTED_PROXY_COUNT = 0
    assert deliver(Client(**behind_nginx), 0).status_code == 403
    settings.TRUSTED_PROXY_COUNT = 1
    assert deliver(Client(**behind_nginx), 0).status_code == 200
    # nginx that passes the Host header on instead of X-Forwarded-Host.
    assert (
        deliver(Client(HTTP_HOST="sms.example.org", HTTP_X_FORWARDED_PROTO="https"), 1).status_code
        == 200
    )
    assert {row(0).status, row(1).status} == {S.DELIVERED}


# --- Order, duplicates, races -------------------------------------------------------------


@pytest.mark.django_db
def test_the_same_callback_twice_ends_delivered_and_records_once(hooks, client):
    send_blast(1)
    assert callback(client, hooks, row(0), "delivered").status_code == 200
    first = row(0).delivered_at
    assert callback(client, hooks, row(0), "delivered").status_code == 200
    delivery = row(0)
    assert delivery.status == S.DELIVERED
    assert delivery.delivered_at == first


@pytest.mark.django_db
def test_delivered_before_sent_ends_delivered(hooks, client):
    send_blast(1)
    for status in ("delivered", "sent", "queued", "sending", "sent"):
        assert callback(client, hooks, row(0), status).status_code == 200
    delivery = row(0)
    assert (delivery.status, delivery.twilio_status) == (S.DELIVERED, "delivered")


@pytest.mark.django_db
def test_statuses_only_move_forward(hooks, client):
    send_blast(1)
    callback(client, hooks, row(0), "sending")
    assert (row(0).status, row(0).twilio_status) == (S.SENT, "sending")
    callback(client, hooks, row(0), "queued")
    assert row(0).twilio_status == "sending"
    callback(client, hooks, row(0), "sent")
    assert row(0).twilio_status == "sent"


@pytest.mark.django_db
def test_the_first_final_status_stays(hooks, client):
    send_blast(2)
    callback(client, hooks, row(0), "undelivered", 30003)
    callback(client, hooks, row(0), "delivered")
    assert (row(0).status, row(0).error_code) == (S.FAILED, 30003)
    callback(client, hooks, row(1), "delivered")
    callback(client, hooks, row(1), "failed", 30006)
    assert (row(1).status, row(1).error_code) == (S.DELIVERED, None)
    # The failure that came after delivery was not fed to the classifier either.
    assert not SuppressedContact.objects.filter(phone=phone(1)).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_are_applied_once(hooks):
    send_blast(1)
    delivery = row(0)
    statuses = ["sent", "undelivered", "sent", "undelivered"] * 3

    def deliver(i: int) -> str:
        return delivery_status_callback(
            StatusCallback(
                message_sid=delivery.twilio_sid,
                status=statuses[i],
                delivery_id=delivery.pk,
                error_code=30006 if statuses[i] == "undelivered" else None,
            )
        )

    results = run_threads(deliver, len(statuses))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_status, delivery.error_code) == (
        S.FAILED,
        "undelivered",
        30006,
    )
    assert results.count("updated") in (1, 2)  # "sent" may land first, then "undelivered"
    from suppression.models import FailureEvent

    assert FailureEvent.objects.filter(delivery=delivery).count() == 1
    assert SuppressedContact.objects.filter(phone=phone(0)).count() == 1


# --- Rows whose outcome we did not know ---------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_row_is_settled_by_its_callback_and_its_blast_finishes(hooks, client):
    make_members(3)
    # Twilio creates the message for phone(1) but the connection drops before it answers.
    hooks.script(Reply(drop=True, record=True, only_to=phone(1)))
    blast = run_to_end(blast_create(body="Hi", community=True))
    unknown = row(1)
    assert (unknown.status, unknown.twilio_sid) == (S.UNKNOWN, None)
    assert blast.status == B.SENDING
    [message] = [m for m in hooks.messages if m["to"] == phone(1)]
    assert message["status_callback"] == f"{BASE}{STATUS_PATH}?d={unknown.pk}&a=1"

    params = hooks.callback_params(message["sid"], "delivered")
    response = post(client, message["status_callback"], params)

    assert response.status_code == 200
    settled = row(1)
    assert (settled.status, settled.twilio_sid) == (S.DELIVERED, message["sid"])
    assert settled.error_message == ""
    assert settled.sent_at is not None and settled.delivered_at is not None
    blast.refresh_from_db()
    assert blast.status == B.SENT
    # Nothing left for reconciliation; nobody was texted twice.
    assert deliveries_reconcile()["sent"] == 0
    assert hooks.sent_to(phone(1)) == 1


@pytest.mark.django_db
def test_a_retried_rows_new_message_settles_it_and_the_old_ones_news_does_not(hooks, client):
    """The first text failed at the handset; staff retried; the resend was created but
    its answer was lost. The new message's callbacks settle the row although it still
    holds the first message's SID; the first message's callbacks, re-posted by Twilio,
    change nothing."""
    from messaging.services import blast_retry_failed

    make_members(1)
    blast = run_to_end(blast_create(body="Hi", community=True))
    [first] = hooks.messages
    response = post(
        client, first["status_callback"], hooks.callback_params(first["sid"], "undelivered", 30003)
    )
    assert response.status_code == 200 and row(0).status == S.FAILED
    assert blast_retry_failed(blast_id=blast.pk).retried == 1
    hooks.script(Reply(drop=True, record=True))
    run_to_end(blast)
    assert (row(0).status, row(0).twilio_sid) == (S.UNKNOWN, first["sid"])
    second = hooks.messages[-1]
    assert second["status_callback"] == f"{BASE}{STATUS_PATH}?d={row(0).pk}&a=2"

    old_news = hooks.callback_params(first["sid"], "undelivered", 30003)
    assert post(client, first["status_callback"], old_news).status_code == 200
    assert row(0).status == S.UNKNOWN
    response = post(client, second["status_callback"], hooks.callback_params(second["sid"], "sent"))
    assert response.status_code == 200
    assert (row(0).status, row(0).twilio_sid) == (S.SENT, second["sid"])
    assert post(client, first["status_callback"], old_news).status_code == 200
    post(client, second["status_callback"], hooks.callback_params(second["sid"], "delivered"))
    assert (row(0).status, row(0).twilio_sid) == (S.DELIVERED, second["sid"])
    blast.refresh_from_db()
    assert blast.status == B.SENT
    assert hooks.sent_to(phone(0)) == 2


@pytest.mark.django_db
def test_a_row_waiting_for_a_staff_decision_is_settled_too(hooks, client):
    make_members(1)
    hooks.script(Reply(drop=True, record=True))
    run_to_end(blast_create(body="Hi", community=True))
    Delivery.objects.filter(phone=phone(0)).update(
        attention=Delivery.Attention.AMBIGUOUS, error_message="ambiguous"
    )
    [message] = hooks.messages
    response = post(
        client, message["status_callback"], hooks.callback_params(message["sid"], "sent")
    )
    assert response.status_code == 200
    delivery = row(0)
    assert (delivery.status, delivery.attention, delivery.twilio_sid) == (
        S.SENT,
        "",
        message["sid"],
    )


@pytest.mark.django_db
def test_a_row_still_being_sent_is_settled_and_the_engine_does_not_overwrite_it(hooks):
    """The callback can arrive before the worker writes Twilio's answer."""
    make_members(1)
    blast = blast_create(body="Hi", community=True)
    from messaging.services import delivery_claim

    token, [claimed] = delivery_claim(blast_id=blast.pk, limit=1)
    assert claimed.status == S.SENDING
    result = delivery_status_callback(
        StatusCallback(message_sid="SM" + "a" * 32, status="delivered", delivery_id=claimed.pk)
    )
    assert result == "updated"
    delivery = row(0)
    assert (delivery.status, delivery.twilio_sid) == (S.DELIVERED, "SM" + "a" * 32)
    # The worker's own write is conditional on the row still being 'sending'.
    changed = Delivery.objects.filter(
        pk=claimed.pk, claim_token=token, status__in=[S.SENDING, S.UNKNOWN]
    ).update(status=S.SENT)
    assert changed == 0


@pytest.mark.django_db
def test_a_sid_another_row_holds_is_not_taken(hooks, client, caplog):
    make_members(2)
    hooks.script(Reply(drop=True, record=True, only_to=phone(1)))
    run_to_end(blast_create(body="Hi", community=True))
    held = row(0).twilio_sid
    unknown = row(1)
    url = f"{BASE}{STATUS_PATH}?d={unknown.pk}"
    with caplog.at_level(logging.WARNING, logger="messaging.services.callbacks"):
        response = post(client, url, hooks.callback_params(held, "delivered"))
    assert response.status_code == 200
    assert row(1).status == S.UNKNOWN and row(1).twilio_sid is None
    # The message belongs to the row holding its SID.
    assert row(0).status == S.DELIVERED
    assert "holds that SID" in caplog.text


@pytest.mark.django_db
def test_a_row_holding_another_sid_is_left_alone(hooks, client, caplog):
    send_blast(1)
    delivery = row(0)
    url = f"{BASE}{STATUS_PATH}?d={delivery.pk}"
    with caplog.at_level(logging.WARNING, logger="messaging.services.callbacks"):
        response = post(client, url, hooks.callback_params("SM" + "b" * 32, "failed", 21610))
    assert response.status_code == 200
    assert row(0).status == S.SENT
    assert not UnsubscribedContact.objects.exists()
    assert "which holds message" in caplog.text


@pytest.mark.django_db
def test_unknown_messages_and_deliveries_are_acknowledged_and_logged(hooks, client, caplog):
    params = hooks.callback_params("SM" + "c" * 32, "delivered")
    with caplog.at_level(logging.WARNING, logger="messaging.services.callbacks"):
        no_row = post(client, f"{BASE}{STATUS_PATH}?d=12345", params)
        no_id = post(client, f"{BASE}{STATUS_PATH}", params)
    assert (no_row.status_code, no_id.status_code) == (200, 200)
    assert "delivery 12345, which does not exist" in caplog.text
    assert "which no delivery holds" in caplog.text


# --- Bad input --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "change", "message"),
    [
        ("d=1", {"MessageStatus": ""}, b"MessageStatus is missing"),
        ("d=1", {"MessageStatus": "bogus"}, b"not a status"),
        ("d=1", {"MessageSid": "", "SmsSid": ""}, b"MessageSid is missing"),
        ("d=1", {"MessageSid": "SM../../x"}, b"not a message SID"),
        ("d=abc", {}, b"d is not a delivery id"),
        ("d=-1", {}, b"d is not a delivery id"),
        ("d=1", {"ErrorCode": "3000x"}, b"ErrorCode is not a number"),
    ],
)
def test_bad_input_gets_a_clear_400(hooks, client, query, change, message):
    params = {**hooks.callback_params("SM" + "d" * 32, "delivered"), **change}
    if "MessageStatus" in change:
        params["SmsStatus"] = change["MessageStatus"]
    response = post(client, f"{BASE}{STATUS_PATH}?{query}", params)
    assert response.status_code == 400
    assert message in response.content


@pytest.mark.django_db
def test_only_post_is_answered(client):
    assert client.get(STATUS_PATH).status_code == 405
    assert client.put(STATUS_PATH).status_code == 405


@pytest.mark.django_db
def test_a_callback_for_a_sent_row_takes_two_queries(hooks, client, django_assert_max_num_queries):
    send_blast(1)
    delivery = row(0)
    [message] = hooks.messages
    params = hooks.callback_params(delivery.twilio_sid, "delivered")
    # The row by its SID, then one conditional UPDATE (inside a savepoint).
    with django_assert_max_num_queries(4):
        response = post(client, message["status_callback"], params)
    assert response.status_code == 200
