"""With 100k members the compose pages answer in a fixed number of queries: every count is
an aggregate, and the longest message is found from a few candidate names, never by
loading the audience. (How long they take is measured by bench/pages_100k.py.)"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from events.models import Event, Registration
from members.models import Member, Tag
from suppression.models import SuppressedContact, UnsubscribedContact

pytestmark = pytest.mark.django_db

MEMBERS = 100_000
BATCH = 10_000
BODY = "Hi {first_name}, the garden opens Saturday at 9am. Reply STOP to opt out."


def big_phone(i: int) -> str:
    return f"+1415{200 + i // 10_000:03d}{i % 10_000:04d}"


@pytest.fixture
def big_audience() -> dict:
    tag = Tag.objects.create(name="volunteers")
    # Raw rows: the phone field's own check (phonenumbers) would take most of a minute.
    now = timezone.now()
    rows = [
        (
            f"Fïrst{i}" if i % 997 == 0 else f"First{i}",
            f"Last{i}",
            big_phone(i),
            "",
            i % 50 != 0,
            "",
            now,
            now,
            "",
            "",
        )
        for i in range(MEMBERS)
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO members_member (first_name, last_name, phone, email, is_active, notes,"
            " created_at, updated_at, consent_source, consent_evidence)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    first_ids = Member.objects.order_by("id").values_list("id", flat=True)[:5000]
    Member.tags.through.objects.bulk_create(
        Member.tags.through(member_id=member_id, tag_id=tag.pk) for member_id in first_ids
    )
    event = Event.objects.create(name="Gala", starts_at="2030-05-01T18:00:00Z", location="Hall")
    Registration.objects.bulk_create(
        Registration(event=event, first_name=f"R{i}", last_name="X", phone=big_phone(i))
        for i in range(5000, 15_000)
    )
    UnsubscribedContact.objects.bulk_create(
        UnsubscribedContact(phone=big_phone(i), source="keyword") for i in range(1, 2000, 7)
    )
    SuppressedContact.objects.bulk_create(
        SuppressedContact(phone=big_phone(i), error_code=21211) for i in range(3, 2000, 11)
    )
    return {"tag": tag, "event": event}


def test_compose_pages_answer_in_bounded_queries_and_exactly_with_100k_members(
    big_audience, manager_user, django_assert_max_num_queries
):
    client = Client()
    client.force_login(manager_user)
    event, tag = big_audience["event"], big_audience["tag"]
    audiences = [
        {"community": "on"},
        {"community": "on", "tags": [tag.pk]},
        {"events": [event.pk]},
        {"community": "on", "events": [event.pk]},
    ]

    with django_assert_max_num_queries(25):
        response = client.get(f"/compose/?community=1&event={event.pk}")
    assert response.status_code == 200

    for audience in audiences:
        body = BODY if "community" in audience else BODY + " {event_name}"
        with django_assert_max_num_queries(25):
            answer = client.post("/compose/preflight/", {"body": body, **audience}).json()
        assert answer["ok"], answer["errors"]
        assert answer["recipients"] > 0

    with django_assert_max_num_queries(30):
        response = client.post(
            "/compose/", {"body": BODY, "community": "on", "idempotency_key": uuid.uuid4()}
        )
    assert response.status_code == 200
    assert "Confirm and send to" in response.content.decode()

    # And the counts are exact.
    answer = client.post(
        "/compose/preflight/",
        {"body": BODY, "community": "on", "events": [big_audience["event"].pk]},
    ).json()
    active = {
        p: True for p in Member.objects.filter(is_active=True).values_list("phone", flat=True)
    }
    everyone = set(active) | set(Registration.objects.values_list("phone", flat=True))
    blocked = set(UnsubscribedContact.objects.values_list("phone", flat=True)) | set(
        SuppressedContact.objects.values_list("phone", flat=True)
    )
    assert answer["recipients"] == len(everyone - blocked)
    # A name outside GSM-7 (Fïrst0) makes its own message UCS-2: named in the panel.
    assert "Fïrst" in answer["html"]
