"""The one way out to Twilio: every API call of the product goes through this module.

Two backends answer the same two questions, "send this" and "which messages went
to this number around then?" (reconciliation decides from the answer):
``TwilioBackend`` (the real ``twilio`` client; ``TWILIO_API_BASE_URL`` points it at
another server, such as a local fake) and ``ConsoleBackend`` (the embedded default:
records each message in the admin's outbox and sends nothing).

Every answer is turned into a ``SendResult`` whose ``outcome`` tells the engine what
it may do next. The rule that matters: only when the message certainly was not
created (429, connection refused) may it be sent again; when the outcome is not
known (5xx, timeout, dropped connection) it must not be.
"""

from __future__ import annotations

import enum
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol

import requests
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NameResolutionError, NewConnectionError

from messaging.twilio_errors import ErrorClass, classify, describe

logger = logging.getLogger(__name__)

# Messages per list request when looking a number up. Twilio allows up to 1000; most
# look-ups need one page, a staff phone that gets every blast may need a few.
LIST_PAGE_SIZE = 200
# A number with more messages than this between now and an attempt is not read to the
# end: the look-up gives up rather than answer from part of the window.
LIST_MAX_MESSAGES = 10_000
# Twilio lists newest first by DateSent. A message created this long before the window
# cannot have been sent after it starts (Twilio drops queued messages far sooner), so
# reading can stop there even when date_sent is empty.
_LIST_STOP_MARGIN = timedelta(days=1)


class Outcome(enum.StrEnum):
    SENT = "sent"  # accepted, has a SID
    RETRY = "retry"  # certainly not created: safe to send again later
    UNKNOWN = "unknown"  # may or may not exist: never resend without reconciling
    FAILED = "failed"  # refused for this recipient
    SENDER_ERROR = "sender_error"  # refused for every recipient: pause the blast


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    sid: str = ""
    status: str = ""
    error_code: int | None = None
    error_message: str = ""
    http_status: int | None = None


@dataclass(frozen=True)
class FoundMessage:
    """One message in Twilio's records (or the console outbox) from our sender."""

    sid: str
    status: str
    body: str = ""
    date_created: datetime | None = None


class LookupIncomplete(Exception):
    """The list could not be read back to the start of the window: never "not found"."""


class SmsBackend(Protocol):
    sender: str
    threaded: bool

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult: ...

    def find_messages(self, *, to: str, since: datetime, until: datetime) -> list[FoundMessage]:
        """Every message from our sender to ``to`` created between ``since`` and ``until``.

        The answer is complete or not given: any failure to read the whole window
        raises (LookupIncomplete, or the transport's exception), so an empty list
        always means "there is none".
        """
        ...


def _aware(moment: datetime | None) -> datetime | None:
    # The client parses RFC 2822 dates; be explicit that they are UTC either way.
    if moment is not None and timezone.is_naive(moment):
        return moment.replace(tzinfo=UTC)
    return moment


_OUTCOME_BY_CLASS = {
    ErrorClass.RETRY: Outcome.RETRY,
    ErrorClass.UNKNOWN: Outcome.UNKNOWN,
    ErrorClass.RECIPIENT_PERMANENT: Outcome.FAILED,
    ErrorClass.FAIL: Outcome.FAILED,
    ErrorClass.SENDER_OR_ACCOUNT: Outcome.SENDER_ERROR,
}


def result_for_error(*, code: int | None, http_status: int | None, message: str = "") -> SendResult:
    outcome = _OUTCOME_BY_CLASS[classify(code=code, http_status=http_status)]
    text = message or describe(code)
    return SendResult(
        outcome=outcome, error_code=code, error_message=text[:1000], http_status=http_status
    )


def _never_reached_twilio(exc: requests.ConnectionError) -> bool:
    """True when the request cannot have arrived: no connection was ever made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", reason)
    return isinstance(inner, NewConnectionError | NameResolutionError)


class TwilioBackend:
    threaded = True

    def __init__(self) -> None:
        self.account_sid = settings.TWILIO_ACCOUNT_SID
        self.auth_token = settings.TWILIO_AUTH_TOKEN
        self.from_number = settings.TWILIO_FROM_NUMBER
        self.messaging_service_sid = settings.TWILIO_MESSAGING_SERVICE_SID
        self.base_url = settings.TWILIO_API_BASE_URL
        self.timeout = settings.SMS_HTTP_TIMEOUT_SECONDS
        self.validity_period = settings.SMS_VALIDITY_PERIOD_SECONDS
        self.sender = self.messaging_service_sid or self.from_number
        self._local = threading.local()

    def _client(self) -> Client:
        # One client (and HTTP connection pool) per thread: the engine keeps several
        # requests in flight from a thread pool, and requests' Session is not
        # documented as thread-safe.
        client = getattr(self._local, "client", None)
        if client is None:
            http = TwilioHttpClient(timeout=self.timeout, pool_connections=True)
            client = Client(self.account_sid, self.auth_token, http_client=http)
            # The client reads TWILIO_REGION / TWILIO_EDGE from the environment and
            # would rewrite any host into *.twilio.com; we send where we are told.
            client.region = None
            client.edge = None
            if self.base_url:
                client.api.base_url = self.base_url
            self._local.client = client
        return client

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        params: dict[str, object] = {"to": to, "body": body}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        else:
            params["from_"] = self.from_number
        if status_callback:
            params["status_callback"] = status_callback
        if self.validity_period:
            params["validity_period"] = self.validity_period
        try:
            message = self._client().messages.create(**params)  # type: ignore[arg-type]
        except TwilioRestException as exc:
            return result_for_error(
                code=exc.code, http_status=exc.status, message=str(exc.msg or "")
            )
        except requests.ConnectionError as exc:
            if _never_reached_twilio(exc):
                return SendResult(
                    outcome=Outcome.RETRY, error_message=f"Could not connect: {exc}"[:1000]
                )
            return SendResult(
                outcome=Outcome.UNKNOWN,
                error_message=f"Connection lost before Twilio answered: {exc}"[:1000],
            )
        except requests.Timeout as exc:
            return SendResult(
                outcome=Outcome.UNKNOWN,
                error_message=f"No answer from Twilio within {self.timeout:g}s: {exc}"[:1000],
            )
        except (TwilioException, requests.RequestException, ValueError) as exc:
            # Anything else the library raises after the request may have left.
            return SendResult(
                outcome=Outcome.UNKNOWN, error_message=f"{type(exc).__name__}: {exc}"[:1000]
            )
        return SendResult(outcome=Outcome.SENT, sid=message.sid or "", status=message.status or "")

    def find_messages(self, *, to: str, since: datetime, until: datetime) -> list[FoundMessage]:
        # No DateSent filter: Twilio leaves date_sent empty while a message is queued,
        # and a queued message is exactly the one we must not send twice. Messages
        # come newest first, so newer ones (later blasts to a staff phone) are paged
        # past until the window is reached.
        params: dict[str, object] = {"to": to, "page_size": LIST_PAGE_SIZE}
        if not self.messaging_service_sid:
            params["from_"] = self.from_number
        found: list[FoundMessage] = []
        listing = self._client().messages.stream(**params)  # type: ignore[arg-type]
        for seen, message in enumerate(listing, start=1):
            created = _aware(message.date_created)
            # Twilio sorts by DateSent and does not document where a still-queued message
            # (no DateSent) stands, so reading stops only well past the window's start:
            # a queued message is exactly the one that must not be sent twice.
            if created is not None and created < since - _LIST_STOP_MARGIN:
                return found
            if seen > LIST_MAX_MESSAGES:
                raise LookupIncomplete(
                    f"more than {LIST_MAX_MESSAGES:,} messages to this number since the attempt"
                )
            if self.messaging_service_sid:
                if message.messaging_service_sid != self.messaging_service_sid:
                    continue
            elif message.from_ != self.from_number:
                continue
            if created is None or since <= created <= until:
                found.append(
                    FoundMessage(
                        sid=message.sid or "",
                        status=message.status or "",
                        body=message.body or "",
                        date_created=created,
                    )
                )
        return found


# Twilio's test credentials answer these numbers with these errors; the console backend
# does the same, so failure handling can be tried out without sending anything.
CONSOLE_MAGIC_ERRORS: dict[str, tuple[int, str]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number is not currently reachable via SMS."),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the "
        "'To' number: +15005550003.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}


class ConsoleBackend:
    sender = "console"
    # It writes the outbox row itself, so the engine calls it from its own thread.
    threaded = False

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        from messaging.models import OutboxMessage

        if to in CONSOLE_MAGIC_ERRORS:
            code, message = CONSOLE_MAGIC_ERRORS[to]
            return result_for_error(code=code, http_status=400, message=message)
        sid = "SM" + uuid.uuid4().hex
        OutboxMessage.objects.create(
            sid=sid,
            to=to,
            from_number=self.sender,
            body=body,
            status_callback=status_callback or "",
        )
        return SendResult(outcome=Outcome.SENT, sid=sid, status="queued")

    def find_messages(self, *, to: str, since: datetime, until: datetime) -> list[FoundMessage]:
        from messaging.models import OutboxMessage

        rows = OutboxMessage.objects.filter(
            to=to, from_number=self.sender, created_at__gte=since, created_at__lte=until
        ).order_by("-created_at", "-id")
        return [
            FoundMessage(sid=row.sid, status="sent", body=row.body, date_created=row.created_at)
            for row in rows
        ]


@lru_cache(maxsize=1)
def get_backend() -> SmsBackend:
    """The configured backend, built once per process (it holds the HTTP connections)."""
    if settings.SMS_BACKEND == "twilio":
        return TwilioBackend()
    return ConsoleBackend()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: object) -> None:
    if setting.startswith(("SMS_", "TWILIO_")):
        get_backend.cache_clear()


def status_callback_url(delivery_id: int, attempt: int | None = None) -> str | None:
    """Where Twilio reports this message's fate. The delivery id makes it one lookup; the
    attempt tells news of this message from news of one sent before staff retried."""
    if not settings.PUBLIC_BASE_URL:
        return None
    url = f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/status/?d={delivery_id}"
    return url if attempt is None else f"{url}&a={attempt}"
