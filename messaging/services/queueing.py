"""Handing a blast to a worker through the broker, one send task at a time."""

from __future__ import annotations

import logging
import uuid

from django.db.models import Case, Value, When
from django.utils import timezone

from messaging.models import Blast

logger = logging.getLogger(__name__)

B = Blast.Status


def blast_enqueue(*, blast_id: int, countdown: float | None = None) -> bool:
    """Hand the blast to a worker. False (and logged) when the broker cannot be reached.

    Each call makes a new send task current (``Blast.send_token``): a copy of an older
    task that a broker still delivers later does nothing, so however often a blast is
    enqueued, one task at a time works on it.
    """
    from messaging.tasks import send_blast_task

    token = uuid.uuid4()
    # The token is written before the task exists: a worker fast enough to take the
    # task at once must find it current.
    Blast.objects.filter(pk=blast_id).update(send_token=token, enqueued_at=timezone.now())
    try:
        send_blast_task.apply_async(
            args=[blast_id], kwargs={"token": str(token)}, countdown=countdown, retry=False
        )
    except Exception:  # any broker failure: the sweeper retries from the rows
        logger.warning(
            "Could not enqueue blast %s; the sweeper will retry", blast_id, exc_info=True
        )
        Blast.objects.filter(pk=blast_id, send_token=token).update(enqueued_at=None)
        return False
    return True


def blast_take_task(*, blast_id: int, token: uuid.UUID | str | None) -> bool:
    """A worker took up a send task: False when a newer task replaced it (do nothing).

    Taking the current task clears ``enqueued_at`` (no task waits in the broker any
    more) and moves a queued blast to sending, in one UPDATE, so the sweeper never sees
    a queued blast with no task waiting while a worker is already on it.
    """
    now = timezone.now()
    rows = Blast.objects.filter(pk=blast_id)
    if token is not None:
        rows = rows.filter(send_token=token)
    return bool(
        rows.update(
            enqueued_at=None,
            status=Case(When(status=B.QUEUED, then=Value(B.SENDING)), default="status"),
            started_at=Case(
                When(status=B.QUEUED, started_at__isnull=True, then=Value(now)),
                default="started_at",
            ),
            processing_started_at=Case(
                When(status__in=[B.QUEUED, B.SENDING], then=Value(now)),
                default="processing_started_at",
            ),
            updated_at=now,
        )
    )
