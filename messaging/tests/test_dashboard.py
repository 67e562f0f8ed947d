"""The admin index's starting point: compose, the latest blasts with their progress, the
blasts waiting for approval, missed blasts, the next scheduled ones and when the scheduler
last ran, and the last 30 days' activity (messaging/tests/test_dashboard_charts.py), in a
bounded number of queries."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from messaging.models import Blast, Delivery, InboundMessage, Recurrence
from messaging.services import blast_create
from messaging.services.scheduling import recurrence_start
from messaging.tests.conftest import make_members
from smsadmin.models import Heartbeat
from suppression.models import SuppressedContact, UnsubscribedContact

pytestmark = pytest.mark.django_db

S = Delivery.Status
B = Blast.Status
INDEX = reverse("admin:index")


def make_blast(name: str, *, n: int = 4, start: int = 0, status: str | None = None) -> Blast:
    make_members(n, start=start)
    blast = blast_create(body="Hello", community=True, name=name)
    if status:
        Blast.objects.filter(pk=blast.pk).update(status=status)
    return blast


def page_url(blast: Blast) -> str:
    return reverse("messaging:blast", args=[blast.pk])


def test_a_manager_sees_compose_and_the_latest_blasts_with_progress(manager_client):
    blast = make_blast("Picnic news")
    Delivery.objects.filter(pk__in=Delivery.objects.filter(blast=blast).values("pk")[:3]).update(
        status=S.SENT
    )

    response = manager_client.get(INDEX)

    page = response.content.decode()
    assert f'href="{reverse("messaging:compose")}"' in page
    assert f'href="{page_url(blast)}"' in page
    assert "Picnic news" in page
    assert "Queued" in page
    assert "3 of 4" in page
    # The models list is still there below.
    assert reverse("admin:messaging_blast_changelist") in page


def test_blasts_waiting_for_approval_are_listed_with_links(admin_client):
    waiting = make_blast("Needs a yes", status=B.AWAITING_APPROVAL)
    make_blast("Already out", start=10, status=B.SENT)

    response = admin_client.get(INDEX)

    awaiting = response.context["dash"]["awaiting"]
    assert [b.pk for b in awaiting] == [waiting.pk]
    assert "Waiting for approval" in response.content.decode()
    assert f'href="{page_url(waiting)}"' in response.content.decode()


def test_only_the_latest_few_blasts_are_shown(admin_client):
    for i in range(12):
        make_blast(f"Blast {i}", n=1, start=i)
    recent = admin_client.get(INDEX).context["dash"]["recent"]
    assert len(recent) == 8
    assert recent[0][0].name == "Blast 11"


def test_without_send_blast_there_is_no_compose_button(django_user_model):
    make_blast("Picnic news")
    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_blast"))
    client = Client()
    client.force_login(user)
    page = client.get(INDEX).content.decode()
    assert "Picnic news" in page
    assert reverse("messaging:compose") not in page


def test_staff_who_may_not_view_blasts_see_no_blasts(django_user_model):
    make_blast("Picnic news")
    user = django_user_model.objects.create_user(username="plain", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    response = client.get(INDEX)
    assert response.status_code == 200
    assert "Picnic news" not in response.content.decode()


def test_the_index_costs_the_same_queries_for_one_blast_or_many(
    admin_client, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_blast("First", n=3)
    with CaptureQueriesContext(connection) as one:
        admin_client.get(INDEX)
    for i in range(1, 10):
        make_blast(f"More {i}", n=3, start=10 * i, status=B.AWAITING_APPROVAL if i % 2 else None)
    for i in range(12):
        missed = make_blast(f"Missed {i}", n=1, start=200 + i, status=B.MISSED)
        Blast.objects.filter(pk=missed.pk).update(scheduled_for=timezone.now())
        blast_create(
            body="Hello",
            community=True,
            name=f"Later {i}",
            scheduled_for=timezone.now() + timedelta(days=1 + i),
        )
        recurrence = Recurrence.objects.create(
            name=f"Repeating {i}",
            body="Hello",
            audience_community=True,
            frequency="monthly",
            day_of_month=1 + i,
            time_of_day=time(12, 0),
            starts_on=timezone.now().date(),
            ends_on=timezone.now().date() + timedelta(days=400),
        )
        recurrence_start(recurrence)
    Heartbeat.objects.create(name="scheduler", at=timezone.now())
    # A history on every one of the last 30 days: sent, delivered and failed deliveries
    # with many codes, opt-outs, suppressions and replies waiting in the inbox.
    now = timezone.now()
    for i, pk in enumerate(Delivery.objects.order_by("id").values_list("pk", flat=True)[:60]):
        moment = now - timedelta(days=i % 30)
        if i % 2:
            Delivery.objects.filter(pk=pk).update(
                status=S.DELIVERED, sent_at=moment, delivered_at=moment
            )
        else:
            Delivery.objects.filter(pk=pk).update(
                status=S.FAILED, error_code=30000 + i, updated_at=moment
            )
        UnsubscribedContact.objects.create(phone=f"+1201556{i:04d}", created_at=moment)
        SuppressedContact.objects.create(phone=f"+1201557{i:04d}", created_at=moment)
        InboundMessage.objects.create(message_sid=f"SM{i:032d}", phone=f"+1201558{i:04d}")
    with django_assert_max_num_queries(len(one.captured_queries)):
        response = admin_client.get(INDEX)
    dash = response.context["dash"]
    assert len(dash["recent"]) == 8
    assert (len(dash["missed"]), dash["missed_more"]) == (10, True)
    assert len(dash["upcoming"]) == 5
    activity = response.context["activity"]
    assert activity["deliveries"]["totals"]["failed"] == 30
    assert activity["opt_outs"]["totals"] == {"unsubscribed": 60, "suppressed": 60}
    assert activity["replies"]["count"] == 60


# --- Missed blasts, the next scheduled ones, the scheduler --------------------------------


def beat(*, seconds_ago: float) -> None:
    Heartbeat.objects.update_or_create(
        name="scheduler", defaults={"at": timezone.now() - timedelta(seconds=seconds_ago)}
    )


def scheduler_line(page: str) -> str:
    start = page.index('id="scheduler-state"')
    return " ".join(page[start : page.index("</p>", start)].replace("\xa0", " ").split())


def test_missed_blasts_are_listed_with_their_time_and_a_link(manager_client, settings):
    settings.TIME_ZONE = "America/New_York"
    due = datetime(2026, 3, 2, 18, 0, tzinfo=ZoneInfo("America/New_York"))
    missed = make_blast("Monday meetup", status=B.MISSED)
    Blast.objects.filter(pk=missed.pk).update(scheduled_for=due)
    make_blast("Went out", start=10, status=B.SENT)

    response = manager_client.get(INDEX)

    page = response.content.decode()
    assert "Missed (not sent)" in page
    assert [b.pk for b, _ in response.context["dash"]["missed"]] == [missed.pk]
    assert f'href="{page_url(missed)}"' in page
    assert "was due Mon 2026-03-02 18:00 America/New_York" in page


def test_no_missed_section_when_nothing_was_missed(manager_client):
    make_blast("Went out", status=B.SENT)
    assert "Missed (not sent)" not in manager_client.get(INDEX).content.decode()


def test_the_scheduler_line_says_when_it_last_ran(manager_client, settings):
    settings.SCHEDULER_POLL_SECONDS = 30
    beat(seconds_ago=125)
    page = manager_client.get(INDEX).content.decode()
    assert scheduler_line(page).endswith("Scheduler last ran: 2 minutes ago")
    assert 'class="mini quiet"' in page[page.index('id="scheduler-state"') - 40 :][:120]


def test_a_late_scheduler_is_a_warning(manager_client, settings):
    settings.SCHEDULER_POLL_SECONDS = 30
    beat(seconds_ago=3 * 3600 + 60)
    page = manager_client.get(INDEX).content.decode()
    line = scheduler_line(page)
    assert "Scheduler last ran: late: 3 hours ago." in line
    assert "check that Celery beat" in line
    assert 'class="blast-paused"' in page[page.index('id="scheduler-state"') - 40 :][:120]


def test_a_scheduler_that_never_ran_is_a_warning(manager_client):
    page = manager_client.get(INDEX).content.decode()
    assert "Scheduler last ran: never." in scheduler_line(page)
    assert 'class="blast-paused"' in page[page.index('id="scheduler-state"') - 40 :][:120]


def test_the_next_scheduled_blasts_are_listed_in_local_time(manager_client, settings):
    settings.TIME_ZONE = "America/New_York"
    zone = ZoneInfo("America/New_York")
    make_members(2)
    soon = timezone.now() + timedelta(hours=2)
    blasts = [
        blast_create(
            body="Hello",
            community=True,
            name=f"Later {i}",
            scheduled_for=soon + timedelta(days=2 * i),
        )
        for i in range(7)
    ]
    start = timezone.now().astimezone(zone).date() + timedelta(days=1)
    repeating = Recurrence.objects.create(
        name="Daily tip",
        body="Hello",
        audience_community=True,
        frequency="weekly",
        weekdays="0,1,2,3,4,5,6",
        time_of_day=time(7, 30),
        starts_on=start,
        ends_on=start + timedelta(days=30),
    )
    recurrence_start(repeating)

    response = manager_client.get(INDEX)

    upcoming = response.context["dash"]["upcoming"]
    assert len(upcoming) == 5
    assert [item.at for item in upcoming] == sorted(item.at for item in upcoming)
    page = response.content.decode()
    assert "Next scheduled" in page
    assert f'href="{page_url(blasts[0])}"' in page
    names = [item.name for item in upcoming]
    # Later 0 in two hours, the repeating one tomorrow morning, the others days apart.
    assert names == ["Later 0", "Daily tip", "Later 1", "Later 2", "Later 3"]
    first = blasts[0].scheduled_for.astimezone(zone)
    assert f"{first:%a %Y-%m-%d %H:%M} America/New_York" in page
    # The repeating blast's next occurrence is among them, linking to its page.
    assert f"{start:%a %Y-%m-%d} 07:30 America/New_York (repeating)" in page
    assert reverse("admin:messaging_recurrence_change", args=[repeating.pk]) in page
