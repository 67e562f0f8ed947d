"""The registrations list leads to importing: one event's import page when the list shows
that event, else the event list; only for users who may import."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from events.models import Event

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/events/registration/"
HINT = "To import registrations, open an event and use Import CSV"


@pytest.fixture
def event() -> Event:
    return Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")


def page(client: Client, query: str = "") -> str:
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return response.content.decode()


def test_list_of_one_event_links_to_its_import(manager_client, event):
    Event.objects.create(name="Gala", starts_at="2026-08-01T12:00:00Z")
    html = page(manager_client, f"?event__id__exact={event.pk}")
    import_url = reverse("admin:events_event_import", args=[event.pk])
    assert f'<a href="{import_url}">Import CSV for Picnic</a>' in html
    assert HINT not in html


def test_unfiltered_list_points_to_the_event_list(manager_client, event):
    html = page(manager_client)
    assert f'<a href="{reverse("admin:events_event_changelist")}">{HINT}</a>' in html
    assert "Import CSV for" not in html


def test_unknown_event_gets_the_hint(manager_client, event):
    html = page(manager_client, f"?event__id__exact={event.pk + 100}")
    assert "Import CSV for" not in html
    assert HINT in html


def test_users_who_may_not_import_see_neither(django_user_model, event):
    viewer = django_user_model.objects.create_user(
        username="vic-viewer", password="x", is_staff=True, must_change_password=False
    )
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_registration"),
        Permission.objects.get(codename="view_event"),
    )
    client = Client()
    client.force_login(viewer)
    for query in ("", f"?event__id__exact={event.pk}"):
        html = page(client, query)
        assert "Import CSV" not in html
