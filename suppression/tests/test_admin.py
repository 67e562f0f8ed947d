"""The unsubscribed and suppressed lists in the admin: evidence shown and linked,
search by any phone form, adding an unsubscribe, the failures list."""

import pytest
from django.apps import apps

from messaging.models import Blast, Delivery
from suppression.models import FailureEvent, UnsubscribedContact
from suppression.services import failure_record, unsubscribe

pytestmark = pytest.mark.django_db

UNSUBSCRIBED = "/admin/suppression/unsubscribedcontact/"
SUPPRESSED = "/admin/suppression/suppressedcontact/"
FAILURES = "/admin/suppression/failureevent/"


@pytest.fixture
def failures():
    blast = Blast.objects.create(name="Spring", body="Hi", status=Blast.Status.SENT)
    rows = {}
    for phone, code in (("+12015550151", 21211), ("+12015550152", 21610)):
        delivery = Delivery.objects.create(
            blast=blast, phone=phone, status="failed", error_code=code, twilio_sid=f"SM{code}"
        )
        failure_record(
            phone=phone,
            code=code,
            delivery_id=delivery.pk,
            blast_id=blast.pk,
            message_sid=f"SM{code}",
        )
        rows[code] = delivery
    return blast, rows


@pytest.mark.parametrize("client_name", ["admin_client", "manager_client"])
def test_lists_show_the_evidence_with_links(request, client_name, failures):
    client = request.getfixturevalue(client_name)
    blast, rows = failures
    page = client.get(SUPPRESSED).content.decode()
    assert "Invalid &#x27;To&#x27; Phone Number" in page
    assert f'href="/admin/messaging/blast/{blast.pk}/change/"' in page
    assert f'href="/admin/messaging/delivery/{rows[21211].pk}/change/"' in page
    assert "SM21211" in page

    page = client.get(UNSUBSCRIBED).content.decode()
    assert "Carrier reported an opt-out (21610)" in page
    assert f'href="/admin/messaging/delivery/{rows[21610].pk}/change/"' in page

    page = client.get(FAILURES).content.decode()
    assert page.count("/admin/messaging/blast/") >= 2


@pytest.mark.parametrize("typed", ["(201) 555-0151", "2015550151", "+1 201 555 0151"])
def test_failures_and_suppressions_found_by_any_phone_form(admin_client, failures, typed):
    for url in (SUPPRESSED, FAILURES):
        found = list(admin_client.get(url, {"q": typed}).context["cl"].result_list)
        assert [row.phone for row in found] == ["+12015550151"], url


def test_lists_filter_active_and_lifted(admin_client, admin_user):
    unsubscribe(phone="+12015550161", source="keyword")
    unsubscribe(phone="+12015550162", source="keyword")
    UnsubscribedContact.objects.filter(phone="+12015550162").update(lifted=True)
    active = admin_client.get(UNSUBSCRIBED, {"status": "active"}).context["cl"].result_list
    assert [row.phone for row in active] == ["+12015550161"]


def test_manager_adds_an_unsubscribe_with_a_reason(manager_client, manager_user):
    response = manager_client.post(
        UNSUBSCRIBED + "add/", {"phone": "201-555-0170", "source": "manual", "reason": ""}
    )
    assert response.status_code == 200  # the form again: a reason is required
    assert not UnsubscribedContact.objects.exists()

    response = manager_client.post(
        UNSUBSCRIBED + "add/",
        {"phone": "201-555-0170", "source": "manual", "reason": "asked at the door"},
    )
    assert response.status_code == 302
    row = UnsubscribedContact.objects.get()
    assert (row.phone, row.created_by, row.reason) == (
        "+12015550170",
        manager_user,
        "asked at the door",
    )


def test_adding_an_unsubscribe_twice_says_so(manager_client):
    unsubscribe(phone="+12015550170", source="keyword", evidence="STOP SM1")
    response = manager_client.post(
        UNSUBSCRIBED + "add/", {"phone": "(201) 555-0170", "source": "manual", "reason": "x"}
    )
    assert response.status_code == 200
    assert "(201) 555-0170 is already unsubscribed" in response.content.decode()
    assert UnsubscribedContact.objects.count() == 1


def test_staff_cannot_claim_a_keyword_or_carrier_source(manager_client):
    response = manager_client.post(
        UNSUBSCRIBED + "add/", {"phone": "2015550171", "source": "carrier", "reason": "x"}
    )
    assert response.status_code == 200
    assert not UnsubscribedContact.objects.exists()


def test_a_bad_number_is_a_form_error_not_a_crash(manager_client):
    response = manager_client.post(
        UNSUBSCRIBED + "add/", {"phone": "call me", "source": "manual", "reason": "x"}
    )
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()


def test_manager_cannot_add_a_suppression_or_touch_failures(manager_client, failures):
    assert manager_client.get(SUPPRESSED + "add/").status_code == 403
    event = FailureEvent.objects.first()
    assert manager_client.get(f"{FAILURES}{event.pk}/change/").status_code == 200
    assert manager_client.post(f"{FAILURES}{event.pk}/delete/", {"post": "yes"}).status_code == 403


def test_record_pages_open_read_only_with_their_evidence(admin_client, failures):
    blast, rows = failures
    for url, model_name in (
        (SUPPRESSED, "suppressedcontact"),
        (UNSUBSCRIBED, "unsubscribedcontact"),
        (FAILURES, "failureevent"),
    ):
        row = apps.get_model("suppression", model_name).objects.first()
        page = admin_client.get(f"{url}{row.pk}/change/")
        assert page.status_code == 200, url
        text = page.content.decode()
        assert 'name="_save"' not in text
        assert f"/admin/messaging/blast/{blast.pk}/change/" in text
