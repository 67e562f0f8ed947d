"""The one way out to Twilio: every API call of the product goes through this module.

Two backends answer the same two questions, "send this" and "did this go out?":
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
    sid: str
    status: str


class SmsBackend(Protocol):
    sender: str
    threaded: bool

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult: ...

    def find_sent(self, *, to: str, body: str, since: datetime) -> FoundMessage | None: ...


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

    def find_sent(self, *, to: str, body: str, since: datetime) -> FoundMessage | None:
        # No DateSent filter: Twilio leaves date_sent empty while a message is queued,
        # and a queued message is exactly the one we must not send twice. A recipient
        # gets few messages, so the newest page addressed to them is enough.
        params: dict[str, object] = {"to": to, "limit": 50, "page_size": 50}
        if self.from_number and not self.messaging_service_sid:
            params["from_"] = self.from_number
        earliest = since - timedelta(minutes=2)  # allow for clock skew between hosts
        for message in self._client().messages.list(**params):  # type: ignore[arg-type]
            if self.messaging_service_sid and (
                message.messaging_service_sid != self.messaging_service_sid
            ):
                continue
            created = message.date_created
            if created is not None and timezone.is_naive(created):
                created = created.replace(tzinfo=UTC)
            if created is not None and created < earliest:
                continue
            if (message.body or "") == body:
                return FoundMessage(sid=message.sid or "", status=message.status or "")
        return None


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

    def find_sent(self, *, to: str, body: str, since: datetime) -> FoundMessage | None:
        from messaging.models import OutboxMessage

        found = (
            OutboxMessage.objects.filter(
                to=to, body=body, created_at__gte=since - timedelta(minutes=2)
            )
            .order_by("-created_at")
            .first()
        )
        return FoundMessage(sid=found.sid, status="sent") if found else None


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


def status_callback_url(delivery_id: int) -> str | None:
    """Where Twilio reports this message's fate; the delivery id makes it one lookup."""
    if not settings.PUBLIC_BASE_URL:
        return None
    return f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/status/?d={delivery_id}"
