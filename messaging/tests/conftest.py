"""Fixtures for the send engine: a fake Twilio on 127.0.0.1 and quick ways to fill an audience."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from events.models import Event, Registration
from members.models import Member
from messaging.models import Blast, Delivery
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


def run_to_end(blast: Blast, *, rounds: int = 50) -> Blast:
    """What the send task does: pass after pass until nothing is left for a worker now."""
    from messaging.services import blast_process

    for _ in range(rounds):
        again = blast_process(blast_id=blast.pk, time_budget=60)
        if again is None:
            break
        time.sleep(again)
    blast.refresh_from_db()
    return blast


def statuses(blast: Blast) -> Counter:
    return Counter(Delivery.objects.filter(blast=blast).values_list("status", flat=True))


def in_thread(target: Callable[[], object]) -> threading.Thread:
    """Run ``target`` on a thread of its own, with its own database connection."""

    def body() -> None:
        try:
            target()
        finally:
            connections.close_all()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def run_threads(target: Callable[[int], object], n: int) -> list[object]:
    """Start n threads at the same moment; re-raise the first error any of them hit."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def busiest_second(times: list[float]) -> int:
    """The most requests that arrived within any one-second window."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
