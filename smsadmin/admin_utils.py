"""Pieces shared by every app's admin."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest

from smsadmin.phones import try_normalize_phone


class PhoneSearchMixin:
    """Searching '(201) 555-0123' finds the record stored as +12015550123.

    The admin's own search would compare the typed text with the stored E.164 and miss,
    so when the term reads as a phone number we also match it exactly (an indexed
    lookup, fast at any size).
    """

    phone_search_field = "phone"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        results, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        phone = try_normalize_phone(search_term)
        if phone:
            results = results | queryset.filter(**{self.phone_search_field: phone})
        return results, may_have_duplicates


class FastChangeList:
    """Large tables: no COUNT(*) of the whole table on every changelist."""

    show_full_result_count = False
    list_per_page = 100


def readonly_audit(*fields: str) -> tuple[str, ...]:
    return ("created_at", "updated_at", *fields)
