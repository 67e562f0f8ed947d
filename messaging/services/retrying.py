"""Staff's "Retry failed": send once more the failed rows whose reason may have passed.

Which failures may pass is the error table's ``staff_retry`` column
(``messaging/twilio_errors.py``): a busy carrier, a rate limit, a sender or account
setting staff may have fixed, yes; an invalid or unreachable number, an opt-out, a text
too long or empty, no. A row whose number is unsubscribed or suppressed by now is never
retried, whatever its error.

Retried rows go back to 'pending' with their error cleared, and the blast reopens:

- sent | partially_failed | failed --> queued, handed to a worker after commit;
- queued --> queued (a task is waiting, or the sweeper adds one);
- sending --> queued, handed to a worker after commit (see below);
- paused stays paused: its rows wait for resume;
- anything else is refused with the reason (BlastError), and nothing changes.

Everything happens under the blast's row lock (``blast_status_locked``), so two retries
at once retry each row once (the second finds no failed row left to retry) and a cancel
either sees the rows pending and cancels them or is seen here.

The engine finishes a blast (``blast_finish_if_done``) after counting its rows under the
same lock, so a finish either counted the retried rows (and did not finish) or finished
before the retry, which then reopens the finished blast. A sending blast goes back to
queued all the same: the running pass stops at its next check and a new task, which
sees the retried rows, takes over.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services.busy import retry_when_busy
from messaging.services.creating import BlastError
from messaging.services.lifecycle import blast_status_locked
from messaging.services.queueing import blast_enqueue
from messaging.twilio_errors import meaning, staff_retry
from suppression.services import SUPPRESSED, UNSUBSCRIBED, blocked_phones

S = Delivery.Status
B = Blast.Status

UPDATE_BATCH = 500

REOPENED = (B.SENT, B.PARTIALLY_FAILED, B.FAILED, B.SENDING)
RETRYABLE_STATUSES = (*REOPENED, B.QUEUED, B.PAUSED)

_REFUSED: dict[str, str] = {
    B.PREPARING: "Its recipient list is still being written.",
    B.AWAITING_APPROVAL: "It is waiting for approval and has sent nothing yet.",
    B.SCHEDULED: "It is scheduled and has sent nothing yet.",
    B.CANCELLED: "It was cancelled: a cancelled blast sends nothing more.",
    B.REJECTED: "It was rejected: it sends nothing.",
}

_BLOCKED_REASON = {
    UNSUBSCRIBED: "the number has unsubscribed",
    SUPPRESSED: "the number is suppressed",
}


@dataclass(frozen=True)
class RetryResult:
    """What a retry did: rows sent again, and why the other failed rows were not."""

    retried: int
    blast_status: str
    not_retried: dict[str, int] = field(default_factory=dict)

    @property
    def not_retried_count(self) -> int:
        return sum(self.not_retried.values())

    @property
    def summary(self) -> str:
        """For staff, e.g. "12 failed messages will be sent again; 3 cannot be retried:
        3 Invalid 'To' Phone Number (21211)."."""
        if self.retried:
            text = f"{_messages(self.retried)} will be sent again"
            if self.blast_status == B.PAUSED:
                text += " when the blast is resumed"
        elif self.not_retried:
            text = "No failed message can be sent again"
        else:
            return "There are no failed messages to retry."
        if self.not_retried:
            reasons = ", ".join(
                f"{n} {reason}"
                for reason, n in sorted(self.not_retried.items(), key=lambda item: -item[1])
            )
            if self.retried:
                text += f"; {self.not_retried_count} cannot be retried: {reasons}"
            else:
                text += f": {reasons}"
        return text + "."


def _messages(n: int) -> str:
    return f"{n} failed message{'' if n == 1 else 's'}"


def _why_not(code: int | None) -> str:
    if code is None:
        return "failed without a reason from Twilio"
    return f"{meaning(code) or 'Error'} ({code})"


def blast_retry_failed(*, blast_id: int) -> RetryResult:
    """Put back to pending the failed rows whose reason may have passed; reopen the blast.

    Raises BlastError (nothing changed) when the blast does not exist or is in a state
    that sends nothing more (see the module docstring).
    """
    return retry_when_busy(lambda: _retry(blast_id=blast_id), what="retrying failed messages")


def _retry(*, blast_id: int) -> RetryResult:
    with transaction.atomic():
        status = blast_status_locked(blast_id=blast_id)
        if status is None:
            raise BlastError("This blast no longer exists.")
        if status not in RETRYABLE_STATUSES:
            raise BlastError(f"Nothing was retried. {_REFUSED.get(status, '')}".strip())
        failed = list(
            Delivery.objects.filter(blast_id=blast_id, status=S.FAILED)
            .order_by("pk")
            .values_list("pk", "phone", "error_code")
        )
        blocked = blocked_phones(phones=[phone for _, phone, _ in failed])
        not_retried: Counter[str] = Counter()
        retry_ids: list[int] = []
        for pk, phone, code in failed:
            # The error first: an invalid number is also suppressed by now, and
            # "invalid" is the reason staff can act on.
            if not phone.startswith("+"):
                # Erased by RETENTION_DAYS: there is nobody left to send it to.
                not_retried["the number was erased (data retention)"] += 1
            elif not staff_retry(code):
                not_retried[_why_not(code)] += 1
            elif phone in blocked:
                not_retried[_BLOCKED_REASON[blocked[phone]]] += 1
            else:
                retry_ids.append(pk)
        now = timezone.now()
        retried = 0
        for start in range(0, len(retry_ids), UPDATE_BATCH):
            retried += Delivery.objects.filter(
                pk__in=retry_ids[start : start + UPDATE_BATCH], status=S.FAILED
            ).update(
                status=S.PENDING,
                error_code=None,
                error_message="",
                claim_token=None,
                next_attempt_at=None,
                # A row failed after three refusals of the sender: staff fixed the sender,
                # so a new refusal pauses the blast again instead of failing the row.
                sender_refusals=0,
                updated_at=now,
            )
        new_status = status
        if retried and status in REOPENED:
            new_status = B.QUEUED
            Blast.objects.filter(pk=blast_id).update(
                status=B.QUEUED,
                status_reason="",
                pause_cause="",
                finished_at=None,
                updated_at=now,
            )
        if retried and new_status == B.QUEUED:
            transaction.on_commit(lambda: blast_enqueue(blast_id=blast_id))
    return RetryResult(retried=retried, blast_status=new_status, not_retried=dict(not_retried))
