"""Texts people send to our number: keywords act, everything else waits in the inbox.

Twilio's inbound webhook hands each message to :func:`inbound_receive` once it has been
verified. The body is read as a keyword when, ignoring case and the spaces,
punctuation and symbols around it, it is exactly one of:

- STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT (or Twilio's
  ``OptOutType=STOP``): the number is unsubscribed, with the keyword and the message SID
  as evidence. No answer of ours: Twilio itself confirms a STOP on US numbers.
- ``SMS_JOIN_KEYWORD`` when set (for example JOIN): the sender becomes an active
  community member with a consent record (keyword, time, message SID), an opt-out of
  theirs is lifted, and they get a welcome that says how to opt out.
- START, YES, UNSTOP (or ``OptOutType=START``): the unsubscribe is lifted (the row stays
  as history).
- HELP, INFO (or ``OptOutType=HELP``): answered with ``SMS_HELP_REPLY`` when it is set.

Anything else is an inbound *reply*, kept for staff to read. Every message is stored
once, by its SID, linked to the member (or else the newest registration) with the
sender's number and to the last blast sent to it; a webhook Twilio delivers twice does
nothing the second time but answer the same.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from events.models import Registration
from members.models import Member
from messaging.models import Delivery, InboundMessage
from smsadmin.phones import try_normalize_phone

logger = logging.getLogger(__name__)

K = InboundMessage.Kind

STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def keyword_of(body: str) -> str:
    """The body as a keyword: NFKC, upper case, without surrounding spaces, punctuation,
    symbols (emoji) or invisible characters. "  Stop! " -> "STOP"; "stop it" -> "STOP IT"."""
    text = unicodedata.normalize("NFKC", body or "")
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start])[0] in "PSZC":
        start += 1
    while end > start and unicodedata.category(text[end - 1])[0] in "PSZC":
        end -= 1
    return text[start:end].upper()


def welcome_text() -> str:
    return (
        f"Welcome to {settings.ORG_NAME}! You will now get our texts. "
        "Reply STOP at any time to opt out, HELP for help."
    )


def _kind_of(*, word: str, opt_out_type: str) -> str:
    join = (settings.SMS_JOIN_KEYWORD or "").strip().upper()
    if opt_out_type == "STOP" or word in STOP_WORDS:
        return K.STOP
    if join and word == join:
        return K.JOIN
    if opt_out_type == "START" or word in START_WORDS:
        return K.START
    if opt_out_type == "HELP" or word in HELP_WORDS:
        return K.HELP
    return K.REPLY


def reply_for(message: InboundMessage) -> str:
    """The text we answer this message with (TwiML), or "" for none."""
    if message.kind == K.HELP:
        return settings.SMS_HELP_REPLY or ""
    if message.kind == K.JOIN and message.member_id is not None:
        return welcome_text()
    return ""


@dataclass(frozen=True)
class InboundResult:
    message: InboundMessage
    reply: str
    duplicate: bool = False


def _last_blast_id(phone: str) -> int | None:
    return (
        Delivery.objects.filter(
            phone=phone, status__in=[Delivery.Status.SENT, Delivery.Status.DELIVERED]
        )
        .order_by(F("sent_at").desc(nulls_last=True), "-id")
        .values_list("blast_id", flat=True)
        .first()
    )


def _join(*, phone: str, keyword: str, sid: str, at) -> tuple[Member, str]:  # type: ignore[no-untyped-def]
    """Make ``phone`` an active member with a consent record; lift an opt-out of theirs."""
    from members.models import ConsentSource
    from suppression.services import resubscribe

    evidence = f"{keyword} {sid}"
    member = Member.objects.filter(phone=phone).first()
    if member is None:
        try:
            with transaction.atomic():
                member = Member.objects.create(
                    phone=phone,
                    consent_source=ConsentSource.KEYWORD,
                    consent_at=at,
                    consent_evidence=evidence,
                )
            outcome = "member added"
        except IntegrityError:  # the same number joined at the same moment
            member = Member.objects.get(phone=phone)
            outcome = "already a member"
    else:
        changes: dict[str, object] = {}
        if not member.is_active:
            changes["is_active"] = True
        if not member.consent_source:
            # An existing consent record is never overwritten.
            changes |= {
                "consent_source": ConsentSource.KEYWORD,
                "consent_at": at,
                "consent_evidence": evidence,
            }
        if changes:
            for name, value in changes.items():
                setattr(member, name, value)
            member.save(update_fields=[*changes, "updated_at"])
        outcome = "member re-activated" if "is_active" in changes else "already a member"
    if resubscribe(
        phone=phone, source="join", evidence=evidence, reason=f"Texted {keyword} to join"
    ):
        outcome += "; re-subscribed"
    return member, outcome


def _act(message: InboundMessage, *, at) -> None:  # type: ignore[no-untyped-def]
    """Do what the keyword says; records the outcome on ``message``."""
    from suppression.services import resubscribe, unsubscribe

    phone, keyword, sid = message.phone, message.keyword, message.message_sid
    evidence = f"{keyword} {sid}"
    if message.kind == K.STOP:
        done = unsubscribe(
            phone=phone, source="keyword", evidence=evidence, reason=f"Texted {keyword}", at=at
        )
        message.outcome = "unsubscribed" if done else "was already unsubscribed"
    elif message.kind == K.START:
        done = resubscribe(
            phone=phone, source="keyword", evidence=evidence, reason=f"Texted {keyword}"
        )
        message.outcome = "re-subscribed" if done else "was not unsubscribed"
    elif message.kind == K.HELP:
        message.outcome = (
            "answered" if settings.SMS_HELP_REPLY else "not answered (SMS_HELP_REPLY is empty)"
        )
    elif message.kind == K.JOIN:
        member, message.outcome = _join(phone=phone, keyword=keyword, sid=sid, at=at)
        message.member = member
        message.registration = None


def inbound_receive(
    *,
    message_sid: str,
    from_: str,
    to: str = "",
    body: str = "",
    opt_out_type: str = "",
    media_urls: Sequence[str] = (),
    num_media: int = 0,
) -> InboundResult:
    """Store one inbound message and act on it; returns it and the answer to send."""
    existing = InboundMessage.objects.filter(message_sid=message_sid).first()
    if existing is not None:
        return InboundResult(existing, reply_for(existing), duplicate=True)

    phone = try_normalize_phone(from_)
    word = keyword_of(body)
    opt = (opt_out_type or "").strip().upper()
    kind = _kind_of(word=word, opt_out_type=opt)
    if kind != K.REPLY and not phone:
        # A keyword from something that is not a phone number (a short code, a
        # sender name) cannot be acted on: staff see it.
        logger.warning(
            "Keyword %r from %r, which is not a phone number: kept as a reply", word, from_
        )
        kind = K.REPLY
    keyword = ""
    if kind != K.REPLY:
        # A keyword Twilio recognised for us (OptOutType) may be one of its own list.
        keyword = (word if word and len(word) <= 32 else opt or kind.upper())[:32]

    now = timezone.now()
    member = Member.objects.filter(phone=phone).first() if phone else None
    registration = None
    if phone and member is None:
        registration = (
            Registration.objects.filter(phone=phone).order_by("-created_at", "-id").first()
        )
    message = InboundMessage(
        message_sid=message_sid,
        phone=phone or (from_ or "").strip()[:64],
        to_number=(to or "").strip()[:64],
        body=body or "",
        num_media=max(0, min(num_media, 32767)),
        media_urls=list(media_urls),
        kind=kind,
        keyword=keyword,
        member=member,
        registration=registration,
        blast_id=_last_blast_id(phone) if phone else None,
        handled=kind != K.REPLY,
        handled_at=now if kind != K.REPLY else None,
    )
    try:
        with transaction.atomic():
            message.save()
            if kind != K.REPLY:
                _act(message, at=now)
                message.save(update_fields=["outcome", "member", "registration"])
    except IntegrityError:
        # Twilio delivered the same message twice at once: the other request stored it.
        existing = InboundMessage.objects.filter(message_sid=message_sid).first()
        if existing is None:
            raise
        return InboundResult(existing, reply_for(existing), duplicate=True)
    if kind != K.REPLY:
        logger.info("Inbound %s from %s (%s): %s", keyword, phone, message_sid, message.outcome)
    return InboundResult(message, reply_for(message))
