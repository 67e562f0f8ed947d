"""Creating a blast: checking its text and audience, and writing one row per recipient."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from events.models import Event, Registration
from members.models import Member
from messaging.models import Blast, Delivery
from messaging.services.queueing import blast_enqueue
from messaging.templating import Template, TemplateError, recipient_values, template_parse
from smsadmin.models import User
from suppression.services import blocked_phones

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status

CREATE_BATCH = 1000


class BlastError(ValueError):
    """A blast cannot be created or changed as asked; the message says why."""


@dataclass
class _Recipient:
    phone: str
    first_name: str
    last_name: str
    event: Event | None = None


def _audience(*, community: bool, events: list[Event]) -> Iterator[_Recipient]:
    # Event registrations first: someone both registered and a member is texted once,
    # with the event's details.
    for event in events:
        rows = (
            Registration.objects.filter(event=event)
            .order_by("id")
            .values_list("phone", "first_name", "last_name")
        )
        for phone, first, last in rows.iterator(chunk_size=2000):
            yield _Recipient(phone, first, last, event)
    if community:
        rows = (
            Member.objects.filter(is_active=True)
            .order_by("id")
            .values_list("phone", "first_name", "last_name")
        )
        for phone, first, last in rows.iterator(chunk_size=2000):
            yield _Recipient(phone, first, last)


def _render(template: Template, recipient: _Recipient) -> str:
    event = recipient.event
    return template.render(
        recipient_values(
            first_name=recipient.first_name,
            last_name=recipient.last_name,
            event_name=event.name if event else "",
            event_starts_at=event.starts_at if event else None,
            event_location=event.location if event else "",
        )
    )


def blast_validate(
    *, body: str, community: bool, event_ids: Iterable[int]
) -> tuple[Template, list[Event]]:
    """Check text and audience; raise BlastError with a message for staff."""
    try:
        template = template_parse(body)
    except TemplateError as exc:
        raise BlastError(str(exc)) from None
    ids = sorted(set(event_ids))
    events = list(Event.objects.filter(pk__in=ids).order_by("id"))
    missing = sorted(set(ids) - {e.pk for e in events})
    if missing:
        raise BlastError(f"No event with id {', '.join(map(str, missing))}.")
    if not community and not events:
        raise BlastError("Choose an audience: community members, an event, or both.")
    if template.uses_event_fields and community:
        raise BlastError(
            "Event placeholders ({event_name}, {event_date}, {event_location}) only work "
            "when the audience is event registrations alone: community members have no event."
        )
    return template, events


def blast_create(
    *,
    body: str,
    community: bool = False,
    event_ids: Iterable[int] = (),
    created_by: User | None = None,
    name: str = "",
    scheduled_for: datetime | None = None,
) -> Blast:
    """Create a blast and one row per recipient in one transaction, then enqueue it.

    Recipients are deduplicated by phone; unsubscribed and suppressed numbers get a
    row marked skipped with the reason. If the broker is down the blast stays queued
    and the sweeper sends it; ``blast.enqueued_at`` is None in that case.
    """
    template, events = blast_validate(body=body, community=community, event_ids=event_ids)
    scheduled = scheduled_for is not None and scheduled_for > timezone.now()
    with transaction.atomic():
        blast = Blast.objects.create(
            name=name.strip() or body.strip().splitlines()[0][:60],
            body=body,
            audience_community=community,
            status=B.SCHEDULED if scheduled else B.QUEUED,
            scheduled_for=scheduled_for,
            created_by=created_by,
        )
        blast.audience_events.set(events)
        seen: set[str] = set()
        batch: list[Delivery] = []
        total = 0

        def flush() -> None:
            blocked = blocked_phones(phones=[d.phone for d in batch])
            for delivery in batch:
                reason = blocked.get(delivery.phone)
                if reason:
                    delivery.status = S.SKIPPED
                    delivery.skip_reason = reason
            Delivery.objects.bulk_create(batch)
            batch.clear()

        for recipient in _audience(community=community, events=events):
            if recipient.phone in seen:
                continue
            seen.add(recipient.phone)
            batch.append(
                Delivery(
                    blast=blast,
                    phone=recipient.phone,
                    first_name=recipient.first_name,
                    last_name=recipient.last_name,
                    event=recipient.event,
                    body=_render(template, recipient),
                )
            )
            total += 1
            if len(batch) >= CREATE_BATCH:
                flush()
        if batch:
            flush()
        if total == 0:
            raise BlastError("Nobody to send to: the chosen audience has no one in it.")
        blast.recipient_count = total
        blast.save(update_fields=["name", "recipient_count"])
        if not scheduled:
            transaction.on_commit(lambda: blast_enqueue(blast_id=blast.pk))
    blast.refresh_from_db()
    return blast
