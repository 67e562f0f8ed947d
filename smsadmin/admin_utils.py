"""Pieces shared by every app's admin."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from smsadmin.phones import phone_display, try_normalize_phone

# A search term that is (part of) a phone number as people write one: digits with
# spaces, dashes, dots, slashes, brackets and a leading +. "Event 2024" is not one.
_PHONE_LIKE = re.compile(r"^\+?[\d\s().\-/]+$")
# Fewer digits than this would match most of the table.
MIN_PHONE_DIGITS = 3


class PhoneSearchMixin:
    """Searching any part of a number finds it: '555-0124', '5550124', '(201) 555' and
    '+1 201 555 0124' all find the record stored as +12015550124.

    The admin's own search compares the typed text with the stored E.164 and misses, so
    when the term reads as (part of) a phone number we also match its digits anywhere in
    the stored number (a scan of the phone column: quick enough at 100k rows), and a
    whole number written in any form ('0044 20 7946 0958') exactly.
    """

    phone_search_field = "phone"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        results, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        term = search_term.strip()
        if not _PHONE_LIKE.match(term):
            return results, may_have_duplicates
        field = self.phone_search_field
        match = Q()
        digits = re.sub(r"\D", "", term)
        if len(digits) >= MIN_PHONE_DIGITS:
            match |= Q(**{f"{field}__contains": digits})
        phone = try_normalize_phone(term)
        if phone:
            match |= Q(**{field: phone})
        if match:
            results = results | queryset.filter(match)
        return results, may_have_duplicates


def phone_column(field: str = "phone", description: str = "phone") -> Callable[[Any], str]:
    """A list_display column showing ``field`` as people read it ((201) 555-0123).

    Sorted by the stored number, and named after the field, so the page keeps its
    column-<field> and field-<field> classes.
    """

    def column(obj: Any) -> str:
        return phone_display(getattr(obj, field))

    column.__name__ = field
    return admin.display(description=description, ordering=field)(column)


class FastChangeList:
    """Large tables: no COUNT(*) of the whole table on every changelist."""

    show_full_result_count = False
    list_per_page = 100


def readonly_audit(*fields: str) -> tuple[str, ...]:
    return ("created_at", "updated_at", *fields)
