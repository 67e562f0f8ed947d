"""The scheduler: beat runs one dispatch pass every SCHEDULER_POLL_SECONDS.

A pass, in order:

1. makes the occurrences of repeating blasts that are due (``Recurrence``);
2. marks 'missed' each scheduled blast found more than SCHEDULE_GRACE_MINUTES late
   (after downtime nothing fires hours late on its own; staff send it now or cancel);
3. claims each due scheduled blast with a conditional UPDATE (scheduled ->
   dispatching), writes its rows from the audience as it is now (people who joined
   since included, opt-outs since excluded, bodies rendered now) and queues it;
4. takes up again a blast left 'dispatching' for SCHEDULER_STALE_MINUTES by a pass that
   died (rows are unique per phone, so writing again texts nobody twice);
5. resumes blasts that quiet hours paused, once quiet hours are over;
6. writes the scheduler's heartbeat.

Every claim is a conditional UPDATE, so two beats, or beat and ``manage.py
dispatch_scheduled``, running at once dispatch each blast once.
"""

from __future__ import annotations

import calendar
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from events.models import Event
from messaging.models import Blast, Recurrence
from messaging.quiet_hours import quiet_hours
from messaging.services.busy import retry_when_busy
from messaging.services.composing import approval_threshold
from messaging.services.creating import (
    BlastError,
    TakenOver,
    blast_create,
    blast_write_rows,
)
from messaging.services.lifecycle import pending_rows_cancel
from messaging.services.queueing import blast_enqueue
from smsadmin.models import Heartbeat, User

logger = logging.getLogger(__name__)

B = Blast.Status

# Occurrences of repeating blasts get keys from this namespace and (row, time).
_OCCURRENCE_KEYS = uuid.UUID("6f0d6a44-4f7e-4b1a-9b55-2f1c0de5a7c1")

SCHEDULER = "scheduler"


@dataclass
class DispatchResult:
    occurrences: int = 0
    missed: list[int] = field(default_factory=list)
    dispatched: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "occurrences": self.occurrences,
            "missed": len(self.missed),
            "dispatched": len(self.dispatched),
            "recovered": len(self.recovered),
            "failed": len(self.failed),
            "resumed_after_quiet_hours": len(self.resumed),
        }


def scheduled_dispatch(*, now: datetime | None = None) -> DispatchResult:
    """One dispatch pass (see the module docstring). ``now`` is for tests."""
    now = now or timezone.now()
    result = DispatchResult()
    result.occurrences = recurrences_fire(now=now)
    grace = timedelta(minutes=settings.SCHEDULE_GRACE_MINUTES)

    late = Blast.objects.filter(status=B.SCHEDULED, scheduled_for__lt=now - grace)
    for blast_id in list(late.values_list("pk", flat=True)):
        # The time is checked again in the UPDATE: an edit or a moved event since the
        # list was read must not be overridden.
        if Blast.objects.filter(
            pk=blast_id, status=B.SCHEDULED, scheduled_for__lt=now - grace
        ).update(
            status=B.MISSED,
            status_reason="Not sent: the scheduler found it more than "
            f"{settings.SCHEDULE_GRACE_MINUTES:g} minutes after its time. Send it now or "
            "cancel it.",
            updated_at=now,
        ):
            logger.warning("Blast %s missed its time", blast_id)
            result.missed.append(blast_id)

    # A reminder whose event has started is no use any more.
    for blast_id in list(
        Blast.objects.filter(
            status=B.SCHEDULED, remind_event__starts_at__lte=now, scheduled_for__lte=now
        ).values_list("pk", flat=True)
    ):
        if Blast.objects.filter(pk=blast_id, status=B.SCHEDULED).update(
            status=B.MISSED,
            status_reason="Not sent: its event had started when it came due.",
            updated_at=now,
        ):
            result.missed.append(blast_id)

    due = Blast.objects.filter(status=B.SCHEDULED, scheduled_for__lte=now).order_by(
        "scheduled_for", "pk"
    )
    for blast_id in list(due.values_list("pk", flat=True)):
        stamp = timezone.now()
        claimed = retry_when_busy(
            lambda blast_id=blast_id, stamp=stamp: Blast.objects.filter(
                pk=blast_id, status=B.SCHEDULED, scheduled_for__lte=stamp
            ).update(status=B.DISPATCHING, processing_started_at=stamp, updated_at=stamp),
            what="claiming a scheduled blast",
        )
        if claimed:
            _dispatch(blast_id, stamp, result.dispatched, result.failed)

    stale = timezone.now() - timedelta(minutes=settings.SCHEDULER_STALE_MINUTES)
    for blast_id, seen in list(
        Blast.objects.filter(status=B.DISPATCHING, updated_at__lt=stale).values_list(
            "pk", "updated_at"
        )
    ):
        stamp = timezone.now()
        # Conditional on the progress stamp it was found with: two passes never both
        # take it up.
        if Blast.objects.filter(pk=blast_id, status=B.DISPATCHING, updated_at=seen).update(
            processing_started_at=stamp, updated_at=stamp
        ):
            logger.warning("Blast %s: taking up a dispatch that stopped half-way", blast_id)
            _dispatch(blast_id, stamp, result.recovered, result.failed)

    result.resumed = quiet_paused_resume(now=now)
    heartbeat(name=SCHEDULER)
    return result


def _dispatch(blast_id: int, stamp: datetime, done: list[int], failed: list[int]) -> None:
    blast = Blast.objects.get(pk=blast_id)
    try:
        total, to_text = blast_write_rows(blast=blast, stamp=stamp)
        if total == 0:
            raise BlastError("Nobody to send to: the audience had no one in it when it was due.")
    except TakenOver:
        if Blast.objects.filter(pk=blast_id, status=B.CANCELLED).exists():
            _cancel_rows_written(blast_id)
        else:
            logger.warning("Blast %s: another pass took it over; this one stops", blast_id)
        return
    except BlastError as exc:
        now = timezone.now()
        Blast.objects.filter(pk=blast_id, status=B.DISPATCHING, processing_started_at=stamp).update(
            status=B.FAILED, status_reason=str(exc), finished_at=now, updated_at=now
        )
        failed.append(blast_id)
        return

    def ready() -> int:
        with transaction.atomic():
            changed = Blast.objects.filter(
                pk=blast_id, status=B.DISPATCHING, processing_started_at=stamp
            ).update(status=B.QUEUED, recipient_count=total, updated_at=timezone.now())
            if changed:
                transaction.on_commit(lambda: blast_enqueue(blast_id=blast_id))
            return changed

    if retry_when_busy(ready, what="queueing a scheduled blast"):
        logger.info("Blast %s dispatched: %s rows, %s to text", blast_id, total, to_text)
        done.append(blast_id)
    elif Blast.objects.filter(pk=blast_id, status=B.CANCELLED).exists():
        _cancel_rows_written(blast_id)


def _cancel_rows_written(blast_id: int) -> None:
    """Cancelled while its rows were written: none of them goes out."""
    pending_rows_cancel(blast_id=blast_id)


def quiet_paused_resume(*, now: datetime | None = None) -> list[int]:
    """Blasts that quiet hours paused go on once they are over."""
    hours = quiet_hours()
    now = now or timezone.now()
    if hours is not None and hours.contains(now):
        return []
    resumed = []
    paused = Blast.objects.filter(status=B.PAUSED, pause_cause=Blast.PauseCause.QUIET)
    for blast_id in list(paused.values_list("pk", flat=True)):
        with transaction.atomic():
            changed = Blast.objects.filter(
                pk=blast_id, status=B.PAUSED, pause_cause=Blast.PauseCause.QUIET
            ).update(status=B.QUEUED, status_reason="", pause_cause="", updated_at=timezone.now())
            if changed:
                transaction.on_commit(lambda blast_id=blast_id: blast_enqueue(blast_id=blast_id))
                resumed.append(blast_id)
    return resumed


def blast_send_missed_now(*, blast_id: int, user: User) -> Blast:
    """An Admin or its author sends a missed blast now (the next dispatch pass)."""
    blast = Blast.objects.filter(pk=blast_id).first()
    if blast is None:
        raise BlastError("That blast no longer exists.")
    if blast.created_by_id != user.pk and not user.has_perm("messaging.approve_blast"):
        raise BlastError("Only an Admin or the blast's author can send a missed blast.")
    now = timezone.now()
    if not Blast.objects.filter(pk=blast_id, status=B.MISSED).update(
        status=B.SCHEDULED, scheduled_for=now, status_reason="", updated_at=now
    ):
        raise BlastError(f"This blast is not missed: it is {blast.get_status_display().lower()}.")
    blast.refresh_from_db()
    return blast


def heartbeat(*, name: str) -> None:
    now = timezone.now()
    retry_when_busy(
        lambda: Heartbeat.objects.update_or_create(name=name, defaults={"at": now}),
        what="writing the scheduler's heartbeat",
    )


def last_heartbeat(*, name: str = SCHEDULER) -> datetime | None:
    return Heartbeat.objects.filter(name=name).values_list("at", flat=True).first()


# --- Repeating blasts ----------------------------------------------------------------------


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _weekdays(recurrence: Recurrence) -> set[int]:
    return {int(part) for part in recurrence.weekdays.split(",") if part.strip().isdigit()}


def _on_day(recurrence: Recurrence, day: date) -> bool:
    if recurrence.frequency == Recurrence.Frequency.WEEKLY:
        return day.weekday() in _weekdays(recurrence)
    wanted = recurrence.day_of_month or 1
    last = calendar.monthrange(day.year, day.month)[1]
    return day.day == min(wanted, last)


def recurrence_next_run(recurrence: Recurrence, *, after: datetime) -> datetime | None:
    """The first occurrence strictly after ``after``, or None past ``ends_on``.

    Occurrences are local times (TIME_ZONE) on local days, so "every Monday at 18:00"
    stays at 18:00 across a daylight-saving change.
    """
    zone = _zone()
    day = max(recurrence.starts_on, after.astimezone(zone).date())
    while day <= recurrence.ends_on:
        if _on_day(recurrence, day):
            moment = datetime.combine(day, recurrence.time_of_day, zone)
            if moment > after:
                return moment
        day += timedelta(days=1)
    return None


def recurrence_start(recurrence: Recurrence, *, now: datetime | None = None) -> None:
    """Set a new or changed repeating blast's next occurrence from now on."""
    now = now or timezone.now()
    recurrence.next_run_at = recurrence_next_run(recurrence, after=now)
    Recurrence.objects.filter(pk=recurrence.pk).update(next_run_at=recurrence.next_run_at)


def _strictest(*thresholds: int | None) -> int | None:
    """The lowest approval threshold of those that apply (None: no approval needed)."""
    applying = [t for t in thresholds if t is not None]
    return min(applying) if applying else None


def recurrences_fire(*, now: datetime) -> int:
    """Make the due occurrences of repeating blasts. Returns how many were made."""
    made = 0
    due = Recurrence.objects.filter(active=True, next_run_at__lte=now)
    for recurrence in list(
        due.select_related("created_by", "changed_by").prefetch_related(
            "audience_events", "audience_tags"
        )
    ):
        at = recurrence.next_run_at
        assert at is not None
        key = uuid.uuid5(_OCCURRENCE_KEYS, f"{recurrence.pk}:{at.isoformat()}")
        if not Blast.objects.filter(idempotency_key=key).exists():
            try:
                blast_create(
                    body=recurrence.body,
                    community=recurrence.audience_community,
                    event_ids=[e.pk for e in recurrence.audience_events.all()],
                    tag_ids=[t.pk for t in recurrence.audience_tags.all()],
                    name=f"{recurrence.name} ({timezone.localtime(at):%Y-%m-%d})",
                    created_by=recurrence.created_by,
                    # Due now: the next steps of this same pass dispatch it (or mark it
                    # missed, if the pass comes long after its time).
                    scheduled_for=at,
                    idempotency_key=key,
                    quiet_hours_override=recurrence.quiet_hours_override,
                    recurrence_id=recurrence.pk,
                    hold=True,
                    # A Social manager's occurrence to more people than the threshold
                    # waits for an Admin, as their one-off blasts do.
                    approval_above=_strictest(
                        approval_threshold(user=recurrence.created_by),
                        approval_threshold(user=recurrence.changed_by)
                        if recurrence.changed_by_id
                        else None,
                    ),
                )
                made += 1
            except BlastError as exc:
                logger.warning(
                    "Repeating blast %s: occurrence at %s not made: %s", recurrence.pk, at, exc
                )
            except IntegrityError:
                pass  # another pass made it at the same moment
        following = recurrence_next_run(recurrence, after=at)
        # Moved on only from the time this pass saw: two passes move it once.
        Recurrence.objects.filter(pk=recurrence.pk, next_run_at=at).update(
            next_run_at=following, active=following is not None
        )
    return made


# --- Event reminders ----------------------------------------------------------------------


def event_reminders_follow(sender: type, instance: Event, **kwargs: object) -> None:
    """After an event is saved: its reminders not yet sent are due ``remind_before`` its
    start as it is now (post_save receiver)."""
    waiting = Blast.objects.filter(
        remind_event=instance,
        status__in=[B.SCHEDULED, B.AWAITING_APPROVAL, B.MISSED],
        remind_before__isnull=False,
    )
    for blast_id, before, status in list(waiting.values_list("pk", "remind_before", "status")):
        due = instance.starts_at - before
        changes: dict[str, object] = {"scheduled_for": due, "updated_at": timezone.now()}
        if status == B.MISSED and due > timezone.now():
            # Moved later: the reminder is no longer late.
            changes |= {"status": B.SCHEDULED, "status_reason": ""}
        Blast.objects.filter(pk=blast_id, status=status).update(**changes)


def event_reminders_cancel(sender: type, instance: Event, **kwargs: object) -> None:
    """Before an event is deleted: its reminders not yet sent are cancelled (pre_delete
    receiver); those already sent stay on record without their event."""
    now = timezone.now()
    Blast.objects.filter(
        remind_event=instance,
        status__in=[B.SCHEDULED, B.AWAITING_APPROVAL, B.MISSED],
    ).update(
        status=B.CANCELLED,
        status_reason=f"Its event ({instance.name}) was deleted.",
        finished_at=now,
        updated_at=now,
    )
