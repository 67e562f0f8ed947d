"""Repeating blasts in the admin: creating and changing one (its next occurrence in local
time), every refused form changing nothing, quiet hours, stopping and starting again, and
the occurrences listed on its page. As a Social manager and as an Admin."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from members.models import Tag
from messaging.models import Blast, Recurrence
from messaging.services.scheduling import recurrences_fire
from messaging.tests.conftest import make_event, make_members

pytestmark = pytest.mark.django_db

NEW_YORK = "America/New_York"
ADD = reverse("admin:messaging_recurrence_add")
CHANGELIST = reverse("admin:messaging_recurrence_changelist")
BODY = "Hi {first_name}, the weekly meetup is tonight. Reply STOP to opt out."


def change_url(recurrence: Recurrence) -> str:
    return reverse("admin:messaging_recurrence_change", args=[recurrence.pk])


def local_today(zone: str = NEW_YORK) -> date:
    return timezone.now().astimezone(ZoneInfo(zone)).date()


def form(**overrides) -> dict:
    """A valid weekly repeating blast: Mondays and Thursdays at 18:00 for a few weeks,
    starting a few days from now."""
    start = local_today() + timedelta(days=3)
    data = {
        "name": "Weekly meetup",
        "body": BODY,
        "audience_community": "on",
        "frequency": "weekly",
        "days": ["0", "3"],
        "day_of_month": "",
        "time_of_day": "18:00",
        "starts_on": start.isoformat(),
        "ends_on": (start + timedelta(days=60)).isoformat(),
        "active": "on",
        "_save": "Save",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def first_local(start: date, weekdays: set[int], at: time, zone: str = NEW_YORK) -> datetime:
    day = start
    while day.weekday() not in weekdays:
        day += timedelta(days=1)
    return datetime.combine(day, at, ZoneInfo(zone))


@pytest.fixture(autouse=True)
def new_york(settings):
    settings.TIME_ZONE = NEW_YORK
    settings.QUIET_HOURS = ""


def errors_of(response) -> dict:
    return response.context["adminform"].form.errors


# --- Creating and changing --------------------------------------------------------------


def test_a_manager_creates_a_weekly_repeating_blast_due_at_the_local_time(
    manager_client, manager_user
):
    make_members(2)
    data = form()

    response = manager_client.post(ADD, data, follow=True)

    assert response.status_code == 200
    recurrence = Recurrence.objects.get()
    start = date.fromisoformat(data["starts_on"])
    expected = first_local(start, {0, 3}, time(18, 0))
    assert recurrence.next_run_at == expected
    local = recurrence.next_run_at.astimezone(ZoneInfo(NEW_YORK))
    assert (local.hour, local.minute) == (18, 0)
    assert recurrence.weekdays == "0,3"
    assert recurrence.day_of_month is None
    assert recurrence.created_by == manager_user
    assert recurrence.active
    page = response.content.decode()
    # The list says it in plain words, with the next occurrence in the local zone.
    assert "Mondays and Thursdays at 18:00" in page
    assert f"{expected:%a %Y-%m-%d} 18:00 America/New_York" in page
    assert "the next occurrence is" in page


def test_the_time_of_day_stays_local_across_a_daylight_saving_change(admin_client):
    # New York leaves daylight saving on the first Sunday of November: 18:00 is 22:00 UTC
    # before and 23:00 UTC after.
    year = local_today().year + 1
    admin_client.post(
        ADD,
        form(
            days=["6"],
            starts_on=f"{year}-10-01",
            ends_on=f"{year}-12-31",
        ),
    )
    recurrence = Recurrence.objects.get()
    assert recurrence.next_run_at.astimezone(ZoneInfo("UTC")).hour == 22
    admin_client.post(
        change_url(recurrence), form(days=["6"], starts_on=f"{year}-11-15", ends_on=f"{year}-12-31")
    )
    recurrence.refresh_from_db()
    assert recurrence.next_run_at.astimezone(ZoneInfo("UTC")).hour == 23
    assert recurrence.next_run_at.astimezone(ZoneInfo(NEW_YORK)).hour == 18


def test_a_monthly_repeating_blast_on_day_31_says_so_and_uses_the_last_day(admin_client):
    # From February on, in a year with no leap day.
    year = local_today().year + 1
    while year % 4 == 0:
        year += 1
    response = admin_client.post(
        ADD,
        form(
            frequency="monthly",
            days=None,
            day_of_month="31",
            time_of_day="09:00",
            starts_on=f"{year}-02-01",
            ends_on=f"{year}-12-31",
        ),
        follow=True,
    )
    recurrence = Recurrence.objects.get()
    assert recurrence.weekdays == ""
    assert recurrence.day_of_month == 31
    assert recurrence.next_run_at == datetime(year, 2, 28, 9, 0, tzinfo=ZoneInfo(NEW_YORK))
    assert "Monthly on day 31 at 09:00" in response.content.decode()


def test_changing_the_time_moves_the_next_occurrence(manager_client):
    manager_client.post(ADD, form())
    recurrence = Recurrence.objects.get()
    before = recurrence.next_run_at

    response = manager_client.post(change_url(recurrence), form(time_of_day="19:30"))

    assert response.status_code == 302
    recurrence.refresh_from_db()
    assert recurrence.next_run_at == before + timedelta(hours=1, minutes=30)
    assert recurrence.time_of_day == time(19, 30)


def test_the_change_page_shows_the_chosen_days_ticked(manager_client):
    manager_client.post(ADD, form(days=["1", "4"]))
    recurrence = Recurrence.objects.get()
    response = manager_client.get(change_url(recurrence))
    ticked = {
        widget.data["value"]
        for widget in response.context["adminform"].form["days"]
        if widget.data["selected"]
    }
    assert ticked == {1, 4}


def test_unticking_repeating_stops_it(manager_client):
    manager_client.post(ADD, form())
    recurrence = Recurrence.objects.get()
    data = form()
    del data["active"]
    manager_client.post(change_url(recurrence), data)
    recurrence.refresh_from_db()
    assert (recurrence.active, recurrence.next_run_at) == (False, None)


# --- Refused forms change nothing --------------------------------------------------------


def _past(days: int) -> str:
    return (local_today() - timedelta(days=days)).isoformat()


def _future(days: int) -> str:
    return (local_today() + timedelta(days=days)).isoformat()


REFUSED = {
    "weekly with no day": ({"days": None}, "days", "Choose at least one day of the week."),
    "monthly with no day": (
        {"frequency": "monthly", "days": None, "day_of_month": ""},
        "day_of_month",
        "Choose the day of the month (1 to 31).",
    ),
    "monthly on day 32": (
        {"frequency": "monthly", "days": None, "day_of_month": "32"},
        "day_of_month",
        "There is no day 32 in a month",
    ),
    "monthly on day 0": (
        {"frequency": "monthly", "days": None, "day_of_month": "0"},
        "day_of_month",
        "There is no day 0 in a month",
    ),
    "last day before the first": (
        {"starts_on": _future(10), "ends_on": _future(5)},
        "ends_on",
        "is before the first day",
    ),
    "last day passed": (
        {"starts_on": _past(30), "ends_on": _past(1)},
        "ends_on",
        "has passed",
    ),
    "unknown placeholder": ({"body": "Hi {nickname}"}, "body", "Unknown placeholder"),
    "stray brace": ({"body": "Hi {first_name"}, "body", "stray brace"),
    "no audience": ({"audience_community": None}, "audience_community", "Choose an audience"),
    "event placeholder to the community": (
        {"body": "See you at {event_name}"},
        "body",
        "Event placeholders",
    ),
    "no time": ({"time_of_day": ""}, "time_of_day", "Choose the time of day."),
    "no frequency": ({"frequency": None}, "frequency", "Choose weekly or monthly."),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_form_says_why_next_to_the_field_and_adds_nothing(manager_client, case):
    overrides, field, message = REFUSED[case]

    response = manager_client.post(ADD, form(**overrides))

    assert response.status_code == 200
    errors = errors_of(response)
    assert field in errors, errors
    assert message in " ".join(errors[field])
    assert message.split("{")[0] in response.content.decode()
    assert not Recurrence.objects.exists()


def test_tags_without_the_community_are_refused(manager_client):
    tag = Tag.objects.create(name="volunteers")
    event = make_event(n=1)
    response = manager_client.post(
        ADD,
        form(audience_community=None, audience_tags=[str(tag.pk)], audience_events=[str(event.pk)]),
    )
    assert "Tags narrow the community members" in " ".join(
        errors_of(response)["audience_community"]
    )
    assert not Recurrence.objects.exists()


def test_days_with_no_occurrence_left_are_refused(manager_client):
    # Mondays only, between a Tuesday and the Sunday after it.
    tuesday = local_today() + timedelta(days=7)
    while tuesday.weekday() != 1:
        tuesday += timedelta(days=1)
    response = manager_client.post(
        ADD,
        form(
            days=["0"],
            starts_on=tuesday.isoformat(),
            ends_on=(tuesday + timedelta(days=5)).isoformat(),
        ),
    )
    assert "No occurrence is left" in " ".join(errors_of(response).get("__all__", []))
    assert not Recurrence.objects.exists()


def test_a_refused_change_leaves_it_as_it_was(manager_client):
    manager_client.post(ADD, form())
    recurrence = Recurrence.objects.get()
    before = (recurrence.body, recurrence.weekdays, recurrence.next_run_at)

    response = manager_client.post(change_url(recurrence), form(days=None, body="Changed"))

    assert response.status_code == 200
    assert "days" in errors_of(response)
    recurrence.refresh_from_db()
    assert (recurrence.body, recurrence.weekdays, recurrence.next_run_at) == before


# --- Quiet hours -------------------------------------------------------------------------


def test_a_time_inside_quiet_hours_is_refused_without_the_tick(manager_client, settings):
    settings.QUIET_HOURS = "21:00-09:00"

    refused = manager_client.post(ADD, form(time_of_day="22:15"))

    assert "22:15 is inside quiet hours (21:00-09:00, America/New_York)" in " ".join(
        errors_of(refused)["time_of_day"]
    )
    assert not Recurrence.objects.exists()

    # Early morning is inside too (the window runs over midnight); 09:00 is not.
    early = manager_client.post(ADD, form(time_of_day="08:59"))
    assert "time_of_day" in errors_of(early)
    assert manager_client.post(ADD, form(time_of_day="09:00")).status_code == 302


def test_a_time_inside_quiet_hours_is_saved_with_the_tick(manager_client, settings):
    settings.QUIET_HOURS = "21:00-09:00"
    response = manager_client.post(ADD, form(time_of_day="22:15", quiet_hours_override="on"))
    assert response.status_code == 302
    recurrence = Recurrence.objects.get()
    assert recurrence.quiet_hours_override
    assert recurrence.next_run_at.astimezone(ZoneInfo(NEW_YORK)).time() == time(22, 15)


# --- The list and its actions ------------------------------------------------------------


def make_recurrence(name: str, **fields) -> Recurrence:
    start = local_today() + timedelta(days=2)
    values = {
        "body": BODY,
        "audience_community": True,
        "frequency": "weekly",
        "weekdays": "2",
        "time_of_day": time(18, 0),
        "starts_on": start,
        "ends_on": start + timedelta(days=90),
    }
    values.update(fields)
    recurrence = Recurrence.objects.create(name=name, **values)
    if recurrence.active:
        from messaging.services.scheduling import recurrence_start

        recurrence_start(recurrence)
    return recurrence


def run_action(client, action: str, recurrences: list[Recurrence]):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [r.pk for r in recurrences]},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_stop_repeating(manager_client):
    running = make_recurrence("Running")
    stopped = make_recurrence("Stopped already", active=False)

    response = run_action(manager_client, "stop_repeating", [running, stopped])

    running.refresh_from_db()
    assert (running.active, running.next_run_at) == (False, None)
    assert messages_of(response) == [
        "Stopped 1 of 2 selected repeating blasts. The other 1 had already stopped."
    ]
    assert "None: stopped." in response.content.decode()
    # Stopped, the dispatch pass makes no occurrence of it.
    assert recurrences_fire(now=timezone.now() + timedelta(days=30)) == 0


def test_start_again(manager_client):
    stopped = make_recurrence("Stopped", active=False)
    ended = make_recurrence(
        "Ended",
        active=False,
        starts_on=local_today() - timedelta(days=30),
        ends_on=local_today() - timedelta(days=1),
    )

    response = run_action(manager_client, "start_again", [stopped, ended])

    stopped.refresh_from_db()
    assert stopped.active
    local = stopped.next_run_at.astimezone(ZoneInfo(NEW_YORK))
    assert (local.weekday(), local.time()) == (2, time(18, 0))
    assert local.date() >= stopped.starts_on
    ended.refresh_from_db()
    assert (ended.active, ended.next_run_at) == (False, None)
    assert messages_of(response)[0].startswith("Started again 1 of 2 selected repeating blasts.")
    assert "no day left before their last day" in messages_of(response)[0]


def test_the_list_searches_and_filters(admin_client):
    make_recurrence("Tuesday yoga")
    make_recurrence("Old news", active=False)
    page = admin_client.get(CHANGELIST, {"q": "yoga"}).content.decode()
    assert "Tuesday yoga" in page and "Old news" not in page
    page = admin_client.get(CHANGELIST, {"active__exact": "0"}).content.decode()
    assert "Old news" in page and "Tuesday yoga" not in page
    page = admin_client.get(CHANGELIST).content.decode()
    assert "Wednesdays at 18:00" in page
    Blast.objects.create(body="Hi", recurrence=Recurrence.objects.get(name="Tuesday yoga"))
    page = admin_client.get(CHANGELIST, {"occurrences": "none"}).content.decode()
    assert "Old news" in page and "Tuesday yoga" not in page


def test_the_list_costs_the_same_queries_for_one_or_many(
    admin_client, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_recurrence("First")
    with CaptureQueriesContext(connection) as one:
        admin_client.get(CHANGELIST)
    for i in range(15):
        recurrence = make_recurrence(f"More {i}")
        Blast.objects.create(body="Hi", recurrence=recurrence, status=Blast.Status.SENT)
    with django_assert_max_num_queries(len(one.captured_queries)):
        admin_client.get(CHANGELIST)


# --- Occurrences -------------------------------------------------------------------------


def test_each_occurrence_links_to_its_blast_page(manager_client):
    make_members(3)
    manager_client.post(ADD, form())
    recurrence = Recurrence.objects.get()
    due = recurrence.next_run_at
    assert "None yet" in manager_client.get(change_url(recurrence)).content.decode()

    # The dispatch pass makes the occurrence when it is due.
    assert recurrences_fire(now=due + timedelta(seconds=1)) == 1

    occurrence = Blast.objects.get(recurrence=recurrence)
    page = manager_client.get(change_url(recurrence)).content.decode()
    assert f'href="{reverse("messaging:blast", args=[occurrence.pk])}"' in page
    assert str(occurrence) in page
    assert f"{due.astimezone(ZoneInfo(NEW_YORK)):%a %Y-%m-%d} 18:00 America/New_York" in page
    assert manager_client.get(reverse("messaging:blast", args=[occurrence.pk])).status_code == 200


def test_only_the_latest_occurrences_are_listed_with_a_link_to_all(manager_client):
    recurrence = make_recurrence("Many")
    now = timezone.now()
    blasts = Blast.objects.bulk_create(
        Blast(
            name=f"Many #{i}",
            body="Hi",
            recurrence=recurrence,
            status=Blast.Status.SENT,
            scheduled_for=now - timedelta(days=7 * (20 - i)),
        )
        for i in range(15)
    )
    response = manager_client.get(change_url(recurrence))
    page = response.content.decode()
    assert len(response.context["occurrences_shown"]) == 10
    assert "Many #14" in page and "Many #4" not in page
    all_url = (
        reverse("admin:messaging_blast_changelist") + f"?recurrence__id__exact={recurrence.pk}"
    )
    assert all_url.replace("&", "&amp;") in page
    listed = manager_client.get(all_url).context["cl"].result_count
    assert listed == len(blasts)


def test_the_list_counts_the_occurrences(manager_client):
    recurrence = make_recurrence("Counted")
    Blast.objects.bulk_create(
        Blast(body="Hi", recurrence=recurrence, status=Blast.Status.SENT) for _ in range(3)
    )
    response = manager_client.get(CHANGELIST)
    (row,) = response.context["cl"].result_list
    assert row._occurrences == 3
