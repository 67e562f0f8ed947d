"""The opt-out lists found by any phone form, lifting refused to Social managers on every
page, and the backfill over history whose numbers data retention erased."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services.retention import messages_erase_older
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact
from suppression.services import failure_record, unsubscribe

pytestmark = pytest.mark.django_db

UNSUBSCRIBED = "/admin/suppression/unsubscribedcontact/"
SUPPRESSED = "/admin/suppression/suppressedcontact/"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("backfill_suppressions", *args, stdout=out)
    return out.getvalue()


def snapshot() -> list:
    return [
        list(model.objects.order_by("pk").values())
        for model in (FailureEvent, SuppressedContact, UnsubscribedContact)
    ]


# --- Admin ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed", ["(201) 555-0170", "2015550170", "+1 201-555-0170", "12015550170"]
)
@pytest.mark.parametrize("client_name", ["admin_client", "manager_client"])
def test_the_unsubscribed_list_is_found_by_any_phone_form(request, client_name, typed):
    client = request.getfixturevalue(client_name)
    unsubscribe(phone="+12015550170", source="keyword", evidence="STOP SM1")
    unsubscribe(phone="+12015550171", source="keyword", evidence="STOP SM2")
    found = list(client.get(UNSUBSCRIBED, {"q": typed}).context["cl"].result_list)
    assert [row.phone for row in found] == ["+12015550170"]


def test_a_social_manager_cannot_lift_through_the_record_pages_either(manager_client):
    unsubscribe(phone="+12015550172", source="keyword", evidence="STOP SM3")
    blast = Blast.objects.create(name="b", body="Hi", status=Blast.Status.SENT)
    delivery = Delivery.objects.create(
        blast=blast, phone="+12015550173", status="failed", error_code=21211
    )
    failure_record(phone=delivery.phone, code=21211, delivery_id=delivery.pk, blast_id=blast.pk)
    unsub = UnsubscribedContact.objects.get()
    supp = SuppressedContact.objects.get()

    for url, data in (
        (f"{UNSUBSCRIBED}{unsub.pk}/change/", {"lifted": "on", "lift_reason": "x"}),
        (f"{SUPPRESSED}{supp.pk}/change/", {"lifted": "on", "lift_reason": "x"}),
        (f"{UNSUBSCRIBED}{unsub.pk}/delete/", {"post": "yes"}),
        (f"{SUPPRESSED}{supp.pk}/delete/", {"post": "yes"}),
    ):
        assert manager_client.post(url, data).status_code == 403, url
    assert UnsubscribedContact.objects.filter(lifted=False).count() == 1
    assert SuppressedContact.objects.filter(lifted=False).count() == 1


# --- Backfill over rows whose number data retention erased ------------------------------------


def erased_history() -> None:
    """A bad number that failed long ago, whose phone data retention has since erased,
    next to a live failure."""
    blast = Blast.objects.create(name="Old", body="", status=Blast.Status.SENT)
    old = Delivery.objects.create(
        blast=blast, phone="+12015550180", status="failed", error_code=21211
    )
    # RETENTION_DAYS later, data retention erases its number (manage.py erase_old_messages).
    erased = messages_erase_older(days=30, now=timezone.now() + timedelta(days=31))
    assert erased["deliveries"] == 1
    assert Delivery.objects.get(pk=old.pk).phone.startswith("erased-")
    Delivery.objects.create(blast=blast, phone="+12015550181", status="failed", error_code=30005)


def test_dry_run_predicts_the_real_run_when_numbers_were_erased():
    erased_history()
    dry = run("--dry-run")
    assert snapshot() == [[], [], []]
    real = run()
    strip = lambda text: [line for line in text.splitlines() if " in " not in line]  # noqa: E731
    # The erased row cannot be suppressed (there is no number): the dry run must not
    # announce a suppression the real run does not make.
    assert strip(dry) == strip(real)
    assert list(SuppressedContact.objects.values_list("phone", flat=True)) == ["+12015550181"]


def test_a_second_backfill_has_nothing_to_do_when_numbers_were_erased():
    erased_history()
    run()
    before = snapshot()
    second = run()
    assert snapshot() == before
    assert "Nothing to do" in second, second
