"""Signed webhooks followed through later blasts: transient failures counted across blasts,
every STOP variant skipped by the next blast, JOIN re-subscribing, replies linked to the
blast their sender was sent, and which views skip CSRF.

Requests are signed with ``twilio.request_validator.RequestValidator`` over the URL Twilio
would have requested; messages go through the real twilio client to the fake Twilio.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from twilio.request_validator import RequestValidator

from events.models import Registration
from members.models import Member
from messaging.models import Blast, Delivery, InboundMessage
from messaging.services import blast_create
from messaging.tests.conftest import make_event, make_members, phone
from messaging.tests.fake_twilio import FakeTwilio, inbound_params
from messaging.tests.test_engine import run_to_end
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact
from suppression.services import blocked_phones

S = Delivery.Status
BASE = "https://sms.example.org"
INBOUND_PATH = "/webhooks/twilio/inbound/"
SUPPRESSED_ADMIN = "/admin/suppression/suppressedcontact/"


def signature(url: str, params: dict[str, str]) -> str:
    return RequestValidator(django_settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)


def status_callback(client: Client, fake: FakeTwilio, delivery: Delivery, status: str, code=None):  # type: ignore[no-untyped-def]
    """Twilio's signed status callback for this delivery's message, at its StatusCallback."""
    [message] = [m for m in fake.messages if m["sid"] == delivery.twilio_sid]
    url = message["status_callback"]
    params = fake.callback_params(message["sid"], status, code)
    parts = urlsplit(url)
    return client.post(
        f"{parts.path}?{parts.query}",
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature(url, params),
    )


def text(client: Client, from_: str, body: str, *, signed_url: str = BASE + INBOUND_PATH, **kw):  # type: ignore[no-untyped-def]
    """Someone texts ``body`` to our number; Twilio posts it, signed over ``signed_url``."""
    params = inbound_params(from_=from_, body=body, extra=kw.pop("extra", None))
    return client.post(
        INBOUND_PATH,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature(signed_url, params),
        **kw,
    )


def delivery_of(blast: Blast, number: str) -> Delivery:
    return Delivery.objects.get(blast=blast, phone=number)


@pytest.fixture
def hooks(settings, fake_twilio: FakeTwilio) -> FakeTwilio:
    settings.PUBLIC_BASE_URL = BASE
    settings.SMS_HELP_REPLY = ""
    settings.SMS_JOIN_KEYWORD = ""
    return fake_twilio


# --- Transient failures reported by status callbacks -----------------------------------------


@pytest.mark.django_db
def test_three_undelivered_30003_callbacks_across_blasts_suppress_two_do_not(hooks, client):
    """The 3-of-90-days rule fed from status callbacks (not only at send time)."""
    make_members(2)
    for n in range(3):
        blast = run_to_end(blast_create(body=f"Hello {n}", community=True))
        response = status_callback(
            client, hooks, delivery_of(blast, phone(0)), "undelivered", 30003
        )
        assert response.status_code == 200
        assert delivery_of(blast, phone(0)).status == S.FAILED
        expected = {} if n < 2 else {phone(0): "suppressed"}
        assert blocked_phones(phones=[phone(0), phone(1)]) == expected, n

    row = SuppressedContact.objects.get(phone=phone(0), lifted=False)
    assert row.failure_count == 3 and row.error_code == 30003
    assert FailureEvent.objects.filter(phone=phone(0)).count() == 3

    fourth = run_to_end(blast_create(body="Hello 4", community=True))
    skipped = delivery_of(fourth, phone(0))
    assert (skipped.status, skipped.skip_reason) == (S.SKIPPED, "suppressed")
    assert hooks.sent_to(phone(0)) == 3
    assert delivery_of(fourth, phone(1)).status == S.SENT


@pytest.mark.django_db
def test_two_undelivered_30003_callbacks_then_a_delivery_leave_the_number_reachable(hooks, client):
    make_members(1)
    for n in range(2):
        blast = run_to_end(blast_create(body=f"Hello {n}", community=True))
        status_callback(client, hooks, delivery_of(blast, phone(0)), "undelivered", 30003)
    third = run_to_end(blast_create(body="Hello 3", community=True))
    assert delivery_of(third, phone(0)).status == S.SENT
    assert (
        status_callback(client, hooks, delivery_of(third, phone(0)), "delivered").status_code == 200
    )
    assert blocked_phones(phones=[phone(0)]) == {}


# --- A lifted number that fails permanently again -------------------------------------------


@pytest.mark.django_db
def test_a_lifted_number_failing_permanently_again_by_callback_is_suppressed_again(
    hooks, client, admin_client, admin_user
):
    make_members(1)
    first = run_to_end(blast_create(body="One", community=True))
    status_callback(client, hooks, delivery_of(first, phone(0)), "undelivered", 30006)
    old = SuppressedContact.objects.get(phone=phone(0), lifted=False)

    # An Admin lifts it in the admin, with a reason.
    response = admin_client.post(
        SUPPRESSED_ADMIN,
        {
            "action": "lift",
            "_selected_action": [old.pk],
            "confirm": "yes",
            "lift_reason": "got a new phone",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert blocked_phones(phones=[phone(0)]) == {}

    second = run_to_end(blast_create(body="Two", community=True))
    assert delivery_of(second, phone(0)).status == S.SENT
    status_callback(client, hooks, delivery_of(second, phone(0)), "failed", 30005)

    rows = list(SuppressedContact.objects.filter(phone=phone(0)).order_by("id"))
    assert [(r.lifted, r.error_code) for r in rows] == [(True, 30006), (False, 30005)]
    assert rows[0].lift_reason == "got a new phone" and rows[0].lifted_by == admin_user
    assert rows[1].delivery_id == delivery_of(second, phone(0)).pk

    third = run_to_end(blast_create(body="Three", community=True))
    assert (delivery_of(third, phone(0)).status, delivery_of(third, phone(0)).skip_reason) == (
        S.SKIPPED,
        "suppressed",
    )
    assert hooks.sent_to(phone(0)) == 2


# --- Every STOP variant, then a blast ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stopall",
        "Unsubscribe",
        "CANCEL!",
        " end ",
        "quit.",
        "Revoke",
        "optout",
        "OPTOUT?!",
        "\tStop\n",
    ],
)
@pytest.mark.django_db
def test_each_stop_variant_makes_the_next_blast_skip_the_number(hooks, client, body):
    make_members(2)
    response = text(client, phone(1), body)
    assert response.status_code == 200
    blast = run_to_end(blast_create(body="Hi", community=True))
    skipped = delivery_of(blast, phone(1))
    assert (skipped.status, skipped.skip_reason) == (S.SKIPPED, "unsubscribed")
    assert delivery_of(blast, phone(0)).status == S.SENT
    assert hooks.sent_to(phone(1)) == 0


@pytest.mark.django_db
def test_a_registrant_who_texts_stop_is_skipped_by_the_event_blast(hooks, client):
    event = make_event(n=2, start=5)
    assert text(client, phone(6), "Stop").status_code == 200
    blast = run_to_end(blast_create(body="Picnic moved", event_ids=[event.pk]))
    assert delivery_of(blast, phone(6)).skip_reason == "unsubscribed"
    assert delivery_of(blast, phone(5)).status == S.SENT
    assert hooks.sent_to(phone(6)) == 0


# --- START keeps history; JOIN re-subscribes; the next blast reaches them ---------------------


@pytest.mark.django_db
def test_an_unsubscribed_member_who_texts_join_gets_the_next_blast(hooks, client, settings):
    settings.SMS_JOIN_KEYWORD = "JOIN"
    make_members(1)
    text(client, phone(0), "STOP")
    first = run_to_end(blast_create(body="One", community=True))
    assert delivery_of(first, phone(0)).skip_reason == "unsubscribed"

    response = text(client, phone(0), "Join")
    assert response.status_code == 200
    assert "STOP" in response.content.decode()  # the welcome says how to opt out

    second = run_to_end(blast_create(body="Two", community=True))
    assert delivery_of(second, phone(0)).status == S.SENT
    assert hooks.sent_to(phone(0)) == 1
    history = UnsubscribedContact.objects.get(phone=phone(0))
    assert history.lifted and history.lift_source == UnsubscribedContact.LiftSource.JOIN


@pytest.mark.django_db
def test_help_by_twilios_opt_out_type_is_answered_with_the_help_reply(hooks, client, settings):
    settings.SMS_HELP_REPLY = "Riverside: call 555-0100"
    response = text(client, phone(0), "Ayuda", extra={"OptOutType": "HELP"})
    assert response.status_code == 200
    assert "<Message>Riverside: call 555-0100</Message>" in response.content.decode()


# --- Inbound replies from registrants link to their last blast ------------------------------


@pytest.mark.django_db
def test_a_registrants_reply_is_linked_to_the_event_blast_they_were_sent(hooks, client):
    event = make_event(n=1, start=3)
    blast = run_to_end(blast_create(body="Picnic moved to 2pm", event_ids=[event.pk]))
    text(client, phone(3), "Can I bring a friend?")
    message = InboundMessage.objects.get()
    assert message.registration == Registration.objects.get(phone=phone(3))
    assert message.member is None
    assert message.blast == blast


# --- Inbound texts behind nginx (X-Forwarded-Proto) ------------------------------------------


@pytest.mark.django_db
def test_inbound_through_a_trusted_proxy_with_x_forwarded_proto_https_validates(settings):
    settings.TWILIO_AUTH_TOKEN = "proxy-test-token"
    settings.PUBLIC_BASE_URL = ""
    settings.TRUSTED_PROXY_COUNT = 1
    settings.ALLOWED_HOSTS = ["sms.example.org"]
    signed_url = "https://sms.example.org" + INBOUND_PATH
    nginx = Client(HTTP_HOST="sms.example.org", HTTP_X_FORWARDED_PROTO="https")
    response = text(nginx, phone(0), "STOP", signed_url=signed_url)
    assert response.status_code == 200
    assert UnsubscribedContact.objects.filter(phone=phone(0), lifted=False).exists()

    # Without the proxy's header the request is plain http: not the URL Twilio signed.
    plain = Client(HTTP_HOST="sms.example.org")
    assert text(plain, phone(1), "STOP", signed_url=signed_url).status_code == 403
    assert not UnsubscribedContact.objects.filter(phone=phone(1)).exists()


# --- Only the webhook views skip CSRF -----------------------------------------------------------


def _routes(patterns, prefix=""):  # type: ignore[no-untyped-def]
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


@pytest.mark.django_db
def test_only_the_webhook_views_skip_csrf(admin_user):
    assert "django.middleware.csrf.CsrfViewMiddleware" in django_settings.MIDDLEWARE
    exempt = {
        route
        for route, view in _routes(get_resolver().url_patterns)
        if getattr(view, "csrf_exempt", False)
    }
    # The two import views are marked exempt only so the size limit is installed before the
    # CSRF middleware reads the body; they check the token themselves (below).
    assert exempt == {
        "webhooks/twilio/status/",
        "webhooks/twilio/inbound/",
        "admin/members/member/import/",
        "admin/events/event/<int:event_id>/import/",
    }

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    event = make_event()
    for url in ("/admin/members/member/import/", f"/admin/events/event/{event.pk}/import/"):
        response = strict.post(url, {})
        assert response.status_code == 403, url
        assert b"CSRF" in response.content, url
    assert not Member.objects.exists()
