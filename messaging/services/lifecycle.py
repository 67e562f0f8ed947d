"""Pause, resume, cancel and finish: a blast's state changes outside the send pass."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services.busy import retry_when_busy
from messaging.services.queueing import blast_enqueue

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status


def blast_status_locked(*, blast_id: int) -> str | None:
    """The blast's status, with its row locked until the surrounding transaction ends.

    Every write that may put a row back to 'pending' takes this lock first and writes
    'cancelled' instead when the blast is cancelled. blast_cancel changes the blast
    under the same lock, so the two serialise: either the cancel sees the row pending
    and cancels it, or the writer sees the blast cancelled. A cancelled blast never
    has a pending row.
    """
    return (
        Blast.objects.select_for_update()
        .filter(pk=blast_id)
        .values_list("status", flat=True)
        .first()
    )


def back_to_pending(*, blast_status: str | None) -> str:
    """What a row that was not sent becomes: pending, or cancelled with its blast."""
    return S.CANCELLED if blast_status == B.CANCELLED else S.PENDING


def blast_pause(
    *, blast_id: int, reason: str = "Paused by staff", cause: str = Blast.PauseCause.STAFF
) -> bool:
    """Stop new sends within seconds; what is in flight finishes. False if not running."""
    return bool(
        Blast.objects.filter(pk=blast_id, status__in=[B.QUEUED, B.SENDING]).update(
            status=B.PAUSED, status_reason=reason, pause_cause=cause, updated_at=timezone.now()
        )
    )


def blast_resume(*, blast_id: int) -> bool:
    """Send what is left, once. False if the blast was not paused."""
    with transaction.atomic():
        blast = Blast.objects.select_for_update().filter(pk=blast_id, status=B.PAUSED).first()
        if blast is None:
            return False
        blast.status = B.QUEUED
        blast.status_reason = ""
        # Staff looked at the canary's failures and chose to go on.
        if blast.pause_cause == Blast.PauseCause.CANARY:
            blast.canary_passed = True
        # Staff resumed what quiet hours paused: they chose to send in them.
        if blast.pause_cause == Blast.PauseCause.QUIET:
            blast.quiet_hours_override = True
        blast.pause_cause = ""
        blast.save(
            update_fields=[
                "status",
                "status_reason",
                "canary_passed",
                "pause_cause",
                "quiet_hours_override",
                "updated_at",
            ]
        )
        transaction.on_commit(lambda: blast_enqueue(blast_id=blast_id))
    return True


def blast_cancel(*, blast_id: int, reason: str = "Cancelled by staff") -> int | None:
    """Stop the blast for good; rows not yet sent become cancelled. None if already over."""
    now = timezone.now()
    with transaction.atomic():
        changed = Blast.objects.filter(
            pk=blast_id,
            status__in=[B.SCHEDULED, B.MISSED, B.DISPATCHING, B.QUEUED, B.SENDING, B.PAUSED],
        ).update(status=B.CANCELLED, status_reason=reason, finished_at=now, updated_at=now)
        if not changed:
            return None
        return Delivery.objects.filter(blast_id=blast_id, status=S.PENDING).update(
            status=S.CANCELLED, claim_token=None, updated_at=now
        )


def blast_finish_if_done(*, blast_id: int) -> bool:
    """Set the final status once no row is pending, in flight or unknown.

    A paused blast finishes too: paused while its last sends were in flight, it has
    nothing left that resuming would send. The rows are counted under the blast's row
    lock, so a writer that puts rows back to pending under the same lock (staff's
    "Retry failed", a decision to send again) is either counted or comes after.
    """
    with transaction.atomic():
        status = blast_status_locked(blast_id=blast_id)
        if status not in (B.SENDING, B.PAUSED):
            return False
        counts = Blast(pk=blast_id).counts()
        if counts[S.PENDING] or counts[S.SENDING] or counts[S.UNKNOWN]:
            return False
        reached = counts[S.SENT] + counts[S.DELIVERED]
        if counts[S.FAILED] == 0:
            final = B.SENT
        elif reached == 0:
            final = B.FAILED
        else:
            final = B.PARTIALLY_FAILED
        now = timezone.now()
        return bool(
            Blast.objects.filter(pk=blast_id, status=status).update(
                status=final, status_reason="", pause_cause="", finished_at=now, updated_at=now
            )
        )


# Rows per UPDATE when a stopped blast's rows are cancelled.
CANCEL_BATCH = 5000


def pending_rows_cancel(*, blast_id: int) -> int:
    """Cancel a rejected or cancelled blast's pending rows, in batches so a 100k blast
    never holds SQLite's lock for long. The sweeper calls it too: a process killed
    between the status UPDATE and the last batch, or a dispatch pass that wrote rows as
    the blast was cancelled, leaves no row pending for good."""
    cancelled = 0
    while True:
        ids = list(
            Delivery.objects.filter(blast_id=blast_id, status=S.PENDING).values_list(
                "pk", flat=True
            )[:CANCEL_BATCH]
        )
        if not ids:
            return cancelled
        cancelled += retry_when_busy(
            lambda ids=ids: Delivery.objects.filter(pk__in=ids, status=S.PENDING).update(
                status=S.CANCELLED, updated_at=timezone.now()
            ),
            what="cancelling a stopped blast's rows",
        )
