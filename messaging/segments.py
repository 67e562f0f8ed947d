"""How many SMS segments a text costs, and which characters make it dearer.

This is the server's answer for the compose page: the browser may estimate, but what staff are
shown before sending comes from here. The rules are the ones Twilio and carriers apply:

- A text made only of GSM 03.38 characters goes out as GSM-7: 160 septets in one part, 153 per
  part once it is split (the other 7 hold the part header). Extension-table characters are an
  escape plus a character, so they count two, and the pair is never split across parts.
- One character outside GSM-7 sends the whole text as UCS-2: 70 UTF-16 units in one part, 67 per
  part. A character outside the Basic Multilingual Plane (most emoji) is a surrogate pair, two
  units, and the pair is never split across parts.
- Twilio refuses a Body longer than 1,600 characters (error 21617, "The concatenated message
  body exceeds the 1600 character limit"). This module only reports it (``too_long``); callers
  refuse such a text before a blast is created, so the limit is never hit at send time. It
  counts ``len(text)`` (code points); Twilio's error page hints that non-GSM characters may
  count for more, so a long emoji-heavy text could still be refused by Twilio.

Characters that merely look like GSM ones (curly quotes, dashes, no-break spaces) are the usual
reason a text ends up UCS-2; ``gsm_replace`` swaps them the way Twilio's Smart Encoding would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_CHARACTERS = 1600

# GSM 03.38 default alphabet, in table order (0x00-0x7F). 0x1B is the escape to the extension
# table, not a character of its own, so it is left out. Note $ is 0x02 and ¤ is 0x24, @ is 0x00
# and ¡ is 0x40: there is no backtick.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Extension table: each is sent as ESC + character, so it costs two septets.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM_SINGLE, GSM_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


def _lookalikes() -> dict[str, str]:
    table: dict[str, str] = {}

    def add(chars: str, replacement: str) -> None:
        table.update(dict.fromkeys(chars, replacement))

    # Double quotes: curly, angle, primes and fullwidth forms.
    add("\u201c\u201d\u201e\u201f\u00ab\u00bb\u02ba\u02ee\u2033\u275d\u275e\u301d\u301e\uff02", '"')
    # Apostrophes and single quotes, including the backtick and acute accent used as one.
    add("\u2018\u2019\u201a\u201b\u2032\u2035\u02b9\u02bb\u02bc\u02bd\u02c8\u00b4`\uff07", "'")
    add("\u2039", "<")
    add("\u203a", ">")
    # Hyphens, dashes and the minus sign.
    add("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d", "-")
    add("\u2026", "...")
    # No-break and typographic spaces.
    add("\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a", " ")
    add("\u202f\u205f\u3000", " ")
    # Invisible characters pasted from word processors and web pages: they show as nothing,
    # yet one of them alone would make the whole text UCS-2.
    add("\u200b\u200c\u200d\u2060\ufeff\u00ad", "")
    add("\u2044\u2215\uff0f", "/")
    add("\u02c6\uff3e", "^")
    add("\u02dc", "~")
    add("\u00bc", "1/4")
    add("\u00bd", "1/2")
    add("\u00be", "3/4")
    return table


# Look-alike -> GSM-7 text. Every replacement is itself GSM-7, so gsm_replace never has to loop.
LOOKALIKES: dict[str, str] = _lookalikes()


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # len(text): what Twilio's 1,600 limit counts
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int  # 0 for an empty text
    per_segment: int  # 160/153 (GSM-7) or 70/67 (UCS-2), by whether the text is split
    remaining: int  # units still free in the last segment before another one is needed
    non_gsm: list[str] = field(default_factory=list)  # distinct, in order of appearance
    replacements: dict[str, str] = field(default_factory=dict)  # those in non_gsm with one
    too_long: bool = False


def _gsm_cost(char: str) -> int:
    return 2 if char in GSM_EXTENSION else 1


def _ucs2_cost(char: str) -> int:
    # Outside the Basic Multilingual Plane, UTF-16 needs a surrogate pair.
    return 2 if ord(char) > 0xFFFF else 1


def _pack(costs: list[int], *, single: int, multi: int) -> tuple[int, int, int]:
    """(segments, per_segment, units used in the last segment).

    Parts are filled in order and a character that does not fit whole starts the next part, as
    carriers do: an ESC+char or a surrogate pair is never split, so a part may hold fewer than
    ``multi`` units and the count can exceed ceil(units / multi).
    """
    total = sum(costs)
    if total == 0:
        return 0, single, 0
    if total <= single:
        return 1, single, total
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return segments, multi, used


def segment_info(*, text: str) -> SegmentInfo:
    """Encoding, units and segments of ``text`` exactly as it would be sent."""
    non_gsm = list(dict.fromkeys(c for c in text if c not in GSM_BASIC and c not in GSM_EXTENSION))
    if non_gsm:
        encoding, costs = "UCS-2", [_ucs2_cost(c) for c in text]
        single, multi = UCS2_SINGLE, UCS2_MULTI
    else:
        encoding, costs = "GSM-7", [_gsm_cost(c) for c in text]
        single, multi = GSM_SINGLE, GSM_MULTI
    segments, per_segment, used = _pack(costs, single=single, multi=multi)
    return SegmentInfo(
        encoding=encoding,
        characters=len(text),
        units=sum(costs),
        segments=segments,
        per_segment=per_segment,
        remaining=per_segment - used,
        non_gsm=non_gsm,
        replacements={c: LOOKALIKES[c] for c in non_gsm if c in LOOKALIKES},
        too_long=len(text) > MAX_CHARACTERS,
    )


def gsm_replace(*, text: str) -> str:
    """``text`` with look-alikes swapped for GSM-7; other non-GSM characters are kept."""
    return "".join(LOOKALIKES.get(c, c) for c in text)
