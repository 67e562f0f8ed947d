"""Settling rows whose outcome is unknown from Twilio's own records."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services.lifecycle import blast_finish_if_done
from messaging.services.queueing import blast_enqueue
from messaging.sms import (
    FoundMessage,
    SmsBackend,
    get_backend,
)

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status


def _look_up(backend: SmsBackend, delivery: Delivery) -> FoundMessage | None:
    since = delivery.claimed_at or delivery.created_at
    return backend.find_sent(to=delivery.phone, body=delivery.body, since=since)


def _settle(delivery: Delivery, found: FoundMessage | None) -> str:
    """Apply what Twilio's records say, only if the row is still unknown."""
    now = timezone.now()
    rows = Delivery.objects.filter(pk=delivery.pk, status=S.UNKNOWN)
    if found is not None:
        changed = rows.update(
            status=S.SENT,
            twilio_sid=found.sid,
            twilio_status=found.status,
            sent_at=Coalesce(F("sent_at"), Value(now)),
            error_message="",
            error_code=None,
            updated_at=now,
        )
        return "sent" if changed else "unchanged"
    changed = rows.update(
        status=S.PENDING,
        next_attempt_at=None,
        error_message="Not found in Twilio's records after the unknown outcome; sending again.",
        updated_at=now,
    )
    return "pending" if changed else "unchanged"


def delivery_reconcile(*, delivery: Delivery, backend: SmsBackend | None = None) -> str:
    """Settle one unknown row from Twilio's own records: 'sent' if found, else 'pending'."""
    return _settle(delivery, _look_up(backend or get_backend(), delivery))


def deliveries_reconcile(*, limit: int = 300, backend: SmsBackend | None = None) -> dict[str, int]:
    """Every minute: unknown rows no status callback settled in SMS_RECONCILE_AFTER_MINUTES."""
    backend = backend or get_backend()
    cutoff = timezone.now() - timedelta(minutes=settings.SMS_RECONCILE_AFTER_MINUTES)
    rows = list(
        Delivery.objects.filter(status=S.UNKNOWN)
        .filter(Q(claimed_at__lt=cutoff) | Q(claimed_at__isnull=True, updated_at__lt=cutoff))
        .order_by("id")[:limit]
    )
    outcome = {"sent": 0, "pending": 0, "unchanged": 0, "errors": 0}
    touched: set[int] = set()

    def look_up(delivery: Delivery) -> FoundMessage | None | Exception:
        try:
            return _look_up(backend, delivery)
        except Exception as exc:  # Twilio unreachable: decide nothing, try next minute
            return exc

    # Look-ups go out several at a time (one list request each); the answers are
    # applied here, on this thread's database connection.
    if getattr(backend, "threaded", True) and len(rows) > 1:
        with ThreadPoolExecutor(max_workers=max(1, settings.SMS_MAX_IN_FLIGHT)) as pool:
            answers = list(pool.map(look_up, rows))
    else:
        answers = [look_up(delivery) for delivery in rows]
    for delivery, answer in zip(rows, answers, strict=True):
        if isinstance(answer, Exception):
            logger.warning("Could not reconcile delivery %s: %s", delivery.pk, answer)
            outcome["errors"] += 1
            continue
        outcome[_settle(delivery, answer)] += 1
        touched.add(delivery.blast_id)
    for blast_id in touched:
        Blast.objects.filter(pk=blast_id, status=B.SENDING).update(
            processing_started_at=timezone.now()
        )
        if Delivery.objects.filter(blast_id=blast_id, status=S.PENDING).exists():
            blast_enqueue(blast_id=blast_id)
        else:
            blast_finish_if_done(blast_id=blast_id)
    return outcome
