"""The messaging admin in staff's words: no engine fields or raw values on screen,
readable phone numbers, and an outbox that is a record (nothing to delete)."""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from messaging.models import Blast, Delivery, InboundMessage, OutboxMessage
from messaging.services import blast_create
from messaging.tests.conftest import make_members

pytestmark = pytest.mark.django_db

S = Delivery.Status

ENGINE_WORDS = (
    "Canary passed",
    "Send token",
    "Enqueued at",
    "Processing started at",
    "Claim token",
    "Claimed at",
    "Sender refusals",
    "Next attempt at",
    "Idempotency key",
    "Twilio status",
    "Status callback",
    "canary",
    "broker",
    "sweeper",
)


def html_of(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def assert_no_engine_words(html: str) -> None:
    for word in ENGINE_WORDS:
        assert word.lower() not in html.lower(), word


def make_blast(n: int = 2) -> Blast:
    make_members(n)
    blast = blast_create(body="Hello {first_name}", community=True, name="Picnic news")
    blast.refresh_from_db()
    return blast


def cell(text: str, field: str) -> re.Pattern[str]:
    return re.compile(
        rf'<t[dh] class="field-{field}"[^>]*>(<a [^>]*>)?{re.escape(text)}(</a>)?</t[dh]>'
    )


def readonly(label: str, value: str) -> re.Pattern[str]:
    """A read-only field on a change page: its label, then its value."""
    return re.compile(
        rf"<label>{re.escape(label)}:</label>\s*<div class=\"readonly\">{re.escape(value)}</div>"
    )


# --- 5. Engine words stay off the screen -----------------------------------------------------


@pytest.mark.parametrize("who", ["admin_client", "manager_client"])
def test_the_blast_change_page_names_engine_fields_in_plain_words(request, who):
    client = request.getfixturevalue(who)
    blast = make_blast()
    Blast.objects.filter(pk=blast.pk).update(
        status=Blast.Status.PAUSED,
        pause_cause=Blast.PauseCause.CANARY,
        canary_passed=True,
        send_token=uuid.uuid4(),
        enqueued_at=timezone.now(),
        processing_started_at=timezone.now(),
    )
    html = html_of(client.get(reverse("admin:messaging_blast_change", args=[blast.pk])))
    details = html[html.index(">Details<") :]
    assert 'class="module aligned collapse"' in html
    for label in (
        "Why it paused",
        "First messages checked",
        "Waiting to be picked up for sending since",
        "Last worked on",
        "Last changed",
    ):
        assert f"<label>{label}:</label>" in details, label
    assert "Too many of the first messages failed" in details
    assert readonly("Status", "Paused").search(html)
    assert_no_engine_words(html.replace("Too many of the first messages failed", ""))
    assert str(Blast.objects.get(pk=blast.pk).send_token) not in html


def test_the_blast_list_and_its_filter_show_status_labels(manager_client):
    blast = make_blast()
    Blast.objects.filter(pk=blast.pk).update(status=Blast.Status.AWAITING_APPROVAL)
    html = html_of(manager_client.get(reverse("admin:messaging_blast_changelist")))
    assert cell("Waiting for approval", "status").search(html)
    assert ">awaiting_approval<" not in html
    assert "Partially failed</a>" in html  # the status filter offers labels


@pytest.mark.parametrize("who", ["admin_client", "manager_client"])
def test_the_delivery_page_keeps_engine_fields_under_details_in_plain_words(request, who):
    client = request.getfixturevalue(who)
    blast = make_blast(1)
    row = Delivery.objects.get(blast=blast)
    Delivery.objects.filter(pk=row.pk).update(
        status=S.PENDING,
        twilio_status="queued",
        claim_token=uuid.uuid4(),
        claimed_at=timezone.now(),
        sender_refusals=1,
        next_attempt_at=timezone.now(),
    )
    html = html_of(client.get(reverse("admin:messaging_delivery_change", args=[row.pk])))
    top, details = html.split(">Details<", 1)
    assert readonly("Status", "Pending").search(top)
    assert readonly("Phone", "(201) 555-0000").search(top)
    for label in (
        "Last status Twilio reported",
        "Times Twilio refused the sender or account",
        "Not tried again before",
        "Last picked up for sending",
    ):
        assert f"<label>{label}:</label>" in details, label
        assert label not in top, label
    assert_no_engine_words(html)
    assert str(Delivery.objects.get(pk=row.pk).claim_token) not in html


def test_the_delivery_list_shows_labels_and_readable_numbers(admin_client):
    blast = make_blast(1)
    Delivery.objects.filter(blast=blast).update(status=S.UNKNOWN)
    html = html_of(admin_client.get(reverse("admin:messaging_delivery_changelist")))
    assert cell("(201) 555-0000", "phone").search(html)
    assert cell("Unknown", "status").search(html)
    assert ">+12015550000<" not in html


@pytest.mark.parametrize("who", ["admin_client", "manager_client"])
def test_the_inbox_shows_readable_numbers_and_keeps_ids_under_details(request, who):
    client = request.getfixturevalue(who)
    message = InboundMessage.objects.create(
        message_sid="SM" + "1" * 32,
        phone="+442079460958",
        to_number="+15005550006",
        body="Thanks!",
        kind=InboundMessage.Kind.STOP,
    )
    html = html_of(client.get(reverse("admin:messaging_inboundmessage_changelist")))
    assert cell("+44 20 7946 0958", "phone").search(html)
    assert cell("Stop keyword (unsubscribed)", "kind").search(html)
    html = html_of(client.get(reverse("admin:messaging_inboundmessage_change", args=[message.pk])))
    top, details = html.split(">Details<", 1)
    assert readonly("From", "+44 20 7946 0958").search(top)
    assert readonly("Kind", "Stop keyword (unsubscribed)").search(top)
    assert "SM" + "1" * 32 in details and "SM" + "1" * 32 not in top


# --- 6. The outbox is a record ---------------------------------------------------------------


@pytest.fixture
def outbox() -> OutboxMessage:
    return OutboxMessage.objects.create(
        sid="SM" + "2" * 32,
        to="+12015550123",
        body="Hi there",
        status_callback="https://example.org/webhooks/twilio/status/",
    )


@pytest.mark.parametrize("who", ["admin_client", "manager_client"])
def test_the_outbox_offers_no_delete(request, who, outbox):
    client = request.getfixturevalue(who)
    url = reverse("admin:messaging_outboxmessage_changelist")
    html = html_of(client.get(url))
    assert "delete_selected" not in html
    assert "Delete selected" not in html
    assert cell("(201) 555-0123", "to").search(html)

    response = client.post(
        url, {"action": "delete_selected", "_selected_action": [outbox.pk], "post": "yes"}
    )
    assert OutboxMessage.objects.filter(pk=outbox.pk).exists()
    delete_url = reverse("admin:messaging_outboxmessage_delete", args=[outbox.pk])
    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert OutboxMessage.objects.filter(pk=outbox.pk).exists()
    assert response.status_code in (200, 302)


def test_the_outbox_page_speaks_plainly(admin_client, outbox):
    url = reverse("admin:messaging_outboxmessage_change", args=[outbox.pk])
    html = html_of(admin_client.get(url))
    top, details = html.split(">Details<", 1)
    assert readonly("To", "(201) 555-0123").search(top)
    assert "<label>Status updates sent to:</label>" in details
    assert ">Delete<" not in html
    assert_no_engine_words(html)


# --- 3. The blast page's recipients, and its export -----------------------------------------


def test_the_blast_page_shows_readable_numbers_and_the_export_keeps_e164(manager_client):
    blast = make_blast(1)
    html = html_of(manager_client.get(reverse("messaging:blast", args=[blast.pk])))
    assert '<td data-label="Phone">(201) 555-0000</td>' in html
    export = manager_client.get(reverse("messaging:blast_export", args=[blast.pk]))
    body = b"".join(export.streaming_content).decode()
    assert "+12015550000" in body
    assert "(201) 555-0000" not in body
