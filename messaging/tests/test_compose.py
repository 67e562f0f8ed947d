"""The compose page as a manager uses it, through the Django test client: who may open
it, what the pre-flight panel says (segments, recipients, preview, cost, warnings),
the test send, the confirm step creating exactly one blast, and approval."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from conftest import STAFF_PASSWORD, make_staff_user
from members.models import Member, Tag
from messaging.models import Blast, Delivery, OutboxMessage
from messaging.services.composing import Audience, blast_preflight
from messaging.tests.conftest import make_event, make_members, phone, run_threads, run_to_end
from smsadmin.roles import ADMIN
from suppression.models import SuppressedContact
from suppression.services import unsubscribe

pytestmark = pytest.mark.django_db

OPT_OUT = " Reply STOP to opt out."


def preflight(client: Client, body: str, **audience) -> dict:
    data = {"body": body, "community": "on", **audience}
    if audience.get("community") is False:
        data.pop("community")
    response = client.post("/compose/preflight/", data)
    assert response.status_code == 200
    return response.json()


def compose_data(body: str, key: str | None = None, **extra) -> dict:
    return {"body": body, "community": "on", "idempotency_key": key or str(uuid.uuid4()), **extra}


@pytest.fixture
def manager(manager_user) -> Client:
    client = Client()
    client.force_login(manager_user)
    return client


# --- Who may compose -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/compose/", "/compose/preflight/", "/compose/test/", "/compose/confirm/"]
)
def test_anonymous_people_are_sent_to_sign_in(client, url):
    response = client.get(url) if url == "/compose/" else client.post(url, {})
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


@pytest.mark.parametrize(
    "url", ["/compose/", "/compose/preflight/", "/compose/test/", "/compose/confirm/"]
)
def test_staff_without_the_send_permission_get_403(client, django_user_model, url):
    user = django_user_model.objects.create_user(
        "viewer", password=STAFF_PASSWORD, is_staff=True, must_change_password=False
    )
    client.force_login(user)
    response = client.get(url) if url == "/compose/" else client.post(url, compose_data("hi"))
    assert response.status_code == 403
    assert not Blast.objects.exists()


def test_a_manager_sees_the_form_with_labels_and_placeholders(manager):
    html = manager.get("/compose/").content.decode()
    assert '<label for="id_body"' in html
    assert "Community members" in html
    assert 'data-insert="{first_name}"' in html
    assert 'name="idempotency_key"' in html


# --- Segments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "encoding", "segments"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 159 + "€", "GSM-7", 2),  # an extension character counts two
        ("a" * 158 + "€", "GSM-7", 1),
        ("a" * 70, "GSM-7", 1),
        ("a" * 69 + "ł", "UCS-2", 1),
        ("a" * 70 + "ł", "UCS-2", 2),
        ("a" * 134 + "ł", "UCS-2", 3),  # 135 units: 67 + 67 + 1
    ],
)
def test_the_panel_counts_segments_as_carriers_do(manager, body, encoding, segments):
    make_members(1)
    answer = preflight(manager, body)
    assert (answer["encoding"], answer["segments"]) == (encoding, segments)
    assert f"{segments} segment" in answer["html"]


def test_an_emoji_switches_to_ucs2_and_the_panel_names_it(manager):
    make_members(1)
    answer = preflight(manager, "See you there 😀" + OPT_OUT)
    assert answer["encoding"] == "UCS-2"
    assert "grinning face" in answer["html"]
    assert "Sent as UCS-2" in answer["html"]


def test_curly_quotes_are_named_and_offered_a_replacement(manager):
    make_members(1)
    answer = preflight(manager, "It\u2019s on" + OPT_OUT)
    assert answer["encoding"] == "UCS-2"
    assert answer["replacements"] == {"\u2019": "'"}
    assert "right single quotation mark" in answer["html"]
    assert "Replace look-alikes" in answer["html"]


def test_1600_characters_pass_and_1601_are_refused_with_nothing_created(manager):
    make_members(1)
    assert preflight(manager, "a" * 1600)["ok"]
    answer = preflight(manager, "a" * 1601)
    assert not answer["ok"]
    assert "1,601 characters" in answer["errors"]["body"][0]

    response = manager.post("/compose/confirm/", compose_data("a" * 1601))
    assert response.status_code == 400
    assert "Twilio takes at most 1,600" in response.content.decode()
    assert not Blast.objects.exists()


def test_a_long_name_adds_a_segment_to_the_worst_case(manager):
    make_members(3)
    Member.objects.create(first_name="Bartholomew-Alexander", last_name="X", phone=phone(50))
    body = "Hi {first_name}! " + "a" * (160 - len("Hi First0! "))
    answer = preflight(manager, body)
    assert answer["segments"] == 2  # the text as typed, with its placeholder
    html = answer["html"]
    assert "for Bartholomew-Alexander X" in html
    assert "<strong>2 segments</strong>" in html
    # Everyone else's message fits in one: the preview shows the first recipient's.
    assert "Preview for First0 Last0" in html


def test_a_name_outside_gsm7_makes_the_worst_case_ucs2(manager):
    make_members(2)
    Member.objects.create(first_name="Zoë", last_name="Ng", phone=phone(60))
    answer = preflight(manager, "Hi {first_name}, see you soon." + OPT_OUT)
    assert answer["encoding"] == "GSM-7"
    assert "UCS-2" in answer["html"]
    assert "Zoë Ng" in answer["html"]


def test_preflight_and_its_longest_message_on_postgres_and_sqlite_agree_with_creation(manager):
    make_members(4)
    Member.objects.create(first_name="Ñandú", last_name="Ætherling", phone=phone(70))
    body = "Hi {full_name}." + OPT_OUT
    result = blast_preflight(body=body, audience=Audience.of(community=True))
    from messaging.segments import segment_info
    from messaging.services.creating import blast_create

    blast = blast_create(body=body, community=True)
    worst = max(
        (segment_info(text=b).segments, segment_info(text=b).units)
        for b in Delivery.objects.filter(blast=blast).values_list("body", flat=True)
    )
    assert (result.longest.segments, result.longest.units) == worst


# --- Recipients ----------------------------------------------------------------------------


def test_the_breakdown_counts_exclusions_and_duplicates(manager):
    make_members(10)  # phones 0-9
    make_members(2, start=100, is_active=False)
    event = make_event(n=4, start=8)  # phones 8-11: 8 and 9 are members too
    unsubscribe(phone=phone(0), source="keyword", evidence="STOP SM1")
    SuppressedContact.objects.create(phone=phone(1), error_code=21211)
    SuppressedContact.objects.create(phone=phone(11), error_code=21211)
    unsubscribe(phone=phone(11), source="keyword", evidence="STOP SM2")  # both: counted once

    answer = preflight(manager, "Hello" + OPT_OUT, events=[event.pk])
    assert answer["recipients"] == 12 - 3
    html = answer["html"]
    for line in (
        "10 active members",
        "4 registrations",
        "2 duplicates (same phone): texted once",
        "2 unsubscribed: not texted",
        "1 suppressed",
        "2 inactive members: not included",
    ):
        assert line in html, line

    response = manager.post(
        "/compose/confirm/", compose_data("Hello" + OPT_OUT, events=[event.pk], confirm="1")
    )
    assert response.status_code == 302
    blast = Blast.objects.get()
    pending = Delivery.objects.filter(blast=blast, status=Delivery.Status.PENDING).count()
    assert pending == answer["recipients"]


def test_tags_narrow_the_community_to_members_with_any_of_them(manager):
    members = make_members(6)
    volunteers = Tag.objects.create(name="volunteers")
    north = Tag.objects.create(name="north side")
    Tag.objects.create(name="board")
    members[0].tags.add(volunteers)
    members[1].tags.add(volunteers, north)  # both tags: one recipient
    members[2].tags.add(north)
    data = {"tags": [volunteers.pk, north.pk]}

    answer = preflight(manager, "Hi" + OPT_OUT, **data)
    assert answer["recipients"] == 3
    assert "tagged north side or volunteers" in answer["html"]

    manager.post("/compose/confirm/", compose_data("Hi" + OPT_OUT, **data))
    blast = Blast.objects.get()
    assert set(Delivery.objects.filter(blast=blast).values_list("phone", flat=True)) == {
        phone(0),
        phone(1),
        phone(2),
    }
    assert set(blast.audience_tags.all()) == {volunteers, north}


def test_tags_are_ignored_when_community_members_are_not_chosen(manager):
    tag = Tag.objects.create(name="volunteers")
    event = make_event(n=2)
    response = manager.post(
        "/compose/",
        {"body": "hi", "tags": [tag.pk], "events": [event.pk], "idempotency_key": uuid.uuid4()},
    )
    # Tags only apply with community members; the event alone is the audience then.
    assert response.status_code == 200
    assert "Confirm and send to 2" in response.content.decode()


def test_no_audience_is_an_error_next_to_the_audience(manager):
    response = manager.post("/compose/", {"body": "hi", "idempotency_key": uuid.uuid4()})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="audience-errors"' in html
    assert "Choose an audience" in html


def test_the_preview_is_a_real_recipients_message(manager):
    event = make_event(n=2, name="Spring Gala")
    answer = preflight(
        manager,
        "Hi {first_name}, {event_name} at {event_location}!",
        community=False,
        events=[event.pk],
    )
    assert "Preview for Reg0 R" in answer["html"]
    assert "Hi Reg0, Spring Gala at Riverside Park!" in answer["html"]


def test_an_event_link_opens_compose_with_its_registrants_counted(manager):
    event = make_event(n=3)
    html = manager.get(f"/compose/?event={event.pk}").content.decode()
    assert re.search(rf'<input type="checkbox" name="events" value="{event.pk}"[^>]* checked', html)
    assert '<strong data-testid="recipients">3</strong>' in html


def test_cost_and_time_follow_the_settings(manager, settings):
    settings.SMS_COST_PER_SEGMENT = 0.01
    settings.SMS_RATE_PER_SECOND = 1
    make_members(300)
    answer = preflight(manager, "a" * 200 + OPT_OUT)  # 2 segments
    assert "About $6.00" in answer["html"]
    assert "about 5 minutes" in answer["html"]


def test_warnings_for_missing_opt_out_wording_and_empty_placeholders(manager):
    make_members(3)
    Member.objects.create(first_name="", last_name="Solo", phone=phone(40))
    Member.objects.create(first_name="", last_name="", phone=phone(41))
    answer = preflight(manager, "Hi {first_name}")
    html = answer["html"]
    assert "should say how to opt out" in html
    assert "{first_name} is empty for 2 recipients" in html
    assert (
        "should say how to opt out" not in preflight(manager, "Hi {first_name}." + OPT_OUT)["html"]
    )


# --- Test send -----------------------------------------------------------------------------


def test_send_a_test_to_me_needs_my_mobile(manager):
    make_members(1)
    response = manager.post("/compose/test/", compose_data("Hi {first_name}" + OPT_OUT))
    assert "You have no mobile number on your profile" in response.content.decode()
    assert not OutboxMessage.objects.exists()


def test_send_a_test_to_me_reaches_my_phone_rendered(manager, manager_user):
    manager_user.mobile_phone = "+12015559999"
    manager_user.save()
    make_members(1)
    response = manager.post("/compose/test/", compose_data("Hi {first_name}" + OPT_OUT))
    assert "Test sent to your mobile" in response.content.decode()
    message = OutboxMessage.objects.get()
    assert (message.to, message.body) == ("+12015559999", "Hi First0" + OPT_OUT)
    assert not Blast.objects.exists()
    # The form keeps what was typed.
    assert "Hi {first_name}" in response.content.decode()


def test_no_test_goes_to_a_number_that_opted_out(manager, manager_user):
    manager_user.mobile_phone = "+12015559999"
    manager_user.save()
    unsubscribe(phone="+12015559999", source="keyword", evidence="STOP SM3")
    make_members(1)
    response = manager.post("/compose/test/", compose_data("Hi" + OPT_OUT))
    assert "opt-out or suppression list" in response.content.decode()
    assert not OutboxMessage.objects.exists()


# --- Confirm -------------------------------------------------------------------------------


def test_review_shows_a_summary_and_creates_nothing(manager):
    make_members(3)
    unsubscribe(phone=phone(2), source="keyword", evidence="STOP SM4")
    response = manager.post("/compose/", compose_data("Hi {first_name}." + OPT_OUT))
    html = response.content.decode()
    assert "Confirm and send to 2" in html
    assert "1 unsubscribed" in html
    assert "Hi First0." in html
    assert not Blast.objects.exists()


def test_back_to_edit_keeps_the_text(manager):
    make_members(1)
    response = manager.post(
        "/compose/confirm/", compose_data("Keep me {first_name}" + OPT_OUT, edit="1")
    )
    assert response.status_code == 200
    assert "Keep me {first_name}" in response.content.decode()
    assert not Blast.objects.exists()


def test_the_same_form_confirmed_twice_creates_one_blast(manager):
    make_members(3)
    data = compose_data("Hi" + OPT_OUT, confirm="1")
    first = manager.post("/compose/confirm/", data)
    second = manager.post("/compose/confirm/", data, follow=True)
    assert first.status_code == 302
    blast = Blast.objects.get()
    assert first["Location"] == f"/blasts/{blast.pk}/"
    assert second.redirect_chain[0][0] == f"/blasts/{blast.pk}/"
    assert Delivery.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_same_form_confirmed_at_once_from_four_requests_creates_one_blast(manager_user):
    make_members(20)
    data = compose_data("Hi" + OPT_OUT, confirm="1")

    def submit(i: int) -> int:
        client = Client()
        client.force_login(manager_user)
        return client.post("/compose/confirm/", data).status_code

    assert run_threads(submit, 4) == [302] * 4
    assert Blast.objects.count() == 1
    assert Delivery.objects.count() == 20


def test_confirm_sends_and_the_blast_goes_out(manager):
    make_members(3)
    manager.post("/compose/confirm/", compose_data("Hi {first_name}" + OPT_OUT))
    blast = run_to_end(Blast.objects.get())
    assert blast.status == Blast.Status.SENT
    assert sorted(OutboxMessage.objects.values_list("body", flat=True)) == [
        f"Hi First{i}" + OPT_OUT for i in range(3)
    ]


# --- Approval ------------------------------------------------------------------------------


@pytest.fixture
def threshold(settings):
    settings.BLAST_APPROVAL_THRESHOLD = 2
    return 2


def test_a_managers_blast_above_the_threshold_waits_for_an_admin(manager, threshold, admin_user):
    make_members(3)
    answer = preflight(manager, "Hi" + OPT_OUT)
    assert "an Admin must approve this blast" in answer["html"]
    response = manager.post("/compose/confirm/", compose_data("Hi" + OPT_OUT), follow=True)
    assert "waits for an Admin's approval" in response.content.decode()
    blast = run_to_end(Blast.objects.get())
    assert blast.status == Blast.Status.AWAITING_APPROVAL
    assert not OutboxMessage.objects.exists()

    # The manager cannot approve it; an Admin can.
    assert manager.post(f"/blasts/{blast.pk}/approve/").status_code == 403
    admin = Client()
    admin.force_login(admin_user)
    admin.post(f"/blasts/{blast.pk}/approve/", {"note": "Looks good"})
    blast.refresh_from_db()
    assert blast.status == Blast.Status.QUEUED
    assert (blast.reviewed_by, blast.review_note) == (admin_user, "Looks good")
    assert run_to_end(blast).status == Blast.Status.SENT
    assert OutboxMessage.objects.count() == 3


def test_at_the_threshold_a_managers_blast_goes_out(manager, threshold):
    make_members(2)
    manager.post("/compose/confirm/", compose_data("Hi" + OPT_OUT))
    assert Blast.objects.get().status == Blast.Status.QUEUED


def test_an_admins_own_blast_does_not_wait(threshold, admin_client):
    make_members(5)
    admin_client.post("/compose/confirm/", compose_data("Hi" + OPT_OUT))
    assert Blast.objects.get().status == Blast.Status.QUEUED


def test_nobody_approves_their_own_blast(threshold, django_user_model):
    # An Admin whose blast waits (created before they became an Admin).
    author = make_staff_user(django_user_model, "mia", "Social manager")
    make_members(3)
    client = Client()
    client.force_login(author)
    client.post("/compose/confirm/", compose_data("Hi" + OPT_OUT))
    blast = Blast.objects.get()
    author.groups.add(Group.objects.get(name=ADMIN))
    client.force_login(django_user_model.objects.get(pk=author.pk))
    response = client.post(f"/blasts/{blast.pk}/approve/", follow=True)
    assert "Nobody approves their own blast" in response.content.decode()
    blast.refresh_from_db()
    assert blast.status == Blast.Status.AWAITING_APPROVAL


def test_rejecting_cancels_every_row(manager, threshold, admin_client):
    make_members(3)
    manager.post("/compose/confirm/", compose_data("Hi" + OPT_OUT))
    blast = Blast.objects.get()
    admin_client.post(f"/blasts/{blast.pk}/reject/", {"note": "Not this week"})
    blast = run_to_end(blast)
    assert blast.status == Blast.Status.REJECTED
    assert blast.review_note == "Not this week"
    assert set(Delivery.objects.values_list("status", flat=True)) == {"cancelled"}
    assert not OutboxMessage.objects.exists()
    # Approving it afterwards changes nothing.
    response = admin_client.post(f"/blasts/{blast.pk}/approve/", follow=True)
    assert "no longer waiting for approval" in response.content.decode()
    blast.refresh_from_db()
    assert blast.status == Blast.Status.REJECTED


def test_the_author_may_withdraw_a_waiting_blast(manager, threshold):
    make_members(3)
    manager.post("/compose/confirm/", compose_data("Hi" + OPT_OUT))
    blast = Blast.objects.get()
    response = manager.post(f"/blasts/{blast.pk}/reject/", follow=True)
    assert "Withdrawn" in response.content.decode()
    blast.refresh_from_db()
    assert blast.status == Blast.Status.REJECTED


@pytest.mark.django_db(transaction=True)
def test_two_admins_approving_at_once_send_it_once(threshold, django_user_model, manager_user):
    make_members(3)
    client = Client()
    client.force_login(manager_user)
    client.post("/compose/confirm/", compose_data("Hi" + OPT_OUT))
    blast = Blast.objects.get()
    admins = [make_staff_user(django_user_model, f"admin{i}", ADMIN) for i in range(2)]

    def approve(i: int) -> str:
        c = Client()
        c.force_login(admins[i])
        return c.post(f"/blasts/{blast.pk}/approve/", follow=True).content.decode()

    pages = run_threads(approve, 2)
    assert sum("Approved: sending to 3 people" in page for page in pages) == 1
    assert sum("no longer waiting for approval" in page for page in pages) == 1
    assert run_to_end(blast).status == Blast.Status.SENT
    assert OutboxMessage.objects.count() == 3


# --- The command, for ops -----------------------------------------------------------------


def test_send_blast_narrows_the_community_by_tag(capsys):
    from django.core.management import call_command

    members = make_members(4)
    tag = Tag.objects.create(name="Volunteers")
    members[3].tags.add(tag)
    call_command(
        "send_blast", "--audience", "community", "--tag", "volunteers", "--body", "Hi" + OPT_OUT
    )
    blast = Blast.objects.get()
    assert list(Delivery.objects.filter(blast=blast).values_list("phone", flat=True)) == [phone(3)]


def test_send_blast_names_the_tags_when_one_is_unknown():
    from django.core.management import CommandError, call_command

    Tag.objects.create(name="volunteers")
    with pytest.raises(CommandError, match="No tag named 'board'. Tags: volunteers."):
        call_command("send_blast", "--audience", "community", "--tag", "board", "--body", "Hi")
    assert not Blast.objects.exists()


def test_an_event_that_no_longer_exists_is_an_error_next_to_the_events(manager):
    event = make_event(n=1)
    response = manager.post("/compose/", compose_data("hi", events=[event.pk + 99]))
    assert response.status_code == 400
    html = response.content.decode()
    assert "Select a valid choice" in html
    assert not Blast.objects.exists()


def test_a_form_without_its_key_says_to_reload_and_creates_nothing(manager):
    make_members(1)
    response = manager.post("/compose/confirm/", {"body": "hi", "community": "on"})
    assert response.status_code == 400
    assert "Reload the page and try again" in response.content.decode()
    assert not Blast.objects.exists()


def test_a_blast_without_a_name_is_named_by_its_first_line_cut_at_a_word(manager):
    make_members(1)
    first = "The community garden opens on Saturday with a picnic and music for everyone"
    manager.post("/compose/confirm/", compose_data(first + "\n" + OPT_OUT))
    assert Blast.objects.get().name == "The community garden opens on Saturday with a picnic and…"


def test_one_recipient_is_one_person(manager):
    make_members(1)
    response = manager.post("/compose/confirm/", compose_data("Hi" + OPT_OUT), follow=True)
    assert "Sending to 1 person." in response.content.decode()


def test_as_one_types_the_audience_counts_are_reused_by_that_form_for_a_minute(manager):
    make_members(3)
    key = str(uuid.uuid4())
    assert preflight(manager, "Hi" + OPT_OUT, idempotency_key=key)["recipients"] == 3
    Member.objects.create(first_name="New", last_name="N", phone=phone(90))
    # The same form, typing on: the panel is not re-counted on every keystroke.
    assert preflight(manager, "Hi there" + OPT_OUT, idempotency_key=key)["recipients"] == 3
    # Another form, or none, counts afresh; so does the confirm step.
    assert preflight(manager, "Hi" + OPT_OUT, idempotency_key=str(uuid.uuid4()))["recipients"] == 4
    manager.post("/compose/confirm/", compose_data("Hi" + OPT_OUT, key=key))
    assert Delivery.objects.filter(status=Delivery.Status.PENDING).count() == 4
