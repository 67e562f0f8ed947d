"""The two roles as the migrations leave them, and what each may open in the admin."""

import pytest
from django.contrib.auth.models import Group, Permission

from events.models import Event, Registration
from members.models import Member
from messaging.models import Blast, Delivery, OutboxMessage
from smsadmin.roles import ADMIN, SOCIAL_MANAGER
from suppression.models import SuppressedContact, UnsubscribedContact

pytestmark = pytest.mark.django_db

# Written out here rather than imported from smsadmin.roles, so a change to the roles
# shows up as a failing test.
MANAGER_MUST_HAVE = {
    "members.add_member",
    "members.change_member",
    "members.delete_member",
    "members.view_member",
    "events.add_event",
    "events.change_event",
    "events.delete_event",
    "events.view_event",
    "events.add_registration",
    "events.change_registration",
    "events.delete_registration",
    "events.view_registration",
    "messaging.add_blast",
    "messaging.change_blast",
    "messaging.view_blast",
    "messaging.send_blast",
    "messaging.view_delivery",
    "messaging.view_outboxmessage",
    "messaging.add_recurrence",
    "messaging.change_recurrence",
    "messaging.delete_recurrence",
    "messaging.view_recurrence",
    "suppression.add_unsubscribedcontact",
    "suppression.view_unsubscribedcontact",
    "suppression.view_suppressedcontact",
    "suppression.view_failureevent",
}
MANAGER_MUST_NOT_HAVE = {
    "smsadmin.add_user",
    "smsadmin.change_user",
    "smsadmin.delete_user",
    "smsadmin.view_user",
    "auth.add_group",
    "auth.change_group",
    "auth.view_group",
    "auth.change_permission",
    "suppression.lift_suppression",
    "suppression.lift_unsubscribe",
    "suppression.change_suppressedcontact",
    "suppression.delete_suppressedcontact",
    "suppression.delete_unsubscribedcontact",
    "suppression.change_unsubscribedcontact",
    "messaging.change_delivery",
    "messaging.delete_delivery",
    "messaging.change_outboxmessage",
    "messaging.delete_outboxmessage",
    "axes.view_accessattempt",
    "axes.delete_accessattempt",
}


def group_perms(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    }


def test_both_groups_exist_after_migrations():
    assert set(Group.objects.values_list("name", flat=True)) >= {"Admin", "Social manager"}


def test_admin_group_holds_every_permission():
    perms = group_perms("Admin")
    every = {
        f"{app}.{codename}"
        for app, codename in Permission.objects.values_list("content_type__app_label", "codename")
    }
    assert perms == every
    assert {
        "smsadmin.add_user",
        "smsadmin.change_user",
        "smsadmin.delete_user",
        "suppression.lift_suppression",
        "messaging.send_blast",
        "suppression.delete_unsubscribedcontact",
    } <= perms


def test_social_manager_group_permissions():
    perms = group_perms("Social manager")
    assert perms >= MANAGER_MUST_HAVE, MANAGER_MUST_HAVE - perms
    assert not perms & MANAGER_MUST_NOT_HAVE, perms & MANAGER_MUST_NOT_HAVE
    # Nothing from the sign-in machinery or Django's own apps.
    assert {p.split(".")[0] for p in perms} <= {"members", "events", "messaging", "suppression"}


def test_permissions_reach_users_through_their_group(admin_user, manager_user):
    assert admin_user.has_perm("suppression.lift_suppression")
    assert admin_user.has_perm("smsadmin.change_user")
    assert manager_user.has_perm("messaging.send_blast")
    assert not manager_user.has_perm("suppression.lift_suppression")
    assert not manager_user.has_perm("smsadmin.view_user")


# --- What a Social manager may open --------------------------------------------------------


@pytest.fixture
def rows():
    event = Event.objects.create(name="Picnic", starts_at="2030-06-01T12:00:00Z")
    blast = Blast.objects.create(body="Hello", status=Blast.Status.SENT)
    return {
        "member": Member.objects.create(first_name="Ann", phone="+12015550101"),
        "event": event,
        "registration": Registration.objects.create(event=event, phone="+12015550102"),
        "blast": blast,
        "delivery": Delivery.objects.create(blast=blast, phone="+12015550103"),
        "outboxmessage": OutboxMessage.objects.create(sid="SM1", to="+12015550103", body="Hi"),
        "unsubscribedcontact": UnsubscribedContact.objects.create(phone="+12015550104"),
        "suppressedcontact": SuppressedContact.objects.create(phone="+12015550105"),
    }


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/members/member/",
        "/admin/members/member/add/",
        "/admin/events/event/",
        "/admin/events/event/add/",
        "/admin/events/registration/",
        "/admin/events/registration/add/",
        "/admin/messaging/blast/",
        "/admin/messaging/delivery/",
        "/admin/messaging/outboxmessage/",
        "/admin/messaging/recurrence/",
        "/admin/messaging/recurrence/add/",
        "/admin/suppression/unsubscribedcontact/",
        "/admin/suppression/unsubscribedcontact/add/",
        "/admin/suppression/suppressedcontact/",
    ],
)
def test_manager_may_open(manager_client, url):
    assert manager_client.get(url).status_code == 200


@pytest.mark.parametrize(
    "key", ["member", "event", "registration", "blast", "delivery", "outboxmessage"]
)
def test_manager_may_open_change_pages(manager_client, rows, key):
    obj = rows[key]
    url = f"/admin/{obj._meta.app_label}/{obj._meta.model_name}/{obj.pk}/change/"
    assert manager_client.get(url).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/admin/smsadmin/user/",
        "/admin/smsadmin/user/add/",
        "/admin/auth/group/",
        "/admin/axes/accessattempt/",
        "/admin/axes/accessfailurelog/",
    ],
)
def test_manager_may_not_open(manager_client, url):
    assert manager_client.get(url).status_code == 403


def test_manager_may_not_open_another_users_page(manager_client, admin_user):
    assert manager_client.get(f"/admin/smsadmin/user/{admin_user.pk}/change/").status_code == 403
    assert manager_client.get(f"/admin/smsadmin/user/{admin_user.pk}/password/").status_code == 403


def test_manager_index_lists_contacts_but_not_users(manager_client):
    page = manager_client.get("/admin/").content.decode()
    assert "/admin/members/member/" in page
    assert "/admin/messaging/blast/" in page
    assert "/admin/smsadmin/user/" not in page
    assert "/admin/auth/group/" not in page


def test_manager_may_not_delete_an_unsubscribe(manager_client, rows):
    unsub = rows["unsubscribedcontact"]
    url = f"/admin/suppression/unsubscribedcontact/{unsub.pk}/delete/"
    assert manager_client.get(url).status_code == 403
    assert manager_client.post(url, {"post": "yes"}).status_code == 403
    assert UnsubscribedContact.objects.filter(pk=unsub.pk).exists()


def test_manager_may_not_bulk_delete_unsubscribes(manager_client, rows):
    unsub = rows["unsubscribedcontact"]
    changelist = manager_client.get("/admin/suppression/unsubscribedcontact/")
    form = changelist.context["action_form"]  # None when no action is offered at all
    assert form is None or "delete_selected" not in dict(form.fields["action"].choices)
    manager_client.post(
        "/admin/suppression/unsubscribedcontact/",
        {"action": "delete_selected", "_selected_action": [unsub.pk], "post": "yes"},
    )
    assert UnsubscribedContact.objects.filter(pk=unsub.pk).exists()


def test_manager_may_add_an_unsubscribe_by_any_phone_form(manager_client, manager_user):
    response = manager_client.post(
        "/admin/suppression/unsubscribedcontact/add/",
        {"phone": "(201) 555-0177", "source": "manual", "reason": "asked by phone"},
    )
    assert response.status_code == 302
    unsub = UnsubscribedContact.objects.get()
    assert unsub.phone == "+12015550177"
    assert unsub.created_by == manager_user


def test_manager_sees_suppressions_read_only(manager_client, rows):
    supp = rows["suppressedcontact"]
    url = f"/admin/suppression/suppressedcontact/{supp.pk}/change/"
    page = manager_client.get(url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert manager_client.post(url, {"phone": supp.phone, "lifted": "on"}).status_code == 403
    supp.refresh_from_db()
    assert supp.lifted is False


def test_manager_may_not_change_an_unsubscribe(manager_client, rows):
    unsub = rows["unsubscribedcontact"]
    url = f"/admin/suppression/unsubscribedcontact/{unsub.pk}/change/"
    response = manager_client.post(url, {"phone": "+12015550199", "source": "manual"})
    assert response.status_code == 403
    unsub.refresh_from_db()
    assert unsub.phone == "+12015550104"


def test_manager_may_add_a_member(manager_client):
    response = manager_client.post(
        "/admin/members/member/add/",
        {"first_name": "Bo", "last_name": "Li", "phone": "201.555.0188", "is_active": "on"},
    )
    assert response.status_code == 302
    assert Member.objects.get().phone == "+12015550188"


@pytest.mark.django_db(transaction=True)
def test_the_roles_come_back_after_every_flush():
    # Each flush (tests that commit, `manage.py flush`) re-creates the roles through
    # post_migrate; the second one used to find every app skipped and leave none.
    from django.core.management import call_command

    for _ in range(3):
        call_command("flush", interactive=False, verbosity=0)
        names = set(Group.objects.values_list("name", flat=True))
        assert {ADMIN, SOCIAL_MANAGER} <= names
        assert Group.objects.get(name=ADMIN).permissions.filter(codename="approve_blast").exists()
