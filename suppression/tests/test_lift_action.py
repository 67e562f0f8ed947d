"""The "Lift selected suppressions" admin action: Admins only."""

import pytest
from django.utils import timezone

from suppression.models import SuppressedContact
from suppression.services import blocked_phones

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/suppression/suppressedcontact/"


@pytest.fixture
def suppressed():
    now = timezone.now()
    return [
        SuppressedContact.objects.create(
            phone=phone, error_code=30003, failure_count=2, last_failed_at=now
        )
        for phone in ("+12015550131", "+12015550132", "+12015550133")
    ]


def action_choices(client) -> dict:
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    form = response.context["action_form"]  # None when no action is offered at all
    return dict(form.fields["action"].choices) if form else {}


def test_admin_is_offered_the_lift_action(admin_client, suppressed):
    choices = action_choices(admin_client)
    assert "lift" in choices
    assert "Lift selected suppressions" in str(choices["lift"])


def test_admin_lifts_selected_suppressions(admin_client, admin_user, suppressed):
    first, second, untouched = suppressed
    response = admin_client.post(
        CHANGELIST,
        {"action": "lift", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Lifted 2 suppressions." in response.content.decode()

    for row in (first, second):
        row.refresh_from_db()
        assert row.lifted is True
        assert row.lifted_by == admin_user
        assert row.lifted_at is not None
    untouched.refresh_from_db()
    assert untouched.lifted is False
    # Blasts may reach the lifted numbers again, not the other one.
    assert blocked_phones(phones=[first.phone, second.phone, untouched.phone]) == {
        untouched.phone: "suppressed"
    }


def test_lifting_again_says_which_were_already_lifted(admin_client, suppressed):
    first, second, _ = suppressed
    admin_client.post(CHANGELIST, {"action": "lift", "_selected_action": [first.pk]})
    first.refresh_from_db()
    lifted_at = first.lifted_at

    response = admin_client.post(
        CHANGELIST, {"action": "lift", "_selected_action": [first.pk, second.pk]}, follow=True
    )
    page = response.content.decode()
    assert "Lifted 1 suppression." in page
    assert "1 were already lifted." in page
    first.refresh_from_db()
    assert first.lifted_at == lifted_at


def test_manager_is_not_offered_the_lift_action(manager_client, suppressed):
    assert "lift" not in action_choices(manager_client)
    assert "Lift selected" not in manager_client.get(CHANGELIST).content.decode()


def test_manager_posting_the_lift_action_lifts_nothing(manager_client, suppressed):
    manager_client.post(
        CHANGELIST, {"action": "lift", "_selected_action": [s.pk for s in suppressed]}
    )
    assert SuppressedContact.objects.filter(lifted=True).count() == 0
