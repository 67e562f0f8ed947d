"""Blasts: create, send, pause/resume/cancel, sweep and reconcile.

The rules every function here keeps:
- Rows in the database are the truth, never the broker: a task may run twice, late,
  or not at all, and the sweeper puts things right from the rows.
- A delivery leaves 'pending' only through a conditional UPDATE (delivery_claim), so no
  two workers ever send the same row.
- A row whose outcome is unknown is never sent again until Twilio's own message list
  says it did not go out (delivery_reconcile).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, Min, Q, Value, When
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from events.models import Event, Registration
from members.models import Member
from messaging.models import Blast, Delivery, SendRateLimiter
from messaging.sms import (
    FoundMessage,
    Outcome,
    SendResult,
    SmsBackend,
    get_backend,
    status_callback_url,
)
from messaging.templating import Template, TemplateError, recipient_values, template_parse
from messaging.twilio_errors import describe
from smsadmin.models import User
from suppression.services import blocked_phones

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status

CREATE_BATCH = 1000
# A worker goes quiet for this long before the sweeper hands its blast to another.
HEARTBEAT_STALE = timedelta(minutes=2)
# A queued blast no worker took within this time is enqueued again.
QUEUED_STALE = timedelta(minutes=1)
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


class BlastError(ValueError):
    """A blast cannot be created or changed as asked; the message says why."""


# --- Creating ---------------------------------------------------------------------------


@dataclass
class _Recipient:
    phone: str
    first_name: str
    last_name: str
    event: Event | None = None


def _audience(*, community: bool, events: list[Event]) -> Iterator[_Recipient]:
    # Event registrations first: someone both registered and a member is texted once,
    # with the event's details.
    for event in events:
        rows = (
            Registration.objects.filter(event=event)
            .order_by("id")
            .values_list("phone", "first_name", "last_name")
        )
        for phone, first, last in rows.iterator(chunk_size=2000):
            yield _Recipient(phone, first, last, event)
    if community:
        rows = (
            Member.objects.filter(is_active=True)
            .order_by("id")
            .values_list("phone", "first_name", "last_name")
        )
        for phone, first, last in rows.iterator(chunk_size=2000):
            yield _Recipient(phone, first, last)


def _render(template: Template, recipient: _Recipient) -> str:
    event = recipient.event
    return template.render(
        recipient_values(
            first_name=recipient.first_name,
            last_name=recipient.last_name,
            event_name=event.name if event else "",
            event_starts_at=event.starts_at if event else None,
            event_location=event.location if event else "",
        )
    )


def blast_validate(
    *, body: str, community: bool, event_ids: Iterable[int]
) -> tuple[Template, list[Event]]:
    """Check text and audience; raise BlastError with a message for staff."""
    try:
        template = template_parse(body)
    except TemplateError as exc:
        raise BlastError(str(exc)) from None
    ids = sorted(set(event_ids))
    events = list(Event.objects.filter(pk__in=ids).order_by("id"))
    missing = sorted(set(ids) - {e.pk for e in events})
    if missing:
        raise BlastError(f"No event with id {', '.join(map(str, missing))}.")
    if not community and not events:
        raise BlastError("Choose an audience: community members, an event, or both.")
    if template.uses_event_fields and community:
        raise BlastError(
            "Event placeholders ({event_name}, {event_date}, {event_location}) only work "
            "when the audience is event registrations alone: community members have no event."
        )
    return template, events


def blast_create(
    *,
    body: str,
    community: bool = False,
    event_ids: Iterable[int] = (),
    created_by: User | None = None,
    name: str = "",
    scheduled_for: datetime | None = None,
) -> Blast:
    """Create a blast and one row per recipient in one transaction, then enqueue it.

    Recipients are deduplicated by phone; unsubscribed and suppressed numbers get a
    row marked skipped with the reason. If the broker is down the blast stays queued
    and the sweeper sends it; ``blast.enqueued_at`` is None in that case.
    """
    template, events = blast_validate(body=body, community=community, event_ids=event_ids)
    scheduled = scheduled_for is not None and scheduled_for > timezone.now()
    with transaction.atomic():
        blast = Blast.objects.create(
            name=name.strip() or body.strip().splitlines()[0][:60],
            body=body,
            audience_community=community,
            status=B.SCHEDULED if scheduled else B.QUEUED,
            scheduled_for=scheduled_for,
            created_by=created_by,
        )
        blast.audience_events.set(events)
        seen: set[str] = set()
        batch: list[Delivery] = []
        total = 0

        def flush() -> None:
            blocked = blocked_phones(phones=[d.phone for d in batch])
            for delivery in batch:
                reason = blocked.get(delivery.phone)
                if reason:
                    delivery.status = S.SKIPPED
                    delivery.skip_reason = reason
            Delivery.objects.bulk_create(batch)
            batch.clear()

        for recipient in _audience(community=community, events=events):
            if recipient.phone in seen:
                continue
            seen.add(recipient.phone)
            batch.append(
                Delivery(
                    blast=blast,
                    phone=recipient.phone,
                    first_name=recipient.first_name,
                    last_name=recipient.last_name,
                    event=recipient.event,
                    body=_render(template, recipient),
                )
            )
            total += 1
            if len(batch) >= CREATE_BATCH:
                flush()
        if batch:
            flush()
        if total == 0:
            raise BlastError("Nobody to send to: the chosen audience has no one in it.")
        blast.recipient_count = total
        blast.save(update_fields=["name", "recipient_count"])
        if not scheduled:
            transaction.on_commit(lambda: blast_enqueue(blast_id=blast.pk))
    blast.refresh_from_db()
    return blast


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


# --- Pause, resume, cancel ---------------------------------------------------------------


def blast_pause(
    *, blast_id: int, reason: str = "Paused by staff", cause: str = Blast.PauseCause.STAFF
) -> bool:
    """Stop new sends within seconds; what is in flight finishes. False if not running."""
    return bool(
        Blast.objects.filter(pk=blast_id, status__in=[B.QUEUED, B.SENDING]).update(
            status=B.PAUSED, status_reason=reason, pause_cause=cause, updated_at=timezone.now()
        )
    )


def blast_resume(*, blast_id: int) -> bool:
    """Send what is left, once. False if the blast was not paused."""
    with transaction.atomic():
        blast = Blast.objects.select_for_update().filter(pk=blast_id, status=B.PAUSED).first()
        if blast is None:
            return False
        blast.status = B.QUEUED
        blast.status_reason = ""
        # Staff looked at the canary's failures and chose to go on.
        if blast.pause_cause == Blast.PauseCause.CANARY:
            blast.canary_passed = True
        blast.pause_cause = ""
        blast.save(
            update_fields=["status", "status_reason", "canary_passed", "pause_cause", "updated_at"]
        )
        transaction.on_commit(lambda: blast_enqueue(blast_id=blast_id))
    return True


def blast_cancel(*, blast_id: int, reason: str = "Cancelled by staff") -> int | None:
    """Stop the blast for good; rows not yet sent become cancelled. None if already over."""
    now = timezone.now()
    with transaction.atomic():
        changed = Blast.objects.filter(
            pk=blast_id, status__in=[B.SCHEDULED, B.QUEUED, B.SENDING, B.PAUSED]
        ).update(status=B.CANCELLED, status_reason=reason, finished_at=now, updated_at=now)
        if not changed:
            return None
        return Delivery.objects.filter(blast_id=blast_id, status=S.PENDING).update(
            status=S.CANCELLED, claim_token=None, updated_at=now
        )


# --- Claiming and sending ------------------------------------------------------------------


def delivery_claim(*, blast_id: int, limit: int) -> tuple[uuid.UUID, list[Delivery]]:
    """Take up to ``limit`` pending rows of a blast for this worker alone.

    The UPDATE re-checks status='pending' row by row, so when two workers pick the same
    ids each row goes to exactly one of them (PostgreSQL re-evaluates the condition
    after the row lock; SQLite runs one writer at a time).
    """
    token = uuid.uuid4()
    now = timezone.now()
    ids = list(
        Delivery.objects.filter(blast_id=blast_id, status=S.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if not ids:
        return token, []
    Delivery.objects.filter(id__in=ids, status=S.PENDING).update(
        status=S.SENDING,
        claim_token=token,
        claimed_at=now,
        attempts=F("attempts") + 1,
        next_attempt_at=None,
        updated_at=now,
    )
    return token, list(Delivery.objects.filter(id__in=ids, claim_token=token).order_by("id"))


def retry_delay(attempts: int) -> float:
    """Exponential backoff with jitter, capped far below any broker visibility timeout."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrecy


class RateLimiter:
    """SMS_RATE_PER_SECOND for the whole deployment: send slots reserved in the database.

    Each reservation takes a short window of slots (about half a second's worth) under
    a row lock, so workers never overlap and the database sees a few writes a second.
    """

    def __init__(self, *, key: str, rate: float) -> None:
        self.key = key
        self.rate = rate
        self.slots: deque[float] = deque()

    def _reserve(self) -> None:
        n = max(1, min(500, math.ceil(self.rate * 0.5)))
        with transaction.atomic():
            row = SendRateLimiter.objects.select_for_update().filter(key=self.key).first()
            if row is None:
                try:
                    with transaction.atomic():
                        row = SendRateLimiter.objects.create(key=self.key)
                except IntegrityError:
                    row = SendRateLimiter.objects.select_for_update().get(key=self.key)
            start = max(row.next_slot, time.time())
            row.next_slot = start + n / self.rate
            row.save(update_fields=["next_slot"])
        self.slots.extend(start + i / self.rate for i in range(n))

    def next_slot(self) -> float:
        """The epoch time at which the next message may go out."""
        if self.rate <= 0:
            return 0.0
        if not self.slots:
            self._reserve()
        return self.slots.popleft()


@dataclass
class _Pass:
    """One worker's pass over a blast: its claims, its in-flight sends, its results."""

    blast_id: int
    backend: SmsBackend
    limiter: RateLimiter
    max_in_flight: int
    deadline: float
    pool: Executor
    results: SimpleQueue[tuple[Delivery, uuid.UUID, SendResult]] = field(
        default_factory=SimpleQueue
    )
    stop_reason: str = ""
    backoff_until: float = 0.0
    consecutive_retries: int = 0
    last_status_check: float = 0.0
    canary_checked: bool = False

    @property
    def reclaim_batch(self) -> int:
        # Re-claim only what goes out within about half a second, so a re-claimed row
        # is sent long before anyone could take its claim for a dead worker's.
        if self.limiter.rate <= 0:
            return self.max_in_flight
        return max(1, min(self.max_in_flight, int(self.limiter.rate * 0.5)))

    def blast_still_sending(self) -> bool:
        now = time.monotonic()
        if now - self.last_status_check < 0.5:
            return not self.stop_reason
        self.last_status_check = now
        status = Blast.objects.filter(pk=self.blast_id).values_list("status", flat=True).first()
        if status != B.SENDING:
            self.stop_reason = self.stop_reason or f"blast is {status}"
        return not self.stop_reason


def _send_one(backend: SmsBackend, delivery: Delivery) -> SendResult:
    try:
        return backend.send(
            to=delivery.phone, body=delivery.body, status_callback=status_callback_url(delivery.pk)
        )
    except Exception as exc:  # a bug or a library surprise must not lose the row
        logger.exception("Unexpected error sending delivery %s", delivery.pk)
        return SendResult(outcome=Outcome.UNKNOWN, error_message=f"{type(exc).__name__}: {exc}")


_STATUS_AFTER = {
    Outcome.SENT: S.SENT,
    Outcome.FAILED: S.FAILED,
    Outcome.UNKNOWN: S.UNKNOWN,
    Outcome.RETRY: S.PENDING,
    # Not this recipient's fault: the row waits for the blast to be resumed.
    Outcome.SENDER_ERROR: S.PENDING,
}


def _per_row(items: list[tuple[Delivery, SendResult]], name: str, value) -> Cast:  # type: ignore[no-untyped-def]
    """One column's new value for each row of a batch, as a CASE on the primary key."""
    field = Delivery._meta.get_field(name)
    case = Case(
        *(When(pk=d.pk, then=Value(value(d, r), output_field=field)) for d, r in items),
        output_field=field,
    )
    # PostgreSQL types a CASE of bare parameters as text (Django's bulk_update casts too).
    return Cast(case, output_field=field)


def _record(p: _Pass, drained: list[tuple[Delivery, uuid.UUID, SendResult]]) -> None:
    """Write a batch of outcomes: one UPDATE per kind of outcome, in one transaction.

    Each UPDATE is still conditional on the claim, so a row that stopped being ours
    (expired as stale and already settled elsewhere) is left alone.
    """
    if not drained:
        return
    now = timezone.now()
    groups: dict[tuple[uuid.UUID, Outcome], list[tuple[Delivery, SendResult]]] = {}
    for delivery, token, result in drained:
        groups.setdefault((token, result.outcome), []).append((delivery, result))
    sender_error: SendResult | None = None
    with transaction.atomic():
        for (token, outcome), items in groups.items():
            fields: dict[str, object] = {"status": _STATUS_AFTER[outcome], "updated_at": now}
            if outcome is Outcome.SENT:
                fields |= {
                    "twilio_sid": _per_row(items, "twilio_sid", lambda d, r: r.sid or None),
                    "twilio_status": _per_row(items, "twilio_status", lambda d, r: r.status),
                    "error_code": None,
                    "error_message": "",
                    "sent_at": now,
                }
            else:
                fields |= {
                    "error_code": _per_row(items, "error_code", lambda d, r: r.error_code),
                    "error_message": _per_row(items, "error_message", lambda d, r: r.error_message),
                }
            if outcome is Outcome.RETRY:
                fields |= {
                    "claim_token": None,
                    "next_attempt_at": _per_row(
                        items,
                        "next_attempt_at",
                        lambda d, r: now + timedelta(seconds=retry_delay(d.attempts + 1)),
                    ),
                }
            elif outcome is Outcome.SENDER_ERROR:
                sender_error = sender_error or items[0][1]
                fields |= {"claim_token": None, "attempts": F("attempts") - 1}
            Delivery.objects.filter(
                pk__in=[d.pk for d, _ in items],
                claim_token=token,
                status__in=[S.SENDING, S.UNKNOWN],
            ).update(**fields)
        Blast.objects.filter(pk=p.blast_id).update(processing_started_at=now)
    if sender_error is not None:
        reason = (
            f"Paused: Twilio refused the sender or account ({describe(sender_error.error_code)}). "
            "Every recipient would fail the same way; fix the Twilio settings, then resume."
        )
        blast_pause(blast_id=p.blast_id, reason=reason, cause=Blast.PauseCause.SENDER)
        p.stop_reason = reason
    if not p.canary_checked:
        _check_canary(p)


def _check_canary(p: _Pass) -> None:
    blast = Blast.objects.filter(pk=p.blast_id).only("canary_passed").first()
    if blast is None or blast.canary_passed:
        p.canary_checked = True
        return
    rows = Delivery.objects.filter(blast_id=p.blast_id)
    addressable = rows.exclude(status__in=[S.SKIPPED, S.CANCELLED]).count()
    size = min(addressable, max(20, math.ceil(0.05 * addressable)))
    finished = rows.filter(status__in=[S.SENT, S.DELIVERED, S.FAILED]).count()
    failed = rows.filter(status=S.FAILED).count()
    threshold = settings.SMS_AUTOPAUSE_FAILURE_RATE
    # Pausing protects the rest of the list; with nobody left to send to it would only
    # hide the outcome.
    left = rows.filter(status__in=[S.PENDING, S.SENDING]).exists()
    if failed > threshold * size and left:
        reason = (
            f"Paused: {failed} of the first {finished} messages failed, more than "
            f"{threshold:.0%} of the first {size}. Check the list and the failures, then "
            "resume or cancel."
        )
        if blast_pause(blast_id=p.blast_id, reason=reason, cause=Blast.PauseCause.CANARY):
            p.stop_reason = reason
    elif finished >= size or not left:
        Blast.objects.filter(pk=p.blast_id).update(canary_passed=True)
        p.canary_checked = True


def _release(blast_id: int, token: uuid.UUID, deliveries: list[Delivery]) -> None:
    """Give back claimed rows that were never sent: pending again, or cancelled with the blast."""
    if not deliveries:
        return
    cancelled = Exists(Blast.objects.filter(pk=blast_id, status=B.CANCELLED))
    Delivery.objects.filter(
        pk__in=[d.pk for d in deliveries], claim_token=token, status=S.SENDING
    ).update(
        status=Case(When(cancelled, then=Value(S.CANCELLED)), default=Value(S.PENDING)),
        claim_token=None,
        attempts=F("attempts") - 1,
        updated_at=timezone.now(),
    )


def _skip_opted_out(token: uuid.UUID, deliveries: list[Delivery]) -> list[Delivery]:
    """Someone who opted out after compose gets nothing: checked again right before sending."""
    blocked = blocked_phones(phones=[d.phone for d in deliveries])
    if not blocked:
        return deliveries
    now = timezone.now()
    for reason in set(blocked.values()):
        ids = [d.pk for d in deliveries if blocked.get(d.phone) == reason]
        Delivery.objects.filter(pk__in=ids, claim_token=token, status=S.SENDING).update(
            status=S.SKIPPED,
            skip_reason=reason,
            claim_token=None,
            attempts=F("attempts") - 1,
            updated_at=now,
        )
    return [d for d in deliveries if d.phone not in blocked]


class _InlineExecutor(Executor):
    """For a backend that writes to the database itself (the console outbox): sending in
    the pass's own thread keeps every query on one connection and one transaction."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _reclaim(token: uuid.UUID, pending: deque[Delivery], n: int) -> list[Delivery]:
    """Take the next few rows off ``pending``, re-checking in one UPDATE that they are ours.

    Right before their API calls: if a row stopped being ours (the sweeper took it for
    a dead worker's while this one was stalled, or the blast was cancelled), it is not
    sent. claimed_at becomes the time of this attempt, which reconciliation searches
    from and the stale-claim check measures.
    """
    batch = [pending.popleft() for _ in range(min(n, len(pending)))]
    if not batch:
        return []
    ids = [d.pk for d in batch]
    ours = Delivery.objects.filter(pk__in=ids, claim_token=token, status=S.SENDING)
    if ours.update(claimed_at=timezone.now()) == len(batch):
        return batch
    still = set(ours.values_list("pk", flat=True))
    return [d for d in batch if d.pk in still]


def _send_chunk(p: _Pass, token: uuid.UUID, deliveries: list[Delivery]) -> None:
    deliveries = _skip_opted_out(token, deliveries)
    in_flight = threading.Semaphore(p.max_in_flight)
    pending = deque(deliveries)
    ready: deque[Delivery] = deque()
    outstanding = 0
    last_flush = time.monotonic()
    drained: list[tuple[Delivery, uuid.UUID, SendResult]] = []

    def on_done(delivery: Delivery, result: SendResult) -> None:
        p.results.put((delivery, token, result))
        in_flight.release()

    def drain(block_for: float = 0.0) -> None:
        nonlocal outstanding, last_flush
        new: list[tuple[Delivery, uuid.UUID, SendResult]] = []
        try:
            if block_for > 0:
                new.append(p.results.get(timeout=block_for))
            while True:
                new.append(p.results.get_nowait())
        except Empty:
            pass
        outstanding -= len(new)
        for _, _, result in new:
            if result.outcome is Outcome.RETRY:
                p.consecutive_retries += 1
                # Slow the whole pass down, not just this row: a 429 or a refused
                # connection says Twilio wants fewer requests from us right now.
                p.backoff_until = time.monotonic() + retry_delay(p.consecutive_retries)
            elif result.outcome is Outcome.SENDER_ERROR:
                # Stop submitting at once; _record pauses the blast with the reason.
                p.stop_reason = p.stop_reason or "sender error"
            else:
                p.consecutive_retries = 0
        drained.extend(new)
        due = (
            len(drained) >= 50
            or time.monotonic() - last_flush >= 0.5
            or outstanding == 0
            or bool(p.stop_reason)
        )
        if drained and due:
            _record(p, drained)
            drained.clear()
            last_flush = time.monotonic()

    pool = p.pool
    while pending or ready:
        if not p.blast_still_sending() or time.monotonic() > p.deadline:
            break
        if time.monotonic() < p.backoff_until:
            drain(block_for=min(0.2, p.backoff_until - time.monotonic()))
            continue
        if not in_flight.acquire(timeout=0.2):
            drain()
            continue
        slot = p.limiter.next_slot()
        while (wait := slot - time.time()) > 0:
            drain(block_for=min(wait, 0.2))
        if not ready:
            ready.extend(_reclaim(token, pending, p.reclaim_batch))
            if not ready:
                in_flight.release()
                continue
        delivery = ready.popleft()
        outstanding += 1
        future = pool.submit(_send_one, p.backend, delivery)
        future.add_done_callback(lambda f, d=delivery: on_done(d, f.result()))
        drain()
    while outstanding > 0:
        drain(block_for=0.2)
    drain()
    if drained:
        _record(p, drained)
    _release(p.blast_id, token, [*ready, *pending])


def blast_process(
    *,
    blast_id: int,
    time_budget: float = 240.0,
    backend: SmsBackend | None = None,
) -> float | None:
    """Send what a blast has pending, for up to ``time_budget`` seconds.

    Returns None when this task has nothing more to do, or the number of seconds after
    which it should run again (work left over, or rows waiting out a retry backoff).
    """
    now = timezone.now()
    Blast.objects.filter(pk=blast_id, status=B.QUEUED).update(
        status=B.SENDING,
        started_at=Coalesce(F("started_at"), Value(now)),
        processing_started_at=now,
        updated_at=now,
    )
    status = Blast.objects.filter(pk=blast_id).values_list("status", flat=True).first()
    if status != B.SENDING:
        return None
    Blast.objects.filter(pk=blast_id).update(processing_started_at=now)
    backend = backend or get_backend()
    max_in_flight = max(1, settings.SMS_MAX_IN_FLIGHT)
    # One pool for the whole pass: its threads, and each thread's HTTP connection to
    # Twilio, are reused from chunk to chunk instead of being set up again.
    pool: Executor
    if getattr(backend, "threaded", True):
        pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="sms-send")
    else:
        pool = _InlineExecutor()
    p = _Pass(
        blast_id=blast_id,
        backend=backend,
        limiter=RateLimiter(key="twilio", rate=settings.SMS_RATE_PER_SECOND),
        max_in_flight=max_in_flight,
        deadline=time.monotonic() + time_budget,
        pool=pool,
    )
    with pool:
        while p.blast_still_sending() and time.monotonic() < p.deadline:
            token, deliveries = delivery_claim(blast_id=blast_id, limit=settings.SMS_CHUNK_SIZE)
            if not deliveries:
                break
            _send_chunk(p, token, deliveries)
    return blast_next_step(blast_id=blast_id)


def blast_next_step(*, blast_id: int) -> float | None:
    """After a pass: run again now, run again later, or finish the blast."""
    status = Blast.objects.filter(pk=blast_id).values_list("status", flat=True).first()
    if status != B.SENDING:
        return None
    rows = Delivery.objects.filter(blast_id=blast_id)
    waiting = rows.filter(status=S.PENDING).aggregate(
        due=Min(Coalesce("next_attempt_at", Value(timezone.now())))
    )["due"]
    if waiting is not None:
        return max(0.0, min(RETRY_MAX_SECONDS, (waiting - timezone.now()).total_seconds()))
    if rows.filter(status__in=[S.SENDING, S.UNKNOWN]).exists():
        # Another worker is finishing its claims, or reconciliation will decide.
        return None
    blast_finish_if_done(blast_id=blast_id)
    return None


def blast_finish_if_done(*, blast_id: int) -> bool:
    """Set the final status once no row is pending, in flight or unknown."""
    blast = Blast.objects.filter(pk=blast_id).first()
    if blast is None or blast.status != B.SENDING:
        return False
    counts = blast.counts()
    if counts[S.PENDING] or counts[S.SENDING] or counts[S.UNKNOWN]:
        return False
    reached = counts[S.SENT] + counts[S.DELIVERED]
    if counts[S.FAILED] == 0:
        final = B.SENT
    elif reached == 0:
        final = B.FAILED
    else:
        final = B.PARTIALLY_FAILED
    now = timezone.now()
    return bool(
        Blast.objects.filter(pk=blast_id, status=B.SENDING).update(
            status=final, finished_at=now, updated_at=now
        )
    )


# --- Sweeping and reconciling ---------------------------------------------------------------


def deliveries_expire_stale_claims() -> int:
    """Rows left 'sending' by a worker that died mid-call: the outcome is unknown."""
    cutoff = timezone.now() - timedelta(seconds=settings.SMS_CLAIM_STALE_SECONDS)
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
    due = list(
        Blast.objects.filter(status=B.SCHEDULED, scheduled_for__lte=now).values_list(
            "pk", flat=True
        )
    )
    dispatched = 0
    for blast_id in due:
        # Conditional: two sweepers never dispatch the same scheduled blast twice.
        if Blast.objects.filter(pk=blast_id, status=B.SCHEDULED).update(
            status=B.QUEUED, updated_at=now
        ):
            dispatched += 1
            blast_enqueue(blast_id=blast_id)
    requeued = 0
    stuck = Blast.objects.filter(
        Q(status=B.QUEUED, enqueued_at__isnull=True)
        | Q(status=B.QUEUED, enqueued_at__lt=now - QUEUED_STALE)
        | Q(status=B.SENDING, processing_started_at__lt=now - HEARTBEAT_STALE)
    ).values_list("pk", "status")
    for blast_id, status in stuck:
        if (
            status == B.SENDING
            and not Delivery.objects.filter(blast_id=blast_id, status=S.PENDING).exists()
        ):
            blast_finish_if_done(blast_id=blast_id)
            continue
        requeued += int(blast_enqueue(blast_id=blast_id))
    return {"stale_claims": stale_claims, "dispatched": dispatched, "requeued": requeued}


def _look_up(backend: SmsBackend, delivery: Delivery) -> FoundMessage | None:
    since = delivery.claimed_at or delivery.created_at
    return backend.find_sent(to=delivery.phone, body=delivery.body, since=since)


def _settle(delivery: Delivery, found: FoundMessage | None) -> str:
    """Apply what Twilio's records say, only if the row is still unknown."""
    now = timezone.now()
    rows = Delivery.objects.filter(pk=delivery.pk, status=S.UNKNOWN)
    if found is not None:
        changed = rows.update(
            status=S.SENT,
            twilio_sid=found.sid,
            twilio_status=found.status,
            sent_at=Coalesce(F("sent_at"), Value(now)),
            error_message="",
            error_code=None,
            updated_at=now,
        )
        return "sent" if changed else "unchanged"
    changed = rows.update(
        status=S.PENDING,
        next_attempt_at=None,
        error_message="Not found in Twilio's records after the unknown outcome; sending again.",
        updated_at=now,
    )
    return "pending" if changed else "unchanged"


def delivery_reconcile(*, delivery: Delivery, backend: SmsBackend | None = None) -> str:
    """Settle one unknown row from Twilio's own records: 'sent' if found, else 'pending'."""
    return _settle(delivery, _look_up(backend or get_backend(), delivery))


def deliveries_reconcile(*, limit: int = 300, backend: SmsBackend | None = None) -> dict[str, int]:
    """Every minute: unknown rows no status callback settled in SMS_RECONCILE_AFTER_MINUTES."""
    backend = backend or get_backend()
    cutoff = timezone.now() - timedelta(minutes=settings.SMS_RECONCILE_AFTER_MINUTES)
    rows = list(
        Delivery.objects.filter(status=S.UNKNOWN)
        .filter(Q(claimed_at__lt=cutoff) | Q(claimed_at__isnull=True, updated_at__lt=cutoff))
        .order_by("id")[:limit]
    )
    outcome = {"sent": 0, "pending": 0, "unchanged": 0, "errors": 0}
    touched: set[int] = set()

    def look_up(delivery: Delivery) -> FoundMessage | None | Exception:
        try:
            return _look_up(backend, delivery)
        except Exception as exc:  # Twilio unreachable: decide nothing, try next minute
            return exc

    # Look-ups go out several at a time (one list request each); the answers are
    # applied here, on this thread's database connection.
    if getattr(backend, "threaded", True) and len(rows) > 1:
        with ThreadPoolExecutor(max_workers=max(1, settings.SMS_MAX_IN_FLIGHT)) as pool:
            answers = list(pool.map(look_up, rows))
    else:
        answers = [look_up(delivery) for delivery in rows]
    for delivery, answer in zip(rows, answers, strict=True):
        if isinstance(answer, Exception):
            logger.warning("Could not reconcile delivery %s: %s", delivery.pk, answer)
            outcome["errors"] += 1
            continue
        outcome[_settle(delivery, answer)] += 1
        touched.add(delivery.blast_id)
    for blast_id in touched:
        Blast.objects.filter(pk=blast_id, status=B.SENDING).update(
            processing_started_at=timezone.now()
        )
        if Delivery.objects.filter(blast_id=blast_id, status=S.PENDING).exists():
            blast_enqueue(blast_id=blast_id)
        else:
            blast_finish_if_done(blast_id=blast_id)
    return outcome
