"""The admin index's starting point: compose, the latest blasts, those awaiting approval,
missed blasts, the next scheduled ones, and when the scheduler last ran.

A fixed number of queries whatever the number of blasts or rows: the recent blasts, one
GROUP BY of their rows by blast and status, the blasts waiting for approval, the missed
blasts, the next scheduled blasts, the next occurrences of repeating blasts, and the
scheduler's heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import template
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from messaging.models import Blast, Delivery, Recurrence
from messaging.services.repeating import local_time_in_words, scheduler_state
from messaging.views.blast import progress_figures

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
