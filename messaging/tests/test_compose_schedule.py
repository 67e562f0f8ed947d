"""Compose's "When": send later, event reminders, quiet hours, editing a scheduled
blast; times entered and shown in TIME_ZONE, across daylight-saving changes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone

from messaging.models import Blast, Delivery, OutboxMessage
from messaging.services.scheduling import scheduled_dispatch
from messaging.tests.conftest import make_event, make_members, run_to_end

pytestmark = pytest.mark.django_db

B = Blast.Status
NY = ZoneInfo("America/New_York")
BODY = "Hi {first_name}. Reply STOP to opt out."


@pytest.fixture
def manager(manager_user) -> Client:
    client = Client()
    client.force_login(manager_user)
    return client


@pytest.fixture
def new_york(settings):
    settings.TIME_ZONE = "America/New_York"


def form(**extra) -> dict:
    data = {"body": BODY, "community": "on", "idempotency_key": str(uuid.uuid4()), "when": "now"}
    data.update(extra)
    return data


def local_input(moment: datetime) -> str:
    return moment.astimezone(NY).strftime("%Y-%m-%dT%H:%M")


def test_send_later_stores_the_local_time_and_shows_it_back_with_its_zone(manager, new_york):
    make_members(2)
    # 2027-03-14 is the spring change in New York: 12:00 is EDT (UTC-4), the day
    # before is EST (UTC-5).
    for text, utc_hour, abbreviation in (
        ("2027-03-13T12:00", 17, "EST"),
        ("2027-03-14T12:00", 16, "EDT"),
        ("2027-11-07T12:00", 17, "EST"),  # the autumn change
    ):
        review = manager.post("/compose/", form(when="later", send_at=text))
        html = review.content.decode()
        assert review.status_code == 200, html
        assert f"12:00 {abbreviation} (America/New_York)" in html
        assert "Confirm: schedule it" in html
        data = form(when="later", send_at=text)
        manager.post("/compose/confirm/", data)
        blast = Blast.objects.get(idempotency_key=data["idempotency_key"])
        assert blast.status == B.SCHEDULED
        assert blast.scheduled_for.astimezone(UTC).hour == utc_hour
        assert not Delivery.objects.filter(blast=blast).exists()
        # Edit shows the same local time back.
        edit = manager.get(f"/compose/?edit={blast.pk}").content.decode()
        assert f'value="{text}"' in edit
        page = manager.get(f"/blasts/{blast.pk}/").content.decode()
        assert f"12:00 {abbreviation} (America/New_York)" in page


def test_a_time_that_does_not_exist_locally_is_a_clear_error(manager, new_york):
    make_members(1)
    response = manager.post("/compose/", form(when="later", send_at="2027-03-14T02:30"))
    assert response.status_code == 400
    assert "couldn’t be interpreted in time zone America/New_York" in response.content.decode()
    assert not Blast.objects.exists()


@pytest.mark.parametrize("minutes", [-60, 0.5])
def test_send_later_needs_a_minute_ahead(manager, minutes):
    make_members(1)
    when = timezone.now() + timedelta(minutes=minutes)
    response = manager.post(
        "/compose/confirm/", form(when="later", send_at=when.strftime("%Y-%m-%dT%H:%M"))
    )
    assert response.status_code == 400
    assert "at least a minute from now" in response.content.decode()
    assert not Blast.objects.exists()


def test_later_without_a_time_says_so(manager):
    make_members(1)
    response = manager.post("/compose/", form(when="later"))
    assert "Choose the date and time to send it." in response.content.decode()


def quiet_around(moment: datetime) -> str:
    return f"{(moment - timedelta(hours=1)):%H:%M}-{(moment + timedelta(hours=1)):%H:%M}"


def test_sending_now_in_quiet_hours_needs_the_override(manager, settings):
    settings.QUIET_HOURS = quiet_around(timezone.now())
    make_members(2)
    response = manager.post("/compose/confirm/", form())
    assert response.status_code == 400
    assert "is inside quiet hours" in response.content.decode()
    assert not Blast.objects.exists()

    manager.post("/compose/confirm/", form(quiet_hours_ok="on"))
    blast = Blast.objects.get()
    assert blast.quiet_hours_override
    assert run_to_end(blast).status == B.SENT


def test_scheduling_into_quiet_hours_needs_the_override(manager, settings):
    at = (timezone.now() + timedelta(days=2)).replace(hour=23, minute=0, second=0, microsecond=0)
    settings.QUIET_HOURS = "21:00-09:00"
    make_members(1)
    text = at.strftime("%Y-%m-%dT%H:%M")
    response = manager.post("/compose/", form(when="later", send_at=text))
    assert "is inside quiet hours (21:00-09:00, UTC)" in response.content.decode()
    manager.post("/compose/confirm/", form(when="later", send_at=text, quiet_hours_ok="on"))
    assert Blast.objects.get().quiet_hours_override


def test_a_blast_that_would_run_into_quiet_hours_is_warned_about(manager, settings):
    settings.SMS_RATE_PER_SECOND = 1
    at = (timezone.now() + timedelta(days=2)).replace(hour=20, minute=58, second=0, microsecond=0)
    settings.QUIET_HOURS = "21:00-09:00"
    make_members(300)  # five minutes at one a second
    response = manager.post("/compose/", form(when="later", send_at=at.strftime("%Y-%m-%dT%H:%M")))
    assert "still be sending when quiet hours begin at 21:00" in response.content.decode()


def test_an_event_reminder_from_compose(manager, new_york):
    event = make_event(n=2, name="Gala")
    event.starts_at = datetime(2027, 3, 15, 19, 0, tzinfo=NY)
    event.save()
    data = form(when="reminder", remind_before="1440", events=[event.pk])
    data.pop("community")
    review = manager.post("/compose/", data).content.decode()
    assert "1 day before Gala starts" in review
    manager.post("/compose/confirm/", data)
    blast = Blast.objects.get()
    assert blast.scheduled_for == datetime(2027, 3, 14, 19, 0, tzinfo=NY)
    assert blast.remind_event == event

    # With the community too, or without an event, it is refused next to the choice.
    response = manager.post("/compose/", form(when="reminder", remind_before="60"))
    assert "A reminder goes to one event" in response.content.decode()


def test_a_scheduled_blast_is_edited_in_place_until_it_is_claimed(manager):
    make_members(3)
    later = timezone.now() + timedelta(hours=3)
    manager.post("/compose/confirm/", form(when="later", send_at=later.strftime("%Y-%m-%dT%H:%M")))
    blast = Blast.objects.get()
    page = manager.get(f"/blasts/{blast.pk}/").content.decode()
    assert f"/compose/?edit={blast.pk}" in page

    edit = manager.get(f"/compose/?edit={blast.pk}").content.decode()
    assert "Hi {first_name}. Reply STOP to opt out." in edit
    new_time = later + timedelta(hours=1)
    changed = form(
        body="Changed {first_name}. Reply STOP to opt out.",
        when="later",
        send_at=new_time.strftime("%Y-%m-%dT%H:%M"),
        editing=str(blast.pk),
    )
    response = manager.post("/compose/confirm/", changed, follow=True)
    assert "Changes saved." in response.content.decode()
    assert Blast.objects.count() == 1
    blast.refresh_from_db()
    assert blast.body.startswith("Changed")
    assert blast.scheduled_for.strftime("%H:%M") == new_time.strftime("%H:%M")

    # Claimed by a dispatch pass: no more changes.
    Blast.objects.filter(pk=blast.pk).update(scheduled_for=timezone.now())
    scheduled_dispatch()
    again = manager.post("/compose/confirm/", {**changed, "body": "Too late. Reply STOP."})
    assert "It can no longer be changed" in again.content.decode()
    blast.refresh_from_db()
    assert blast.body.startswith("Changed")
    run_to_end(blast)
    assert sorted(OutboxMessage.objects.values_list("body", flat=True))[0].startswith("Changed")


def test_a_missed_blast_is_sent_now_from_its_page(manager, manager_user):
    make_members(2)
    later = timezone.now() + timedelta(hours=3)
    manager.post("/compose/confirm/", form(when="later", send_at=later.strftime("%Y-%m-%dT%H:%M")))
    blast = Blast.objects.get()
    Blast.objects.filter(pk=blast.pk).update(scheduled_for=timezone.now() - timedelta(hours=2))
    scheduled_dispatch()
    page = manager.get(f"/blasts/{blast.pk}/").content.decode()
    assert "Missed (not sent)" in page
    assert "Send it now" in page

    response = manager.post(f"/blasts/{blast.pk}/send-now/", follow=True)
    assert "It goes out within a minute" in response.content.decode()
    scheduled_dispatch()
    assert run_to_end(Blast.objects.get(pk=blast.pk)).status == B.SENT
    assert OutboxMessage.objects.count() == 2
