"""An event's admin page shows its registrations, its id, and the way to text them."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from events.models import Event, Registration
from members.models import ConsentSource, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def event() -> Event:
    return Event.objects.create(name="Picnic", starts_at="2026-07-04T12:00:00Z")


@pytest.fixture
def manager(manager_user) -> Client:
    client = Client()
    client.force_login(manager_user)
    return client


def page_of(client: Client, event: Event) -> str:
    response = client.get(f"/admin/events/event/{event.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def add_registrations(event: Event, start: int, stop: int) -> list[Registration]:
    return Registration.objects.bulk_create(
        Registration(event=event, first_name=f"R{i}", last_name="Lee", phone=f"+1201555{i:04d}")
        for i in range(start, stop)
    )


def test_page_lists_registrations_with_consent_and_tags(manager, event):
    other = Event.objects.create(name="Gala", starts_at="2026-08-01T12:00:00Z")
    ann = Registration.objects.create(
        event=event,
        first_name="Ann",
        last_name="Okafor",
        phone="+12015550123",
        consent_source=ConsentSource.FORM,
        consent_at="2026-06-01T10:00:00Z",
    )
    Registration.objects.create(event=event, first_name="Bo", phone="+12015550124")
    Registration.objects.create(event=other, first_name="Elsewhere", phone="+12015550125")
    ann.tags.add(Tag.objects.create(name="drivers"), Tag.objects.create(name="north side"))

    page = page_of(manager, event)

    assert "Registrations: 2" in page
    assert "Ann Okafor" in page and "Bo" in page and "Elsewhere" not in page
    assert "(201) 555-0123" in page and "+12015550123" not in page
    assert "Sign-up form 2026-06-01" in page
    assert "drivers, north side" in page
    assert f"?event__id__exact={event.pk}" in page
    assert "See all 2 registrations" in page


def test_page_shows_the_event_id_for_the_command_line(manager, event):
    page = page_of(manager, event)

    assert f"Event id: <strong>{event.pk}</strong>" in page
    assert f"send_blast --audience event:{event.pk}" in page
    assert "No one has registered yet." in page


def test_text_these_registrants_links_to_compose_for_a_manager(manager, event):
    page = page_of(manager, event)

    compose = reverse("messaging:compose") + f"?event={event.pk}"
    assert f'href="{compose}"' in page
    assert "Text these registrants" in page


def test_no_compose_link_without_send_blast(manager_user, event, django_user_model):
    viewer = django_user_model.objects.create_user(
        username="viewer", password="x-Not-Used-42", is_staff=True, must_change_password=False
    )
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_event", "view_registration"])
    )
    client = Client()
    client.force_login(viewer)

    page = page_of(client, event)

    assert f"Event id: <strong>{event.pk}</strong>" in page
    assert "Text these registrants" not in page
    assert reverse("messaging:compose") not in page


def test_a_big_event_shows_the_first_100_and_a_link_to_all(
    manager, event, django_assert_max_num_queries
):
    add_registrations(event, 0, 2000)
    tag = Tag.objects.create(name="drivers")
    through = Registration.tags.through
    through.objects.bulk_create(
        through(registration_id=pk, tag_id=tag.pk)
        for pk in Registration.objects.values_list("pk", flat=True)
    )
    page_of(manager, event)  # warm per-process caches

    with django_assert_max_num_queries(20):
        page = page_of(manager, event)

    assert "Registrations: 2000" in page
    assert "See all 2000 registrations" in page
    assert page.count("<td>(201) 555-") == 100
    assert page.count("<td>drivers</td>") == 100


def test_event_list_counts_registrations(manager, event):
    add_registrations(event, 0, 7)
    Event.objects.create(name="Empty", starts_at="2026-09-01T12:00:00Z")

    response = manager.get("/admin/events/event/")

    counts = {e.name: e._registrations for e in response.context["cl"].result_list}
    assert counts == {"Picnic": 7, "Empty": 0}


def test_add_page_has_no_registrations_block(manager):
    response = manager.get("/admin/events/event/add/")

    assert response.status_code == 200
    assert "event-registrations" not in response.content.decode()
    assert "Text these registrants" not in response.content.decode()
