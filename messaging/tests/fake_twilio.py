"""A fake Twilio Messages API (2010-04-01) served over real HTTP on loopback.

The real ``twilio`` client is pointed at it (``client.api.base_url =
fake.base_url``) so tests exercise the same request encoding, response parsing
and exception building as production. Listing behaves like Twilio's: newest
first, ``PageSize`` (default 50, at most 1000) and ``next_page_uri`` paging,
and ``date_sent`` left empty while a message is still queued. Nothing here
imports Django: benchmarks and out-of-process end-to-end runs import or execute
this module directly (``python -m messaging.tests.fake_twilio --port 0 --latency-ms 150``).

Like Twilio it can call back: with ``status_callbacks`` on, every message created with a
``StatusCallback`` is reported there (sent, then delivered, or the outcome scripted for
its number with :meth:`FakeTwilio.set_outcome`), each POST signed with the auth token
exactly as Twilio signs (``X-Twilio-Signature``, the twilio library's own algorithm).
:meth:`FakeTwilio.send_inbound` posts a signed inbound message to a webhook URL, as
Twilio does when someone texts our number. Out of process: ``--status-callbacks`` and the
``/_fake/outcome``, ``/_fake/inbound`` and ``/_fake/callbacks`` control endpoints.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import json
import math
import queue
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import FrameType, TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from twilio.request_validator import RequestValidator

__all__ = [
    "API_VERSION",
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "FakeTwilio",
    "Reply",
    "inbound_params",
    "main",
    "sign",
]

API_VERSION = "2010-04-01"
# Fixed rather than random so test settings and out-of-process runs can share
# one value without having to parse it back from the fake.
DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "test-token"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_BODY_CHARS = 1600

_MESSAGES_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages(?:/(?P<sid>[^/]+?))?\.json$"
)
# Twilio also accepts channel addresses such as "whatsapp:+1..." in To.
_E164 = re.compile(r"^(?:whatsapp:)?\+[1-9]\d{1,14}$")

# Codes and wording Twilio uses for the failures the fake can produce, so that
# code under test sees the same TwilioRestException.code / .msg it would live.
_DEFAULT_CODES: dict[int, int] = {
    400: 20001,
    401: 20003,
    404: 20404,
    405: 20004,
    429: 20429,
    500: 20500,
    502: 20500,
    503: 20503,
}
_DEFAULT_MESSAGES: dict[int, str] = {
    20001: "Invalid parameter",
    20003: "Authenticate",
    20004: "Method not allowed",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service is unavailable. Please try again",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}

# Statuses in which Twilio has not handed the message to a carrier yet: date_sent is
# empty, so a DateSent filter leaves such a message out.
_NOT_SENT_YET = frozenset({"accepted", "scheduled", "queued"})

# Twilio's Smart Encoding (a Messaging Service setting): Unicode look-alikes are replaced
# by GSM characters before the message is stored, so the stored body differs from the
# posted one. A representative part of Twilio's table.
_SMART_ENCODING = str.maketrans(
    {
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2033": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u2002": " ",
        "\u2003": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\u200b": "",
        "\u00ad": "",
    }
)

# GSM 03.38: segment counts decide cost, and code under test may log/assert them.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass
class Reply:
    """One scripted behaviour for a future create (POST Messages.json).

    ``status`` < 300 means "answer normally" (validation, fail_number and a 201
    still apply), so ``Reply(delay=5.0)`` is a slow success. ``status`` >= 300
    answers a Twilio error JSON with ``code`` (default per status, e.g. 429 ->
    20429). ``drop`` closes the connection without any answer. ``record``
    decides whether Twilio "really" accepted the message regardless of what the
    client is told; by default only normal answers store it.
    ``only_to`` makes the reply wait for a create to that recipient.

    The same replies script list requests (GET Messages.json) through
    ``script_list``: ``status``, ``code``, ``message``, ``delay`` and ``drop``
    apply, ``only_to`` matches the ``To`` filter, and ``hold`` makes the fake
    compute the page when the request arrives but send it only once the event
    is set: an answer that was true when asked and arrives late.
    """

    status: int = 201
    code: int | None = None
    message: str | None = None
    delay: float = 0.0
    record: bool | None = None
    drop: bool = False
    only_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None

    @property
    def is_normal(self) -> bool:
        return self.status < 300 and not self.drop

    @property
    def stores(self) -> bool:
        return self.is_normal if self.record is None else self.record


@dataclass
class _Stored:
    seq: int
    created_at: datetime
    sent_at: datetime | None  # None while Twilio has not sent it (queued)
    resource: dict[str, Any]
    params: dict[str, str | list[str]]


@dataclass
class _ApiError(Exception):
    status: int
    code: int
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        # Exactly the legacy 2010 error shape: the client only builds a
        # TwilioRestException (not TwilioServiceException) when "type"/"title"
        # are absent.
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def _error(
    status: int, code: int | None = None, message: str | None = None, **fmt: str
) -> _ApiError:
    resolved = code if code is not None else _DEFAULT_CODES.get(status, status)
    if message is not None:
        return _ApiError(status, resolved, message)
    # Only our own templates are formatted: caller text may contain braces.
    return _ApiError(status, resolved, _DEFAULT_MESSAGES.get(resolved, "Error").format(**fmt))


def _rfc2822(moment: datetime) -> str:
    # The client parses with email.utils.parsedate and ignores the offset, so
    # anything but UTC would silently shift times on the client side.
    return format_datetime(moment.astimezone(UTC))


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _as_utc(moment: datetime | date) -> datetime:
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _num_segments(body: str) -> int:
    if not body:
        return 1
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in body):
        septets = sum(2 if ch in _GSM7_EXTENDED else 1 for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


_DateBound = tuple[Literal["date"], date] | tuple[Literal["datetime"], datetime]


def _parse_date_filter(raw: str) -> _DateBound:
    """Parse a DateSent filter the way Twilio accepts them.

    A bare YYYY-MM-DD filters by calendar day (the documented behaviour); any
    value carrying a time (the python client always sends
    ``%Y-%m-%dT%H:%M:%SZ``, even for ``date`` objects) compares to the second.
    """
    text = raw.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return ("date", date.fromisoformat(text))
    try:
        return ("datetime", _as_utc(datetime.fromisoformat(text)))
    except ValueError:
        pass
    try:
        return ("datetime", _as_utc(parsedate_to_datetime(text)))
    except (TypeError, ValueError):
        raise _error(400, 20001, f"Invalid DateSent value: {raw}") from None


def _matches_bound(sent_at: datetime | None, bound: _DateBound, op: str) -> bool:
    # Both filter directions are inclusive ("on and after" / "on and before").
    if sent_at is None:
        return False  # not sent yet: no DateSent to compare
    if bound[0] == "date":
        left, right = sent_at.date(), bound[1]
        if op == ">":
            return left >= right
        return left <= right if op == "<" else left == right
    moment = bound[1]
    if op == ">":
        return sent_at >= moment
    return sent_at <= moment if op == "<" else sent_at == moment


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open many pooled connections at once; the default backlog of
    # 5 causes SYN retries (1 s stalls) under a burst.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], fake: FakeTwilio) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup
        # that can hang for seconds in sandboxes without a resolver.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client pools connections
    server_version = "FakeTwilio/1.0"
    sys_version = ""
    # A buffered writer lets the status line, headers and body leave in one
    # send(); two small writes on a keep-alive connection hit Nagle plus
    # delayed-ACK and cost ~40 ms per request.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Per-request stderr logging is slow and drowns benchmark output.
        return

    def setup(self) -> None:
        super().setup()
        self.server.fake._track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track_connection(self.connection, add=False)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        # Always drain the body, even for requests we reject, or the next
        # request on this keep-alive connection would be misparsed.
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Twilio-Request-Id", "RQ" + uuid.uuid4().hex)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: _ApiError) -> None:
        self._send_json(err.status, err.payload(), err.headers)

    def _drop(self) -> None:
        # Nothing has been written (buffered writer), so closing now gives the
        # client an EOF instead of a response: "connection aborted".
        self.close_connection = True

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        body = self._read_body()
        if split.path.startswith("/_fake/"):
            self._control(method, split.path, body)
            return
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        match = _MESSAGES_PATH.match(split.path)
        is_create = match is not None and match["sid"] is None and method == "POST"
        if is_create:
            fake._create_started()
        try:
            if not fake._sleep(fake.latency):
                self._drop()
                return
            self._check_auth(match, split.path)
            if match is None:
                raise _error(404, 20404, f"The requested resource {split.path} was not found")
            if match["sid"] is None:
                if method == "GET":
                    self._list(query)
                elif method == "POST":
                    self._create(body)
                else:
                    raise _error(405)
            elif method == "GET":
                self._send_json(200, fake._fetch(match["sid"], split.path))
            else:
                raise _error(405)
        except _ApiError as err:
            self._send_error(err)
        finally:
            if is_create:
                fake._create_finished()

    def _check_auth(self, match: re.Match[str] | None, path: str) -> None:
        fake = self.server.fake
        header = self.headers.get("Authorization", "")
        user = password = ""
        if header.startswith("Basic "):
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
        if user != fake.account_sid or password != fake.auth_token:
            err = _error(401)
            err.headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            raise err
        if match is not None and match["account"] != fake.account_sid:
            # Twilio does not reveal whether another account exists.
            raise _error(404, 20404, f"The requested resource {path} was not found")

    def _create(self, body: bytes) -> None:
        fake = self.server.fake
        params = _parse_form(body)
        to = params.get("To")
        reply = fake._next_reply(to if isinstance(to, str) else None)
        if reply is not None and reply.delay > 0 and not fake._sleep(reply.delay):
            self._drop()
            return
        if reply is None or reply.is_normal:
            self._send_json(201, fake._accept(params))
            return
        if reply.stores:
            fake._accept(params)  # validation errors still win, as they would live
        if reply.drop:
            self._drop()
            return
        err = _error(reply.status, reply.code, reply.message)
        err.headers = reply.headers
        raise err

    def _list(self, query: Mapping[str, str]) -> None:
        fake = self.server.fake
        reply = fake._next_list_reply(query.get("To"))
        if reply is not None and reply.delay > 0 and not fake._sleep(reply.delay):
            self._drop()
            return
        if reply is not None and reply.drop:
            self._drop()
            return
        if reply is not None and not reply.is_normal:
            err = _error(reply.status, reply.code, reply.message)
            err.headers = reply.headers
            raise err
        page = fake._list_page(query)
        if reply is not None and reply.hold is not None:
            while not reply.hold.wait(0.05):
                if fake._stopping.is_set():
                    self._drop()
                    return
        self._send_json(200, page)

    def _control(self, method: str, path: str, body: bytes = b"") -> None:
        fake = self.server.fake
        if method == "GET" and path == "/_fake/stats":
            self._send_json(200, fake.stats())
        elif method == "GET" and path == "/_fake/messages":
            self._send_json(200, {"messages": fake.messages})
        elif method == "GET" and path == "/_fake/callbacks":
            self._send_json(200, {"callbacks": fake.callbacks})
        elif method == "POST" and path == "/_fake/reset":
            fake.reset()
            self._send_json(200, {"ok": True})
        elif method == "POST" and path in ("/_fake/outcome", "/_fake/inbound"):
            try:
                data = json.loads(body or b"{}")
                if path == "/_fake/outcome":
                    fake.set_outcome(
                        data["to"], data.get("status", "undelivered"), data.get("error_code")
                    )
                    self._send_json(200, {"ok": True})
                    return
                answer = fake.send_inbound(
                    data["url"],
                    from_=data["from"],
                    body=data.get("body", ""),
                    to=data.get("to"),
                    extra=data.get("params") or {},
                )
            except (ValueError, KeyError, TypeError) as exc:
                self._send_json(400, {"error": f"{type(exc).__name__}: {exc}"})
                return
            except requests.RequestException as exc:
                self._send_json(502, {"error": f"{type(exc).__name__}: {exc}"})
                return
            self._send_json(
                200,
                {
                    "status": answer.status_code,
                    "body": answer.text,
                    "content_type": answer.headers.get("Content-Type", ""),
                    "message_sid": answer.request.body and _sid_of(answer.request.body),
                },
            )
        else:
            self._send_json(404, {"error": f"unknown control endpoint {method} {path}"})


def _parse_form(body: bytes) -> dict[str, str | list[str]]:
    parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    # MediaUrl / PersistentAction are the repeatable parameters; everything
    # else is scalar and tests want plain strings.
    return {k: (v if k in ("MediaUrl", "PersistentAction") else v[-1]) for k, v in parsed.items()}


def _text(params: Mapping[str, str | list[str]], key: str) -> str:
    value = params.get(key)
    if isinstance(value, list):
        value = value[-1] if value else None
    return (value or "").strip()


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature for a POST of ``params`` to ``url``, as Twilio computes it."""
    return RequestValidator(auth_token).compute_signature(url, dict(params))


def _sid_of(body: str | bytes) -> str:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return parse_qs(text).get("MessageSid", [""])[-1]


def inbound_params(
    *,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    from_: str,
    body: str = "",
    to: str | None = None,
    message_sid: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The form Twilio posts to a number's inbound webhook when someone texts it."""
    sid = message_sid or "SM" + uuid.uuid4().hex
    return {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "Body": body,
        "From": from_,
        "FromCountry": "US",
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": str(_num_segments(body)),
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": to or "+15005550006",
        "ToCountry": "US",
        **dict(extra or {}),
    }


# Twilio's outcomes that end a message, and the statuses a status callback reports.
_FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "read", "canceled"})


@dataclass
class _Callback:
    due: float
    url: str
    params: dict[str, str]


class FakeTwilio:
    """Threaded fake of Twilio's Messages API; see the module docstring.

    All state is guarded by one lock so handler threads and the test thread
    can script and inspect it concurrently.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        latency: float = 0.0,
        status_callbacks: bool = False,
        callback_delay: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        self.account_sid = account_sid
        self.auth_token = auth_token
        #: Seconds slept at the start of every API request (not /_fake/*).
        self.latency = latency
        self._initial_latency = latency
        #: Rewrite posted bodies like a Messaging Service with Smart Encoding on.
        self.smart_encoding = False
        #: Report each message created with a StatusCallback there, signed, like Twilio.
        self.status_callbacks = status_callbacks
        #: Seconds between a create (or the previous callback of a message) and a callback.
        self.callback_delay = callback_delay
        #: Send every callback twice / the final status before "sent".
        self.callback_duplicates = False
        self.callback_reversed = False
        self._callback_queue: queue.Queue[_Callback | None] = queue.Queue()
        self._callback_thread: threading.Thread | None = None
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._reset_state()

    # -- lifecycle -------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeTwilio is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeTwilio:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-twilio-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._callback_thread = threading.Thread(
            target=self._send_callbacks, name=f"fake-twilio-callbacks-{self.port}", daemon=True
        )
        self._callback_thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # Wake handlers sleeping on latency/delay, then kick idle keep-alive
        # connections so their threads exit instead of lingering.
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._callback_thread is not None:
            self._callback_queue.put(None)
            self._callback_thread.join(timeout=5)
            self._callback_thread = None
        self._session.close()

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting -------------------------------------------------------

    def fail_number(
        self, to: str, code: int, status: int = 400, message: str | None = None
    ) -> None:
        """Make every create to ``to`` fail with this Twilio error (not stored)."""
        err = _error(status, code, message, to=to)
        with self._lock:
            self._failures[to] = err

    def script(self, *responses: Reply) -> None:
        """Queue one-shot behaviours for the next creates, in FIFO order."""
        with self._lock:
            self._script.extend(responses)

    def script_list(self, *responses: Reply) -> None:
        """Queue one-shot behaviours for the next list requests, in FIFO order."""
        with self._lock:
            self._list_script.extend(responses)

    @property
    def pending_script(self) -> int:
        """Scripted replies not consumed yet (assert 0 to prove all were hit)."""
        with self._lock:
            return len(self._script)

    def add_message(
        self,
        *,
        to: str,
        from_: str | None = "+15005550006",
        body: str = "",
        date_sent: datetime | date | None = None,
        status: str = "delivered",
        messaging_service_sid: str | None = None,
        sid: str | None = None,
        date_created: datetime | date | None = None,
    ) -> dict[str, Any]:
        """Pre-seed a message as if Twilio already had it (e.g. for reconciliation).

        ``date_created`` defaults to ``date_sent``, both to now; a message in a
        status Twilio has not sent yet (queued, accepted, scheduled) has no
        ``date_sent`` whatever is passed.
        """
        params: dict[str, str | list[str]] = {"To": to, "Body": body}
        if from_ is not None:
            params["From"] = from_
        if messaging_service_sid is not None:
            params["MessagingServiceSid"] = messaging_service_sid
        created = date_created if date_created is not None else date_sent
        created_at = _utc_now() if created is None else _as_utc(created)
        sent_at = created_at if date_sent is None else _as_utc(date_sent)
        with self._lock:
            stored = self._store_locked(
                params, created_at=created_at, sent_at=sent_at, status=status, sid=sid
            )
            return copy.deepcopy(stored.resource)

    def set_outcome(
        self, to: str, status: str = "undelivered", error_code: int | None = None
    ) -> None:
        """What Twilio reports in the end for messages to ``to`` (default: delivered).

        ``status`` is a final status (``undelivered``, ``failed``, ``delivered``);
        ``error_code`` goes in the callback's ErrorCode (e.g. 30006, 21610).
        """
        if status not in _FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final message status")
        with self._lock:
            self._outcomes[to] = (status, error_code)

    def callback_params(
        self, sid: str, status: str, error_code: int | None = None
    ) -> dict[str, str]:
        """The form Twilio posts to a StatusCallback for message ``sid`` in ``status``."""
        with self._lock:
            stored = self._by_sid.get(sid)
            resource = copy.deepcopy(stored.resource) if stored is not None else {}
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": resource.get("from") or "",
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": resource.get("to") or "",
        }
        if resource.get("messaging_service_sid"):
            params["MessagingServiceSid"] = resource["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        if status == "delivered":
            params["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
        return params

    def post_signed(
        self, url: str, params: Mapping[str, str], *, signature: str | None = None
    ) -> requests.Response:
        """POST ``params`` to ``url`` as Twilio does, signed (or with ``signature``)."""
        headers = {
            "X-Twilio-Signature": sign(self.auth_token, url, params)
            if signature is None
            else signature,
            "User-Agent": "TwilioProxy/1.1",
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        }
        return self._session.post(
            url, data=urlencode(dict(params)).encode("utf-8"), headers=headers, timeout=10
        )

    def send_status_callback(
        self, sid: str, status: str, *, error_code: int | None = None, url: str | None = None
    ) -> requests.Response:
        """Report ``status`` of message ``sid`` now, to its StatusCallback (or ``url``)."""
        if url is None:
            with self._lock:
                stored = self._by_sid.get(sid)
                url = _text(stored.params, "StatusCallback") if stored is not None else ""
            if not url:
                raise ValueError(f"message {sid} has no StatusCallback")
        params = self.callback_params(sid, status, error_code)
        response = self.post_signed(url, params)
        self._record_callback(url, params, response.status_code, "")
        return response

    def send_inbound(
        self,
        url: str,
        *,
        from_: str,
        body: str = "",
        to: str | None = None,
        message_sid: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Someone texts our number: Twilio's signed inbound webhook POST to ``url``.

        ``extra`` adds or replaces fields (``OptOutType``, ``NumMedia``, ``MediaUrl0``...).
        Returns our answer (TwiML).
        """
        params = inbound_params(
            account_sid=self.account_sid,
            from_=from_,
            body=body,
            to=to,
            message_sid=message_sid,
            extra=extra,
        )
        return self.post_signed(url, params)

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        """Status callbacks sent so far: url, params, the answer's HTTP status (or error)."""
        with self._lock:
            return copy.deepcopy(self._callbacks)

    def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` status callbacks were answered; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._callbacks) >= count, timeout)

    def reset(self) -> None:
        """Forget messages, scripts, failures and counters; restore latency."""
        with self._lock:
            self._reset_state()
            self.latency = self._initial_latency
            self.smart_encoding = False
            self.callback_duplicates = False
            self.callback_reversed = False

    # -- introspection ---------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Stored messages, oldest first: the resource JSON plus what was posted.

        Extra keys beside the resource fields: ``params`` (the raw form fields),
        ``status_callback`` and ``validity_period`` (``None`` when not sent).
        """
        with self._lock:
            stored = list(self._messages)
        return [self._public(item) for item in stored]

    def sent_to(self, number: str) -> int:
        with self._lock:
            return self._per_to[number]

    @property
    def create_attempts(self) -> int:
        """POSTs to Messages.json, whatever their outcome."""
        with self._lock:
            return self._create_attempts

    @property
    def create_times(self) -> list[float]:
        """When each create request arrived (epoch seconds), in arrival order."""
        with self._lock:
            return list(self._create_times)

    @property
    def list_requests(self) -> int:
        """GETs of the message list (each page is one), whatever their outcome."""
        with self._lock:
            return self._list_requests

    def wait_for_list_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` list requests arrived; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._list_requests >= count, timeout)

    @property
    def max_concurrent(self) -> int:
        """Most creates in progress at once (latency and delays included)."""
        with self._lock:
            return self._max_in_flight

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` messages are stored; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._messages) >= count, timeout)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "stored": len(self._messages),
                "create_attempts": self._create_attempts,
                "list_requests": self._list_requests,
                "max_concurrent": self._max_in_flight,
                "in_flight": self._in_flight,
                "per_to": dict(self._per_to),
            }

    # -- internals used by the handler -----------------------------------

    def _schedule_callbacks(self, resource: Mapping[str, Any], url: str) -> None:
        with self._lock:
            final, code = self._outcomes.get(resource["to"], ("delivered", None))
        steps: list[tuple[str, int | None]] = [("sent", None), (final, code)]
        if self.callback_reversed:
            steps.reverse()
        if self.callback_duplicates:
            steps = [step for step in steps for _ in range(2)]
        due = time.monotonic()
        for status, error_code in steps:
            due += self.callback_delay
            params = self.callback_params(resource["sid"], status, error_code)
            self._callback_queue.put(_Callback(due=due, url=url, params=params))

    def _send_callbacks(self) -> None:
        """One thread posts every scheduled callback, in order, each when it is due."""
        while True:
            item = self._callback_queue.get()
            if item is None or self._stopping.is_set():
                return
            if not self._sleep(item.due - time.monotonic()):
                return
            status, error = 0, ""
            try:
                status = self.post_signed(item.url, item.params).status_code
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"
            self._record_callback(item.url, item.params, status, error)

    def _record_callback(
        self, url: str, params: Mapping[str, str], status: int, error: str
    ) -> None:
        with self._lock:
            stored = self._by_sid.get(params.get("MessageSid", ""))
            if stored is not None and params.get("MessageStatus") in _FINAL_STATUSES:
                stored.resource["status"] = params["MessageStatus"]
                if params.get("ErrorCode"):
                    stored.resource["error_code"] = int(params["ErrorCode"])
            self._callbacks.append(
                {"url": url, "params": dict(params), "status": status, "error": error}
            )
            self._changed.notify_all()

    def _reset_state(self) -> None:
        self._messages: list[_Stored] = []
        self._by_sid: dict[str, _Stored] = {}
        self._per_to: Counter[str] = Counter()
        self._failures: dict[str, _ApiError] = {}
        self._script: deque[Reply] = deque()
        self._list_script: deque[Reply] = deque()
        self._list_requests = 0
        self._seq = 0
        self._create_attempts = 0
        self._create_times: list[float] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._outcomes: dict[str, tuple[str, int | None]] = {}
        self._callbacks: list[dict[str, Any]] = []

    def _track_connection(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the fake is stopping; False means abandon the request."""
        if seconds > 0:
            return not self._stopping.wait(seconds)
        return not self._stopping.is_set()

    def _create_started(self) -> None:
        with self._lock:
            self._create_times.append(time.time())
            self._create_attempts += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _create_finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_reply(self, to: str | None) -> Reply | None:
        with self._lock:
            for index, reply in enumerate(self._script):
                if reply.only_to is None or reply.only_to == to:
                    del self._script[index]
                    return reply
        return None

    def _next_list_reply(self, to: str | None) -> Reply | None:
        with self._lock:
            self._list_requests += 1
            self._changed.notify_all()
            for index, reply in enumerate(self._list_script):
                if reply.only_to is None or reply.only_to == to:
                    del self._list_script[index]
                    return reply
        return None

    def _accept(self, params: dict[str, str | list[str]]) -> dict[str, Any]:
        """Validate like Twilio, store, and return the resource; raises _ApiError."""
        to = _text(params, "To")
        if not to:
            raise _error(400, 21604)
        body = _text(params, "Body")
        has_content = bool(body or params.get("MediaUrl") or _text(params, "ContentSid"))
        if not has_content:
            raise _error(400, 21602)
        if not (_text(params, "From") or _text(params, "MessagingServiceSid")):
            raise _error(400, 21603)
        with self._lock:
            failure = self._failures.get(to)
        if failure is not None:
            raise _ApiError(failure.status, failure.code, failure.message)
        if not _E164.match(to):
            raise _error(400, 21211, to=to)
        if len(_text(params, "Body")) > MAX_BODY_CHARS:
            raise _error(400, 21617)
        if self.smart_encoding and isinstance(params.get("Body"), str):
            params = {**params, "Body": str(params["Body"]).translate(_SMART_ENCODING)}
        now = _utc_now()
        with self._lock:
            stored = self._store_locked(params, created_at=now, sent_at=now, status=None, sid=None)
            resource = copy.deepcopy(stored.resource)
        url = _text(params, "StatusCallback")
        if self.status_callbacks and url:
            self._schedule_callbacks(resource, url)
        return resource

    def _store_locked(
        self,
        params: dict[str, str | list[str]],
        *,
        created_at: datetime,
        sent_at: datetime | None,
        status: str | None,
        sid: str | None,
    ) -> _Stored:
        media = params.get("MediaUrl") or []
        service_sid = _text(params, "MessagingServiceSid") or None
        if sid is None:
            sid = ("MM" if media else "SM") + uuid.uuid4().hex
        if status is None:
            # A Messaging Service defers sender selection, which Twilio reports
            # as "accepted" rather than "queued".
            status = "accepted" if service_sid else "queued"
        if status in _NOT_SENT_YET:
            sent_at = None
        created_stamp = _rfc2822(created_at)
        sent_stamp = _rfc2822(sent_at) if sent_at is not None else None
        message_uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        body = _text(params, "Body")
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": created_stamp,
            "date_sent": sent_stamp,
            "date_updated": sent_stamp or created_stamp,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": _text(params, "From") or None,
            "messaging_service_sid": service_sid,
            "num_media": str(len(media)),
            "num_segments": str(_num_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": status,
            "subresource_uris": {
                "media": f"{message_uri}/Media.json",
                "feedback": f"{message_uri}/Feedback.json",
            },
            "to": _text(params, "To"),
            "uri": f"{message_uri}.json",
        }
        self._seq += 1
        stored = _Stored(self._seq, created_at, sent_at, resource, dict(params))
        self._messages.append(stored)
        self._by_sid[sid] = stored
        self._per_to[resource["to"]] += 1
        self._changed.notify_all()
        return stored

    @staticmethod
    def _public(item: _Stored) -> dict[str, Any]:
        public = copy.deepcopy(item.resource)
        public["params"] = copy.deepcopy(item.params)
        public["status_callback"] = _text(item.params, "StatusCallback") or None
        public["validity_period"] = _text(item.params, "ValidityPeriod") or None
        return public

    def _fetch(self, sid: str, path: str) -> dict[str, Any]:
        with self._lock:
            stored = self._by_sid.get(sid)
            if stored is None:
                raise _error(404, 20404, f"The requested resource {path} was not found")
            return copy.deepcopy(stored.resource)

    def _list_page(self, query: Mapping[str, str]) -> dict[str, Any]:
        filters = [
            (k, query[k])
            for k in ("To", "From", "DateSent", "DateSent>", "DateSent<")
            if query.get(k)
        ]
        bounds = [
            (_parse_date_filter(v), k[-1] if k[-1] in "<>" else "=")
            for k, v in filters
            if k.startswith("DateSent")
        ]
        try:
            page_size = min(max(int(query.get("PageSize") or DEFAULT_PAGE_SIZE), 1), MAX_PAGE_SIZE)
            page = max(int(query.get("Page") or 0), 0)
        except ValueError:
            raise _error(400, 20001, "PageSize and Page must be integers") from None
        token = query.get("PageToken") or ""
        to, from_ = query.get("To"), query.get("From")

        with self._lock:
            candidates = list(self._messages)
        matching = [
            item
            for item in candidates
            if (not to or item.resource["to"] == to)
            and (not from_ or item.resource["from"] == from_)
            and all(_matches_bound(item.sent_at, bound, op) for bound, op in bounds)
        ]
        # Newest first like Twilio (by DateSent; a message not sent yet counts from its
        # creation); seq breaks ties within the same second.
        matching.sort(key=lambda item: (item.sent_at or item.created_at, item.seq), reverse=True)

        # Tokens anchor on a SID rather than an offset so pages stay stable
        # while new messages are being created during a listing.
        position = {item.resource["sid"]: index for index, item in enumerate(matching)}
        if token.startswith("PA"):
            start = position.get(token[2:], len(matching) - 1) + 1
            chunk = matching[start : start + page_size]
        elif token.startswith("PB"):
            end = position.get(token[2:], 0)
            start = max(end - page_size, 0)
            chunk = matching[start:end]
        else:
            start = page * page_size
            chunk = matching[start : start + page_size]

        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

        def page_uri(*extra: tuple[str, str | int]) -> str:
            items: Iterable[tuple[str, str | int]] = [*filters, ("PageSize", page_size), *extra]
            return f"{base}?{urlencode(list(items))}"

        has_next = bool(chunk) and start + len(chunk) < len(matching)
        current = [("Page", page)] + ([("PageToken", token)] if token else [])
        first_index = page * page_size
        return {
            "end": first_index + max(len(chunk) - 1, 0),
            "first_page_uri": page_uri(("Page", 0)),
            "messages": [copy.deepcopy(item.resource) for item in chunk],
            "next_page_uri": (
                page_uri(("Page", page + 1), ("PageToken", "PA" + chunk[-1].resource["sid"]))
                if has_next
                else None
            ),
            "page": page,
            "page_size": page_size,
            "previous_page_uri": (
                page_uri(("Page", page - 1), ("PageToken", "PB" + chunk[0].resource["sid"]))
                if page > 0 and chunk
                else None
            ),
            "start": first_index,
            "uri": page_uri(*current),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a fake Twilio Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument(
        "--status-callbacks",
        action="store_true",
        help="report each message to its StatusCallback (sent, then delivered), signed",
    )
    parser.add_argument("--callback-delay-ms", type=float, default=50.0)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    fake = FakeTwilio(
        args.host,
        args.port,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        latency=args.latency_ms / 1000.0,
        status_callbacks=args.status_callbacks,
        callback_delay=args.callback_delay_ms / 1000.0,
    )
    fake.start()
    # One machine-readable line; the parent process parses it to find the port.
    print(
        f"FAKE_TWILIO_URL={fake.base_url} ACCOUNT_SID={fake.account_sid} "
        f"AUTH_TOKEN={fake.auth_token}",
        flush=True,
    )
    try:
        # A timed wait keeps the main thread responsive to signals.
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
