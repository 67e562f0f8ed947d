"""Filters for the compose pages: numbers, money and durations in plain words."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django import template
from django.conf import settings
from django.utils.html import escape

from messaging.segments import SegmentInfo
from messaging.services.composing import Breakdown
from messaging.services.composing import characters_named as _characters_named

register = template.Library()

SYMBOLS = {"USD": "$", "CAD": "CA$", "AUD": "A$", "EUR": "€", "GBP": "£"}


@register.filter
def intcomma_plain(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


@register.filter
def money(value: Decimal | float | None) -> str:
    if value is None:
        return ""
    currency = settings.SMS_COST_CURRENCY
    amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if amount == 0 and value:
        return f"less than {SYMBOLS.get(currency, currency + ' ')}0.01"
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{amount:,}" if symbol else f"{amount:,} {currency}"


@register.filter
def duration(seconds: float | None) -> str:
    """``under a minute``, ``about 3 minutes``, ``about 2 hours 10 minutes``."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours, minutes = divmod(minutes, 60)
    text = f"about {hours} hour{'s' if hours != 1 else ''}"
    return f"{text} {minutes} minute{'s' if minutes != 1 else ''}" if minutes else text


@register.filter
def left_out(breakdown: Breakdown) -> str:
    """``left out: 1 unsubscribed; 2 suppressed; 3 duplicates texted once``."""
    parts = []
    for n, words in (
        (breakdown.unsubscribed, "unsubscribed"),
        (breakdown.suppressed, "suppressed"),
        (breakdown.inactive, "inactive"),
    ):
        if n:
            parts.append(f"{n:,} {words}")
    if breakdown.duplicates:
        parts.append(
            f"{breakdown.duplicates:,} duplicate{'s' if breakdown.duplicates != 1 else ''} texted once"
        )
    return "left out: " + "; ".join(parts)


@register.filter
def characters_named(info: SegmentInfo) -> list[tuple[str, str, str]]:
    return _characters_named(info)


@register.filter
def json_attr(value: object) -> str:
    """JSON for a single-quoted HTML attribute."""
    return escape(json.dumps(value))


@register.filter
def local_time(moment: datetime | None) -> str:
    """``Thu Dec 24, 2026 18:00 EST (America/New_York)``: the organisation's time, named."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(settings.TIME_ZONE))
    return f"{local:%a %b} {local.day}, {local:%Y %H:%M %Z} ({settings.TIME_ZONE})"


@register.filter
def before_words(delta: timedelta | None) -> str:
    """``1 day before``, ``2 hours before``, ``90 minutes before``."""
    if delta is None:
        return ""
    minutes = int(delta.total_seconds() // 60)
    for size, word in ((7 * 24 * 60, "week"), (24 * 60, "day"), (60, "hour")):
        if minutes >= size and minutes % size == 0:
            n = minutes // size
            return f"{n} {word}{'s' if n != 1 else ''} before"
    return f"{minutes} minute{'s' if minutes != 1 else ''} before"
