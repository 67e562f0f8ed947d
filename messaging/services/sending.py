"""The send pass: claiming rows, sending them through the one Twilio seam, recording outcomes."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from queue import Empty, SimpleQueue

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Exists, F, Min, Q, Value, When
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.services.lifecycle import blast_finish_if_done, blast_pause
from messaging.services.rate_limit import RateLimiter
from messaging.sms import (
    Outcome,
    SendResult,
    SmsBackend,
    get_backend,
    status_callback_url,
)
from messaging.twilio_errors import describe
from suppression.services import blocked_phones

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status

RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


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
