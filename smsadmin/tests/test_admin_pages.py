"""Every admin page an Admin uses opens, and search finds a number however it is typed."""

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from events.models import Event, Registration
from members.models import Member
from messaging.models import Blast, Delivery, OutboxMessage
from suppression.models import SuppressedContact, UnsubscribedContact

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
IDS = [model._meta.label for model, _ in REGISTERED]

# The models whose rows come only from the blast service or the SMS backend: the admin
# has no add page for them on purpose.
NO_ADD_PAGE = {
    "messaging.Blast",
    "messaging.Delivery",
    "messaging.OutboxMessage",
    "messaging.InboundMessage",  # made by Twilio's inbound webhook
    "members.ImportJob",  # made by an upload on the members or event page
    "suppression.FailureEvent",  # recorded by the classifier only
}


def test_every_app_of_ours_is_in_the_admin():
    labels = set(IDS)
    assert {
        "smsadmin.User",
        "auth.Group",
        "members.Member",
        "events.Event",
        "events.Registration",
        "messaging.Blast",
        "messaging.Delivery",
        "messaging.OutboxMessage",
        "suppression.UnsubscribedContact",
        "suppression.SuppressedContact",
    } <= labels


def test_admin_index_answers_200(admin_client):
    assert admin_client.get("/admin/").status_code == 200


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=IDS)
def test_every_changelist_answers_200_for_an_admin(admin_client, model, model_admin):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert admin_client.get(url).status_code == 200


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=IDS)
def test_every_add_page_answers_200_for_an_admin(admin_client, admin_user, model, model_admin):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
    request = RequestFactory().get(url)
    request.user = admin_user
    if not model_admin.has_add_permission(request):
        # Read-only by design (the blast service and axes make these rows).
        assert model._meta.label in NO_ADD_PAGE or model._meta.app_label == "axes"
        assert admin_client.get(url).status_code == 403
        return
    assert admin_client.get(url).status_code == 200


def test_the_pages_we_rely_on_have_add_forms(admin_client):
    for url in (
        "/admin/smsadmin/user/add/",
        "/admin/members/member/add/",
        "/admin/events/event/add/",
        "/admin/events/registration/add/",
        "/admin/suppression/unsubscribedcontact/add/",
        "/admin/suppression/suppressedcontact/add/",
    ):
        assert admin_client.get(url).status_code == 200, url


# --- Search by an unformatted phone -----------------------------------------------------------

TYPED_FORMS = ["(201) 555-0123", "201.555.0123", "2015550123", "1-201-555-0123", "+1 201 555 0123"]


def search(client, changelist: str, term: str) -> list:
    response = client.get(changelist, {"q": term})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.fixture
def phone_rows():
    """One row at +12015550123 and one decoy at another number, in every searchable table."""
    event = Event.objects.create(name="Gala", starts_at="2030-01-01T18:00:00Z")
    blast = Blast.objects.create(body="Hi", status=Blast.Status.SENT)
    rows = {}
    for phone, tag in (("+12015550123", "hit"), ("+12015550999", "decoy")):
        rows[("member", tag)] = Member.objects.create(first_name=tag, phone=phone)
        rows[("registration", tag)] = Registration.objects.create(event=event, phone=phone)
        rows[("delivery", tag)] = Delivery.objects.create(blast=blast, phone=phone)
        rows[("outboxmessage", tag)] = OutboxMessage.objects.create(
            sid=f"SM{tag}", to=phone, body="Hello"
        )
        rows[("unsubscribedcontact", tag)] = UnsubscribedContact.objects.create(phone=phone)
        rows[("suppressedcontact", tag)] = SuppressedContact.objects.create(phone=phone)
    return rows


CHANGELISTS = {
    "member": "/admin/members/member/",
    "registration": "/admin/events/registration/",
    "delivery": "/admin/messaging/delivery/",
    "outboxmessage": "/admin/messaging/outboxmessage/",
    "unsubscribedcontact": "/admin/suppression/unsubscribedcontact/",
    "suppressedcontact": "/admin/suppression/suppressedcontact/",
}


@pytest.mark.parametrize("typed", TYPED_FORMS)
@pytest.mark.parametrize("table", list(CHANGELISTS))
def test_search_by_an_unformatted_phone_finds_the_row(admin_client, phone_rows, table, typed):
    assert search(admin_client, CHANGELISTS[table], typed) == [phone_rows[(table, "hit")]]


def test_search_by_international_number_in_any_form(admin_client):
    london = Member.objects.create(first_name="Lon", phone="+442079460958")
    Member.objects.create(first_name="Other", phone="+12015550123")
    for typed in ("+44 20 7946 0958", "011 44 20 7946 0958", "0044 20 7946 0958"):
        assert search(admin_client, CHANGELISTS["member"], typed) == [london], typed


def test_search_by_name_still_works(admin_client, phone_rows):
    assert search(admin_client, CHANGELISTS["member"], "decoy") == [phone_rows[("member", "decoy")]]


def test_phone_search_keeps_the_list_filters(admin_client):
    Member.objects.create(first_name="Active", phone="+12015550123", is_active=True)
    response = admin_client.get(
        CHANGELISTS["member"], {"q": "(201) 555-0123", "is_active__exact": "0"}
    )
    assert list(response.context["cl"].result_list) == []


def test_manager_search_by_phone_too(manager_client, phone_rows):
    assert search(manager_client, CHANGELISTS["member"], "(201) 555-0123") == [
        phone_rows[("member", "hit")]
    ]
