"""Inbound messages: POST /webhooks/twilio/inbound/, signed as Twilio signs them.

The form is the one Twilio posts when someone texts our number
(``fake_twilio.inbound_params``), signed with ``twilio.request_validator.RequestValidator``
over PUBLIC_BASE_URL + the path, and posted through Django's test client.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from events.models import Registration
from members.models import ConsentSource, Member
from messaging.models import Blast, Delivery, InboundMessage
from messaging.services import blast_create
from messaging.services.inbound import keyword_of
from messaging.tests.conftest import make_event, make_members, phone
from messaging.tests.fake_twilio import inbound_params, sign
from messaging.tests.test_engine import run_to_end
from suppression.models import UnsubscribedContact

S = Delivery.Status
K = InboundMessage.Kind

BASE = "https://sms.example.org"
INBOUND_PATH = "/webhooks/twilio/inbound/"
TOKEN = "inbound-test-token"
INBOX = reverse("admin:messaging_inboundmessage_changelist")


@pytest.fixture(autouse=True)
def _webhook_settings(settings) -> None:
    settings.PUBLIC_BASE_URL = BASE
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.SMS_HELP_REPLY = ""
    settings.SMS_JOIN_KEYWORD = ""


def text(
    client: Client,
    from_: str,
    body: str,
    *,
    sid: str | None = None,
    signature: str | None = None,
    tamper: dict[str, str] | None = None,
    **extra: str,
):
    """Someone with number ``from_`` texts ``body`` to our number."""
    params = inbound_params(from_=from_, body=body, message_sid=sid, extra=extra)
    if signature is None:
        # Ours, or the fake Twilio's when a test sends through it too.
        signature = sign(django_settings.TWILIO_AUTH_TOKEN, BASE + INBOUND_PATH, params)
    return client.post(
        INBOUND_PATH,
        data=urlencode({**params, **(tamper or {})}),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def twiml_messages(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)  # noqa: S314 - our own answer
    assert root.tag == "Response"
    return [element.text or "" for element in root.iter("Message")]


def opted_out(number: str) -> bool:
    return UnsubscribedContact.objects.filter(phone=number, lifted=False).exists()


# --- Keywords ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", "STOP"),
        ("stop", "STOP"),
        ("  Stop.  ", "STOP"),
        ("STOPALL", "STOPALL"),
        ("unsubscribe!", "UNSUBSCRIBE"),
        ("Cancel", "CANCEL"),
        ("end", "END"),
        ("QUIT!!", "QUIT"),
        ("revoke", "REVOKE"),
        ("OptOut", "OPTOUT"),
        ('"stop"', "STOP"),
        ("\u00a0STOP\n", "STOP"),
        ("\uff33\uff34\uff2f\uff30", "STOP"),  # full-width letters
        ("stop \U0001f6d1", "STOP"),
    ],
)
@pytest.mark.django_db
def test_each_stop_keyword_unsubscribes_with_the_keyword_and_sid_as_evidence(client, body, keyword):
    make_members(1)
    sid = "SM" + "1" * 32
    assert twiml_messages(text(client, phone(0), body, sid=sid)) == []  # Twilio answers STOP
    opt_out = UnsubscribedContact.objects.get(phone=phone(0), lifted=False)
    assert opt_out.source == UnsubscribedContact.Source.KEYWORD
    assert keyword in opt_out.evidence and sid in opt_out.evidence
    message = InboundMessage.objects.get()
    assert (message.kind, message.keyword, message.handled) == (K.STOP, keyword, True)
    assert message.outcome == "unsubscribed"


@pytest.mark.django_db
def test_twilios_opt_out_type_counts_whatever_the_word(client):
    text(client, phone(1), "Arrêt", OptOutType="STOP")
    assert opted_out(phone(1))
    text(client, phone(1), "Reprendre", OptOutType="START")
    assert not opted_out(phone(1))
    assert twiml_messages(text(client, phone(1), "Aide", OptOutType="HELP")) == []


@pytest.mark.parametrize(
    "body", ["stop it", "Please stop texting me", "don't stop", "STOPS", "S T O P"]
)
@pytest.mark.django_db
def test_a_sentence_with_a_keyword_in_it_is_a_reply_not_a_keyword(client, body):
    assert twiml_messages(text(client, phone(0), body)) == []
    assert not opted_out(phone(0))
    message = InboundMessage.objects.get()
    assert (message.kind, message.handled) == (K.REPLY, False)


def test_keyword_of_strips_what_surrounds_the_word_only():
    assert keyword_of(" ¡Stop! ") == "STOP"
    assert keyword_of("stop-all") == "STOP-ALL"
    assert keyword_of("") == ""
    assert keyword_of("...") == ""


@pytest.mark.django_db
def test_a_stopped_number_is_skipped_by_the_next_blast_and_start_lifts_it(
    client, fake_twilio, settings
):
    make_members(3)
    text(client, phone(1), "STOP")

    first = run_to_end(blast_create(body="Hi", community=True))
    rows = dict(Delivery.objects.filter(blast=first).values_list("phone", "status"))
    assert rows == {phone(0): S.SENT, phone(1): S.SKIPPED, phone(2): S.SENT}
    assert fake_twilio.sent_to(phone(1)) == 0

    text(client, phone(1), "START")
    second = run_to_end(blast_create(body="Hi again", community=True))
    assert set(Delivery.objects.filter(blast=second).values_list("status", flat=True)) == {S.SENT}
    assert fake_twilio.sent_to(phone(1)) == 1


@pytest.mark.parametrize("word", ["START", "yes", " Unstop. "])
@pytest.mark.django_db
def test_start_keywords_lift_the_unsubscribe_and_keep_it_in_history(client, word):
    text(client, phone(0), "STOP")
    sid = "SM" + "2" * 32
    assert twiml_messages(text(client, phone(0), word, sid=sid)) == []
    assert not opted_out(phone(0))
    lifted = UnsubscribedContact.objects.get(phone=phone(0))
    assert lifted.lifted and lifted.lift_source == UnsubscribedContact.LiftSource.KEYWORD
    assert sid in lifted.lift_evidence
    message = InboundMessage.objects.get(message_sid=sid)
    assert (message.kind, message.outcome) == (K.START, "re-subscribed")


@pytest.mark.django_db
def test_start_without_an_unsubscribe_changes_nothing(client):
    text(client, phone(0), "START")
    assert not UnsubscribedContact.objects.exists()
    assert InboundMessage.objects.get().outcome == "was not unsubscribed"


@pytest.mark.django_db
def test_stop_twice_keeps_the_first_evidence(client):
    text(client, phone(0), "STOP", sid="SM" + "3" * 32)
    text(client, phone(0), "QUIT", sid="SM" + "4" * 32)
    [opt_out] = UnsubscribedContact.objects.all()
    assert "3" * 32 in opt_out.evidence
    assert InboundMessage.objects.get(keyword="QUIT").outcome == "was already unsubscribed"


@pytest.mark.parametrize("body", ["HELP", "info", "Help?"])
@pytest.mark.django_db
def test_help_is_answered_with_sms_help_reply(client, settings, body):
    settings.SMS_HELP_REPLY = "Riverside Community Group: call 555-0100 or write hi@example.org <3"
    assert twiml_messages(text(client, phone(0), body)) == [settings.SMS_HELP_REPLY]
    assert InboundMessage.objects.get().kind == K.HELP


@pytest.mark.django_db
def test_help_without_a_reply_set_answers_empty_twiml(client):
    response = text(client, phone(0), "HELP")
    assert twiml_messages(response) == []
    assert InboundMessage.objects.get().outcome.startswith("not answered")


# --- JOIN ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_join_adds_a_member_with_consent_and_welcomes_them(client, settings):
    settings.SMS_JOIN_KEYWORD = "JOIN"
    settings.ORG_NAME = "Riverside Community"
    sid = "SM" + "5" * 32
    [welcome] = twiml_messages(text(client, "+1 (201) 555-0042", " join! ", sid=sid))
    assert "Riverside Community" in welcome and "STOP" in welcome
    member = Member.objects.get(phone="+12015550042")
    assert member.is_active
    assert member.consent_source == ConsentSource.KEYWORD
    assert member.consent_at is not None
    assert "JOIN" in member.consent_evidence and sid in member.consent_evidence
    message = InboundMessage.objects.get()
    assert (message.kind, message.member, message.outcome) == (K.JOIN, member, "member added")


@pytest.mark.django_db
def test_an_unsubscribed_number_that_joins_is_resubscribed(client, settings):
    settings.SMS_JOIN_KEYWORD = "JOIN"
    make_members(1, is_active=False)
    text(client, phone(0), "STOP")
    twiml_messages(text(client, phone(0), "JOIN"))
    assert not opted_out(phone(0))
    assert UnsubscribedContact.objects.get().lift_source == UnsubscribedContact.LiftSource.JOIN
    member = Member.objects.get(phone=phone(0))
    assert member.is_active
    # The member predates consent records: the JOIN is recorded as theirs.
    assert member.consent_source == ConsentSource.KEYWORD
    assert InboundMessage.objects.get(kind=K.JOIN).outcome == "member re-activated; re-subscribed"


@pytest.mark.django_db
def test_join_keeps_an_existing_consent_record(client, settings):
    settings.SMS_JOIN_KEYWORD = "JOIN"
    Member.objects.create(
        phone=phone(0), consent_source=ConsentSource.STAFF, consent_evidence="asked at the door"
    )
    text(client, phone(0), "JOIN")
    member = Member.objects.get()
    assert (member.consent_source, member.consent_evidence) == (
        ConsentSource.STAFF,
        "asked at the door",
    )
    assert InboundMessage.objects.get().outcome == "already a member"


@pytest.mark.django_db
def test_join_is_off_by_default(client):
    assert twiml_messages(text(client, phone(0), "JOIN")) == []
    assert not Member.objects.exists()
    assert InboundMessage.objects.get().kind == K.REPLY


# --- The inbox -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reply_lands_in_the_inbox_linked_to_its_member_and_last_blast(
    client, fake_twilio, settings
):
    make_members(2)
    older = run_to_end(blast_create(body="First", community=True))
    newer = run_to_end(blast_create(body="Second", community=True))
    assert older.pk < newer.pk

    assert twiml_messages(text(client, phone(1), "See you Saturday! Can I bring my kids?")) == []

    message = InboundMessage.objects.get()
    assert message.kind == K.REPLY and not message.handled
    assert message.member == Member.objects.get(phone=phone(1))
    assert message.blast == newer
    assert message.body == "See you Saturday! Can I bring my kids?"
    assert message.to_number == "+15005550006"


@pytest.mark.django_db
def test_a_reply_from_a_registrant_is_linked_to_the_registration(client):
    event = make_event(n=1, start=7)
    text(client, phone(7), "Where do we meet?")
    message = InboundMessage.objects.get()
    assert message.member is None
    assert message.registration == Registration.objects.get(event=event)
    assert message.blast is None


@pytest.mark.django_db
def test_a_reply_from_a_stranger_or_a_sender_name_is_kept(client):
    text(client, "+447911123456", "Who is this?")
    text(client, "ACME", "STOP")  # not a phone number: nothing can be unsubscribed
    stranger, name = InboundMessage.objects.order_by("id")
    assert (stranger.phone, stranger.member, stranger.kind) == ("+447911123456", None, K.REPLY)
    assert (name.phone, name.kind, name.handled) == ("ACME", K.REPLY, False)
    assert not UnsubscribedContact.objects.exists()


@pytest.mark.django_db
def test_media_urls_are_kept(client):
    text(
        client,
        phone(0),
        "",
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2",
    )
    message = InboundMessage.objects.get()
    assert message.num_media == 2
    assert len(message.media_urls) == 2


@pytest.mark.django_db
def test_the_same_message_delivered_twice_is_stored_and_acted_on_once(client, settings):
    settings.SMS_HELP_REPLY = "Call us"
    sid = "SM" + "6" * 32
    text(client, phone(0), "STOP", sid=sid)
    text(client, phone(0), "STOP", sid=sid)
    assert InboundMessage.objects.count() == 1
    assert UnsubscribedContact.objects.count() == 1
    help_sid = "SM" + "7" * 32
    assert twiml_messages(text(client, phone(0), "HELP", sid=help_sid)) == ["Call us"]
    assert twiml_messages(text(client, phone(0), "HELP", sid=help_sid)) == ["Call us"]
    assert InboundMessage.objects.count() == 2


# --- Signatures and bad input ------------------------------------------------------------------


@pytest.mark.django_db
def test_unsigned_and_tampered_inbound_messages_change_nothing(client):
    params = inbound_params(from_=phone(0), body="Hello")
    unsigned = client.post(
        INBOUND_PATH, data=urlencode(params), content_type="application/x-www-form-urlencoded"
    )
    wrong = text(client, phone(0), "STOP", signature=sign("other", BASE + INBOUND_PATH, params))
    # A signed "Hello" replayed as STOP.
    good = sign(TOKEN, BASE + INBOUND_PATH, params)
    replayed = text(
        client, phone(0), "Hello", sid=params["MessageSid"], signature=good, tamper={"Body": "STOP"}
    )
    assert [r.status_code for r in (unsigned, wrong, replayed)] == [403, 403, 403]
    assert not InboundMessage.objects.exists()
    assert not UnsubscribedContact.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"From": ""}, b"From is missing"),
        ({"MessageSid": "", "SmsSid": ""}, b"MessageSid is missing"),
        ({"MessageSid": "SM<script>"}, b"not a message SID"),
    ],
)
def test_bad_inbound_input_gets_a_clear_400(client, change, message):
    params = {**inbound_params(from_=phone(0), body="Hi"), **change}
    response = client.post(
        INBOUND_PATH,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=sign(TOKEN, BASE + INBOUND_PATH, params),
    )
    assert response.status_code == 400
    assert message in response.content
    assert not InboundMessage.objects.exists()


# --- The admin inbox ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_read_search_and_filter_the_inbox_and_mark_replies_handled(
    client, manager_client, manager_user, fake_twilio, settings
):
    make_members(3)
    first = run_to_end(blast_create(body="Picnic on Saturday", community=True))
    text(client, phone(0), "Count me in!")
    second = run_to_end(blast_create(body="Rain plan", community=True))
    text(client, phone(1), "Is it still on?")
    text(client, phone(2), "STOP")

    page = manager_client.get(INBOX)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Count me in!" in html and "Is it still on?" in html
    assert "First0 Last0" in html

    by_blast = manager_client.get(INBOX, {"blast__id__exact": first.pk}).content.decode()
    assert "Count me in!" in by_blast and "Is it still on?" not in by_blast
    by_blast = manager_client.get(INBOX, {"blast__id__exact": second.pk}).content.decode()
    assert "Is it still on?" in by_blast and "Count me in!" not in by_blast

    # A number typed as people write it finds the message.
    found = manager_client.get(INBOX, {"q": "(201) 555-0001"}).content.decode()
    assert "Is it still on?" in found and "Count me in!" not in found
    assert "Count me in!" in manager_client.get(INBOX, {"q": "count me"}).content.decode()

    waiting = manager_client.get(INBOX, {"handled__exact": "0"}).content.decode()
    assert "Count me in!" in waiting and "STOP" not in waiting

    reply = InboundMessage.objects.get(body="Count me in!")
    response = manager_client.post(
        INBOX, {"action": "mark_handled", "_selected_action": [reply.pk]}, follow=True
    )
    assert "1 message marked as handled." in response.content.decode()
    reply.refresh_from_db()
    assert reply.handled and reply.handled_by == manager_user and reply.handled_at is not None

    # The detail page is read-only; messages are neither added nor deleted by hand.
    detail = manager_client.get(reverse("admin:messaging_inboundmessage_change", args=[reply.pk]))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert manager_client.get(reverse("admin:messaging_inboundmessage_add")).status_code == 403
    delete = reverse("admin:messaging_inboundmessage_delete", args=[reply.pk])
    assert manager_client.post(delete, {"post": "yes"}).status_code == 403
    assert InboundMessage.objects.filter(pk=reply.pk).exists()


@pytest.mark.django_db
def test_the_inbox_page_works_for_admins_with_unlinked_and_media_messages(client, admin_client):
    text(client, "+447911123456", "Who is this?")
    event = make_event(n=1, start=4, name="Cleanup")
    text(client, phone(4), "", NumMedia="1", MediaUrl0="https://api.twilio.com/x/Media/ME1")
    page = admin_client.get(INBOX)
    assert page.status_code == 200
    assert f"({event.name})" in page.content.decode()
    message = InboundMessage.objects.get(num_media=1)
    detail = admin_client.get(reverse("admin:messaging_inboundmessage_change", args=[message.pk]))
    assert "https://api.twilio.com/x/Media/ME1" in detail.content.decode()
    assert Blast.objects.count() == 0
