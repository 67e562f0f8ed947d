"""Phone numbers as staff meet them: the help text, the refusals, the lists and the search."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from events.models import Event, Registration
from members.models import Member
from smsadmin.phones import InvalidPhoneNumber, normalize_phone, phone_display
from suppression.models import SuppressedContact, UnsubscribedContact

pytestmark = pytest.mark.django_db

HOME = "+12015550124"
ABROAD = "+442079460958"


# --- 1. The help text reads whole ------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin_client", "manager_client"])
def test_the_phone_help_text_shows_its_placeholder_instead_of_swallowing_it(request, who):
    client = request.getfixturevalue(who)
    html = client.get("/admin/members/member/add/").content.decode()
    assert "stored as +&lt;country&gt;&lt;number&gt;." in html
    assert "e.g. (201) 555-0123 or +44 20 7946 0958" in html
    assert "<country>" not in html


def test_the_help_text_example_is_one_of_the_default_region():
    with override_settings(SMS_DEFAULT_REGION="GB"):
        field = Member._meta.get_field("phone").formfield()
    assert "(201)" not in field.help_text
    assert "+1 201-555-0123" in field.help_text
    assert "+&lt;country&gt;&lt;number&gt;" in field.help_text


# --- 2. A refusal names the country the number was judged in ---------------------------------


@pytest.mark.parametrize("raw", ["+44 7700 900123", "0044 7700 900123", "011 44 7700 900123"])
def test_a_number_with_a_country_code_is_judged_in_that_country(raw):
    # 07700 900xxx is Ofcom's range for drama: never a real phone, so still refused.
    with pytest.raises(InvalidPhoneNumber) as refused:
        normalize_phone(raw)
    assert "not a valid number for the United Kingdom (+44)" in str(refused.value)
    assert "US" not in str(refused.value)


def test_a_number_without_a_country_code_is_judged_in_the_default_region_and_says_so():
    with pytest.raises(InvalidPhoneNumber) as refused:
        normalize_phone("(200) 555-0123")
    message = str(refused.value)
    assert "not a valid number for the United States (+1)" in message
    assert "without a country code" in message
    assert "+44 20 7946 0958" in message


def test_abroad_the_home_country_code_is_named_after_the_default_region():
    canada = pytest.raises(InvalidPhoneNumber, match=r"for Canada \(\+1\)\.")
    with override_settings(SMS_DEFAULT_REGION="CA"), canada:
        normalize_phone("+1 200 555 0123")
    us = pytest.raises(InvalidPhoneNumber, match=r"for the United States \(\+1\)\.")
    with override_settings(SMS_DEFAULT_REGION="GB"), us:
        normalize_phone("+1 200 555 0123")


def test_a_uk_mobile_with_its_country_code_is_accepted():
    assert normalize_phone("+44 7911 123456") == "+447911123456"


def test_the_member_form_shows_the_country_it_judged_in(manager_client):
    response = manager_client.post(
        "/admin/members/member/add/",
        {"first_name": "Ann", "last_name": "Lee", "phone": "+44 7700 900123", "is_active": "on"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "not a valid number for the United Kingdom (+44)" in html
    assert "for US" not in html


# --- 3. Lists show numbers as people read them -----------------------------------------------


def test_phone_display_national_at_home_international_abroad():
    assert phone_display(HOME) == "(201) 555-0124"
    assert phone_display(ABROAD) == "+44 20 7946 0958"
    assert phone_display("") == ""
    assert phone_display("Acme") == "Acme"  # a sender name, not a number
    with override_settings(SMS_DEFAULT_REGION="GB"):
        assert phone_display(ABROAD) == "020 7946 0958"
        assert phone_display(HOME) == "+1 201-555-0124"


def cell(text: str, field: str = "phone") -> re.Pattern[str]:
    """The list cell of ``field`` holding ``text`` (a link when it is the first column)."""
    return re.compile(
        rf'<t[dh] class="field-{field}"[^>]*>(<a [^>]*>)?{re.escape(text)}(</a>)?</t[dh]>'
    )


@pytest.mark.parametrize("who", ["admin_client", "manager_client"])
def test_the_member_list_shows_readable_numbers_sorted_by_the_stored_one(request, who):
    client = request.getfixturevalue(who)
    Member.objects.create(first_name="Ann", last_name="Home", phone=HOME)
    Member.objects.create(first_name="Bob", last_name="Abroad", phone=ABROAD)
    html = client.get("/admin/members/member/").content.decode()
    assert cell("(201) 555-0124").search(html)
    assert cell("+44 20 7946 0958").search(html)
    assert HOME not in html and ABROAD not in html
    assert 'class="sortable column-phone' in html

    # The column sorts (by the stored number: +1… before +44…).
    html = client.get("/admin/members/member/", {"o": "3"}).content.decode()
    assert html.index("(201) 555-0124") < html.index("+44 20 7946 0958")
    html = client.get("/admin/members/member/", {"o": "-3"}).content.decode()
    assert html.index("+44 20 7946 0958") < html.index("(201) 555-0124")


def test_the_registration_list_shows_readable_numbers(manager_client):
    event = Event.objects.create(name="Picnic", starts_at="2031-01-01T10:00:00Z")
    Registration.objects.create(event=event, first_name="Cy", phone=HOME)
    html = manager_client.get("/admin/events/registration/").content.decode()
    assert cell("(201) 555-0124").search(html)


def test_the_unsubscribed_and_suppressed_lists_show_readable_numbers(admin_client):
    UnsubscribedContact.objects.create(phone=HOME, reason="Asked")
    SuppressedContact.objects.create(phone=ABROAD, error_code=30006)
    html = admin_client.get("/admin/suppression/unsubscribedcontact/").content.decode()
    assert cell("(201) 555-0124").search(html)
    html = admin_client.get("/admin/suppression/suppressedcontact/").content.decode()
    assert cell("+44 20 7946 0958").search(html)


def test_edit_forms_show_the_number_as_people_read_it_and_saving_keeps_it(manager_client):
    member = Member.objects.create(first_name="", last_name="", phone=HOME)
    abroad = Member.objects.create(first_name="Bo", last_name="Abroad", phone=ABROAD)
    page = manager_client.get(f"/admin/members/member/{member.pk}/change/").content.decode()
    assert 'value="(201) 555-0124"' in page
    # A member without a name is titled by the readable number too.
    assert "<h2>(201) 555-0124</h2>" in page
    assert "<title>(201) 555-0124 | Change member" in page
    assert HOME not in page.replace(f"/{member.pk}/", "")
    page = manager_client.get(f"/admin/members/member/{abroad.pk}/change/").content.decode()
    assert 'value="+44 20 7946 0958"' in page

    # Saving the form as shown changes nothing and says so with the readable number.
    response = manager_client.post(
        f"/admin/members/member/{member.pk}/change/",
        {"first_name": "", "last_name": "", "phone": "(201) 555-0124", "is_active": "on"},
        follow=True,
    )
    assert response.status_code == 200, response.content
    member.refresh_from_db()
    assert member.phone == HOME
    assert "(201) 555-0124" in response.content.decode()
    response = manager_client.post(
        f"/admin/members/member/{abroad.pk}/change/",
        {"first_name": "Bo", "last_name": "Abroad", "phone": "+44 20 7946 0958", "is_active": "on"},
    )
    assert response.status_code == 302
    abroad.refresh_from_db()
    assert abroad.phone == ABROAD


def test_a_refused_number_is_shown_back_as_it_was_typed(manager_client):
    page = manager_client.post(
        "/admin/members/member/add/", {"first_name": "Al", "phone": "+1 200 555 0123"}
    ).content.decode()
    assert 'value="+1 200 555 0123"' in page
    assert not Member.objects.exists()


def test_names_of_rows_in_titles_and_messages_use_readable_numbers():
    from messaging.models import Blast, Delivery, InboundMessage

    blast = Blast.objects.create(body="Hi")
    assert str(Delivery(blast=blast, phone=HOME, status="sent")) == "(201) 555-0124 (Sent)"
    assert str(InboundMessage(phone=ABROAD, body="Hello")) == "from +44 20 7946 0958: Hello"
    assert str(Member(phone=HOME)) == "(201) 555-0124"
    assert str(UnsubscribedContact(phone=HOME)) == "(201) 555-0124"
    assert str(SuppressedContact(phone=ABROAD)) == "+44 20 7946 0958"
    event = Event(name="Picnic")
    assert str(Registration(event=event, phone=HOME)) == "(201) 555-0124 at Picnic"


def test_storage_stays_e164():
    member = Member.objects.create(first_name="Ann", phone="(201) 555-0124")
    assert Member.objects.values_list("phone", flat=True).get(pk=member.pk) == HOME


# --- 4. Any part of a number finds it --------------------------------------------------------


@pytest.fixture
def two_members():
    Member.objects.create(first_name="Ann", last_name="Wanted", phone=HOME)
    Member.objects.create(first_name="Bob", last_name="Other", phone="+13125550999")


def found(client, term: str) -> set[str]:
    response = client.get("/admin/members/member/", {"q": term})
    assert response.status_code == 200
    return {member.last_name for member in response.context["cl"].result_list}


@pytest.mark.parametrize(
    "term",
    ["555-0124", "5550124", "(201) 555", "+1 201 555 0124", "201.555.0124", "(201) 555-0124"],
)
@pytest.mark.parametrize("who", ["admin_client", "manager_client"])
def test_any_part_of_a_number_finds_the_member(request, who, two_members, term):
    client = request.getfixturevalue(who)
    assert found(client, term) == {"Wanted"}


def test_names_and_short_or_wordy_terms_search_as_before(admin_client, two_members):
    assert found(admin_client, "Wanted") == {"Wanted"}
    assert found(admin_client, "Ann") == {"Wanted"}
    assert found(admin_client, "55") == set()  # too few digits to mean a number
    assert found(admin_client, "Picnic 555") == set()  # words: not a number search


def test_a_whole_number_written_with_00_finds_it(admin_client):
    Member.objects.create(first_name="Di", last_name="Abroad", phone=ABROAD)
    assert found(admin_client, "0044 20 7946 0958") == {"Abroad"}
    assert found(admin_client, "7946 0958") == {"Abroad"}


def test_registrations_are_found_by_part_of_their_number(manager_client):
    event = Event.objects.create(name="Picnic", starts_at="2031-01-01T10:00:00Z")
    Registration.objects.create(event=event, first_name="Cy", last_name="Wanted", phone=HOME)
    Registration.objects.create(event=event, first_name="Di", last_name="Other", phone=ABROAD)
    response = manager_client.get("/admin/events/registration/", {"q": "555-0124"})
    assert [r.last_name for r in response.context["cl"].result_list] == ["Wanted"]
