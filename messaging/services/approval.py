"""Approving a blast: a Social manager's large blast waits until an Admin says yes.

A blast waits (status ``awaiting_approval``) when it was created for more recipients
than BLAST_APPROVAL_THRESHOLD by someone who may not approve blasts. Its rows exist
already; nothing is sent until an Admin other than its author approves it. Rejecting
it (or its author withdrawing it) cancels its rows: a rejected blast never sends.

Both are conditional UPDATEs on the status, so two Admins deciding at once, or a
double-clicked button, decide once: the second is told it was already decided.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services.busy import retry_when_busy
from messaging.services.creating import BlastError
from messaging.services.lifecycle import pending_rows_cancel
from messaging.services.queueing import blast_enqueue
from smsadmin.models import User

B = Blast.Status
S = Delivery.Status

NOTE_MAX = 2000


def _decided(blast_id: int) -> BlastError:
    blast = Blast.objects.filter(pk=blast_id).first()
    if blast is None:
        return BlastError("That blast no longer exists.")
    return BlastError(
        f"This blast is no longer waiting for approval: it is {blast.get_status_display().lower()}."
    )


def blast_approve(*, blast_id: int, user: User, note: str = "") -> Blast:
    """Send a blast that waited for approval (or schedule it, if its time is ahead)."""
    if not user.has_perm("messaging.approve_blast"):
        raise BlastError("Only an Admin can approve a blast.")
    blast = Blast.objects.filter(pk=blast_id).first()
    if blast is None:
        raise BlastError("That blast no longer exists.")
    if blast.created_by_id == user.pk:
        raise BlastError("Nobody approves their own blast: another Admin must approve it.")
    event = blast.remind_event
    if event is not None and event.starts_at <= timezone.now():
        raise BlastError(
            f"This reminder can no longer be sent: {event.name} has started. Reject it instead."
        )
    now = timezone.now()
    # A blast to send later has no rows yet: it waits for the dispatch pass, which
    # writes them; approved after its time, it goes at once rather than as missed.
    scheduled = blast.scheduled_for is not None and not blast.deliveries.exists()
    scheduled_for = max(blast.scheduled_for, now) if scheduled else blast.scheduled_for

    def approve() -> int:
        with transaction.atomic():
            changed = Blast.objects.filter(pk=blast_id, status=B.AWAITING_APPROVAL).update(
                status=B.SCHEDULED if scheduled else B.QUEUED,
                scheduled_for=scheduled_for,
                reviewed_by=user,
                reviewed_at=now,
                review_note=note.strip()[:NOTE_MAX],
                updated_at=now,
            )
            if changed and not scheduled:
                transaction.on_commit(lambda: blast_enqueue(blast_id=blast_id))
            return changed

    if not retry_when_busy(approve, what="approving a blast"):
        raise _decided(blast_id)
    blast.refresh_from_db()
    return blast


def blast_reject(*, blast_id: int, user: User, note: str = "") -> Blast:
    """Refuse a blast that waited for approval; its author may withdraw it the same way."""
    blast = Blast.objects.filter(pk=blast_id).first()
    if blast is None:
        raise BlastError("That blast no longer exists.")
    own = blast.created_by_id == user.pk
    if not own and not user.has_perm("messaging.approve_blast"):
        raise BlastError("Only an Admin, or the blast's author, can reject it.")
    now = timezone.now()
    note = note.strip()[:NOTE_MAX] or ("Withdrawn by its author." if own else "")
    changed = retry_when_busy(
        lambda: Blast.objects.filter(pk=blast_id, status=B.AWAITING_APPROVAL).update(
            status=B.REJECTED,
            status_reason="Withdrawn by its author" if own else "Rejected by an Admin",
            reviewed_by=user,
            reviewed_at=now,
            review_note=note,
            finished_at=now,
            updated_at=now,
        ),
        what="rejecting a blast",
    )
    if not changed:
        raise _decided(blast_id)
    pending_rows_cancel(blast_id=blast_id)
    blast.refresh_from_db()
    return blast
