"""The minute sweeper: nothing stays stuck when a broker or a worker failed."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services.clock import DbNow
from messaging.services.creating import blast_discard_preparing
from messaging.services.lifecycle import blast_finish_if_done, pending_rows_cancel
from messaging.services.queueing import blast_enqueue

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status

# A worker goes quiet for this long before the sweeper hands its blast to another.
HEARTBEAT_STALE = timedelta(minutes=2)
# A send task still waiting in the broker after this long is taken for lost (a broker
# that lost its data) and replaced. Until then the sweeper adds no second task: a task
# waiting behind busy workers is not a lost one, and copies would pile up.
TASK_LOST = timedelta(minutes=30)
# A blast still 'preparing' with no new rows for this long belongs to a creation that
# crashed: its rows are removed.
PREPARING_STALE = timedelta(minutes=10)


def deliveries_expire_stale_claims() -> int:
    """Rows left 'sending' by a worker that died mid-call: the outcome is unknown."""
    # The database's clock, the one claims are stamped with (see delivery_claim).
    cutoff = DbNow() - timedelta(seconds=settings.SMS_CLAIM_STALE_SECONDS)
    # The claim token stays: a late answer from a worker that was only slow still
    # settles the row (see _record).
    return Delivery.objects.filter(status=S.SENDING, claimed_at__lt=cutoff).update(
        status=S.UNKNOWN,
        error_message="The worker stopped while sending; the outcome is unknown until "
        "Twilio's records are checked.",
        updated_at=timezone.now(),
    )


def blasts_sweep() -> dict[str, int]:
    """Every minute (Celery beat): nothing stays stuck when a broker or a worker failed."""
    now = timezone.now()
    stale_claims = deliveries_expire_stale_claims()
    # Scheduled blasts are the dispatch pass's (scheduling.py), which writes their rows.
    requeued = 0
    no_task_waiting = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=now - TASK_LOST)
    stuck = Blast.objects.filter(
        Q(status=B.QUEUED) | Q(status=B.SENDING, processing_started_at__lt=now - HEARTBEAT_STALE),
        no_task_waiting,
    ).values_list("pk", "status")
    for blast_id, status in stuck:
        if (
            status == B.SENDING
            and not Delivery.objects.filter(blast_id=blast_id, status=S.PENDING).exists()
        ):
            blast_finish_if_done(blast_id=blast_id)
            continue
        requeued += int(blast_enqueue(blast_id=blast_id))
    for blast_id in Blast.objects.filter(status=B.PAUSED).values_list("pk", flat=True):
        blast_finish_if_done(blast_id=blast_id)
    # A rejection or a cancel that stopped half-way, or rows a dispatch pass wrote as the
    # blast was cancelled: they are cancelled, as a stopped blast has no pending row.
    stopped = Blast.objects.filter(status__in=[B.REJECTED, B.CANCELLED]).filter(
        Exists(Delivery.objects.filter(blast_id=OuterRef("pk"), status=S.PENDING))
    )
    for blast_id in list(stopped.values_list("pk", flat=True)):
        pending_rows_cancel(blast_id=blast_id)
    discarded = 0
    for blast_id in Blast.objects.filter(
        status=B.PREPARING, updated_at__lt=now - PREPARING_STALE
    ).values_list("pk", flat=True):
        logger.warning("Removing blast %s: its creation stopped half-way", blast_id)
        blast_discard_preparing(blast_id=blast_id)
        discarded += 1
    return {
        "stale_claims": stale_claims,
        "requeued": requeued,
        "discarded": discarded,
    }
