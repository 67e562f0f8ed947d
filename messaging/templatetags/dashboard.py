"""The admin index's starting point: compose, the latest blasts, those awaiting approval,
missed blasts, the next scheduled ones, and when the scheduler last ran.

A fixed number of queries whatever the number of blasts or rows: the recent blasts, one
GROUP BY of their rows by blast and status, the blasts waiting for approval, the missed
blasts, the next scheduled blasts, the next occurrences of repeating blasts, and the
scheduler's heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from django import template
from django.db.models import Count, Value
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from messaging import twilio_errors
from messaging.charts import Series, bar_chart
from messaging.models import Blast, Delivery, InboundMessage, Recurrence
from messaging.services.repeating import local_time_in_words, scheduler_state
from messaging.views.blast import progress_figures
from suppression.models import SuppressedContact, UnsubscribedContact

register = template.Library()

RECENT = 8
AWAITING_SHOWN = 20
MISSED_SHOWN = 10
UPCOMING_SHOWN = 5


@dataclass(frozen=True)
class Upcoming:
    """A blast due next: a scheduled blast, or a repeating blast's next occurrence."""

    at: datetime
    when: str
    name: str
    url: str
    repeating: bool


def _ago(moment: datetime, now: datetime) -> str:
    if (now - moment).total_seconds() < 60:
        return "less than a minute ago"
    return f"{timesince(moment, now, depth=1)} ago"


def _scheduler_line(now: datetime) -> dict[str, Any]:
    state = scheduler_state(now=now)
    if state.last_run is None:
        text = (
            "never. Scheduled and repeating blasts go out only once the scheduler "
            "(Celery beat) runs."
        )
    elif state.status == "late":
        text = (
            f"late: {_ago(state.last_run, now)}. Scheduled and repeating blasts are not "
            "going out; check that Celery beat and a worker are running."
        )
    else:
        text = _ago(state.last_run, now)
    return {"status": state.status, "text": text, "warning": state.status != "ok"}


def _upcoming(user: Any) -> list[Upcoming]:
    scheduled = (
        Blast.objects.filter(status=Blast.Status.SCHEDULED, scheduled_for__isnull=False)
        .only("pk", "name", "scheduled_for")
        .order_by("scheduled_for", "id")[:UPCOMING_SHOWN]
    )
    found = [
        Upcoming(
            at=blast.scheduled_for,
            when=local_time_in_words(blast.scheduled_for),
            name=str(blast),
            url=reverse("messaging:blast", args=[blast.pk]),
            repeating=False,
        )
        for blast in scheduled
        if blast.scheduled_for is not None
    ]
    if user.has_perm("messaging.view_recurrence"):
        repeating = (
            Recurrence.objects.filter(active=True, next_run_at__isnull=False)
            .only("pk", "name", "next_run_at")
            .order_by("next_run_at", "id")[:UPCOMING_SHOWN]
        )
        found += [
            Upcoming(
                at=recurrence.next_run_at,
                when=local_time_in_words(recurrence.next_run_at),
                name=str(recurrence),
                url=reverse("admin:messaging_recurrence_change", args=[recurrence.pk]),
                repeating=True,
            )
            for recurrence in repeating
            if recurrence.next_run_at is not None
        ]
    return sorted(found, key=lambda item: item.at)[:UPCOMING_SHOWN]


@register.simple_tag(takes_context=True)
def blast_dashboard(context: template.Context) -> dict[str, Any]:
    """What the index shows to a user who may view blasts; empty for anyone else."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("messaging.view_blast"):
        return {}
    now = timezone.now()
    recent = list(
        Blast.objects.exclude(status=Blast.Status.PREPARING)
        .select_related("created_by")
        .order_by("-created_at", "-id")[:RECENT]
    )
    counts: dict[int, dict[str, int]] = {b.pk: {"total": 0} for b in recent}
    rows = (
        Delivery.objects.filter(blast_id__in=list(counts))
        .order_by()
        .values_list("blast_id", "status")
        .annotate(n=Count("id"))
    )
    for blast_id, status, n in rows:
        counts[blast_id][status] = n
        counts[blast_id]["total"] += n
    awaiting = list(
        Blast.objects.filter(status=Blast.Status.AWAITING_APPROVAL)
        .select_related("created_by")
        .order_by("created_at", "id")[:AWAITING_SHOWN]
    )
    # One more than shown, to know whether there are others.
    missed = list(
        Blast.objects.filter(status=Blast.Status.MISSED)
        .only("pk", "name", "scheduled_for", "created_at")
        .order_by("-scheduled_for", "-id")[: MISSED_SHOWN + 1]
    )
    return {
        "can_compose": user.has_perm("messaging.send_blast"),
        "recent": [(blast, progress_figures(counts[blast.pk])) for blast in recent],
        "awaiting": awaiting,
        "missed": [
            (blast, local_time_in_words(blast.scheduled_for)) for blast in missed[:MISSED_SHOWN]
        ],
        "missed_more": len(missed) > MISSED_SHOWN,
        "missed_url": reverse("admin:messaging_blast_changelist")
        + f"?status__exact={Blast.Status.MISSED}",
        "upcoming": _upcoming(user),
        "scheduler": _scheduler_line(now),
    }


# --- The last 30 days: deliveries, opt-outs, failure codes, the inbox ---------------------

DAYS = 30
TOP_CODES = 5


@dataclass(frozen=True)
class DayRow:
    day: date
    counts: tuple[int, ...]


@dataclass(frozen=True)
class FailureCode:
    code: int | None
    count: int
    meaning: str
    url: str


def _per_day(queryset: Any, field: str, days: list[date], zone: tzinfo) -> list[int]:
    """How many rows of ``queryset`` fall on each of ``days`` by ``field``, in one GROUP BY."""
    rows = (
        queryset.annotate(day=TruncDate(field, tzinfo=zone))
        .order_by()
        .values_list("day")
        .annotate(n=Count("id"))
    )
    found = dict(rows)
    return [found.get(day, 0) for day in days]


def _chart_labels(days: list[date]) -> tuple[list[str], list[str]]:
    short = [f"{day:%b} {day.day}" for day in days]
    long = [f"{day:%a} {day.day} {day:%b}" for day in days]
    return short, long


def _deliveries(
    days: list[date], start: datetime, zone: tzinfo
) -> tuple[dict[str, Any], list[FailureCode]]:
    """Sent, delivered and failed per day, and the most frequent failure codes: 2 queries.

    Which moment dates a delivery: *sent* by ``sent_at`` (Twilio accepted the message
    that day), *delivered* by ``delivered_at`` (its delivered callback arrived),
    *failed* by ``updated_at`` of a row whose status is failed (a failure is the row's
    last change: a refusal at send time has no ``sent_at``, and a failed row leaves that
    status only through a retry, which sets it back to pending). So one message sent
    on Monday and delivered on Tuesday counts on both days, once in each series.
    """
    sent = Delivery.objects.filter(sent_at__gte=start)
    delivered = Delivery.objects.filter(delivered_at__gte=start)
    # One query for both: sent_at and delivered_at grouped by their own day, as a UNION.
    day_rows = (
        sent.annotate(day=TruncDate("sent_at", tzinfo=zone), series=Value("sent"))
        .order_by()
        .values_list("day", "series")
        .annotate(n=Count("id"))
        .union(
            delivered.annotate(
                day=TruncDate("delivered_at", tzinfo=zone), series=Value("delivered")
            )
            .order_by()
            .values_list("day", "series")
            .annotate(n=Count("id")),
            all=True,
        )
    )
    by_series: dict[str, dict[date, int]] = {"sent": {}, "delivered": {}}
    for day, series, n in day_rows:
        by_series[series][_as_date(day)] = n
    # Failures by day and code at once: the daily series and the top codes.
    failed_rows = (
        Delivery.objects.filter(status=Delivery.Status.FAILED, updated_at__gte=start)
        .annotate(day=TruncDate("updated_at", tzinfo=zone))
        .order_by()
        .values_list("day", "error_code")
        .annotate(n=Count("id"))
    )
    failed_by_day: dict[date, int] = {}
    by_code: dict[int | None, int] = {}
    for day, code, n in failed_rows:
        failed_by_day[_as_date(day)] = failed_by_day.get(_as_date(day), 0) + n
        by_code[code] = by_code.get(code, 0) + n
    columns = {
        "sent": [by_series["sent"].get(day, 0) for day in days],
        "delivered": [by_series["delivered"].get(day, 0) for day in days],
        "failed": [failed_by_day.get(day, 0) for day in days],
    }
    totals = {name: sum(values) for name, values in columns.items()}
    chart = None
    if any(totals.values()):
        short, long = _chart_labels(days)
        summary = (
            f"Messages per day over the last {DAYS} days: {totals['sent']} sent, "
            f"{totals['delivered']} delivered, {totals['failed']} failed"
        )
        chart = bar_chart(
            short,
            [
                Series("sent", "bar-sent", columns["sent"]),
                Series("delivered", "bar-delivered", columns["delivered"]),
                Series("failed", "bar-failed", columns["failed"]),
            ],
            summary=summary,
            long_labels=long,
            css_id="chart-deliveries",
        )
    changelist = reverse("admin:messaging_delivery_changelist")
    codes = [
        FailureCode(
            code=code,
            count=n,
            meaning=twilio_errors.meaning(code)
            or ("No code given" if code is None else "Not in our table of Twilio's codes"),
            url=changelist
            + f"?status__exact={Delivery.Status.FAILED}"
            + ("&error_code__isnull=True" if code is None else f"&error_code={code}"),
        )
        for code, n in sorted(by_code.items(), key=lambda item: (-item[1], item[0] or 0))[
            :TOP_CODES
        ]
    ]
    return {
        "chart": chart,
        "totals": totals,
        "rows": [
            DayRow(day, (columns["sent"][i], columns["delivered"][i], columns["failed"][i]))
            for i, day in enumerate(days)
        ],
    }, codes


def _opt_outs(days: list[date], start: datetime, zone: tzinfo) -> dict[str, Any]:
    """Unsubscribes and suppressions per day, by when each began (``created_at``, lifted
    ones included: they happened): 2 queries."""
    unsubscribed = _per_day(
        UnsubscribedContact.objects.filter(created_at__gte=start), "created_at", days, zone
    )
    suppressed = _per_day(
        SuppressedContact.objects.filter(created_at__gte=start), "created_at", days, zone
    )
    totals = {"unsubscribed": sum(unsubscribed), "suppressed": sum(suppressed)}
    chart = None
    if any(totals.values()):
        short, long = _chart_labels(days)
        chart = bar_chart(
            short,
            [
                Series("unsubscribed", "bar-unsubscribed", unsubscribed),
                Series("suppressed", "bar-suppressed", suppressed),
            ],
            summary=(
                f"Opt-outs per day over the last {DAYS} days: {totals['unsubscribed']} "
                f"unsubscribed, {totals['suppressed']} suppressed"
            ),
            long_labels=long,
            css_id="chart-opt-outs",
        )
    return {
        "chart": chart,
        "totals": totals,
        "rows": [
            DayRow(day, (unsubscribed[i], suppressed[i]))
            for i, day in enumerate(days)
            if unsubscribed[i] or suppressed[i]
        ],
    }


def _as_date(value: date | datetime | str) -> date:
    # A UNION's columns come back untyped on SQLite: the day as text.
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


@register.simple_tag(takes_context=True)
def activity_dashboard(context: template.Context) -> dict[str, Any]:
    """The last 30 days at a glance, each part for those who may see what it counts.

    At most 6 queries whatever the history: deliveries sent and delivered per day (one
    UNION), failures per day and code, unsubscribes per day, suppressions per day, and
    the count of unhandled replies.
    """
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_active or not user.is_staff:
        return {}
    zone = timezone.get_default_timezone()
    today = timezone.localdate(timezone.now(), zone)
    days = [today - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    start = datetime.combine(days[0], time.min, tzinfo=zone)
    found: dict[str, Any] = {"days": DAYS}
    if user.has_perm("messaging.view_delivery"):
        found["deliveries"], found["failure_codes"] = _deliveries(days, start, zone)
    if user.has_perm("suppression.view_unsubscribedcontact") and user.has_perm(
        "suppression.view_suppressedcontact"
    ):
        found["opt_outs"] = _opt_outs(days, start, zone)
    if user.has_perm("messaging.view_inboundmessage"):
        found["replies"] = {
            "count": InboundMessage.objects.filter(
                handled=False, kind=InboundMessage.Kind.REPLY
            ).count(),
            "url": reverse("admin:messaging_inboundmessage_changelist")
            + f"?handled__exact=0&kind__exact={InboundMessage.Kind.REPLY}",
        }
    return found if len(found) > 1 else {}
