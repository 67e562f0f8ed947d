"""Data retention: erase who was texted and what was said, once it is old enough.

After RETENTION_DAYS, message texts and phone numbers go from the three places that
keep them: deliveries (the body, the number, the recipient's name and Twilio's error
text, which quotes the number), inbound messages (body, sender, media links) and the
console backend's outbox. What the statistics need stays: each row, its status, error
code, times, Twilio SID, keyword and links, so a blast's counts do not change.
Unsubscribes and suppressions are never touched: they are what keeps an opted-out
number from being texted again.

Only deliveries whose fate is settled are erased (sent, delivered, failed, skipped,
cancelled, and not waiting for a staff decision): a pending, in-flight or unknown row
still needs its number.

Delivery rows are unique per (blast, phone), so each erased number becomes a
placeholder of its own, "erased-<row id>", which is no phone number and never a real
one. Running it again finds nothing more to erase.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models, transaction
from django.db.models import Case, Q, QuerySet, Value, When
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from messaging.models import Delivery, InboundMessage, OutboxMessage
from messaging.services.busy import retry_when_busy

ERASED = "erased"
# Delivery.phone holds 16 characters: "erased-" and up to 9 digits, beyond that "#<id>".
_DELIVERY_PREFIX = "erased-"
_DELIVERY_LONG_PREFIX = "#"
# Rows per transaction: SQLite has one writer, and web and worker must not wait long.
BATCH = 1000

S = Delivery.Status
SETTLED = (S.SENT, S.DELIVERED, S.FAILED, S.SKIPPED, S.CANCELLED)


def messages_erase_older(
    *, days: int, dry_run: bool = False, now: datetime | None = None
) -> dict[str, int]:
    """Erase the bodies and phone numbers of messages older than ``days`` days.

    Returns how many rows of each kind were erased (with ``dry_run``, would be: nothing
    is written). ``now`` is for tests.
    """
    if days < 1:
        raise ValueError("days must be 1 or more.")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deliveries = Delivery.objects.filter(
        created_at__lt=cutoff, status__in=SETTLED, attention=""
    ).exclude(_delivery_erased())
    inbound = InboundMessage.objects.filter(received_at__lt=cutoff).exclude(phone=ERASED)
    outbox = OutboxMessage.objects.filter(created_at__lt=cutoff).exclude(to=ERASED)
    if dry_run:
        return {
            "deliveries": deliveries.count(),
            "inbound_messages": inbound.count(),
            "outbox_messages": outbox.count(),
        }
    delivery_phone = Case(
        When(
            pk__lt=10**9,
            then=Concat(Value(_DELIVERY_PREFIX), Cast("pk", models.CharField())),
        ),
        default=Concat(Value(_DELIVERY_LONG_PREFIX), Cast("pk", models.CharField())),
        output_field=models.CharField(),
    )
    return {
        "deliveries": _erase_in_batches(
            deliveries,
            phone=delivery_phone,
            body="",
            first_name="",
            last_name="",
            error_message="",
            updated_at=timezone.now(),
        ),
        "inbound_messages": _erase_in_batches(inbound, phone=ERASED, body="", media_urls=[]),
        "outbox_messages": _erase_in_batches(outbox, to=ERASED, body=""),
    }


def _delivery_erased() -> Q:
    return Q(phone__startswith=_DELIVERY_PREFIX) | Q(phone__startswith=_DELIVERY_LONG_PREFIX)


def _erase_in_batches(rows: QuerySet, **erased: object) -> int:
    """Update ``rows`` with ``erased`` a batch at a time, in id order.

    Each batch is its own short transaction, checked again in its UPDATE (a row that
    changed status since it was read, such as a failed row retried, is left alone).
    """
    total = 0
    after = 0
    while True:
        batch = list(rows.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:BATCH])
        if not batch:
            return total

        def write(batch: list[int] = batch) -> int:
            with transaction.atomic():
                return rows.filter(pk__in=batch).update(**erased)

        total += retry_when_busy(write, what="erasing old messages")
        after = batch[-1]
