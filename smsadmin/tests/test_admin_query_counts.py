"""Changelists stay fast with many rows: the number of SQL queries does not grow with rows."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.models import Event, Registration
from members.models import Member
from messaging.models import Blast, Delivery, OutboxMessage
from smsadmin.models import User
from suppression.models import SuppressedContact, UnsubscribedContact

pytestmark = pytest.mark.django_db

FEW, MANY = 10, 300


def phone(i: int) -> str:
    return f"+1201555{i:04d}"


def add_members(start: int, stop: int, **context) -> None:
    Member.objects.bulk_create(
        Member(first_name=f"F{i}", last_name=f"L{i}", phone=phone(i)) for i in range(start, stop)
    )


def add_registrations(start: int, stop: int, *, events: list[Event], **context) -> None:
    # Spread over several events, so each row's event column is a different object.
    Registration.objects.bulk_create(
        Registration(event=events[i % len(events)], first_name=f"F{i}", phone=phone(i))
        for i in range(start, stop)
    )


def add_deliveries(start: int, stop: int, *, blasts: list[Blast], events: list[Event], **context):
    Delivery.objects.bulk_create(
        Delivery(
            blast=blasts[i % len(blasts)],
            event=events[i % len(events)],
            phone=phone(i),
            first_name=f"F{i}",
            status=Delivery.Status.FAILED,
            error_code=30000 + i % 5,
        )
        for i in range(start, stop)
    )


def add_unsubscribes(start: int, stop: int, *, staff: list[User], **context) -> None:
    UnsubscribedContact.objects.bulk_create(
        UnsubscribedContact(phone=phone(i), created_by=staff[i % len(staff)])
        for i in range(start, stop)
    )


def add_suppressions(start: int, stop: int, *, staff: list[User], blasts, **context) -> None:
    SuppressedContact.objects.bulk_create(
        SuppressedContact(
            phone=phone(i),
            error_code=30003,
            lifted=i % 2 == 0,
            lifted_by=staff[i % len(staff)] if i % 2 == 0 else None,
        )
        for i in range(start, stop)
    )


def add_outbox(start: int, stop: int, **context) -> None:
    OutboxMessage.objects.bulk_create(
        OutboxMessage(sid=f"SM{i:032d}", to=phone(i), body=f"Message {i}", error_code=i % 3 or None)
        for i in range(start, stop)
    )


def add_blasts(start: int, stop: int, *, staff: list[User], events: list[Event], **context):
    blasts = Blast.objects.bulk_create(
        Blast(name=f"Blast {i}", body="Hi", created_by=staff[i % len(staff)], recipient_count=i)
        for i in range(start, stop)
    )
    for blast in blasts[:5]:
        blast.audience_events.set(events)


def add_events(start: int, stop: int, **context) -> None:
    events = Event.objects.bulk_create(
        Event(name=f"Event {i}", starts_at=f"2031-01-01T{i % 24:02d}:00:00Z")
        for i in range(start, stop)
    )
    Registration.objects.bulk_create(
        Registration(event=event, phone=phone(i)) for i, event in enumerate(events, start)
    )


def add_users(start: int, stop: int, *, groups: list[Group], **context) -> None:
    users = User.objects.bulk_create(User(username=f"user{i}") for i in range(start, stop))
    memberships = [
        User.groups.through(user_id=user.pk, group_id=groups[n % len(groups)].pk)
        for n, user in enumerate(users)
    ]
    User.groups.through.objects.bulk_create(memberships)


CASES = {
    "member": ("/admin/members/member/", add_members),
    "registration": ("/admin/events/registration/", add_registrations),
    "delivery": ("/admin/messaging/delivery/", add_deliveries),
    "unsubscribedcontact": ("/admin/suppression/unsubscribedcontact/", add_unsubscribes),
    "suppressedcontact": ("/admin/suppression/suppressedcontact/", add_suppressions),
    "outboxmessage": ("/admin/messaging/outboxmessage/", add_outbox),
    "blast": ("/admin/messaging/blast/", add_blasts),
    "user": ("/admin/smsadmin/user/", add_users),
    "event": ("/admin/events/event/", add_events),
}


def count_queries(client, url: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries), len(response.context["cl"].result_list)


@pytest.mark.parametrize("case", list(CASES))
def test_changelist_queries_do_not_grow_with_rows(admin_client, admin_user, manager_user, case):
    url, add_rows = CASES[case]
    staff = [admin_user, manager_user]
    events = [
        Event.objects.create(name=f"Event {n}", starts_at=f"2030-0{n + 1}-01T12:00:00Z")
        for n in range(3)
    ]
    blasts = [
        Blast.objects.create(name=f"Seed {n}", body="Hi", created_by=staff[n]) for n in (0, 1)
    ]
    context = {
        "staff": staff,
        "events": events,
        "blasts": blasts,
        "groups": list(Group.objects.all()),
    }

    add_rows(0, FEW, **context)
    admin_client.get(url)  # Warm up per-process caches (content types, and so on).
    few_queries, few_shown = count_queries(admin_client, url)

    add_rows(FEW, MANY, **context)
    many_queries, many_shown = count_queries(admin_client, url)

    assert many_shown > few_shown, "the bigger table must show more rows on its first page"
    assert many_queries <= few_queries, (
        f"{case}: {few_queries} queries for {few_shown} rows, {many_queries} for {many_shown}"
    )
