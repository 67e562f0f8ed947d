"""What a blast will be before it exists: the compose page's pre-flight panel.

``blast_preflight`` answers, for a text and an audience, what the manager must know
before confirming: who gets it after exclusions (and why the others do not), what one
message looks like for a real recipient, how many segments the longest message costs
and in which encoding, the cost and the time to send, and what looks wrong. The page
shows it as the manager types; the confirm step shows it once more, fresh.

Everything here reads; nothing writes. It answers a 100k-member audience in a fixed
number of queries: counts are SQL aggregates, and the longest message is found by
rendering only the recipients who could make it longest (the longest names, and every
name with a character outside ASCII, which is where a non-GSM character can hide).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Exists, F, Func, IntegerField, OuterRef, Q, QuerySet
from django.db.models.functions import Length

from events.models import Event, Registration
from members.models import Member, Tag
from messaging.segments import MAX_CHARACTERS, SegmentInfo, segment_info
from messaging.services.creating import (
    BlastError,
    blast_check_audience,
    blast_check_fit,
    blast_check_text,
    community_members,
)
from messaging.sms import Outcome, get_backend
from messaging.templating import PLACEHOLDERS, Template, recipient_values
from messaging.twilio_errors import describe
from smsadmin.models import User
from suppression.models import SuppressedContact, UnsubscribedContact
from suppression.services import blocked_phones

T = TypeVar("T")

# Names rendered to find the longest message: the longest few per pool, and the
# distinct names with a character outside ASCII, up to this many.
LONGEST_NAMES = 10
UNUSUAL_NAMES = 2000

# "Reply STOP to opt out", "Text STOP to stop", "STOP to unsubscribe", ...
OPT_OUT_WORDING = re.compile(r"\bstop\b", re.IGNORECASE)


class _Bytes(Func):
    """A text's length in bytes (UTF-8): larger than its length in characters exactly
    when it holds a character outside ASCII."""

    function = "OCTET_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra):  # type: ignore[no-untyped-def]
        return self.as_sql(
            compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))", **extra
        )


@dataclass(frozen=True)
class Audience:
    community: bool = False
    event_ids: tuple[int, ...] = ()
    tag_ids: tuple[int, ...] = ()

    @classmethod
    def of(
        cls, *, community: bool, event_ids: Iterable[int] = (), tag_ids: Iterable[int] = ()
    ) -> Audience:
        return cls(community, tuple(sorted(set(event_ids))), tuple(sorted(set(tag_ids))))

    def members(self) -> QuerySet[Member]:
        if not self.community:
            return Member.objects.none()
        return community_members(tag_ids=self.tag_ids)

    def registrations(self) -> QuerySet[Registration]:
        return Registration.objects.filter(event_id__in=self.event_ids)

    def describe(self) -> str:
        """``Community members tagged volunteers or north side, and registrations of ...``"""
        parts = []
        if self.community:
            tags = list(Tag.objects.filter(pk__in=self.tag_ids).values_list("name", flat=True))
            parts.append(
                "community members tagged " + " or ".join(tags) if tags else "community members"
            )
        events = [str(event) for event in Event.objects.filter(pk__in=self.event_ids)]
        if events:
            parts.append("registrations of " + ", ".join(events))
        text = ", and ".join(parts)
        return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Breakdown:
    """Who the audience holds, and who of them gets the message."""

    members: int  # active members (with a chosen tag, when tags narrow them)
    registrations: int  # registrations of the chosen events
    inactive: int  # members left out because they are inactive
    duplicates: int  # phones in more than one place: texted once
    unsubscribed: int  # said STOP (or were unsubscribed): not texted
    suppressed: int  # the number failed for good: not texted
    recipients: int  # who will be texted

    @property
    def people(self) -> int:
        """Distinct phones in the audience, excluded ones included."""
        return self.recipients + self.unsubscribed + self.suppressed


def audience_breakdown(*, audience: Audience) -> Breakdown:
    members = audience.members()
    registrations = audience.registrations()
    member_count = members.count()
    registration_count = registrations.count() if audience.event_ids else 0
    inactive = 0
    if audience.community:
        others = Member.objects.filter(is_active=False)
        if audience.tag_ids:
            others = others.filter(tags__in=audience.tag_ids).distinct()
        if audience.event_ids:
            # Registered for a chosen event, they are texted all the same.
            others = others.exclude(phone__in=registrations.values("phone"))
        inactive = others.count()

    # The opt-out lists are small and the audience large: walk the lists and probe the
    # audience by phone (members' phones are unique and indexed; registrations' too).
    phones_in = Q()
    if audience.community:
        phones_in |= Q(Exists(members.filter(phone=OuterRef("phone"))))
    if audience.event_ids:
        phones_in |= Q(Exists(registrations.filter(phone=OuterRef("phone"))))
    if not (audience.community or audience.event_ids):
        return Breakdown(0, 0, inactive, 0, 0, 0, 0)

    if audience.event_ids:
        # Registrations' distinct phones that are not also in the community audience.
        others = registrations.order_by().values("phone").distinct()
        if audience.community:
            others = others.exclude(Exists(members.filter(phone=OuterRef("phone"))))
        distinct = member_count + others.count()
    else:
        distinct = member_count  # a member's phone is unique

    unsubscribed = (
        UnsubscribedContact.objects.filter(phones_in, lifted=False)
        .values("phone")
        .distinct()
        .count()
    )
    # An opt-out wins over a suppression, as when the blast is created.
    suppressed = (
        SuppressedContact.objects.filter(phones_in, lifted=False)
        .exclude(Exists(UnsubscribedContact.objects.filter(lifted=False, phone=OuterRef("phone"))))
        .values("phone")
        .distinct()
        .count()
    )
    return Breakdown(
        members=member_count,
        registrations=registration_count,
        inactive=inactive,
        duplicates=member_count + registration_count - distinct,
        unsubscribed=unsubscribed,
        suppressed=suppressed,
        recipients=distinct - unsubscribed - suppressed,
    )


@dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    event_id: int | None = None

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


def _blocked() -> Q:
    return Q(phone__in=UnsubscribedContact.objects.filter(lifted=False).values("phone")) | Q(
        phone__in=SuppressedContact.objects.filter(lifted=False).values("phone")
    )


def _first_recipient(audience: Audience) -> Person | None:
    """The first person the blast would text, in the order rows are written."""
    for event_id in audience.event_ids:
        row = (
            Registration.objects.filter(event_id=event_id)
            .exclude(_blocked())
            .order_by("id")
            .values_list("first_name", "last_name")
            .first()
        )
        if row:
            return Person(*row, event_id=event_id)
    if audience.community:
        row = (
            audience.members()
            .exclude(_blocked())
            .order_by("id")
            .values_list("first_name", "last_name")
            .first()
        )
        if row:
            return Person(*row)
    return None


# ASCII characters that are not plain GSM-7: the extension table's (two septets each),
# and those GSM-7 lacks altogether (backtick, tab), which make a message UCS-2.
_COSTLY_ASCII = "`^{}[]~|\\\t"


def _costly(field: str) -> Q:
    """``field`` holds a character that may cost more than its length says."""
    q = Q(**{f"{field}_bytes__gt": F(f"{field}_chars")})
    for char in _COSTLY_ASCII:
        q |= Q(**{f"{field}__contains": char})
    return q


def _candidates(audience: Audience, template: Template) -> tuple[list[Person], bool]:
    """The people whose message can be the longest; False when there were more unusual
    names than are looked at (the answer is then a lower bound).

    Longest is weighed by how often the text uses each name: a text with {first_name}
    twice grows twice with the first name. Unusual names (any character outside ASCII,
    or an ASCII one that costs more in GSM-7) are all looked at, up to UNUSUAL_NAMES."""
    uses = [name for _, name in template.pieces if name]
    first_weight = uses.count("first_name") + uses.count("full_name")
    last_weight = uses.count("last_name") + uses.count("full_name")
    pools: list[tuple[QuerySet, int | None]] = [
        (Registration.objects.filter(event_id=event_id), event_id)
        for event_id in audience.event_ids
    ]
    if audience.community:
        pools.append((audience.members(), None))
    people: dict[Person, None] = {}
    complete = True
    for rows, event_id in pools:
        sized = rows.annotate(
            first_name_chars=Length("first_name"),
            last_name_chars=Length("last_name"),
            first_name_bytes=_Bytes("first_name"),
            last_name_bytes=_Bytes("last_name"),
            weighed=F("first_name_chars") * first_weight + F("last_name_chars") * last_weight,
        )
        longest = sized.order_by("-weighed", "id").values_list("first_name", "last_name")
        for first, last in longest[:LONGEST_NAMES]:
            people[Person(first, last, event_id)] = None
        unusual = (
            sized.filter(_costly("first_name") | _costly("last_name"))
            .order_by()
            .values_list("first_name", "last_name")
            .distinct()[: UNUSUAL_NAMES + 1]
        )
        found = list(unusual)
        complete = complete and len(found) <= UNUSUAL_NAMES
        for first, last in found[:UNUSUAL_NAMES]:
            people[Person(first, last, event_id)] = None
    return list(people), complete


def _empty_fields(audience: Audience, template: Template) -> dict[str, int]:
    """How many people a placeholder of the text would be empty for."""
    fields = template.fields
    person = {"first_name", "last_name", "full_name"} & fields
    counts: dict[str, int] = {}
    if person:
        empty = {
            "first_name": Q(first_name=""),
            "last_name": Q(last_name=""),
            "full_name": Q(first_name="", last_name=""),
        }
        wanted = {name: Count("pk", filter=empty[name]) for name in person}
        pools = [audience.registrations()] if audience.event_ids else []
        if audience.community:
            pools.append(audience.members())
        for rows in pools:
            for name, n in rows.aggregate(**wanted).items():
                counts[name] = counts.get(name, 0) + n
    if "event_location" in fields and audience.event_ids:
        without = Event.objects.filter(pk__in=audience.event_ids, location="")
        counts["event_location"] = Registration.objects.filter(event__in=without).count()
    return {name: n for name, n in counts.items() if n}


def render_for(template: Template, person: Person, events: dict[int, Event]) -> str:
    event = events.get(person.event_id) if person.event_id else None
    return template.render(
        recipient_values(
            first_name=person.first_name,
            last_name=person.last_name,
            event_name=event.name if event else "",
            event_starts_at=event.starts_at if event else None,
            event_location=event.location if event else "",
        )
    )


@dataclass
class Preflight:
    """Everything the compose panel shows. ``errors`` maps a form field (``body``,
    ``audience``) to what stops the blast; with errors the rest may be missing."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    text: SegmentInfo | None = None  # the text as typed, placeholders and all
    longest: SegmentInfo | None = None  # the longest message anyone in the audience gets
    longest_for: str = ""
    longest_complete: bool = True
    unusual_names: list[str] = field(default_factory=list)  # names that force UCS-2
    preview: str = ""
    preview_for: str = ""
    breakdown: Breakdown | None = None
    audience_text: str = ""
    cost: Decimal | None = None
    cost_at_most: Decimal | None = None
    send_seconds: float | None = None
    warnings: list[str] = field(default_factory=list)
    needs_approval: bool = False
    approval_above: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def add_error(self, where: str, message: str) -> None:
        self.errors.setdefault(where, []).append(message)


def approval_needed(*, user: User | None, recipients: int) -> bool:
    """A Social manager's blast to more people than BLAST_APPROVAL_THRESHOLD waits for an
    Admin. Those who may approve blasts send without waiting."""
    threshold = approval_threshold(user=user)
    return threshold is not None and recipients > threshold


def approval_threshold(*, user: User | None) -> int | None:
    threshold = settings.BLAST_APPROVAL_THRESHOLD
    if threshold is None or (user is not None and user.has_perm("messaging.approve_blast")):
        return None
    return int(threshold)


# How long one compose form reuses what it learned about its audience (counts, names)
# while the manager types; the confirm step always looks afresh.
PROFILE_SECONDS = 60
_MISS = object()


class _Memo:
    """What a compose form learned about its audience, kept for PROFILE_SECONDS under
    the form's key: only the text changes from one keystroke to the next."""

    def __init__(self, key: str | None, audience: Audience) -> None:
        who = (
            f"{int(audience.community)}-{'.'.join(map(str, audience.event_ids))}-"
            f"{'.'.join(map(str, audience.tag_ids))}"
        )
        digest = hashlib.sha1(who.encode(), usedforsecurity=False).hexdigest()
        self.prefix = f"compose:{key}:{digest}" if key else None

    def __call__(self, name: str, compute: Callable[[], T]) -> T:
        if self.prefix is None:
            return compute()
        full = f"{self.prefix}:{name}"
        hit = cache.get(full, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        value = compute()
        cache.set(full, value, PROFILE_SECONDS)
        return value


def blast_preflight(
    *, body: str, audience: Audience, user: User | None = None, reuse_for: str | None = None
) -> Preflight:
    """The compose panel for ``body`` sent to ``audience``, as it stands now.

    ``reuse_for`` (the compose form's key) lets the answers about the audience be reused
    for a minute by the same form, as the manager types; without it, all is fresh."""
    memo = _Memo(reuse_for, audience)
    result = Preflight()
    result.text = segment_info(text=body)
    template: Template | None = None
    events: list[Event] = []
    # Each part is checked on its own, so a stray brace does not hide who gets the text.
    if body.strip():
        try:
            template = blast_check_text(body=body)
            blast_check_fit(template=template, community=audience.community)
        except BlastError as exc:
            result.add_error("body", str(exc))
            template = None
    try:
        events = blast_check_audience(
            community=audience.community, event_ids=audience.event_ids, tag_ids=audience.tag_ids
        )
    except BlastError as exc:
        result.add_error("audience", str(exc))
        return result

    result.audience_text = memo("describe", audience.describe)
    breakdown = memo("breakdown", lambda: audience_breakdown(audience=audience))
    result.breakdown = breakdown
    if breakdown.recipients == 0:
        result.add_error(
            "audience",
            "Nobody to send to: everyone in this audience is excluded."
            if breakdown.people
            else "Nobody to send to: the chosen audience has no one in it.",
        )
    if template is None:
        return result

    by_id = {event.pk: event for event in events}
    first = memo("first", lambda: _first_recipient(audience))
    if first is not None:
        result.preview = render_for(template, first, by_id)
        result.preview_for = first.name or "a recipient with no name"

    person_fields = template.fields & set(PLACEHOLDERS) - {"org_name"}
    if person_fields:
        uses = [name for _, name in template.pieces if name]
        people, result.longest_complete = memo(
            f"candidates:{uses.count('first_name')}:{uses.count('last_name')}:"
            f"{uses.count('full_name')}",
            lambda: _candidates(audience, template),
        )
    else:
        people = [first] if first else []
    longest: tuple[int, int] = (-1, -1)
    for person in people:
        info = segment_info(text=render_for(template, person, by_id))
        if (info.segments, info.units) > longest:
            longest = (info.segments, info.units)
            result.longest, result.longest_for = info, person.name
        # Names that switch a GSM-7 text to UCS-2 for their own message.
        names = result.unusual_names
        unusual = info.encoding == "UCS-2" and not result.text.non_gsm and person.name
        if unusual and len(names) < 5 and person.name not in names:
            names.append(person.name)
    if result.longest is None:
        result.longest = segment_info(text=result.preview or body)

    if result.longest.too_long:
        who = f" (for {result.longest_for})" if result.longest_for else ""
        result.add_error(
            "body",
            f"The longest message{who} is {result.longest.characters:,} characters; Twilio "
            f"takes at most {MAX_CHARACTERS:,}. Shorten it by "
            f"{result.longest.characters - MAX_CHARACTERS:,}.",
        )

    per_segment = Decimal(str(settings.SMS_COST_PER_SEGMENT))
    typical = segment_info(text=result.preview).segments if result.preview else 1
    result.cost = per_segment * typical * breakdown.recipients
    result.cost_at_most = per_segment * result.longest.segments * breakdown.recipients
    rate = float(settings.SMS_RATE_PER_SECOND)
    result.send_seconds = breakdown.recipients / rate if rate > 0 else None

    if audience.community and not OPT_OUT_WORDING.search(body):
        result.warnings.append(
            'Community blasts should say how to opt out, for example "Reply STOP to opt out."'
        )
    empty = memo(
        "empty:" + ",".join(sorted(template.fields)), lambda: _empty_fields(audience, template)
    )
    for name, n in sorted(empty.items()):
        result.warnings.append(
            f"{{{name}}} is empty for {n:,} recipient{'s' if n != 1 else ''}: "
            "they get the text without it."
        )
    result.approval_above = approval_threshold(user=user)
    result.needs_approval = approval_needed(user=user, recipients=breakdown.recipients)
    return result


def blast_send_test(*, user: User, body: str, audience: Audience) -> str:
    """Text the message, as the first recipient would get it, to ``user``'s own mobile.

    Returns the number it went to. Raises BlastError (``field`` empty) when the user has
    no mobile number, their number opted out, or Twilio refused it. Nothing is stored
    but what the SMS backend keeps (the outbox, or Twilio's log).
    """
    phone = user.mobile_phone
    if not phone:
        raise BlastError(
            "You have no mobile number on your profile. An Admin can add it under "
            "Users (Mobile phone); then send the test again."
        )
    template = blast_check_text(body=body)
    events = list(Event.objects.filter(pk__in=audience.event_ids))
    if blocked_phones(phones=[phone]):
        raise BlastError(
            f"Your number {phone} is on the opt-out or suppression list, so nothing is "
            "sent to it, tests included."
        )
    person = _first_recipient(audience) or Person(user.first_name, user.last_name)
    text = render_for(template, person, {event.pk: event for event in events})
    if len(text) > MAX_CHARACTERS:
        raise BlastError(
            f"The message is {len(text):,} characters; Twilio takes at most {MAX_CHARACTERS:,}.",
            field="body",
        )
    result = get_backend().send(to=phone, body=text, status_callback=None)
    if result.outcome != Outcome.SENT:
        raise BlastError(f"The test did not go out: {describe(result.error_code)}.")
    return phone


def characters_named(info: SegmentInfo) -> list[tuple[str, str, str]]:
    """Each character that made ``info`` UCS-2: (character, its Unicode name, the GSM-7
    text that can replace it, or "")."""
    named = []
    for char in info.non_gsm:
        name = unicodedata.name(char, f"U+{ord(char):04X}").lower()
        named.append((char, name, info.replacements.get(char, "")))
    return named
