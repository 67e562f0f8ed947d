"""Lifting in the admin: Admins only, with a reason, and the row stays as history."""

import pytest
from django.utils import timezone

from suppression.models import SuppressedContact, UnsubscribedContact
from suppression.services import blocked_phones, unsubscribe

pytestmark = pytest.mark.django_db

SUPPRESSED = "/admin/suppression/suppressedcontact/"
UNSUBSCRIBED = "/admin/suppression/unsubscribedcontact/"


@pytest.fixture
def suppressed():
    now = timezone.now()
    return [
        SuppressedContact.objects.create(
            phone=phone, error_code=30003, failure_count=2, last_failed_at=now
        )
        for phone in ("+12015550131", "+12015550132", "+12015550133")
    ]


@pytest.fixture
def unsubscribed():
    for phone in ("+12015550141", "+12015550142"):
        unsubscribe(phone=phone, source="keyword", evidence=f"STOP SM{phone[-3:]}")
    return list(UnsubscribedContact.objects.order_by("phone"))


def action_choices(client, changelist) -> dict:
    response = client.get(changelist)
    assert response.status_code == 200
    form = response.context["action_form"]  # None when no action is offered at all
    return dict(form.fields["action"].choices) if form else {}


def lift(client, changelist, action, rows, reason=None):
    data = {"action": action, "_selected_action": [r.pk for r in rows]}
    if reason is not None:
        data |= {"confirm": "yes", "lift_reason": reason}
    return client.post(changelist, data, follow=True)


def test_admin_is_offered_both_lift_actions(admin_client, suppressed, unsubscribed):
    assert "Lift selected suppressions" in str(action_choices(admin_client, SUPPRESSED)["lift"])
    assert "Re-subscribe" in str(action_choices(admin_client, UNSUBSCRIBED)["resubscribe"])


def test_lifting_asks_for_a_reason_first(admin_client, suppressed):
    first, *_ = suppressed
    page = lift(admin_client, SUPPRESSED, "lift", [first]).content.decode()
    assert "Lift these suppressions?" in page
    assert 'name="lift_reason"' in page
    first.refresh_from_db()
    assert first.lifted is False


def test_lifting_without_a_reason_lifts_nothing(admin_client, suppressed, unsubscribed):
    page = lift(admin_client, SUPPRESSED, "lift", suppressed, reason="   ").content.decode()
    assert "Give a reason" in page
    page = lift(admin_client, UNSUBSCRIBED, "resubscribe", unsubscribed, reason="").content
    assert "Give a reason" in page.decode()
    assert not SuppressedContact.objects.filter(lifted=True).exists()
    assert not UnsubscribedContact.objects.filter(lifted=True).exists()


def test_admin_lifts_selected_suppressions_with_a_reason(admin_client, admin_user, suppressed):
    first, second, untouched = suppressed
    response = lift(admin_client, SUPPRESSED, "lift", [first, second], reason="new phone")
    assert "Lifted 2 suppressions." in response.content.decode()

    for row in (first, second):
        row.refresh_from_db()
        assert (row.lifted, row.lifted_by, row.lift_reason) == (True, admin_user, "new phone")
        assert row.lifted_at is not None
    untouched.refresh_from_db()
    assert untouched.lifted is False
    # Blasts may reach the lifted numbers again, not the other one; history stays.
    assert blocked_phones(phones=[first.phone, second.phone, untouched.phone]) == {
        untouched.phone: "suppressed"
    }
    assert SuppressedContact.objects.count() == 3


def test_admin_resubscribes_with_a_reason_and_keeps_history(admin_client, admin_user, unsubscribed):
    first, second = unsubscribed
    page = lift(admin_client, UNSUBSCRIBED, "resubscribe", [first], reason="asked by email")
    assert "Re-subscribed 1 number." in page.content.decode()
    first.refresh_from_db()
    assert first.lifted and first.lift_source == "manual" and first.lifted_by == admin_user
    assert first.lift_reason == "asked by email"
    assert first.evidence == "STOP SM141"  # the opt-out's evidence stays
    assert blocked_phones(phones=[first.phone, second.phone]) == {second.phone: "unsubscribed"}


def test_lifting_again_says_which_were_already_lifted(admin_client, suppressed):
    first, second, _ = suppressed
    lift(admin_client, SUPPRESSED, "lift", [first], reason="works now")
    first.refresh_from_db()
    lifted_at = first.lifted_at

    page = lift(admin_client, SUPPRESSED, "lift", [first, second], reason="again").content
    page = page.decode()
    assert "Lifted 1 suppression." in page
    assert "1 were already lifted." in page
    first.refresh_from_db()
    assert (first.lifted_at, first.lift_reason) == (lifted_at, "works now")


def test_manager_is_not_offered_either_lift_action(manager_client, suppressed, unsubscribed):
    assert "lift" not in action_choices(manager_client, SUPPRESSED)
    assert "resubscribe" not in action_choices(manager_client, UNSUBSCRIBED)
    assert "Lift selected" not in manager_client.get(SUPPRESSED).content.decode()


def test_manager_posting_the_lift_actions_lifts_nothing(manager_client, suppressed, unsubscribed):
    lift(manager_client, SUPPRESSED, "lift", suppressed, reason="please")
    lift(manager_client, UNSUBSCRIBED, "resubscribe", unsubscribed, reason="please")
    assert not SuppressedContact.objects.filter(lifted=True).exists()
    assert not UnsubscribedContact.objects.filter(lifted=True).exists()


def test_nobody_edits_or_deletes_the_records(admin_client, suppressed, unsubscribed):
    supp, unsub = suppressed[0], unsubscribed[0]
    for url in (
        f"{SUPPRESSED}{supp.pk}/delete/",
        f"{UNSUBSCRIBED}{unsub.pk}/delete/",
    ):
        assert admin_client.post(url, {"post": "yes"}).status_code == 403
    response = admin_client.post(f"{SUPPRESSED}{supp.pk}/change/", {"lifted": "on"})
    assert response.status_code == 403
    assert SuppressedContact.objects.filter(pk=supp.pk, lifted=False).exists()
    assert UnsubscribedContact.objects.filter(pk=unsub.pk, lifted=False).exists()
