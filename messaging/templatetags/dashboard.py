"""The admin index's starting point: compose, the latest blasts, and those awaiting approval.

Three queries whatever the number of blasts or rows: the recent blasts, one GROUP BY of
their rows by blast and status, and the blasts waiting for approval.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Count

from messaging.models import Blast, Delivery
from messaging.views.blast import progress_figures

register = template.Library()

RECENT = 8
AWAITING_SHOWN = 20


@register.simple_tag(takes_context=True)
def blast_dashboard(context: template.Context) -> dict[str, Any]:
    """What the index shows to a user who may view blasts; empty for anyone else."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("messaging.view_blast"):
        return {}
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
    return {
        "can_compose": user.has_perm("messaging.send_blast"),
        "recent": [(blast, progress_figures(counts[blast.pk])) for blast in recent],
        "awaiting": awaiting,
    }
