"""Staff decisions on rows whose outcome the engine will not settle alone.

Reconciliation marks a row whose outcome stays unknown with ``Delivery.attention``
(Twilio's records are ambiguous, or the outcome has been unknown for too long). Only
staff can then say what happened: send it again, or count it as sent. Both decisions
touch a row only while it is still unknown and still waiting for a decision, through a
conditional UPDATE, so a row that settled meanwhile (a late status callback,
reconciliation, another member of staff) is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services.lifecycle import (
    back_to_pending,
    blast_finish_if_done,
    blast_status_locked,
)
from messaging.services.queueing import blast_enqueue

S = Delivery.Status
B = Blast.Status

# Ids per statement, well under SQLite's limit on query parameters.
BATCH = 500


def _batches(ids: Iterable[int]) -> Iterator[list[int]]:
    ids = list(dict.fromkeys(ids))
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def _waiting(ids: list[int]) -> QuerySet[Delivery]:
    """Rows among ids still unknown and waiting for a decision."""
    return Delivery.objects.filter(pk__in=ids, status=S.UNKNOWN).exclude(attention="")


def _who(user: Any) -> str:
    if user is None:
        return "staff"
    return user.get_username() if hasattr(user, "get_username") else str(user)


def delivery_send_again(*, delivery_ids: list[int], user: Any) -> int:
    """Send rows waiting for a decision once more; the number of rows decided.

    Each row becomes pending (claim, backoff and attention cleared, the note saying who
    decided), or cancelled when its blast was cancelled: the status is written under the
    blast's row lock, like every write that puts a row back to pending, so a cancel
    either sees the row pending and cancels it or is seen here. A queued or sending
    blast is handed to a worker after commit; a paused one sends the rows on resume.
    Rows no longer unknown, or not waiting for a decision, are left alone.
    """
    who = _who(user)
    again = f"Outcome was unknown; {who} decided to send it again."
    cancelled = f"Outcome was unknown; {who} decided to send it again, but the blast was cancelled."
    done = 0
    for ids in _batches(delivery_ids):
        blast_ids = sorted(set(_waiting(ids).values_list("blast_id", flat=True)))
        for blast_id in blast_ids:
            with transaction.atomic():
                blast_status = blast_status_locked(blast_id=blast_id)
                new_status = back_to_pending(blast_status=blast_status)
                changed = (
                    _waiting(ids)
                    .filter(blast_id=blast_id)
                    .update(
                        status=new_status,
                        attention="",
                        claim_token=None,
                        next_attempt_at=None,
                        error_message=again if new_status == S.PENDING else cancelled,
                        updated_at=timezone.now(),
                    )
                )
                done += changed
                if changed and new_status == S.PENDING and blast_status in Blast.ACTIVE_STATUSES:
                    transaction.on_commit(partial(blast_enqueue, blast_id=blast_id))
    return done


def delivery_mark_sent(*, delivery_ids: list[int], user: Any) -> int:
    """Count rows waiting for a decision as sent; the number of rows decided.

    The row is never sent again. Its blast finishes if nothing else is left.
    Rows no longer unknown, or not waiting for a decision, are left alone.
    """
    note = f"Outcome was unknown; {_who(user)} marked it as sent."
    done = 0
    touched: set[int] = set()
    for ids in _batches(delivery_ids):
        touched.update(_waiting(ids).values_list("blast_id", flat=True))
        now = timezone.now()
        done += _waiting(ids).update(
            status=S.SENT,
            attention="",
            claim_token=None,
            next_attempt_at=None,
            sent_at=Coalesce(F("sent_at"), Value(now)),
            error_message=note,
            updated_at=now,
        )
    for blast_id in sorted(touched):
        blast_finish_if_done(blast_id=blast_id)
    return done
