"""Status callbacks: Twilio reporting what became of a message we sent.

The engine asks for one callback per message per status change
(``StatusCallback = PUBLIC_BASE_URL/webhooks/twilio/status/?d=<delivery id>&a=<attempt>``,
the attempt being the row's ``attempts`` when the message was sent). Twilio
may send them twice, late or out of order, and several at once, so:

- A status only moves forward: accepted/scheduled < queued < sending < sent <
  delivered | undelivered | failed (< read). Every change is one conditional UPDATE
  whose WHERE clause holds that rule, so a duplicate or an older status arriving late
  changes nothing, and two callbacks racing each other end in the later status
  whichever commits first. Of the final statuses the first one reported stays.
- A callback proves Twilio has the message: news of a message the row never learnt of
  settles a row still ``sending`` (the engine has not written Twilio's answer yet, or a
  resend is claimed but not yet sent), ``unknown`` (the answer was lost), or put back
  to ``pending``/``cancelled`` after an attempt (reconciliation did not find it, or
  staff chose Send again), with the callback's SID: it is never sent again. The SID is
  taken only if no other row holds it (logged otherwise). A message the row holds, or
  one known to have failed, is an earlier attempt's when the row is open again (staff
  retried it): its news never settles the retry. With a URL from before attempts were
  named (no ``a``), a row holding another SID is left alone.
- A row staff marked sent is moved on by its current attempt's own message.
- A failure of an earlier attempt that the row has moved past still goes to the
  classifier, once.
- delivered records ``delivered_at``; undelivered and failed record the error code and
  feed the failure to the classifier (``suppression.services.failure_record``, which
  unsubscribes on 21610 and suppresses bad numbers), in the same transaction.
- A row that leaves pending/sending/unknown may have been its blast's last open one:
  the blast is then finished (``blast_finish_if_done``).

A callback for a message or delivery we do not know is logged and acknowledged. Most
callbacks cost one indexed SELECT and one UPDATE.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from messaging.models import Delivery
from messaging.services.busy import retry_when_busy
from messaging.services.lifecycle import blast_finish_if_done
from messaging.twilio_errors import describe

logger = logging.getLogger(__name__)

S = Delivery.Status

# Twilio's message statuses in the order a message goes through them. The final ones
# share a rank: whichever is reported first stays. "read" (WhatsApp) follows delivered.
RANK: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "partially_delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}
# What each Twilio status makes of our row.
TARGET: dict[str, str] = {
    "accepted": S.SENT,
    "scheduled": S.SENT,
    "queued": S.SENT,
    "sending": S.SENT,
    "sent": S.SENT,
    "delivered": S.DELIVERED,
    "partially_delivered": S.DELIVERED,
    "read": S.DELIVERED,
    "undelivered": S.FAILED,
    "failed": S.FAILED,
    "canceled": S.FAILED,
}
# Failures about the message reaching the number: these go to the classifier.
CLASSIFIED = frozenset({"undelivered", "failed"})

# Rows whose outcome a callback settles: the message is Twilio's, whatever we thought.
OPEN = (S.PENDING, S.SENDING, S.UNKNOWN)

_SID_MAX = 64


class CallbackError(ValueError):
    """The callback cannot be read; the message says what is wrong (answered with 400)."""


@dataclass(frozen=True)
class StatusCallback:
    message_sid: str
    status: str
    delivery_id: int | None = None
    error_code: int | None = None
    # The delivery's attempt the message was sent for (``a`` in the URL); None for
    # messages sent before the URL carried it.
    attempt: int | None = None


def _whole_number(raw: str | None, *, digits: int, what: str) -> int | None:
    """A field of plain digits, None when absent; CallbackError with ``what`` otherwise."""
    text = (raw or "").strip()
    if not text:
        return None
    # isascii: "²".isdigit() is true, and int() refuses it.
    if not (text.isascii() and text.isdigit()) or len(text) > digits:
        raise CallbackError(what)
    return int(text)


def parse_status_callback(params: Mapping[str, str], query: Mapping[str, str]) -> StatusCallback:
    """The callback's fields from its form (``params``) and URL query (``d``)."""
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    if not sid:
        raise CallbackError("MessageSid is missing.")
    if len(sid) > _SID_MAX or not sid.isalnum():
        raise CallbackError("MessageSid is not a message SID.")
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not status:
        raise CallbackError("MessageStatus is missing.")
    if status not in RANK:
        raise CallbackError(
            f"MessageStatus {status[:40]!r} is not a status of an outgoing message."
        )
    delivery_id = _whole_number(query.get("d"), digits=18, what="d is not a delivery id.")
    attempt = _whole_number(query.get("a"), digits=5, what="a is not an attempt number.")
    code = _whole_number(params.get("ErrorCode"), digits=9, what="ErrorCode is not a number.")
    code = code or None  # Twilio sends 0 for "no error" on some statuses
    return StatusCallback(
        message_sid=sid, status=status, delivery_id=delivery_id, error_code=code, attempt=attempt
    )


_ROW_FIELDS = ("pk", "blast_id", "phone", "status", "twilio_sid", "attempts", "created_at")


def _find(callback: StatusCallback) -> dict | None:
    """The row this callback is about: the one holding its SID, else the one it names."""
    sid = callback.message_sid
    row = Delivery.objects.filter(twilio_sid=sid).values(*_ROW_FIELDS).first()
    if row is not None:
        if callback.delivery_id is not None and callback.delivery_id != row["pk"]:
            logger.warning(
                "Status callback for message %s names delivery %s, but delivery %s holds "
                "that SID: applied to delivery %s",
                sid,
                callback.delivery_id,
                row["pk"],
                row["pk"],
            )
        return row
    if callback.delivery_id is None:
        logger.warning(
            "Status callback %r for message %s, which no delivery holds: ignored",
            callback.status,
            sid,
        )
        return None
    row = Delivery.objects.filter(pk=callback.delivery_id).values(*_ROW_FIELDS).first()
    if row is None:
        logger.warning(
            "Status callback %r for message %s names delivery %s, which does not exist: ignored",
            callback.status,
            sid,
            callback.delivery_id,
        )
        return None
    if callback.attempt is not None and callback.attempt > row["attempts"]:
        logger.warning(
            "Status callback %r for message %s names attempt %s of delivery %s, which has "
            "made %s: ignored",
            callback.status,
            sid,
            callback.attempt,
            row["pk"],
            row["attempts"],
        )
        return None
    if row["twilio_sid"] is not None and callback.attempt is None:
        # A URL from before attempts were named: which attempt this is about is unknown.
        logger.warning(
            "Status callback %r for message %s names delivery %s, which holds message %s: ignored",
            callback.status,
            sid,
            row["pk"],
            row["twilio_sid"],
        )
        return None
    return row


def _failure_text(callback: StatusCallback) -> str:
    if callback.status == "canceled":
        return "Twilio cancelled the message before sending it."
    what = "could not be delivered" if callback.status == "undelivered" else "failed"
    return f"Twilio reports the message {what} ({describe(callback.error_code)})."[:1000]


def _apply(callback: StatusCallback, row: dict) -> bool:
    """The conditional UPDATE (and the classifier for a failure), in one transaction."""
    from suppression.models import FailureEvent
    from suppression.services import failure_record

    now = timezone.now()
    status, target = callback.status, TARGET[callback.status]
    earlier = [name for name, rank in RANK.items() if rank < RANK[status]] + [""]
    sid, a = callback.message_sid, callback.attempt
    # News of a message this row holds (its current one, or an earlier attempt's that
    # failed before staff sent it again) only moves a finished row forward: queued <
    # sending < sent < delivered | undelivered | failed; the first final status stays.
    forward = Q(status=target, twilio_status__in=earlier)
    if target != S.SENT:
        forward |= Q(status=S.SENT)
    own = Q(twilio_sid=sid) | (Q(twilio_sid__isnull=True) & (Q() if a is None else Q(attempts=a)))
    settles = forward & own
    # News of a message the row never learnt of (its answer was lost, or the worker has
    # not written it yet) proves Twilio has it: an open row (in flight, unknown, or put
    # back after an attempt: reconciliation's "not found", staff's "Send again", even a
    # resend already claimed) is settled with it and not sent again. Not for a message
    # known to have failed (staff retried it), nor, for URLs without the attempt, while
    # the row holds another SID.
    known_failures = FailureEvent.objects.filter(message_sid=sid).exclude(message_sid="")
    if row["twilio_sid"] != sid and not known_failures.exists():
        unlearnt = ~Q(twilio_sid=sid) & (
            Q(twilio_sid__isnull=True) if a is None else Q(attempts__gte=a)
        )
        open_ = Q(status__in=[S.SENDING, S.UNKNOWN]) | Q(
            status__in=[S.PENDING, S.CANCELLED], attempts__gt=0
        )
        settles |= open_ & unlearnt
        if a is not None:
            # Staff marked the row sent while it held an earlier attempt's SID: this is
            # the current attempt's own message.
            settles |= Q(status=S.SENT, attempts=a) & ~Q(twilio_sid=sid)
    rows = Delivery.objects.filter(pk=row["pk"])
    fields: dict[str, object] = {
        "status": target,
        "twilio_sid": callback.message_sid,
        "twilio_status": status,
        "attention": "",
        "sent_at": Coalesce(F("sent_at"), Value(now)),
        "updated_at": now,
    }
    if target == S.FAILED:
        fields |= {"error_code": callback.error_code, "error_message": _failure_text(callback)}
    else:
        fields |= {"error_code": None, "error_message": ""}
    if target == S.DELIVERED:
        fields["delivered_at"] = Coalesce(F("delivered_at"), Value(now))
    with transaction.atomic():
        changed = rows.filter(settles).update(**fields)
        if status not in CLASSIFIED:
            return bool(changed)
        # A failure is dated by its attempt, so news of a message sent before a lift or
        # a START arriving after it does not undo them. When an earlier attempt's message
        # was sent is not on the row: dated by the row's creation, the earliest it can
        # have been.
        if changed:
            # Read under the UPDATE's lock: this attempt's number and when it was sent.
            attempt, claimed_at, sent_at = Delivery.objects.filter(pk=row["pk"]).values_list(
                "attempts", "claimed_at", "sent_at"
            )[0]
            failed_at = min(claimed_at or sent_at or now, now)
            if a is not None and a != attempt:  # it settled a resend claimed since
                attempt, failed_at = a, row["created_at"]
        elif a is not None and a < row["attempts"]:
            # An earlier attempt's message failed, news the row has moved past (staff
            # sent it again): what it says about the number still counts, once.
            attempt, failed_at = a, row["created_at"]
        else:
            return False
        action = failure_record(
            phone=row["phone"],
            code=callback.error_code,
            delivery_id=row["pk"],
            attempt=attempt,
            blast_id=row["blast_id"],
            message_sid=sid,
            at=failed_at,
        )
        logger.info(
            "Delivery %s, attempt %s: %s (%s): number %s",
            row["pk"],
            attempt,
            status,
            describe(callback.error_code),
            action,
        )
    return bool(changed)


def delivery_status_callback(callback: StatusCallback) -> str:
    """Apply one status callback. Returns what happened, for the log and the tests:

    ``updated``; ``unchanged`` (a duplicate, or older than what the row knows);
    ``unknown`` (no row holds the SID or has the id); ``conflict`` (the row holds another
    SID, or another row holds this one).
    """
    row = _find(callback)
    if row is None:
        return "unknown"
    if row["twilio_sid"] != callback.message_sid and (
        Delivery.objects.filter(twilio_sid=callback.message_sid).exclude(pk=row["pk"]).exists()
    ):
        logger.warning(
            "Status callback for message %s names delivery %s, but another delivery holds "
            "that SID: ignored",
            callback.message_sid,
            row["pk"],
        )
        return "conflict"
    try:
        changed = retry_when_busy(lambda: _apply(callback, row), what="recording a status callback")
    except IntegrityError:
        # Another row took the SID between the check and the UPDATE.
        logger.warning(
            "Status callback for message %s: another delivery took that SID meanwhile; "
            "delivery %s unchanged",
            callback.message_sid,
            row["pk"],
        )
        return "conflict"
    if not changed:
        return "unchanged"
    if row["status"] in OPEN and not (
        Delivery.objects.filter(blast_id=row["blast_id"], status__in=OPEN).exists()
    ):
        # That row may have been the blast's last open one.
        blast_finish_if_done(blast_id=row["blast_id"])
    return "updated"
