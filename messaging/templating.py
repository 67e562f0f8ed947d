"""Blast text with {placeholders}, filled in per recipient.

Staff write the text, so it is never given to Django's template engine or to
``str.format`` (which would let ``{first_name.__class__}`` reach into Python objects):
the text is split with ``string.Formatter().parse`` and only plain names from a fixed
list are filled in. ``{{`` and ``}}`` stand for literal braces.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

PERSON_FIELDS = ("first_name", "last_name", "full_name", "org_name")
EVENT_FIELDS = ("event_name", "event_date", "event_location")
PLACEHOLDERS = PERSON_FIELDS + EVENT_FIELDS


class TemplateError(ValueError):
    """The text cannot be sent as written; the message says what to fix."""


@dataclass(frozen=True)
class Template:
    text: str
    pieces: tuple[tuple[str, str | None], ...]

    @property
    def fields(self) -> set[str]:
        return {name for _, name in self.pieces if name}

    @property
    def uses_event_fields(self) -> bool:
        return bool(self.fields & set(EVENT_FIELDS))

    def render(self, values: dict[str, str]) -> str:
        return "".join(
            literal + (values.get(name, "") if name else "") for literal, name in self.pieces
        )


def template_parse(text: str) -> Template:
    """Check ``text`` and return it ready to render; raise TemplateError if it is wrong."""
    if not text or not text.strip():
        raise TemplateError("The message is empty.")
    pieces: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(
            f"The message has a stray brace ({exc}). Write {{{{ or }}}} for a literal brace."
        ) from None
    for literal, name, spec, conversion in parsed:
        if name is None:
            pieces.append((literal, None))
            continue
        shown = (
            "{"
            + name
            + (f"!{conversion}" if conversion else "")
            + (f":{spec}" if spec else "")
            + "}"
        )
        if not name:
            raise TemplateError(
                "The message has an empty placeholder {}. "
                f"Use one of: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}."
            )
        if conversion or spec or name not in PLACEHOLDERS:
            raise TemplateError(
                f"Unknown placeholder {shown}. "
                f"Use one of: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}."
            )
        pieces.append((literal, name))
    return Template(text=text, pieces=tuple(pieces))


def format_event_date(starts_at: datetime) -> str:
    local = timezone.localtime(starts_at)
    hour = local.strftime("%I").lstrip("0")
    return f"{local:%a %b} {local.day} at {hour}:{local:%M %p}"


def recipient_values(
    *,
    first_name: str,
    last_name: str,
    event_name: str = "",
    event_starts_at: datetime | None = None,
    event_location: str = "",
) -> dict[str, str]:
    return {
        "first_name": first_name,
        "last_name": last_name,
        "full_name": f"{first_name} {last_name}".strip(),
        "org_name": settings.ORG_NAME,
        "event_name": event_name,
        "event_date": format_event_date(event_starts_at) if event_starts_at else "",
        "event_location": event_location,
    }
