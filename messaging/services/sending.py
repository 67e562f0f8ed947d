"""The send pass: claiming rows, sending them through the one Twilio seam, recording outcomes.

What a pass promises, and where each promise is kept:
- a row is sent by one worker only: ``delivery_claim`` and ``_reclaim`` (conditional UPDATEs);
- nobody who opted out is texted: ``_reclaim`` re-checks the opt-out and suppression lists
  in the same UPDATE that stamps the attempt, right before that row's API call;
- the rate holds for the whole deployment: ``RateLimiter`` (one slot per message);
- one recipient's error never stops the blast, and an error that will hit everyone stops
  it at once: ``_plan`` and ``_Watch``;
- a Twilio outage does not burn the list into 'unknown': ``_Watch`` backs off, sends one
  request at a time, then pauses the blast;
- a cancelled blast never gets a row back to 'pending': ``_record`` and ``_release`` write
  under the blast's lock (``blast_status_locked``).
"""

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
from django.db.models import Case, Exists, F, Min, OuterRef, Q, Value, When
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from messaging.models import Blast, Delivery
from messaging.quiet_hours import QuietHours, quiet_hours
from messaging.services.busy import retry_when_busy
from messaging.services.clock import DbNow
from messaging.services.lifecycle import (
    back_to_pending,
    blast_finish_if_done,
    blast_pause,
    blast_status_locked,
)
from messaging.services.queueing import blast_take_task
from messaging.services.rate_limit import RateLimiter
from messaging.sms import (
    Outcome,
    SendResult,
    SmsBackend,
    get_backend,
    status_callback_url,
)
from messaging.twilio_errors import describe
from suppression.services import blocked_phones, failure_record, phone_blocked_q

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status

RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
# A row Twilio refused with a sender or account error: the first refusal pauses the
# blast (it would hit everyone); a second one after staff resumed waits behind the rest
# of the list; a third fails the row, since the others went out and the error is about it.
REFUSALS_DEFERRED = 2
REFUSALS_FAILED = 3
REFUSAL_DEFER_SECONDS = 60.0
NO_ANSWER_MAX_WAIT = 10.0


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
    retry_when_busy(
        lambda: Delivery.objects.filter(id__in=ids, status=S.PENDING).update(
            status=S.SENDING,
            claim_token=token,
            # The database's clock, like the sweeper's staleness check: a worker host
            # whose clock is off never makes a live claim look stale, or a dead one fresh.
            claimed_at=DbNow(),
            attempts=F("attempts") + 1,
            next_attempt_at=None,
            updated_at=now,
        ),
        what="claiming rows",
    )
    return token, list(Delivery.objects.filter(id__in=ids, claim_token=token).order_by("id"))


def retry_delay(attempts: int) -> float:
    """Exponential backoff with jitter, capped far below any broker visibility timeout."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrecy


@dataclass
class _Watch:
    """What the answers so far say about Twilio and the list: runs of trouble, in order.

    ``no_answer``: requests in a row that got no answer (5xx, timeout, dropped or refused
    connection). ``same_error``: messages in a row that failed with one error code. Any
    other answer ends a run. ``pause`` is set once a run is long enough to stop the blast.
    """

    no_answer: int = 0
    last_no_answer: str = ""
    throttled: int = 0
    error_code: int | None = None
    same_error: int = 0
    pause: tuple[str, str] | None = None  # (cause, reason)

    def see(self, result: SendResult) -> float:
        """Take one answer into account; returns seconds to hold off new sends (0: none)."""
        outcome = result.outcome
        no_answer = outcome is Outcome.UNKNOWN or (
            outcome is Outcome.RETRY and result.http_status is None
        )
        if no_answer:
            self.no_answer += 1
            self.last_no_answer = result.error_message or describe(result.error_code)
            limit = settings.SMS_PAUSE_AFTER_NO_ANSWER
            if limit and self.no_answer >= limit and self.pause is None:
                self.pause = (
                    Blast.PauseCause.NO_ANSWER,
                    f"Paused: Twilio is not answering: {self.no_answer} requests in a row "
                    f"failed (the last: {self.last_no_answer[:200]}). Resume when it "
                    "recovers; messages whose outcome is unknown are checked against "
                    "Twilio's records before any is sent again.",
                )
            # Short waits: the point is to stop hammering and pause within a minute or
            # so, not to wait the outage out inside this pass.
            return min(NO_ANSWER_MAX_WAIT, retry_delay(self.no_answer))
        self.no_answer = 0
        if outcome is Outcome.RETRY:  # 429: Twilio answered, and wants fewer requests
            self.throttled += 1
            return retry_delay(self.throttled)
        self.throttled = 0
        if outcome is Outcome.FAILED and result.error_code is not None:
            if result.error_code == self.error_code:
                self.same_error += 1
            else:
                self.error_code, self.same_error = result.error_code, 1
            limit = settings.SMS_PAUSE_AFTER_SAME_ERROR
            if limit and self.same_error >= limit and self.pause is None:
                self.pause = (
                    Blast.PauseCause.ERROR_RUN,
                    f"Paused: the last {self.same_error} messages all failed with "
                    f"{describe(self.error_code)}. If the rest would fail the same way, fix "
                    "the cause or cancel; resume to go on.",
                )
        elif outcome is Outcome.SENT:
            self.error_code, self.same_error = None, 0
        return 0.0


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
    watch: _Watch = field(default_factory=_Watch)
    stop_reason: str = ""
    backoff_until: float = 0.0
    last_status_check: float = 0.0
    canary_checked: bool = False
    pause_applied: bool = False
    # Quiet hours stop this blast unless staff let it send in them.
    quiet: QuietHours | None = None

    @property
    def claim_size(self) -> int:
        # Claim no more than goes out in about a minute, so claimed rows waiting their
        # turn are never taken for a dead worker's (SMS_CLAIM_STALE_SECONDS).
        size = max(1, settings.SMS_CHUNK_SIZE)
        if self.limiter.rate <= 0:
            return size
        return max(1, min(size, int(self.limiter.rate * 60)))

    def blast_still_sending(self) -> bool:
        now = time.monotonic()
        if now - self.last_status_check < 0.5:
            return not self.stop_reason
        self.last_status_check = now
        if self.quiet is not None and self.quiet.contains(timezone.now()):
            ends = self.quiet.ends_after(timezone.now())
            retry_when_busy(
                lambda: blast_pause(
                    blast_id=self.blast_id,
                    reason=f"Quiet hours ({self.quiet}): it goes on by itself at {ends:%H:%M}.",
                    cause=Blast.PauseCause.QUIET,
                ),
                what="pausing for quiet hours",
            )
        status = Blast.objects.filter(pk=self.blast_id).values_list("status", flat=True).first()
        if status != B.SENDING:
            self.stop_reason = self.stop_reason or f"blast is {status}"
        return not self.stop_reason


def _send_one(backend: SmsBackend, delivery: Delivery) -> SendResult:
    try:
        return backend.send(
            to=delivery.phone,
            body=delivery.body,
            status_callback=status_callback_url(delivery.pk, delivery.attempts),
        )
    except Exception as exc:  # a bug or a library surprise must not lose the row
        logger.exception("Unexpected error sending delivery %s", delivery.pk)
        return SendResult(outcome=Outcome.UNKNOWN, error_message=f"{type(exc).__name__}: {exc}")


def _per_row(items: list[tuple[Delivery, SendResult]], name: str, value) -> Cast:  # type: ignore[no-untyped-def]
    """One column's new value for each row of a batch, as a CASE on the primary key."""
    field = Delivery._meta.get_field(name)
    case = Case(
        *(When(pk=d.pk, then=Value(value(d, r), output_field=field)) for d, r in items),
        output_field=field,
    )
    # PostgreSQL types a CASE of bare parameters as text (Django's bulk_update casts too).
    return Cast(case, output_field=field)


def _plan(delivery: Delivery, result: SendResult) -> str:
    """What becomes of a row after its answer: the outcome, with sender errors split."""
    if result.outcome is not Outcome.SENDER_ERROR:
        return result.outcome.value
    refusals = delivery.sender_refusals + 1
    if refusals >= REFUSALS_FAILED:
        return "refused_fail"
    if refusals >= REFUSALS_DEFERRED:
        return "refused_defer"
    return "refused_pause"


def _refused_message(delivery: Delivery, result: SendResult) -> str:
    return (
        f"Twilio refused this message {delivery.sender_refusals + 1} times "
        f"({describe(result.error_code)}) while the rest of the blast went on: the error "
        f"is about this recipient. {result.error_message}"
    )[:1000]


def _record(p: _Pass, drained: list[tuple[Delivery, uuid.UUID, SendResult]]) -> None:
    """Write a batch of outcomes: one UPDATE per kind of outcome, in one transaction.

    Each UPDATE is still conditional on the claim, so a row that stopped being ours
    (expired as stale and already settled elsewhere) is left alone. A busy database
    delays the write; it does not lose it.
    """
    if not drained:
        return
    retry_when_busy(lambda: _record_once(p, drained), what="recording outcomes")
    _classify_failures(p, drained)
    pause = p.watch.pause
    if pause is not None and not p.pause_applied:
        p.pause_applied = True
        cause, reason = pause
        # Pausing protects the rest of the list; with nobody left it would only hide
        # the outcome.
        left = Delivery.objects.filter(
            blast_id=p.blast_id, status__in=[S.PENDING, S.SENDING]
        ).exists()
        if left and retry_when_busy(
            lambda: blast_pause(blast_id=p.blast_id, reason=reason, cause=cause),
            what="pausing the blast",
        ):
            p.stop_reason = reason
    if not p.canary_checked and not p.stop_reason:
        _check_canary(p)


def _classify_failures(p: _Pass, drained: list[tuple[Delivery, uuid.UUID, SendResult]]) -> None:
    """What a refusal says about the number: 21610 unsubscribes, a bad number is
    suppressed, a transient failure is counted (suppression.services.failure_record).

    After the outcomes are written: a failure here is logged and left to the backfill
    command, never allowed to lose the outcomes or stop the pass.
    """
    for delivery, _, result in drained:
        if result.outcome is not Outcome.FAILED or result.error_code is None:
            continue
        try:
            retry_when_busy(
                lambda d=delivery, r=result: failure_record(
                    phone=d.phone,
                    code=r.error_code,
                    delivery_id=d.pk,
                    attempt=d.attempts,
                    blast_id=p.blast_id,
                ),
                what="recording what a failure says about the number",
            )
        except Exception:
            logger.exception("Could not classify the failure of delivery %s", delivery.pk)


def _record_once(p: _Pass, drained: list[tuple[Delivery, uuid.UUID, SendResult]]) -> None:
    now = timezone.now()
    groups: dict[tuple[uuid.UUID, str], list[tuple[Delivery, SendResult]]] = {}
    for delivery, token, result in drained:
        groups.setdefault((token, _plan(delivery, result)), []).append((delivery, result))
    refused: SendResult | None = None
    with transaction.atomic():
        # Taken first: serialises with blast_cancel, so no row goes back to pending
        # in a blast that was cancelled meanwhile.
        blast_status = blast_status_locked(blast_id=p.blast_id)
        unsent = back_to_pending(blast_status=blast_status)
        Blast.objects.filter(pk=p.blast_id).update(processing_started_at=now)
        for (token, plan), items in groups.items():
            error_fields = {
                "error_code": _per_row(items, "error_code", lambda d, r: r.error_code),
                "error_message": _per_row(items, "error_message", lambda d, r: r.error_message),
            }
            fields: dict[str, object] = {"updated_at": now}
            if plan == Outcome.SENT:
                fields |= {
                    "status": S.SENT,
                    "twilio_sid": _per_row(items, "twilio_sid", lambda d, r: r.sid or None),
                    "twilio_status": _per_row(items, "twilio_status", lambda d, r: r.status),
                    "error_code": None,
                    "error_message": "",
                    "sent_at": now,
                }
            elif plan == Outcome.FAILED:
                fields |= {"status": S.FAILED, **error_fields}
            elif plan == Outcome.UNKNOWN:
                fields |= {"status": S.UNKNOWN, **error_fields}
            elif plan == Outcome.RETRY:
                fields |= {
                    "status": unsent,
                    "claim_token": None,
                    "next_attempt_at": _per_row(
                        items,
                        "next_attempt_at",
                        lambda d, r: now + timedelta(seconds=retry_delay(d.attempts + 1)),
                    ),
                    **error_fields,
                }
            elif plan == "refused_fail":
                fields |= {
                    "status": S.FAILED,
                    "sender_refusals": F("sender_refusals") + 1,
                    "error_code": error_fields["error_code"],
                    "error_message": _per_row(items, "error_message", _refused_message),
                }
            else:  # refused_pause, refused_defer: the row waits; the attempt did not count
                refused = refused if refused or plan != "refused_pause" else items[0][1]
                fields |= {
                    "status": unsent,
                    "claim_token": None,
                    "attempts": F("attempts") - 1,
                    "sender_refusals": F("sender_refusals") + 1,
                    **error_fields,
                }
                if plan == "refused_defer":
                    fields["next_attempt_at"] = now + timedelta(seconds=REFUSAL_DEFER_SECONDS)
            Delivery.objects.filter(
                pk__in=[d.pk for d, _ in items],
                claim_token=token,
                status__in=[S.SENDING, S.UNKNOWN],
            ).update(**fields)
    if refused is not None and p.watch.pause is None:
        p.watch.pause = (
            Blast.PauseCause.SENDER,
            f"Paused: Twilio refused the sender or account ({describe(refused.error_code)}). "
            "Every recipient would fail the same way; fix the Twilio settings, then resume.",
        )


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
        if retry_when_busy(
            lambda: blast_pause(blast_id=p.blast_id, reason=reason, cause=Blast.PauseCause.CANARY),
            what="pausing the blast",
        ):
            p.stop_reason = reason
    elif finished >= size or not left:
        retry_when_busy(
            lambda: Blast.objects.filter(pk=p.blast_id).update(canary_passed=True),
            what="marking the canary passed",
        )
        p.canary_checked = True


def _release(blast_id: int, token: uuid.UUID, deliveries: list[Delivery]) -> None:
    """Give back claimed rows that were never sent: pending again, or cancelled with the blast."""
    if not deliveries:
        return

    def write() -> None:
        with transaction.atomic():
            blast_status = blast_status_locked(blast_id=blast_id)
            Delivery.objects.filter(
                pk__in=[d.pk for d in deliveries], claim_token=token, status=S.SENDING
            ).update(
                status=back_to_pending(blast_status=blast_status),
                claim_token=None,
                attempts=F("attempts") - 1,
                updated_at=timezone.now(),
            )

    retry_when_busy(write, what="releasing rows")


def _skip(token: uuid.UUID, deliveries: list[Delivery], reason: str) -> None:
    rows = Delivery.objects.filter(
        pk__in=[d.pk for d in deliveries], claim_token=token, status=S.SENDING
    )
    retry_when_busy(
        lambda: rows.update(
            status=S.SKIPPED,
            skip_reason=reason,
            claim_token=None,
            attempts=F("attempts") - 1,
            updated_at=timezone.now(),
        ),
        what="skipping opted-out rows",
    )


def _skip_opted_out(token: uuid.UUID, deliveries: list[Delivery]) -> list[Delivery]:
    """Skip, for a whole claimed chunk at once, those who opted out since compose.

    Only a first sieve: _reclaim checks each row again right before its call.
    """
    blocked = blocked_phones(phones=[d.phone for d in deliveries])
    if not blocked:
        return deliveries
    for reason in set(blocked.values()):
        _skip(token, [d for d in deliveries if blocked.get(d.phone) == reason], reason)
    return [d for d in deliveries if d.phone not in blocked]


class _InlineExecutor(Executor):
    """For a backend that writes to the database itself (the console outbox): sending in
    the pass's own thread keeps every query on one connection and one transaction."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _reclaim(token: uuid.UUID, delivery: Delivery) -> str:
    """Right before its API call: may this row go out now? 'go', 'skipped', 'stop' or 'lost'.

    One UPDATE re-checks the claim (the sweeper may have taken it for a dead worker's
    while this one stalled), that the blast is still sending (a pause or cancel that
    returned stops every later call, not just the next status poll), and that no
    opt-out or active suppression exists for the number; it stamps claimed_at, on the
    database's clock, with this attempt's time, which reconciliation searches from. An
    opt-out committed before this statement stops the call; the row is skipped.
    """
    mine = Delivery.objects.filter(pk=delivery.pk, claim_token=token, status=S.SENDING)
    sending = Exists(Blast.objects.filter(pk=OuterRef("blast_id"), status=B.SENDING))
    stamped = retry_when_busy(
        lambda: mine.filter(sending).exclude(phone_blocked_q()).update(claimed_at=DbNow()),
        what="checking a row before sending",
    )
    if stamped:
        return "go"
    reason = blocked_phones(phones=[delivery.phone]).get(delivery.phone)
    if reason:
        _skip(token, [delivery], reason)
        return "skipped"
    # Still ours, so the blast stopped: the row goes back with the rest of the chunk.
    return "stop" if mine.exists() else "lost"


def _send_chunk(p: _Pass, token: uuid.UUID, deliveries: list[Delivery]) -> None:
    deliveries = _skip_opted_out(token, deliveries)
    in_flight = threading.Semaphore(p.max_in_flight)
    pending = deque(deliveries)
    outstanding = 0
    last_flush = time.monotonic()
    drained: list[tuple[Delivery, uuid.UUID, SendResult]] = []

    def on_done(delivery: Delivery, result: SendResult) -> None:
        p.results.put((delivery, token, result))
        in_flight.release()

    def drain(block_for: float = 0.0, *, may_write: bool = True) -> None:
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
        for delivery, _, result in new:
            hold = p.watch.see(result)
            if hold:
                # Slow the whole pass down, not just this row: a 429 says Twilio wants
                # fewer requests, no answer says it may be down.
                p.backoff_until = max(p.backoff_until, time.monotonic() + hold)
            if _plan(delivery, result) == "refused_pause":
                # Stop submitting at once; _record pauses the blast with the reason.
                p.stop_reason = p.stop_reason or "sender error"
        drained.extend(new)
        due = (
            len(drained) >= 50
            or time.monotonic() - last_flush >= 0.5
            or outstanding == 0
            or bool(p.stop_reason)
            or p.watch.pause is not None
        )
        if drained and due and may_write:
            _record(p, drained)
            drained.clear()
            last_flush = time.monotonic()
            if p.watch.pause is not None and not p.stop_reason:
                p.stop_reason = "paused"

    pool = p.pool
    claimed = time.monotonic()
    chunk_age_limit = settings.SMS_CLAIM_STALE_SECONDS / 2
    failing = False
    try:
        while pending:
            if not p.blast_still_sending() or time.monotonic() > p.deadline:
                break
            if time.monotonic() < p.backoff_until:
                drain(block_for=min(0.2, p.backoff_until - time.monotonic()))
                continue
            if p.watch.no_answer and outstanding:
                # Twilio stopped answering: probe with one request at a time until it does.
                drain(block_for=0.2)
                continue
            if not in_flight.acquire(timeout=0.2):
                drain()
                continue
            # The answer that freed this place may be the one that stops or slows the pass.
            drain()
            if p.stop_reason or time.monotonic() < p.backoff_until:
                in_flight.release()
                continue
            if time.monotonic() - claimed > chunk_age_limit:
                # Passes sharing the rate can make a chunk's tail wait long: give it back
                # before the sweeper could take it for a dead worker's.
                in_flight.release()
                break
            slot = 0.0
            if p.limiter.rate > 0:
                slot = p.limiter.reserve()
                while (wait := slot - time.monotonic()) > 0:
                    if not p.blast_still_sending() or time.monotonic() > p.deadline:
                        break
                    # Close to the slot, only collect answers: a write now could make it late.
                    drain(block_for=min(wait, 0.2), may_write=wait > 0.1)
                if p.stop_reason or time.monotonic() > p.deadline:
                    in_flight.release()
                    break
                if not p.limiter.usable(slot):
                    in_flight.release()  # woke up too late for this slot: take a new one
                    continue
            delivery = pending.popleft()
            verdict = _reclaim(token, delivery)
            if verdict == "stop":
                pending.appendleft(delivery)
                p.stop_reason = p.stop_reason or "blast stopped"
                in_flight.release()
                break
            if verdict != "go":
                in_flight.release()
                continue
            if p.limiter.rate > 0 and not p.limiter.usable(slot):
                # The check itself waited (a busy database): sending now would bunch up
                # with later slots. Back in line, with a new slot.
                pending.appendleft(delivery)
                in_flight.release()
                continue
            outstanding += 1
            future = pool.submit(_send_one, p.backend, delivery)
            future.add_done_callback(lambda f, d=delivery: on_done(d, f.result()))
            drain()
    except BaseException:
        failing = True
        raise
    finally:
        # However the loop ended (an error included), the requests already made are
        # answered and recorded, and the rows never sent are given back: nothing is left
        # for the sweeper and reconciliation that this worker can settle itself. After
        # an error, one write at the end rather than one that may fail again meanwhile.
        while outstanding > 0:
            drain(block_for=0.2, may_write=not failing)
        drain(may_write=not failing)
        if drained:
            _record(p, drained)
        _release(p.blast_id, token, list(pending))


def blast_process(
    *,
    blast_id: int,
    time_budget: float = 240.0,
    backend: SmsBackend | None = None,
    token: uuid.UUID | str | None = None,
) -> float | None:
    """Send what a blast has pending, for up to ``time_budget`` seconds.

    ``token`` is the send task's: a task that a newer one replaced does nothing.
    Returns None when this task has nothing more to do, or the number of seconds after
    which it should run again (work left over, or rows waiting out a retry backoff).
    """
    taken = retry_when_busy(
        lambda: blast_take_task(blast_id=blast_id, token=token), what="taking a send task"
    )
    if not taken:
        return None
    status = Blast.objects.filter(pk=blast_id).values_list("status", flat=True).first()
    if status != B.SENDING:
        return blast_next_step(blast_id=blast_id)
    backend = backend or get_backend()
    max_in_flight = max(1, settings.SMS_MAX_IN_FLIGHT)
    # One pool for the whole pass: its threads, and each thread's HTTP connection to
    # Twilio, are reused from chunk to chunk instead of being set up again.
    pool: Executor
    if getattr(backend, "threaded", True):
        pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="sms-send")
    else:
        pool = _InlineExecutor()
    overridden = (
        Blast.objects.filter(pk=blast_id).values_list("quiet_hours_override", flat=True).first()
    )
    p = _Pass(
        blast_id=blast_id,
        quiet=None if overridden else quiet_hours(),
        backend=backend,
        limiter=RateLimiter(key="twilio", rate=settings.SMS_RATE_PER_SECOND),
        max_in_flight=max_in_flight,
        deadline=time.monotonic() + time_budget,
        pool=pool,
    )
    with pool:
        while p.blast_still_sending() and time.monotonic() < p.deadline:
            token_, deliveries = delivery_claim(blast_id=blast_id, limit=p.claim_size)
            if not deliveries:
                break
            _send_chunk(p, token_, deliveries)
    return blast_next_step(blast_id=blast_id)


def blast_next_step(*, blast_id: int) -> float | None:
    """After a pass: run again now, run again later, or finish the blast."""
    status = Blast.objects.filter(pk=blast_id).values_list("status", flat=True).first()
    if status == B.PAUSED:
        # Paused while its last sends finished: with nothing left, it is done.
        blast_finish_if_done(blast_id=blast_id)
        return None
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
