"""Creating a blast: checking its text and audience, and writing one row per recipient."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from events.models import Event, Registration
from members.models import Member, Tag
from messaging.models import Blast, Delivery
from messaging.segments import MAX_CHARACTERS
from messaging.services.busy import retry_when_busy
from messaging.services.queueing import blast_enqueue
from messaging.templating import Template, TemplateError, recipient_values, template_parse
from smsadmin.models import User
from suppression.services import blocked_phones

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status

MAX_TYPED_CHARACTERS = 2 * MAX_CHARACTERS
CREATE_BATCH = 5000
CREATE_PAUSE_SECONDS = 0.1
DISCARD_BATCH = 5000
AUDIENCE_PAGE = 2000


class BlastError(ValueError):
    """A blast cannot be created or changed as asked; the message says why.

    ``field`` says what to fix, for a form to show the message next to it: ``body``
    (the text) or ``audience`` (who gets it); empty when it is neither.
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class _Recipient:
    phone: str
    first_name: str
    last_name: str
    event: Event | None = None


def _pages(rows: QuerySet) -> Iterator[tuple]:  # type: ignore[type-arg]
    """``rows`` (id first, then the values) a page at a time by id, with no cursor held
    open: rows are written between pages, each batch in its own transaction."""
    last = 0
    while True:
        page = list(rows.filter(id__gt=last).order_by("id")[:AUDIENCE_PAGE])
        if not page:
            return
        yield from page
        last = page[-1][0]


def community_members(*, tag_ids: Iterable[int] = ()) -> QuerySet[Member]:
    """The community audience: every active member, or those having any of the tags."""
    members = Member.objects.filter(is_active=True)
    tag_ids = list(tag_ids)
    if tag_ids:
        # IN a subquery, not a join: a member with two of the chosen tags is one
        # recipient. (Measured faster than a correlated EXISTS on SQLite at 100k.)
        tagged = Member.tags.through.objects.filter(tag_id__in=tag_ids).values("member_id")
        members = members.filter(pk__in=tagged)
    return members


def _audience(
    *, community: bool, events: list[Event], tag_ids: Iterable[int] = ()
) -> Iterator[_Recipient]:
    # Event registrations first: someone both registered and a member is texted once,
    # with the event's details.
    for event in events:
        registrations = Registration.objects.filter(event=event).values_list(
            "id", "phone", "first_name", "last_name"
        )
        for _, phone, first, last in _pages(registrations):
            yield _Recipient(phone, first, last, event)
    if community:
        members = community_members(tag_ids=tag_ids).values_list(
            "id", "phone", "first_name", "last_name"
        )
        for _, phone, first, last in _pages(members):
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


def default_name(body: str) -> str:
    """A blast's name when staff give none: its first line, cut at a word with "…"."""
    first = body.strip().splitlines()[0].strip() if body.strip() else ""
    if len(first) <= 60:
        return first
    cut = first[:59].rsplit(" ", 1)[0] if " " in first[:59] else first[:59]
    return cut.rstrip() + "…"


def _reminder(
    *, community: bool, events: list[Event], remind_before: timedelta | None, at: datetime | None
) -> tuple[Event | None, datetime | None]:
    """(the event reminded of, when it is due): a reminder is due ``remind_before`` its
    one event's start; anything else keeps ``at``."""
    if remind_before is None:
        return None, at
    if community or len(events) != 1:
        raise BlastError(
            "A reminder goes to one event's registrations: choose that event alone.",
            field="audience",
        )
    return events[0], events[0].starts_at - remind_before


def blast_check_text(*, body: str) -> Template:
    """The text, parsed; BlastError (field ``body``) when it cannot be sent as written."""
    try:
        template = template_parse(body)
    except TemplateError as exc:
        raise BlastError(str(exc), field="body") from None
    # What Twilio limits is each rendered message (checked as rows are written, and by
    # compose on the longest); placeholders and {{ }} make the typed text longer or
    # shorter than that, so the typed text only has a looser cap.
    if len(body) > MAX_TYPED_CHARACTERS:
        raise BlastError(
            f"The message is {len(body):,} characters as typed; it must be under "
            f"{MAX_TYPED_CHARACTERS:,}, and each message as sent at most {MAX_CHARACTERS:,}.",
            field="body",
        )
    return template


def blast_check_audience(
    *, community: bool, event_ids: Iterable[int], tag_ids: Iterable[int] = ()
) -> list[Event]:
    """The chosen events; BlastError (field ``audience``) when the choice is not usable."""
    ids = sorted(set(event_ids))
    events = list(Event.objects.filter(pk__in=ids).order_by("id"))
    missing = sorted(set(ids) - {e.pk for e in events})
    if missing:
        raise BlastError(f"No event with id {', '.join(map(str, missing))}.", field="audience")
    tags = sorted(set(tag_ids))
    if tags:
        if not community:
            raise BlastError(
                "Tags narrow the community members: choose community members too.",
                field="audience",
            )
        found = set(Tag.objects.filter(pk__in=tags).values_list("pk", flat=True))
        if set(tags) - found:
            raise BlastError(
                "A chosen tag no longer exists; choose the tags again.", field="audience"
            )
    if not community and not events:
        raise BlastError(
            "Choose an audience: community members, an event, or both.", field="audience"
        )
    return events


def blast_check_fit(*, template: Template, community: bool) -> None:
    """BlastError when the text cannot go to this kind of audience."""
    if template.uses_event_fields and community:
        raise BlastError(
            "Event placeholders ({event_name}, {event_date}, {event_location}) only work "
            "when the audience is event registrations alone: community members have no event.",
            field="body",
        )


def blast_validate(
    *, body: str, community: bool, event_ids: Iterable[int], tag_ids: Iterable[int] = ()
) -> tuple[Template, list[Event]]:
    """Check text and audience; raise BlastError with a message for staff."""
    template = blast_check_text(body=body)
    events = blast_check_audience(community=community, event_ids=event_ids, tag_ids=tag_ids)
    blast_check_fit(template=template, community=community)
    return template, events


def blast_create(
    *,
    body: str,
    community: bool = False,
    event_ids: Iterable[int] = (),
    created_by: User | None = None,
    name: str = "",
    scheduled_for: datetime | None = None,
    tag_ids: Iterable[int] = (),
    idempotency_key: UUID | None = None,
    approval_above: int | None = None,
    quiet_hours_override: bool = False,
    remind_before: timedelta | None = None,
    recurrence_id: int | None = None,
    hold: bool = False,
) -> Blast:
    """Create a blast and one row per recipient, then enqueue it.

    With ``scheduled_for`` in the future the blast is saved 'scheduled' with no rows:
    they are written from the audience as it is when it is due (scheduling.py). With
    ``remind_before`` (an event reminder: the audience is one event's registrations)
    it is due that long before the event starts, and follows the event if it moves.
    ``hold`` saves it scheduled even when its time has come (a repeating blast's
    occurrence: the dispatch pass sends it, or marks it missed).

    ``tag_ids`` narrows the community to members having any of those tags. With an
    ``idempotency_key`` (the compose form's), the same key never makes a second blast:
    the one it already made is returned. With ``approval_above``, a blast that would
    text more people than that waits for an Admin's approval instead of being queued.

    Recipients are deduplicated by phone; unsubscribed and suppressed numbers get a
    row marked skipped with the reason. If the broker is down the blast stays queued
    and the sweeper sends it; ``blast.enqueued_at`` is None in that case.

    Rows are written in batches, each its own short transaction, so a 100k audience
    never holds SQLite's write lock for more than a moment and sending workers keep
    recording outcomes meanwhile. Until every row exists the blast is 'preparing',
    which no worker and no sweeper pass sends; if creation fails half-way, what was
    written is removed (here, or by the sweeper after a crash).
    """
    tag_ids = sorted(set(tag_ids))
    template, events = blast_validate(
        body=body, community=community, event_ids=event_ids, tag_ids=tag_ids
    )
    if idempotency_key is not None:
        existing = _same_form(idempotency_key)
        if existing is not None:
            return existing
    remind_event, scheduled_for = _reminder(
        community=community, events=events, remind_before=remind_before, at=scheduled_for
    )
    if hold and scheduled_for is None:
        scheduled_for = timezone.now()
    scheduled = hold or (scheduled_for is not None and scheduled_for > timezone.now())
    try:
        blast = retry_when_busy(
            lambda: Blast.objects.create(
                name=name.strip() or default_name(body),
                body=body,
                audience_community=community,
                status=B.PREPARING,
                scheduled_for=scheduled_for,
                created_by=created_by,
                idempotency_key=idempotency_key,
                quiet_hours_override=quiet_hours_override,
                remind_event=remind_event,
                remind_before=remind_before,
                recurrence_id=recurrence_id,
            ),
            what="starting a new blast",
        )
    except IntegrityError:
        # The same form, sent twice at the same moment: the other request made it.
        existing = Blast.objects.filter(idempotency_key=idempotency_key).first()
        if existing is None:
            raise BlastError("The same form is being sent twice at once; try again.") from None
        return existing
    try:
        try:
            blast.audience_events.set(events)
            blast.audience_tags.set(tag_ids)
        except IntegrityError:
            # Deleted by someone else since they were checked above.
            raise BlastError(
                "A chosen event or tag was just deleted; choose the audience again.",
                field="audience",
            ) from None
        if scheduled:
            _hold_until_due(blast=blast, approval_above=approval_above)
            blast.refresh_from_db()
            return blast
        total, to_text = _write_rows(
            blast=blast, template=template, community=community, events=events, tag_ids=tag_ids
        )
        if total == 0:
            raise BlastError(
                "Nobody to send to: the chosen audience has no one in it.", field="audience"
            )
        if approval_above is not None and to_text > approval_above:
            final = B.AWAITING_APPROVAL
        else:
            final = B.SCHEDULED if scheduled else B.QUEUED

        def ready() -> None:
            with transaction.atomic():
                changed = Blast.objects.filter(pk=blast.pk, status=B.PREPARING).update(
                    status=final,
                    recipient_count=total,
                    updated_at=timezone.now(),
                )
                if not changed:
                    raise BlastError("The blast was removed while it was being prepared.")
                if final == B.QUEUED:
                    transaction.on_commit(lambda: blast_enqueue(blast_id=blast.pk))

        retry_when_busy(ready, what="finishing a new blast")
    except BaseException:
        blast_discard_preparing(blast_id=blast.pk)
        raise
    blast.refresh_from_db()
    return blast


def _hold_until_due(*, blast: Blast, approval_above: int | None) -> None:
    """A blast to send later: no rows yet, only its audience; it waits for its time, or
    for an Admin first when the audience as it is now is larger than ``approval_above``."""
    final = B.SCHEDULED
    if approval_above is not None:
        from messaging.services.composing import Audience, audience_breakdown

        audience = Audience.of(
            community=blast.audience_community,
            event_ids=blast.audience_events.values_list("pk", flat=True),
            tag_ids=blast.audience_tags.values_list("pk", flat=True),
        )
        if audience_breakdown(audience=audience).recipients > approval_above:
            final = B.AWAITING_APPROVAL
    retry_when_busy(
        lambda: Blast.objects.filter(pk=blast.pk, status=B.PREPARING).update(
            status=final, updated_at=timezone.now()
        ),
        what="saving a scheduled blast",
    )


def blast_update_scheduled(
    *,
    blast_id: int,
    body: str,
    community: bool = False,
    event_ids: Iterable[int] = (),
    tag_ids: Iterable[int] = (),
    name: str = "",
    scheduled_for: datetime | None = None,
    remind_before: timedelta | None = None,
    quiet_hours_override: bool = False,
    approval_above: int | None = None,
) -> Blast:
    """Change a scheduled blast before its time: text, audience, time.

    Refused (BlastError) once a dispatch pass has claimed it: the change and the claim
    both lock the blast's row, so either the pass sends the changed blast or the change
    finds it started. Without a time it goes at the next pass. A change that makes a
    Social manager's blast larger than ``approval_above`` waits for approval again.
    """
    tag_ids = sorted(set(tag_ids))
    template, events = blast_validate(
        body=body, community=community, event_ids=event_ids, tag_ids=tag_ids
    )
    remind_event, scheduled_for = _reminder(
        community=community, events=events, remind_before=remind_before, at=scheduled_for
    )
    status = B.SCHEDULED
    if approval_above is not None:
        from messaging.services.composing import Audience, audience_breakdown

        audience = Audience.of(community=community, event_ids=event_ids, tag_ids=tag_ids)
        if audience_breakdown(audience=audience).recipients > approval_above:
            status = B.AWAITING_APPROVAL

    def change() -> Blast:
        with transaction.atomic():
            blast = (
                Blast.objects.select_for_update()
                .filter(pk=blast_id, status__in=[B.SCHEDULED, B.AWAITING_APPROVAL])
                # Only a blast to send later, whose rows are not written yet: a waiting
                # blast to send now already has the rows an Admin is asked about.
                .exclude(Exists(Delivery.objects.filter(blast_id=OuterRef("pk"))))
                .first()
            )
            if blast is None:
                raise BlastError(
                    "It can no longer be changed: it has started, or was cancelled. "
                    "Nothing was changed."
                )
            blast.body = body
            blast.name = name.strip() or body.strip().splitlines()[0][:60]
            blast.audience_community = community
            blast.scheduled_for = scheduled_for or timezone.now()
            blast.remind_event = remind_event
            blast.remind_before = remind_before
            blast.quiet_hours_override = quiet_hours_override
            blast.status = status
            if status == B.AWAITING_APPROVAL:
                blast.reviewed_by, blast.reviewed_at, blast.review_note = None, None, ""
            blast.save()
            blast.audience_events.set(events)
            blast.audience_tags.set(tag_ids)
            return blast

    return retry_when_busy(change, what="changing a scheduled blast")


class TakenOver(Exception):
    """Another dispatch pass took this blast over (this one was taken for dead)."""


def blast_write_rows(*, blast: Blast, stamp: datetime | None = None) -> tuple[int, int]:
    """Write a scheduled blast's rows from its audience as it is now: (rows, to text).

    Rows already there (a dispatch pass that died half-way) are kept: rows are unique
    per phone, so writing again adds only the missing ones and texts nobody twice.
    With ``stamp`` (the pass's claim), each batch is written only while the blast is
    still dispatching under that claim; otherwise TakenOver.
    """
    still_ours = None
    if stamp is not None:

        def still_ours() -> bool:
            # Locked: a cancel committing meanwhile either waits for this batch (and
            # cancels its rows) or is seen by it, never misses rows written under it.
            mine = Blast.objects.select_for_update().filter(
                pk=blast.pk, status=B.DISPATCHING, processing_started_at=stamp
            )
            return bool(list(mine.values_list("pk", flat=True)[:1]))

    template = blast_check_text(body=blast.body)
    events = list(blast.audience_events.order_by("id"))
    tag_ids = list(blast.audience_tags.values_list("pk", flat=True))
    if not blast.audience_community and not events:
        raise BlastError("Its events were deleted: nobody is left to text.", field="audience")
    _write_rows(
        blast=blast,
        template=template,
        community=blast.audience_community,
        events=events,
        tag_ids=tag_ids,
        ignore_conflicts=True,
        still_ours=still_ours,
    )
    rows = Delivery.objects.filter(blast=blast)
    return rows.count(), rows.exclude(status=S.SKIPPED).count()


def _same_form(key: UUID) -> Blast | None:
    """The blast this compose form already made, if it is alive.

    One whose creation died half-way (preparing, and no row written for longer than
    the sweeper waits) is removed here, so sending the form again makes the blast
    instead of pointing at one the sweeper is about to remove.
    """
    from messaging.services.sweeping import PREPARING_STALE

    existing = Blast.objects.filter(idempotency_key=key).first()
    if existing is None:
        return None
    dead = existing.status == B.PREPARING and (
        existing.updated_at < timezone.now() - PREPARING_STALE
    )
    if not dead:
        return existing
    logger.warning("Removing blast %s: its creation stopped half-way", existing.pk)
    blast_discard_preparing(blast_id=existing.pk)
    return None


def _write_rows(
    *,
    blast: Blast,
    template: Template,
    community: bool,
    events: list[Event],
    tag_ids: Iterable[int] = (),
    ignore_conflicts: bool = False,
    still_ours: Callable[[], bool] | None = None,
) -> tuple[int, int]:
    """Write every recipient's row; (rows written, rows to text: not skipped).

    ``still_ours`` is checked inside each batch's transaction: when it says no (another
    dispatch pass took the blast over), TakenOver is raised and nothing more is written."""
    seen: set[str] = set()
    batch: list[_Recipient] = []
    total = 0
    to_text = 0

    def write() -> None:
        nonlocal to_text
        # Everything but the INSERT happens before the write lock is taken.
        blocked = blocked_phones(phones=[r.phone for r in batch])
        rows = []
        for recipient in batch:
            body = _render(template, recipient)
            if len(body) > MAX_CHARACTERS:
                # Compose shows the longest message before anyone confirms; this is the
                # last guard, so Twilio never refuses a row for its length (21617).
                who = f"{recipient.first_name} {recipient.last_name}".strip() or recipient.phone
                raise BlastError(
                    f"The message for {who} would be {len(body):,} characters; Twilio "
                    f"takes at most {MAX_CHARACTERS:,}. Shorten the text."
                )
            reason = blocked.get(recipient.phone, "")
            to_text += not reason
            rows.append(
                Delivery(
                    blast=blast,
                    phone=recipient.phone,
                    first_name=recipient.first_name,
                    last_name=recipient.last_name,
                    event=recipient.event,
                    body=body,
                    status=S.SKIPPED if reason else S.PENDING,
                    skip_reason=reason,
                )
            )

        def insert() -> None:
            with transaction.atomic():
                if still_ours is not None and not still_ours():
                    raise TakenOver
                Delivery.objects.bulk_create(rows, ignore_conflicts=ignore_conflicts)
                # Progress the sweeper can see: preparing for long without it, it died.
                Blast.objects.filter(pk=blast.pk).update(updated_at=timezone.now())

        retry_when_busy(insert, what="writing a blast's recipients")
        if connection.vendor == "sqlite" and not connection.in_atomic_block:
            # SQLite hands its lock to whoever polls first, not to whoever waited
            # longest: without a pause between batches a worker recording outcomes
            # could wait for the whole creation.
            time.sleep(CREATE_PAUSE_SECONDS)

    for recipient in _audience(community=community, events=events, tag_ids=tag_ids):
        if recipient.phone in seen:
            continue
        seen.add(recipient.phone)
        batch.append(recipient)
        total += 1
        if len(batch) >= CREATE_BATCH:
            write()
            batch.clear()
    if batch:
        write()
    return total, to_text


def blast_discard_preparing(*, blast_id: int) -> int:
    """Remove a blast that never finished preparing, its rows a batch at a time."""
    removed = 0
    while True:
        ids = list(
            Delivery.objects.filter(blast_id=blast_id).values_list("pk", flat=True)[:DISCARD_BATCH]
        )
        if not ids:
            break
        removed += retry_when_busy(
            lambda ids=ids: Delivery.objects.filter(pk__in=ids).delete()[0],
            what="removing an unfinished blast",
        )
    Blast.objects.filter(pk=blast_id, status=B.PREPARING).delete()
    return removed
