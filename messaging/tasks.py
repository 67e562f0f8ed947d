"""Celery tasks: thin wrappers that take ids and call services. Each is safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from messaging import services

logger = logging.getLogger(__name__)


@shared_task(name="messaging.send_blast", acks_late=True, ignore_result=True)
def send_blast_task(blast_id: int, token: str | None = None) -> None:
    try:
        again = services.blast_process(blast_id=blast_id, token=token)
    except SoftTimeLimitExceeded:
        # Claimed rows are released by the pass itself where it can; whatever stays
        # 'sending' becomes unknown and is reconciled. Pick the rest up in a fresh task.
        again = 0.0
    if again is not None:
        services.blast_enqueue(blast_id=blast_id, countdown=again or None)


@shared_task(name="messaging.dispatch_scheduled", ignore_result=True)
def dispatch_scheduled_task() -> dict[str, int]:
    from messaging.services.scheduling import scheduled_dispatch

    return scheduled_dispatch().as_dict()


@shared_task(name="messaging.sweep_blasts", ignore_result=True)
def sweep_blasts_task() -> dict[str, int]:
    return services.blasts_sweep()


@shared_task(name="messaging.reconcile_deliveries", ignore_result=True)
def reconcile_deliveries_task() -> dict[str, int]:
    return services.deliveries_reconcile()


@shared_task(name="messaging.worker_heartbeat", ignore_result=True)
def worker_heartbeat_task() -> None:
    from smsadmin.health import worker_heartbeat_record

    worker_heartbeat_record()


@shared_task(name="messaging.erase_old_messages", ignore_result=True)
def erase_old_messages_task() -> dict[str, int] | None:
    from django.conf import settings

    from messaging.services.retention import messages_erase_older

    if settings.RETENTION_DAYS is None:  # turned off since beat queued it
        return None
    return messages_erase_older(days=settings.RETENTION_DAYS)
