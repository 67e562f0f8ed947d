"""CSV export of any admin list, as one admin action, safe to open in a spreadsheet.

The action is registered site-wide but disabled (smsadmin/admin.py), so a ModelAdmin
turns it on with one word: ``actions = ["export_csv"]``. Columns per model live here,
so no admin needs code of its own to export.

Every CSV the product writes (these exports, the blast page's recipients, the import's
problem report) goes through ``csv_writer``: each cell quoted and passed through
``escape_cell``, the one formula guard.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any, Protocol

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db.models import ManyToManyField, Model, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection);
# an apostrophe just before it makes it plain text (the OWASP convention). Tab and CR
# also start formulas in some spreadsheets once they trim the cell; spreadsheets in East
# Asian locales read the full-width (and small) forms as their ASCII twins.
FORMULA_CHARS = "=+-@\t\r\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b"
# A reader set to another separator (";" in much of Europe, tab) starts a new cell after
# each of these, and one that ignores quoting starts a new row after a line break.
_CELL_BREAKS = ";,\t\r\n"
# What a spreadsheet may trim before it looks at a cell's first character: Unicode
# spaces (the no-break space too), zero-width characters, and quotes.
_SKIPPED = "".join(
    sorted(
        {chr(c) for c in range(0x3001) if chr(c).isspace()} - set(_CELL_BREAKS)
        | set("\"'\u200b\u200c\u200d\u2060\ufeff")
    )
)
_SEGMENT_START = f"(?:^|(?<=[{re.escape(_CELL_BREAKS)}]))"
_BEFORE_FORMULA = f"(?=[{re.escape(FORMULA_CHARS)}])"
# Where a formula could start: the end of what is skipped at the start of the cell or
# after a break, when a formula character follows.
_GUARD = re.compile(f"{_SEGMENT_START}[{re.escape(_SKIPPED)}]*{_BEFORE_FORMULA}")
# Most cells hold no formula character at all: they skip the guard's slower search.
_ANY_FORMULA_CHAR = re.compile(f"[{re.escape(FORMULA_CHARS)}]")
# The apostrophe the guard put there.
_GUARDED = re.compile(f"{_SEGMENT_START}([{re.escape(_SKIPPED)}]*)'{_BEFORE_FORMULA}")

# (header, lookup) per model. Headers the importer recognises (first name, phone, ...)
# make an export of members or registrations importable again as it is.
EXPORT_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "members.member": [
        ("first name", "first_name"),
        ("last name", "last_name"),
        ("phone", "phone"),
        ("email", "email"),
        ("active", "is_active"),
        ("notes", "notes"),
        ("tags", "tags"),
        ("created", "created_at"),
        ("updated", "updated_at"),
        ("consent", "consent_source"),
        ("consent given", "consent_at"),
        ("consent evidence", "consent_evidence"),
        ("consent recorded by", "consent_by__username"),
    ],
    "events.registration": [
        ("first name", "first_name"),
        ("last name", "last_name"),
        ("phone", "phone"),
        ("event id", "event_id"),
        ("event", "event__name"),
        ("event starts", "event__starts_at"),
        ("tags", "tags"),
        ("registered", "created_at"),
        ("consent", "consent_source"),
        ("consent given", "consent_at"),
        ("consent evidence", "consent_evidence"),
        ("consent recorded by", "consent_by__username"),
    ],
    "messaging.delivery": [
        ("blast id", "blast_id"),
        ("blast", "blast__name"),
        ("phone", "phone"),
        ("first name", "first_name"),
        ("last name", "last_name"),
        ("status", "status"),
        ("skip reason", "skip_reason"),
        ("error code", "error_code"),
        ("error message", "error_message"),
        ("twilio sid", "twilio_sid"),
        ("twilio status", "twilio_status"),
        ("attempts", "attempts"),
        ("sent", "sent_at"),
        ("delivered", "delivered_at"),
    ],
    "suppression.unsubscribedcontact": [
        ("phone", "phone"),
        ("source", "source"),
        ("reason", "reason"),
        ("evidence", "evidence"),
        ("error code", "error_code"),
        ("message sid", "message_sid"),
        ("delivery id", "delivery_id"),
        ("blast id", "blast_id"),
        ("added by", "created_by__username"),
        ("unsubscribed", "created_at"),
        ("re-subscribed", "lifted"),
        ("re-subscribed at", "lifted_at"),
        ("re-subscribed how", "lift_source"),
        ("re-subscribed by", "lifted_by__username"),
        ("re-subscribe reason", "lift_reason"),
        ("re-subscribe evidence", "lift_evidence"),
    ],
    "suppression.suppressedcontact": [
        ("phone", "phone"),
        ("reason", "reason"),
        ("error code", "error_code"),
        ("error meaning", "error_meaning"),
        ("failures", "failure_count"),
        ("first failed", "first_failed_at"),
        ("last failed", "last_failed_at"),
        ("message sid", "message_sid"),
        ("delivery id", "delivery_id"),
        ("blast id", "blast_id"),
        ("suppressed", "created_at"),
        ("lifted", "lifted"),
        ("lifted by", "lifted_by__username"),
        ("lifted at", "lifted_at"),
        ("lift reason", "lift_reason"),
    ],
}


def escape_cell(value: object) -> str:
    """``value`` as CSV cell text that no spreadsheet runs as a formula.

    Whatever the reader's separator and trimming: a formula character at the start of
    the cell, or after a ``;``, ``,``, tab or line break inside it, once spaces and
    quotes before it are skipped, gets an apostrophe just before it
    (``Bob;=1+1`` -> ``Bob;'=1+1``, ``+1201...`` -> ``'+1201...``).
    ``unescape_cell`` takes exactly those apostrophes out again.
    """
    text = format_value(value)
    if _ANY_FORMULA_CHAR.search(text) is None:
        return text
    return _GUARD.sub(_apostrophe_after, text)


def unescape_cell(text: str) -> str:
    """Undo ``escape_cell``, so an export imports back as it was."""
    if "'" not in text:
        return text
    return _GUARDED.sub(_without_apostrophe, text)


# Functions, not template strings: re.sub calls them about twice as fast.
def _apostrophe_after(match: re.Match[str]) -> str:
    return match.group(0) + "'"


def _without_apostrophe(match: re.Match[str]) -> str:
    return match.group(1)


class _Writer(Protocol):
    def write(self, value: str, /) -> Any: ...


class SafeCsvWriter:
    """csv.writer that quotes every cell and passes each through ``escape_cell``."""

    def __init__(self, out: _Writer) -> None:
        self._writer = csv.writer(out, quoting=csv.QUOTE_ALL)

    def writerow(self, values: Iterable[object]) -> Any:
        return self._writer.writerow([escape_cell(value) for value in values])


def csv_writer(out: _Writer) -> SafeCsvWriter:
    """The writer of every CSV the product writes: ``out`` is a text file."""
    return SafeCsvWriter(out)


def format_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        if timezone.is_aware(value):
            value = timezone.localtime(value)
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def export_columns(model: type[Model]) -> list[tuple[str, str]]:
    columns = EXPORT_COLUMNS.get(model._meta.label_lower)
    if columns is not None:
        return columns
    return [(f.verbose_name, f.attname) for f in model._meta.concrete_fields]


class _Echo:
    """csv.writer wants a file; this one hands each written line straight back."""

    def write(self, value: str) -> str:
        return value


def csv_rows(queryset: QuerySet, columns: list[tuple[str, str]]) -> Iterator[str]:
    """The export as CSV text, one line at a time, reading the table in chunks."""
    writer = csv_writer(_Echo())
    # Excel reads a file without a BOM as Windows-1252 and mangles accents.
    yield "\ufeff" + writer.writerow([header for header, _ in columns])
    lookups = [lookup for _, lookup in columns]
    many = [_many_to_many(queryset.model, lookup) for lookup in lookups]
    if not any(many):
        for row in queryset.values_list(*lookups).iterator(chunk_size=2000):
            yield writer.writerow(row)
        return
    # A many-to-many column (tags) would repeat the row once per tag in values_list:
    # read the rows by chunk and each chunk's names in one more query per column.
    plain = [lookup for lookup, m2m in zip(lookups, many, strict=True) if m2m is None]
    rows = queryset.values_list("pk", *plain).iterator(chunk_size=_EXPORT_CHUNK)
    while chunk := list(islice(rows, _EXPORT_CHUNK)):
        ids = [row[0] for row in chunk]
        names = [_names_by_pk(m2m, ids) if m2m else None for m2m in many]
        for pk, *values in chunk:
            cells = iter(values)
            out = [
                "; ".join(joined.get(pk, ())) if joined is not None else next(cells)
                for joined in names
            ]
            yield writer.writerow(out)


_EXPORT_CHUNK = 2000


def _many_to_many(model: type[Model], lookup: str) -> ManyToManyField | None:
    try:
        field = model._meta.get_field(lookup)
    except FieldDoesNotExist:
        return None
    return field if isinstance(field, ManyToManyField) else None


def _names_by_pk(field: ManyToManyField, ids: list[Any]) -> dict[Any, list[str]]:
    """``str()`` of the related objects of each row in ``ids``, in their model's order."""
    through = field.remote_field.through
    source, target = field.m2m_field_name(), field.m2m_reverse_field_name()
    related = field.related_model._meta  # type: ignore[union-attr]
    order = [f"{target}__{name}" for name in related.ordering] or [f"{target}_id"]
    names: dict[Any, list[str]] = {}
    rows = (
        through.objects.filter(**{f"{source}_id__in": ids}).select_related(target).order_by(*order)
    )
    for link in rows:
        names.setdefault(getattr(link, f"{source}_id"), []).append(str(getattr(link, target)))
    return names


@admin.action(description="Export selected to CSV", permissions=["view"])
def export_csv(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> StreamingHttpResponse:
    model = queryset.model
    response = StreamingHttpResponse(
        csv_rows(queryset, export_columns(model)), content_type="text/csv; charset=utf-8"
    )
    name = f"{model._meta.verbose_name_plural}-{timezone.localdate():%Y-%m-%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name.replace(" ", "-")}"'
    return response
