"""The admin's models list is grouped the way staff think: Contacts, Sending, Opt-outs,
Users and sign-in (the sign-in lockout records among them, never under an "Axes"
heading); each app's own page still lists that app's models."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from smsadmin.admin_site import group_app_list

pytestmark = pytest.mark.django_db

INDEX = reverse("admin:index")

GROUPS = {
    "Contacts": ["members.Member", "members.Tag", "events.Event", "events.Registration"],
    "Sending": [
        "messaging.Blast",
        "messaging.Recurrence",
        "messaging.Delivery",
        "messaging.OutboxMessage",
        "messaging.InboundMessage",
    ],
    "Opt-outs": [
        "suppression.UnsubscribedContact",
        "suppression.SuppressedContact",
        "suppression.FailureEvent",
    ],
    "Users and sign-in": ["smsadmin.User", "auth.Group"],
}


def labels(app: dict) -> list[str]:
    return [model["model"]._meta.label for model in app["models"]]


def test_the_index_lists_the_models_in_four_groups_in_order(admin_client):
    app_list = admin_client.get(INDEX).context["app_list"]

    assert [app["name"] for app in app_list] == list(GROUPS)
    found = {app["name"]: labels(app) for app in app_list}
    for name, expected in GROUPS.items():
        assert found[name][: len(expected)] == expected, name
    # CSV imports close the contacts; every registered model is listed exactly once.
    assert "members.ImportJob" in found["Contacts"]
    listed = [label for models in found.values() for label in models]
    assert sorted(listed) == sorted(m._meta.label for m in admin.site._registry)


def test_the_sign_in_lockout_records_are_with_users_under_no_axes_heading(admin_client):
    response = admin_client.get(INDEX)

    axes_models = sorted(m._meta.label for m in admin.site._registry if m._meta.app_label == "axes")
    users = next(app for app in response.context["app_list"] if app["name"] == "Users and sign-in")
    assert sorted(label for label in labels(users) if label.startswith("axes.")) == axes_models
    page = response.content.decode()
    assert "AXES" not in page
    assert "Axes" not in page


def test_the_groups_render_with_their_headings_and_links(admin_client):
    page = admin_client.get(INDEX).content.decode()
    for name in GROUPS:
        assert f">{name}</a>" in page
    assert 'class="app-contacts module"' in page
    assert f'href="{reverse("admin:members_member_changelist")}"' in page
    assert f'href="{reverse("admin:app_list", args=["members"])}"' in page


def test_an_apps_own_page_still_lists_its_models(admin_client):
    for app_label in ("members", "events", "messaging", "suppression", "smsadmin", "auth"):
        response = admin_client.get(reverse("admin:app_list", args=[app_label]))
        assert response.status_code == 200, app_label
        app_list = response.context["app_list"]
        assert [app["app_label"] for app in app_list] == [app_label]


def test_a_changelist_sidebar_shows_the_groups(admin_client):
    response = admin_client.get(reverse("admin:events_event_changelist"))
    assert [app["name"] for app in response.context["available_apps"]] == list(GROUPS)


def test_staff_see_only_the_groups_they_may_view(django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_event"),
        Permission.objects.get(codename="view_inboundmessage"),
    )
    client = Client()
    client.force_login(user)

    app_list = client.get(INDEX).context["app_list"]

    assert [(app["name"], labels(app)) for app in app_list] == [
        ("Contacts", ["events.Event"]),
        ("Sending", ["messaging.InboundMessage"]),
    ]
    # The heading links to a page the user may open.
    contacts = app_list[0]
    assert contacts["app_url"] == reverse("admin:app_list", args=["events"])


def test_an_app_in_no_group_keeps_its_own_section_after_the_groups():
    def model(name: str) -> dict:
        return {"object_name": name, "name": name + "s"}

    app_dict = {
        "zoo": {"name": "Zoo", "app_label": "zoo", "app_url": "/z/", "models": [model("Bee")]},
        "members": {
            "name": "Members",
            "app_label": "members",
            "app_url": "/m/",
            "models": [model("Tag"), model("Member"), model("Extra")],
        },
    }

    grouped = group_app_list(app_dict)

    assert [(app["name"], [m["object_name"] for m in app["models"]]) for app in grouped] == [
        ("Contacts", ["Member", "Tag", "Extra"]),
        ("Zoo", ["Bee"]),
    ]
    assert grouped[0]["app_url"] == "/m/"
