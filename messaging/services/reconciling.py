"""Settling rows whose outcome is unknown from Twilio's own records.

A row is 'unknown' when Twilio may or may not have created its message (5xx, timeout,
dropped connection, a worker that died mid-call). Every minute, once no status callback
settled it within SMS_RECONCILE_AFTER_MINUTES, Twilio's list of messages to that number
is read for the attempt's time window and decides:

- one message there that no other row holds (text breaks ties between several): sent;
- none: the row goes out again (pending), or is cancelled with its blast;
- Twilio's records do not say which message is this one: the row stays unknown with
  attention=ambiguous, and staff decide. Never a resend on a guess.

What identifies an attempt is who it went to, from which sender and when (claimed_at
is set right before the API call), and its text as compared after trimming and undoing
Smart Encoding (Twilio trims bodies and rewrites quotes and dashes, so the stored text
may differ from ours): a message without it is somebody else's, and it breaks ties.
"""

from __future__ import annotations

import logging
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.segments import gsm_replace
from messaging.services.clock import DbNow
from messaging.services.lifecycle import back_to_pending, blast_finish_if_done, blast_status_locked
from messaging.services.queueing import blast_enqueue
from messaging.sms import FoundMessage, LookupIncomplete, SmsBackend, get_backend

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status
A = Delivery.Attention

# Our clock and Twilio's may disagree by this much; the window is widened by it on both
# sides.
CLOCK_SKEW = timedelta(minutes=2)
# How far past the window our own text still makes the answer ambiguous: Twilio's clock
# a few minutes ahead of ours, or a request it processed late. Later than that, the same
# text is another send (a staff test, another tool) and this attempt is not in the list.
LATE_LOOKAHEAD = timedelta(minutes=5)


def normalised_text(text: str) -> str:
    """A message text as compared: look-alikes mapped as Twilio's Smart Encoding maps
    them (the table compose uses too), whitespace collapsed, any case."""
    text = gsm_replace(text=unicodedata.normalize("NFKC", text))
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class _Attempt:
    """What one look-up is about: a row's current attempt, as read before asking Twilio.

    Settling re-checks attempts and claimed_at, so an answer about an earlier attempt
    (a slow, overlapping run) never settles a later one.
    """

    pk: int
    blast_id: int
    phone: str
    body: str
    attempts: int
    claimed_at: datetime | None
    since: datetime
    until: datetime

    @classmethod
    def of(cls, delivery: Delivery) -> _Attempt:
        since, until = _window(
            claimed_at=delivery.claimed_at,
            created_at=delivery.created_at,
            updated_at=delivery.updated_at,
        )
        return cls(
            pk=delivery.pk,
            blast_id=delivery.blast_id,
            phone=delivery.phone,
            body=delivery.body,
            attempts=delivery.attempts,
            claimed_at=delivery.claimed_at,
            since=since,
            until=until,
        )


def _window(
    *, claimed_at: datetime | None, created_at: datetime, updated_at: datetime
) -> tuple[datetime, datetime]:
    """When Twilio can have created this attempt's message, by Twilio's clock."""
    timeout = timedelta(seconds=settings.SMS_HTTP_TIMEOUT_SECONDS)
    if claimed_at is not None:
        return claimed_at - CLOCK_SKEW, claimed_at + timeout + CLOCK_SKEW
    # Every unknown row was claimed; without a claim time, all of its life is the window.
    return created_at - CLOCK_SKEW, updated_at + timeout + CLOCK_SKEW


@dataclass(frozen=True)
class _Decision:
    outcome: str  # "sent", "not_sent" or "ambiguous"
    message: FoundMessage | None = None
    reason: str = ""


def _decide(attempt: _Attempt, messages: list[FoundMessage]) -> _Decision:
    """Which of the messages Twilio lists in the window, if any, is this attempt's."""
    # A SID another row holds is that row's message (a status callback, or an earlier
    # blast with the same text): never this one's. Nor is one this row holds: an unknown
    # row never learnt its current attempt's SID, so a SID it holds is an earlier
    # attempt's, a message that failed before staff sent it again.
    held = set(
        Delivery.objects.filter(twilio_sid__in=[m.sid for m in messages]).values_list(
            "twilio_sid", flat=True
        )
    )
    unheld = [m for m in messages if m.sid and m.sid not in held]
    candidates = [m for m in unheld if m.date_created is None or m.date_created <= attempt.until]
    ours = normalised_text(attempt.body)
    # Our text, created after the attempt's window: Twilio's clock or its processing
    # lagged ours. Not proof either way, so wherever "not sent" would be concluded, the
    # row is left for staff instead of being sent again.
    late = [m for m in unheld if m not in candidates and ours in normalised_text(m.body)]

    def not_sent() -> _Decision:
        if late:
            return _Decision("ambiguous", reason=_late_reason(attempt, late))
        return _Decision("not_sent")

    if not candidates:
        return not_sent()

    # Other rows to the same number whose message may be in the same window: another
    # blast's unknown row, one in flight, or one staff marked sent without a SID. A
    # message either could own is contested.
    timeout = timedelta(seconds=settings.SMS_HTTP_TIMEOUT_SECONDS)
    others = [
        _Attempt.of(row)
        for row in Delivery.objects.filter(
            Q(status__in=[S.UNKNOWN, S.SENDING])
            | Q(status__in=[S.SENT, S.DELIVERED], twilio_sid__isnull=True),
            phone=attempt.phone,
            claimed_at__gte=attempt.since - timeout - CLOCK_SKEW,
            claimed_at__lte=attempt.until + CLOCK_SKEW,
        ).exclude(pk=attempt.pk)
    ]

    def rivals(message: FoundMessage) -> list[_Attempt]:
        created = message.date_created
        return [o for o in others if created is None or o.since <= created <= o.until]

    def ours_in(message: FoundMessage) -> bool:
        # Twilio only re-encodes a text (normalised away) or adds to it (a Messaging
        # Service's opt-out line); a message without our text is somebody else's: a
        # HELP reply, a staff member's own text from the console.
        return ours in normalised_text(message.body)

    if not any(ours_in(m) for m in candidates):
        return not_sent()
    contested = any(rivals(m) for m in candidates)
    if len(candidates) == 1 and not contested:
        return _Decision("sent", candidates[0])

    # Text breaks the tie: the one message whose text is this row's and no rival's.
    def rival_text(message: FoundMessage) -> bool:
        text = normalised_text(message.body)
        return any(normalised_text(o.body) == text for o in rivals(message))

    mine = [m for m in candidates if ours_in(m) and not rival_text(m)]
    if len(mine) == 1:
        return _Decision("sent", mine[0])
    if not mine and all(rival_text(m) and normalised_text(m.body) != ours for m in candidates):
        # Every message there is recognisably another row's.
        return not_sent()
    return _Decision("ambiguous", reason=_ambiguous_reason(attempt, candidates, others))


def _late_reason(attempt: _Attempt, late: list[FoundMessage]) -> str:
    start = timezone.localtime(attempt.since).strftime("%Y-%m-%d %H:%M")
    return (
        f"Twilio's records show this text to this number created after {start} plus the "
        f"time a request can take ({len(late)} message{'s' if len(late) != 1 else ''}), "
        "later than this attempt could explain. It was not sent again: check the messages "
        "in Twilio's console, then mark it sent or send it again."
    )


def _ambiguous_reason(
    attempt: _Attempt, candidates: list[FoundMessage], others: list[_Attempt]
) -> str:
    ours = normalised_text(attempt.body)
    same_text = sum(1 for m in candidates if normalised_text(m.body) == ours)
    count = f"{len(candidates)} message{'s' if len(candidates) != 1 else ''}"
    start = timezone.localtime(attempt.since).strftime("%Y-%m-%d %H:%M")
    end = timezone.localtime(attempt.until).strftime("%H:%M %Z")
    text = f"Twilio's records show {count} to this number from our sender between {start} and {end}"
    if others:
        blasts = ", ".join(sorted({f"#{o.blast_id}" for o in others}))
        text += f", while blast {blasts} also sent to this number at that time"
    if same_text == 0:
        text += "; none of them has this text"
    elif same_text > 1 or others:
        text += f"; {same_text} of them {'have' if same_text > 1 else 'has'} this text"
    return (
        text + ". It was not sent again: check the messages in Twilio's console, then mark it "
        "sent or send it again."
    )


def _settle(attempt: _Attempt, decision: _Decision) -> str:
    """Apply the decision, only if the row is still at the attempt that was looked up."""
    now = timezone.now()
    rows = Delivery.objects.filter(
        pk=attempt.pk,
        status=S.UNKNOWN,
        attempts=attempt.attempts,
        claimed_at=attempt.claimed_at,
    ).exclude(attention=A.AMBIGUOUS)
    if decision.outcome == "sent":
        found = decision.message
        assert found is not None
        # A SID that became another row's since _decide (a status callback, a run
        # beside this one) fails the unique constraint: the savepoint keeps that
        # from spoiling the caller's transaction.
        with transaction.atomic():
            changed = rows.update(
                status=S.SENT,
                twilio_sid=found.sid,
                twilio_status=found.status,
                sent_at=Coalesce(F("sent_at"), Value(now)),
                error_message="",
                error_code=None,
                attention="",
                updated_at=now,
            )
        return "sent" if changed else "unchanged"
    if decision.outcome == "ambiguous":
        changed = rows.update(attention=A.AMBIGUOUS, error_message=decision.reason, updated_at=now)
        return "ambiguous" if changed else "unchanged"
    # Under the blast's lock, like every write that may make a row pending: a cancel
    # running now either sees this row pending and cancels it, or is seen here.
    with transaction.atomic():
        status = back_to_pending(blast_status=blast_status_locked(blast_id=attempt.blast_id))
        message = (
            "Not found in Twilio's records after the unknown outcome; sending again."
            if status == S.PENDING
            else "Not found in Twilio's records, and the blast was cancelled: not sent."
        )
        changed = rows.update(
            status=status,
            claim_token=None,
            next_attempt_at=None,
            error_message=message,
            error_code=None,
            attention="",
            updated_at=now,
        )
    if not changed:
        return "unchanged"
    return "pending" if status == S.PENDING else "cancelled"


def _reconcile(attempt: _Attempt, answer: list[FoundMessage] | Exception) -> str:
    """One row's outcome; never raises, so one row cannot stop a run."""
    try:
        if isinstance(answer, LookupIncomplete):
            reason = (
                f"Twilio's records could not be read back to this message's time ({answer}). "
                "It was not sent again: check the messages in Twilio's console, then mark it "
                "sent or send it again."
            )
            return _settle(attempt, _Decision("ambiguous", reason=reason))
        if isinstance(answer, Exception):
            # Twilio could not be asked: decide nothing, try again next minute.
            logger.warning("Could not look up delivery %s in Twilio: %s", attempt.pk, answer)
            return "error"
        # One savepoint per row: a database error here is this row's alone.
        with transaction.atomic():
            return _settle(attempt, _decide(attempt, answer))
    except Exception:
        logger.exception("Could not settle delivery %s from Twilio's records", attempt.pk)
        return "error"


def _look_up(backend: SmsBackend, attempt: _Attempt) -> list[FoundMessage] | Exception:
    try:
        # Past the window too: a message Twilio created later than we can explain
        # (its clock ahead of ours, a request it processed late) must not be missed.
        return backend.find_messages(
            to=attempt.phone, since=attempt.since, until=attempt.until + LATE_LOOKAHEAD
        )
    except Exception as exc:  # Twilio unreachable, or the window not readable to the end
        return exc


def _escalate(*, now: datetime, limit: int) -> int:
    """Rows unknown for longer than SMS_UNKNOWN_ESCALATE_HOURS are shown to staff.

    Reconciliation keeps trying them: if Twilio answers later, the row settles and
    the flag is cleared.
    """
    # The database's clock, the one claimed_at was stamped with.
    threshold = DbNow() - timedelta(hours=settings.SMS_UNKNOWN_ESCALATE_HOURS)
    rows = (
        Delivery.objects.filter(status=S.UNKNOWN, attention="")
        .filter(Q(claimed_at__lt=threshold) | Q(claimed_at__isnull=True, updated_at__lt=threshold))
        .order_by("id")
        .only("pk", "claimed_at", "updated_at")[:limit]
    )
    flagged = 0
    for row in rows:
        hours = int((now - (row.claimed_at or row.updated_at)).total_seconds() // 3600)
        flagged += Delivery.objects.filter(pk=row.pk, status=S.UNKNOWN, attention="").update(
            attention=A.OVERDUE,
            error_message=f"The outcome is unknown and Twilio's records could not be checked "
            f"for {hours} hours: decide whether to send again.",
            updated_at=now,
        )
    return flagged


def _follow_up(blast_id: int) -> None:
    """A settled row may leave its blast work to do (a resend) or nothing left at all."""
    Blast.objects.filter(pk=blast_id, status=B.SENDING).update(processing_started_at=timezone.now())
    if Delivery.objects.filter(blast_id=blast_id, status=S.PENDING).exists():
        blast_enqueue(blast_id=blast_id)
    else:
        blast_finish_if_done(blast_id=blast_id)


def delivery_reconcile(*, delivery: Delivery, backend: SmsBackend | None = None) -> str:
    """Settle one unknown row from Twilio's own records.

    Returns 'sent', 'pending', 'cancelled', 'ambiguous' (left for staff), 'unchanged'
    (no longer this attempt, or not unknown) or 'error' (Twilio could not be asked).
    """
    if delivery.status != S.UNKNOWN or delivery.attention == A.AMBIGUOUS:
        return "unchanged"
    attempt = _Attempt.of(delivery)
    outcome = _reconcile(attempt, _look_up(backend or get_backend(), attempt))
    if outcome in ("sent", "pending", "cancelled"):
        _follow_up(attempt.blast_id)
    return outcome


def deliveries_reconcile(*, limit: int = 300, backend: SmsBackend | None = None) -> dict[str, int]:
    """Every minute: unknown rows no status callback settled in SMS_RECONCILE_AFTER_MINUTES.

    Rows left for staff (ambiguous) are not looked at again. Returns how many rows
    ended each way, 'errors' counting rows that could not be looked up or settled,
    and 'overdue' the rows newly flagged as unknown for too long.
    """
    backend = backend or get_backend()
    now = timezone.now()
    # The database's clock, the one claimed_at was stamped with: a beat host whose
    # clock runs ahead never looks up a message that is still in flight.
    cutoff = DbNow() - timedelta(minutes=settings.SMS_RECONCILE_AFTER_MINUTES)
    attempts = [
        _Attempt.of(row)
        for row in Delivery.objects.filter(status=S.UNKNOWN)
        .exclude(attention=A.AMBIGUOUS)
        .filter(Q(claimed_at__lt=cutoff) | Q(claimed_at__isnull=True, updated_at__lt=cutoff))
        .order_by("id")[:limit]
    ]
    outcome = {
        "sent": 0,
        "pending": 0,
        "cancelled": 0,
        "ambiguous": 0,
        "unchanged": 0,
        "errors": 0,
        "overdue": 0,
    }

    # Look-ups go out several at a time (one or more list requests each); the answers
    # are applied here, on this thread's database connection.
    if getattr(backend, "threaded", True) and len(attempts) > 1:
        with ThreadPoolExecutor(max_workers=max(1, settings.SMS_MAX_IN_FLIGHT)) as pool:
            answers = list(pool.map(lambda a: _look_up(backend, a), attempts))
    else:
        answers = [_look_up(backend, attempt) for attempt in attempts]

    touched: set[int] = set()
    for attempt, answer in zip(attempts, answers, strict=True):
        result = _reconcile(attempt, answer)
        outcome["errors" if result == "error" else result] += 1
        if result in ("sent", "pending", "cancelled"):
            touched.add(attempt.blast_id)
    for blast_id in touched:
        try:
            _follow_up(blast_id)
        except Exception:
            logger.exception("Could not follow up blast %s after reconciliation", blast_id)
    try:
        outcome["overdue"] = _escalate(now=now, limit=limit)
    except Exception:
        logger.exception("Could not flag deliveries unknown for too long")
    return outcome
