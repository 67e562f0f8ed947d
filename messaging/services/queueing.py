"""Handing a blast to a worker through the broker."""

from __future__ import annotations

import logging

from django.utils import timezone

from messaging.models import Blast, Delivery

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status


def blast_enqueue(*, blast_id: int, countdown: float | None = None) -> bool:
    """Hand the blast to a worker. False (and logged) when the broker cannot be reached."""
    from messaging.tasks import send_blast_task

    try:
        send_blast_task.apply_async(args=[blast_id], countdown=countdown, retry=False)
    except Exception:  # any broker failure: the sweeper retries from the rows
        logger.warning(
            "Could not enqueue blast %s; the sweeper will retry", blast_id, exc_info=True
        )
        return False
    Blast.objects.filter(pk=blast_id).update(enqueued_at=timezone.now())
    return True
