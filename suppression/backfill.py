"""Run every historical failed or undelivered delivery through the classifier.

``manage.py backfill_suppressions`` calls :func:`backfill`. Deliveries whose failure is
already recorded (a FailureEvent for the delivery's latest attempt, or for the message it
holds) are left alone, so a second run changes nothing. Each failure is recorded in its
own short transaction, oldest first, so transient failures count up in the order they
happened and the send engine is never locked out. ``dry_run`` writes nothing: it runs the
same decisions with what it would have written kept in memory.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Coalesce

from messaging.models import Delivery
from messaging.twilio_errors import NumberAction
from suppression.models import FailureEvent
from suppression.services import (
    NONE,
    SUPPRESSED,
    UNSUBSCRIBED,
    _already_recorded,
    failure_decide,
    failure_record,
)

PAGE = 500
FAILED_TWILIO_STATUSES = ("failed", "undelivered")


@dataclass
class BackfillSummary:
    considered: int = 0
    by_action: Counter[str] = field(default_factory=Counter)
    by_code: dict[int | None, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, code: int | None, action: str) -> None:
        self.considered += 1
        self.by_action[action] += 1
        self.by_code[code][action] += 1


def failed_deliveries(*, since: datetime | None = None):  # type: ignore[no-untyped-def]
    """Failed or undelivered deliveries with no recorded failure, oldest first.

    Rows whose number data retention erased (``erased-<id>``) are left out: there is no
    number left to suppress, and counting them would make every later run report work.
    """
    rows = (
        Delivery.objects.filter(
            Q(status=Delivery.Status.FAILED) | Q(twilio_status__in=FAILED_TWILIO_STATUSES)
        )
        .filter(phone__startswith="+")
        .exclude(
            Exists(
                FailureEvent.objects.filter(
                    delivery_id=OuterRef("pk"), attempt=OuterRef("attempts")
                )
            )
        )
        .exclude(
            Exists(
                FailureEvent.objects.filter(message_sid=OuterRef("twilio_sid")).exclude(
                    message_sid=""
                )
            )
        )
        # When the failed message was sent: its attempt's claim, which neither a late
        # callback nor data retention rewrites (updated_at only for rows from before
        # claims were stamped).
        .annotate(failed_on=Coalesce("claimed_at", "sent_at", "updated_at"))
    )
    if since is not None:
        rows = rows.filter(failed_on__gte=since)
    return rows


def _pages(since: datetime | None) -> Iterator[list[tuple]]:
    # Keyset pages, each read fully before its rows are written: no cursor stays open
    # across writes, and rows recorded meanwhile simply drop out of the next page.
    fields = ("pk", "phone", "error_code", "blast_id", "twilio_sid", "attempts", "failed_on")
    last: tuple[datetime, int] | None = None
    while True:
        rows = failed_deliveries(since=since)
        if last is not None:
            rows = rows.filter(Q(failed_on__gt=last[0]) | Q(failed_on=last[0], pk__gt=last[1]))
        page = list(rows.order_by("failed_on", "pk").values_list(*fields)[:PAGE])
        if not page:
            return
        yield page
        last = (page[-1][6], page[-1][0])


def backfill(
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> BackfillSummary:
    """Classify every failed or undelivered delivery not yet recorded; see module doc."""
    summary = BackfillSummary()
    total = failed_deliveries(since=since).count()
    # Dry run: what the run would have written, per phone.
    planned_transient: dict[str, list[datetime]] = defaultdict(list)
    planned_suppressed: set[str] = set()
    planned_sids: set[str] = set()
    done = 0
    for page in _pages(since):
        for pk, phone, code, blast_id, sid, attempt, at in page:
            sid = sid or ""
            if dry_run:
                if _already_recorded(None, None, sid) or (sid and sid in planned_sids):
                    action = NONE
                else:
                    decision = failure_decide(
                        phone=phone,
                        code=code,
                        at=at,
                        planned_transient=planned_transient.get(phone, ()),
                        planned_suppressed=phone in planned_suppressed,
                    )
                    action = decision.action
                    if decision.category is NumberAction.TRANSIENT:
                        planned_transient[phone].append(at)
                    if action == SUPPRESSED:
                        planned_suppressed.add(phone)
                    if sid:
                        planned_sids.add(sid)
            else:
                action = failure_record(
                    phone=phone,
                    code=code,
                    delivery_id=pk,
                    attempt=attempt,
                    blast_id=blast_id,
                    message_sid=sid,
                    at=at,
                )
            summary.add(code, action)
            done += 1
        if on_progress:
            on_progress(done, max(total, done))
    return summary


__all__ = ["SUPPRESSED", "UNSUBSCRIBED", "BackfillSummary", "backfill", "failed_deliveries"]
