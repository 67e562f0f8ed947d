"""Who must not be texted: opt-outs (unsubscribed) and numbers that fail (suppressed).

The send engine reads the lists (:func:`blocked_phones`, :func:`phone_blocked_q`); the
inbound-keyword webhook calls :func:`unsubscribe` and :func:`resubscribe`; the engine, the
status callback and ``manage.py backfill_suppressions`` feed every failed or undelivered
message to :func:`failure_record`, which classifies it with the one table in
``messaging/twilio_errors.py``. Only active (not lifted) rows block a number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from messaging.twilio_errors import NumberAction, describe, meaning, number_action
from smsadmin.models import User
from smsadmin.phones import normalize_phone
from suppression.models import FailureEvent, SuppressedContact, UnsubscribedContact

# Transient failures (30003, 30004, 30008) older than this do not count towards a
# suppression.
TRANSIENT_WINDOW = timedelta(days=90)

UNSUBSCRIBED = "unsubscribed"
SUPPRESSED = "suppressed"
COUNTED = "counted"
NONE = "none"


class LiftError(ValueError):
    """Lifting was refused (no reason given); the message says why."""


def blocked_phones(*, phones: Iterable[str]) -> dict[str, str]:
    """Of ``phones``, those that must get nothing, mapped to 'unsubscribed' or 'suppressed'.

    Only active rows count. Queries in batches so it serves a 100k-recipient blast
    without a huge IN list.
    """
    blocked: dict[str, str] = {}
    batch: list[str] = []

    def flush() -> None:
        for phone in SuppressedContact.objects.filter(phone__in=batch, lifted=False).values_list(
            "phone", flat=True
        ):
            blocked[phone] = SUPPRESSED
        # An opt-out wins over a suppression: it is the person's own wish.
        for phone in UnsubscribedContact.objects.filter(phone__in=batch, lifted=False).values_list(
            "phone", flat=True
        ):
            blocked[phone] = UNSUBSCRIBED
        batch.clear()

    for phone in phones:
        if not phone.startswith("+"):
            continue  # erased by data retention: no number to look up
        batch.append(phone)
        if len(batch) >= 500:
            flush()
    if batch:
        flush()
    return blocked


def phone_blocked_q(*, phone_field: str = "phone") -> Q:
    """A filter for rows whose number (``phone_field``) must get nothing: the same rule
    as blocked_phones, evaluated by the database inside the statement that uses it, so
    an opt-out committed before that statement always counts."""
    return Q(
        Exists(UnsubscribedContact.objects.filter(phone=OuterRef(phone_field), lifted=False))
    ) | Q(Exists(SuppressedContact.objects.filter(phone=OuterRef(phone_field), lifted=False)))


def _clip(text: str, length: int = 255) -> str:
    text = (text or "").strip()
    return text if len(text) <= length else text[: length - 1] + "…"


def _lock_phone(phone: str) -> None:
    """Serialise writers for one number until the transaction ends.

    SQLite already does (one writer, IMMEDIATE transactions); PostgreSQL takes an
    advisory lock, so two failures of one number counted at once see each other.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"supp:{phone}"])


def _check_source(source: str, choices: type) -> str:
    if source not in choices.values:  # type: ignore[attr-defined]
        allowed = ", ".join(choices.values)  # type: ignore[attr-defined]
        raise ValueError(f"Unknown source {source!r}; one of: {allowed}.")
    return source


@transaction.atomic
def _unsubscribe(
    *,
    phone: str,
    source: str,
    evidence: str = "",
    reason: str = "",
    user: User | None = None,
    at: datetime | None = None,
    error_code: int | None = None,
    delivery_id: int | None = None,
    blast_id: int | None = None,
    message_sid: str = "",
) -> bool:
    _lock_phone(phone)
    if UnsubscribedContact.objects.filter(phone=phone, lifted=False).exists():
        return False
    try:
        with transaction.atomic():
            UnsubscribedContact.objects.create(
                phone=phone,
                source=source,
                evidence=_clip(evidence),
                reason=_clip(reason),
                created_by=user,
                created_at=at or timezone.now(),
                error_code=error_code,
                delivery_id=delivery_id,
                blast_id=blast_id,
                message_sid=message_sid or "",
            )
    except IntegrityError:
        # Someone else unsubscribed the number at the same moment.
        return False
    return True


def unsubscribe(
    *,
    phone: str,
    source: str,
    evidence: str = "",
    reason: str = "",
    user: User | None = None,
    at: datetime | None = None,
) -> bool:
    """Put ``phone`` on the unsubscribed list; True if it was not unsubscribed before.

    ``source`` is an ``UnsubscribedContact.Source``: ``keyword`` (inbound STOP;
    ``evidence`` the keyword and the inbound message SID), ``carrier`` (21610; use
    :func:`failure_record`, which links the delivery), ``manual`` (staff: ``user`` and
    ``reason``), ``import``. ``phone`` may be in any common form. Already unsubscribed:
    nothing changes (the first opt-out's evidence stays). Raises ValueError for a bad
    number or source.
    """
    phone = normalize_phone(phone)
    _check_source(source, UnsubscribedContact.Source)
    return _unsubscribe(
        phone=phone, source=source, evidence=evidence, reason=reason, user=user, at=at
    )


@transaction.atomic
def resubscribe(
    *,
    phone: str,
    source: str,
    evidence: str = "",
    reason: str = "",
    user: User | None = None,
) -> bool:
    """Lift the active unsubscribe of ``phone``; True if there was one.

    ``source`` is an ``UnsubscribedContact.LiftSource``: ``keyword`` (START, YES,
    UNSTOP; ``evidence`` the keyword and message SID), ``join`` (JOIN), ``manual`` (an
    Admin: ``user`` and a ``reason`` are required). The row stays as history, marked
    lifted with when, how, by whom and why. Permission checks are the caller's (the
    admin allows Admins only). Raises ValueError for a bad number or source, and
    :class:`LiftError` for a staff lift without a reason.
    """
    phone = normalize_phone(phone)
    _check_source(source, UnsubscribedContact.LiftSource)
    reason = _clip(reason)
    if source == UnsubscribedContact.LiftSource.MANUAL and not reason:
        raise LiftError("Give a reason for re-subscribing.")
    _lock_phone(phone)
    lifted = UnsubscribedContact.objects.filter(phone=phone, lifted=False).update(
        lifted=True,
        lifted_at=timezone.now(),
        lifted_by=user,
        lift_source=source,
        lift_reason=reason,
        lift_evidence=_clip(evidence),
    )
    return lifted > 0


@transaction.atomic
def unsubscribe_lift(
    *, unsubscribes: Iterable[UnsubscribedContact], user: User, reason: str
) -> int:
    """Re-subscribe these rows (an Admin, with a reason); returns how many were lifted."""
    reason = _clip(reason)
    if not reason:
        raise LiftError("Give a reason for re-subscribing.")
    ids = [u.pk for u in unsubscribes]
    return UnsubscribedContact.objects.filter(pk__in=ids, lifted=False).update(
        lifted=True,
        lifted_at=timezone.now(),
        lifted_by=user,
        lift_source=UnsubscribedContact.LiftSource.MANUAL,
        lift_reason=reason,
    )


@transaction.atomic
def suppression_lift(*, suppressions: Iterable[SuppressedContact], user: User, reason: str) -> int:
    """Let blasts reach these numbers again (an Admin, with a reason); returns how many
    were lifted. The rows stay as history."""
    reason = _clip(reason)
    if not reason:
        raise LiftError("Give a reason for lifting the suppression.")
    ids = [s.pk for s in suppressions]
    return SuppressedContact.objects.filter(pk__in=ids, lifted=False).update(
        lifted=True,
        lifted_by=user,
        lifted_at=timezone.now(),
        lift_reason=reason,
        updated_at=timezone.now(),
    )


def _already_recorded(delivery_id: int | None, attempt: int | None, message_sid: str) -> bool:
    if delivery_id is not None:
        events = FailureEvent.objects.filter(delivery_id=delivery_id)
        if attempt is not None:
            events = events.filter(attempt=attempt)
        if events.exists():
            return True
    # exclude(""): the condition of the partial unique index, which SQLite uses only then.
    return (
        bool(message_sid)
        and FailureEvent.objects.filter(message_sid=message_sid).exclude(message_sid="").exists()
    )


def _lifted_since(model: type, phone: str, at: datetime) -> bool:
    """Whether a row of ``model`` for ``phone`` was lifted at or after ``at``: a failure
    older than a lift (seen late, or by the backfill) does not undo the lift."""
    return model.objects.filter(phone=phone, lifted=True, lifted_at__gte=at).exists()


def _last_lift(phone: str) -> datetime | None:
    return (
        SuppressedContact.objects.filter(phone=phone, lifted=True, lifted_at__isnull=False)
        .order_by("-lifted_at")
        .values_list("lifted_at", flat=True)
        .first()
    )


def _suppress(
    *,
    phone: str,
    code: int | None,
    reason: str,
    count: int,
    first_at: datetime,
    at: datetime,
    delivery_id: int | None,
    blast_id: int | None,
    message_sid: str,
) -> None:
    active = SuppressedContact.objects.filter(phone=phone, lifted=False).first()
    if active is not None:
        # Already suppressed: the evidence that caused it stays; the count grows.
        SuppressedContact.objects.filter(pk=active.pk).update(
            failure_count=active.failure_count + 1,
            last_failed_at=max(at, active.last_failed_at or at),
            updated_at=timezone.now(),
        )
        return
    SuppressedContact.objects.create(
        phone=phone,
        reason=_clip(reason),
        error_code=code,
        error_meaning=_clip(meaning(code)),
        failure_count=count,
        first_failed_at=first_at,
        last_failed_at=at,
        delivery_id=delivery_id,
        blast_id=blast_id,
        message_sid=message_sid,
        created_at=at,
    )


@dataclass(frozen=True)
class Decision:
    """What one failure does to its number, before anything is written."""

    category: NumberAction
    action: str
    note: str = ""
    count: int = 0  # transient failures in the window, this one included
    first_at: datetime | None = None  # the earliest of them


def _busiest_window(times: list[datetime], at: datetime) -> tuple[int, datetime]:
    """The most failures in one window (end - 90 days, end] that holds ``at``, and
    the first of them; ``times`` is sorted and includes ``at``."""
    best, first = 0, at
    for end in times:
        if end < at or end - TRANSIENT_WINDOW >= at:
            continue
        inside = [t for t in times if end - TRANSIENT_WINDOW < t <= end]
        if len(inside) > best:
            best, first = len(inside), inside[0]
    return best, first


def failure_decide(
    *,
    phone: str,
    code: int | None,
    at: datetime,
    planned_transient: Iterable[datetime] = (),
    planned_suppressed: bool = False,
) -> Decision:
    """The classifier's decision for one failure of ``phone`` (E.164) at ``at``.

    Reads, never writes. ``planned_transient`` and ``planned_suppressed`` add failures
    and a suppression not in the database (``backfill_suppressions --dry-run``).
    """
    category = number_action(code)
    if category is NumberAction.UNSUBSCRIBE:
        if _lifted_since(UnsubscribedContact, phone, at):
            return Decision(category, NONE, "re-subscribed after this failure")
        return Decision(category, UNSUBSCRIBED)
    if category is NumberAction.SUPPRESS:
        if _lifted_since(SuppressedContact, phone, at):
            return Decision(category, NONE, "suppression lifted after this failure")
        return Decision(category, SUPPRESSED, count=1, first_at=at)
    if category is not NumberAction.TRANSIENT:
        return Decision(category, NONE)

    threshold = max(int(settings.SUPPRESS_AFTER_TRANSIENT), 1)
    last_lift = _last_lift(phone)
    if last_lift is not None and last_lift >= at:
        return Decision(category, NONE, "suppression lifted after this failure")
    # Failures before the number's last lift were answered by that lift: count anew.
    since = at - TRANSIENT_WINDOW
    if last_lift is not None:
        since = max(since, last_lift)
    until = at + TRANSIENT_WINDOW
    # Status callbacks arrive late and out of order (and two workers may each stamp
    # "now" before taking the number's lock): a failure recorded earlier can have
    # happened later. So look both ways and take the busiest 90-day window that holds
    # this failure; counting only earlier ones could leave three failures uncounted.
    nearby = FailureEvent.objects.filter(
        phone=phone, category=NumberAction.TRANSIENT, failed_at__gt=since, failed_at__lt=until
    )
    times = sorted(
        [*nearby.values_list("failed_at", flat=True)]
        + [t for t in planned_transient if since < t < until]
        + [at]
    )
    count, first_at = _busiest_window(times, at)
    already = (
        planned_suppressed or SuppressedContact.objects.filter(phone=phone, lifted=False).exists()
    )
    if count >= threshold or already:
        return Decision(category, SUPPRESSED, count=count, first_at=first_at)
    return Decision(
        category, COUNTED, f"{count} of {threshold} within 90 days", count=count, first_at=at
    )


@transaction.atomic
@transaction.atomic  # the per-number lock lasts until the end of this transaction
def failure_record(
    *,
    phone: str,
    code: int | None,
    delivery_id: int | None = None,
    attempt: int | None = None,
    blast_id: int | None = None,
    message_sid: str = "",
    at: datetime | None = None,
) -> str:
    """Feed one failed or undelivered message through the classification table.

    Returns the action taken on the number: ``"unsubscribed"`` (21610: on the
    unsubscribed list, source carrier), ``"suppressed"`` (a bad number, or the
    ``SUPPRESS_AFTER_TRANSIENT``-th transient failure within 90 days; also when the
    number already was), ``"counted"`` (a transient failure recorded below the
    threshold) or ``"none"`` (not the number's fault, an unknown code, a failure older
    than an Admin's lift or a re-subscribe, or one already recorded).

    Idempotent per attempt of a delivery (``attempt`` is its ``attempts`` when that
    message was sent; without it, per delivery) and per message SID: recording the same
    failure again changes nothing and returns ``"none"``, while the failure of a message
    staff sent again counts anew. ``at`` is when it failed (default now);
    transient failures are counted since the number's last lifted suppression. Safe to
    call inside the caller's transaction (it then runs in a savepoint).
    """
    if not phone.startswith("+"):
        # A late callback for a row whose number RETENTION_DAYS erased: no number to act on.
        return NONE
    phone = normalize_phone(phone)
    message_sid = (message_sid or "").strip()[:64]
    at = at or timezone.now()
    _lock_phone(phone)
    if _already_recorded(delivery_id, attempt, message_sid):
        return NONE

    decision = failure_decide(phone=phone, code=code, at=at)
    if decision.action == UNSUBSCRIBED:
        _unsubscribe(
            phone=phone,
            source=UnsubscribedContact.Source.CARRIER,
            evidence=_clip(
                f"{describe(code)}; message {message_sid or '?'}, delivery "
                f"{delivery_id or '?'}, blast {blast_id or '?'}"
            ),
            reason="Twilio or the carrier reports the recipient opted out",
            at=at,
            error_code=code,
            delivery_id=delivery_id,
            blast_id=blast_id,
            message_sid=message_sid,
        )
    elif decision.action == SUPPRESSED:
        reason = describe(code)
        if decision.category is NumberAction.TRANSIENT:
            reason += f" ({decision.count} transient failures within 90 days)"
        _suppress(
            phone=phone,
            code=code,
            reason=reason,
            count=decision.count,
            first_at=decision.first_at or at,
            at=at,
            delivery_id=delivery_id,
            blast_id=blast_id,
            message_sid=message_sid,
        )
    action = decision.action
    note = decision.note

    try:
        with transaction.atomic():
            FailureEvent.objects.create(
                phone=phone,
                error_code=code,
                error_meaning=_clip(meaning(code)),
                category=decision.category.value,
                action=action,
                note=_clip(note),
                delivery_id=delivery_id,
                attempt=attempt or 0,
                blast_id=blast_id,
                message_sid=message_sid,
                failed_at=at,
            )
    except IntegrityError:
        # Recorded at the same moment by another process (PostgreSQL only; SQLite
        # writers are serialised): undo what this call did.
        transaction.set_rollback(True)
        return NONE
    return action
