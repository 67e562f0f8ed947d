"""Who must not be texted: opt-outs (unsubscribed) and numbers that keep failing (suppressed)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from smsadmin.models import User
from suppression.models import SuppressedContact, UnsubscribedContact


def blocked_phones(*, phones: Iterable[str]) -> dict[str, str]:
    """Of ``phones``, those that must get nothing, mapped to 'unsubscribed' or 'suppressed'.

    Queries in batches so it serves a 100k-recipient blast without a huge IN list.
    """
    blocked: dict[str, str] = {}
    batch: list[str] = []

    def flush() -> None:
        for phone in SuppressedContact.objects.filter(phone__in=batch, lifted=False).values_list(
            "phone", flat=True
        ):
            blocked[phone] = "suppressed"
        # An opt-out wins over a suppression: it is the person's own wish.
        for phone in UnsubscribedContact.objects.filter(phone__in=batch).values_list(
            "phone", flat=True
        ):
            blocked[phone] = "unsubscribed"
        batch.clear()

    for phone in phones:
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
    return Q(Exists(UnsubscribedContact.objects.filter(phone=OuterRef(phone_field)))) | Q(
        Exists(SuppressedContact.objects.filter(phone=OuterRef(phone_field), lifted=False))
    )


@transaction.atomic
def suppression_lift(*, suppressions: Iterable[SuppressedContact], user: User, reason: str) -> int:
    """Let blasts reach these numbers again; returns how many were lifted."""
    ids = [s.pk for s in suppressions]
    return SuppressedContact.objects.filter(pk__in=ids, lifted=False).update(
        lifted=True,
        lifted_by=user,
        lifted_at=timezone.now(),
        lift_reason=reason,
        updated_at=timezone.now(),
    )
