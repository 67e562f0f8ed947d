"""Fixtures for the send engine: a fake Twilio on 127.0.0.1 and quick ways to fill an audience."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from events.models import Event, Registration
from members.models import Member
from messaging.tests.fake_twilio import FakeTwilio

FROM_NUMBER = "+15005550006"


@pytest.fixture
def fake_twilio(settings, monkeypatch) -> Iterator[FakeTwilio]:
    """The real twilio client, pointed at a fake Twilio through TWILIO_API_BASE_URL."""
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    with FakeTwilio() as fake:
        settings.SMS_BACKEND = "twilio"
        settings.TWILIO_API_BASE_URL = fake.base_url
        settings.TWILIO_ACCOUNT_SID = fake.account_sid
        settings.TWILIO_AUTH_TOKEN = fake.auth_token
        settings.TWILIO_FROM_NUMBER = FROM_NUMBER
        settings.TWILIO_MESSAGING_SERVICE_SID = ""
        settings.SMS_HTTP_TIMEOUT_SECONDS = 2.0
        # Unlimited unless a test is about the rate: tests measure behaviour, not time.
        settings.SMS_RATE_PER_SECOND = 0
        yield fake


def phone(i: int) -> str:
    """A distinct valid US mobile-format number for recipient i."""
    return f"+1201555{i:04d}"


def make_members(n: int, *, start: int = 0, **extra) -> list[Member]:
    return Member.objects.bulk_create(
        Member(first_name=f"First{i}", last_name=f"Last{i}", phone=phone(i), **extra)
        for i in range(start, start + n)
    )


def make_event(*, n: int = 0, start: int = 0, name: str = "Picnic") -> Event:
    event = Event.objects.create(
        name=name, starts_at=timezone.now() + timedelta(days=3), location="Riverside Park"
    )
    Registration.objects.bulk_create(
        Registration(event=event, first_name=f"Reg{i}", last_name="R", phone=phone(i))
        for i in range(start, start + n)
    )
    return event
