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
- A callback proves Twilio has the message: a row still ``sending`` (the engine has not
  written Twilio's answer yet), ``unknown`` (the answer was lost), or put back to
  ``pending``/``cancelled`` after an attempt whose message reconciliation did not find,
  is settled with the callback's SID, and is never sent again. The SID is taken only if
  no other row holds it (logged otherwise). News of an earlier attempt (a message that
  failed before staff sent it again, Twilio re-posting its callback) never settles the
  row's later attempt: the attempt in the URL says which one the news is about, and
  for older URLs a SID the row holds is taken for an earlier attempt's.
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
    delivery_id: int | None = None
    raw_id = (query.get("d") or "").strip()
    if raw_id:
        # isascii: "²".isdigit() is true, and int() refuses it.
        if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18:
            raise CallbackError("d is not a delivery id.")
        delivery_id = int(raw_id)
    attempt: int | None = None
    raw_attempt = (query.get("a") or "").strip()
    if raw_attempt:
        if not (raw_attempt.isascii() and raw_attempt.isdigit()) or len(raw_attempt) > 5:
            raise CallbackError("a is not an attempt number.")
        attempt = int(raw_attempt)
    code: int | None = None
    raw_code = (params.get("ErrorCode") or "").strip()
    if raw_code:
        if not (raw_code.isascii() and raw_code.isdigit()) or len(raw_code) > 9:
            raise CallbackError("ErrorCode is not a number.")
        code = int(raw_code) or None  # Twilio sends 0 for "no error" on some statuses
    return StatusCallback(
        message_sid=sid, status=status, delivery_id=delivery_id, error_code=code, attempt=attempt
    )


_ROW_FIELDS = ("pk", "blast_id", "phone", "status", "twilio_sid", "attempts")
# A row in these statuses never learnt its current attempt's SID: one it holds is an
# earlier attempt's (a message that failed before staff sent it again).
_IN_FLIGHT = (S.SENDING, S.UNKNOWN)


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
    current = callback.attempt is not None and callback.attempt == row["attempts"]
    if row["twilio_sid"] is not None and not (current and row["status"] in _IN_FLIGHT):
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
    from suppression.services import failure_record

    now = timezone.now()
    status, target = callback.status, TARGET[callback.status]
    earlier = [name for name, rank in RANK.items() if rank < RANK[status]] + [""]
    # Rows this status settles: any open row (pending and cancelled only after an
    # attempt whose message we never learnt of: a message exists only for a row that
    # was sent, and one still holding a SID was sent again by staff, so this news is
    # about the old message), a sent row unless the status is no further than sent, or
    # a row already at the target whose Twilio status is behind (sent -> sent after
    # queued; delivered -> read).
    # With the attempt in the URL, news of an earlier attempt never settles a later one;
    # without it (messages sent before the URL carried it), a row in flight is settled
    # only while it holds no SID, since one it holds is an earlier attempt's.
    this_attempt = Q() if callback.attempt is None else Q(attempts=callback.attempt)
    in_flight = Q(status__in=_IN_FLIGHT) & (
        Q(twilio_sid__isnull=True) if callback.attempt is None else this_attempt
    )
    reopened = Q(status__in=[S.PENDING, S.CANCELLED], attempts__gt=0, twilio_sid__isnull=True)
    forward = Q(status=target, twilio_status__in=earlier)
    if target != S.SENT:
        forward |= Q(status=S.SENT)
    # A finished row moves on only for its own message: the SID it holds, or none yet
    # (staff marked it sent) for this attempt.
    own = Q(twilio_sid=callback.message_sid) | (Q(twilio_sid__isnull=True) & this_attempt)
    settles = in_flight | (reopened & this_attempt) | (forward & own)
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
        if changed and status in CLASSIFIED:
            # Read under the UPDATE's lock: this attempt's number and when it was sent.
            # A failure is dated by its attempt, so news of a message sent before a
            # lift or a START arriving after it does not undo them.
            attempt, claimed_at, sent_at = Delivery.objects.filter(pk=row["pk"]).values_list(
                "attempts", "claimed_at", "sent_at"
            )[0]
            action = failure_record(
                phone=row["phone"],
                code=callback.error_code,
                delivery_id=row["pk"],
                attempt=attempt,
                blast_id=row["blast_id"],
                message_sid=callback.message_sid,
                at=min(claimed_at or sent_at or now, now),
            )
            logger.info(
                "Delivery %s %s (%s): number %s",
                row["pk"],
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
