"""Contract tests for the fake Twilio server, driven by the real twilio client.

No database and no Django: if the fake drifts from what the client sends or
parses, every test built on it would be lying, so these pin it down first.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from messaging.tests.fake_twilio import FakeTwilio, Reply

REPO_ROOT = Path(__file__).resolve().parents[2]
SENDER = "+15005550006"
OTHER_SENDER = "+15005550007"
SID_RE = re.compile(r"^SM[0-9a-f]{32}$")


@pytest.fixture(autouse=True)
def _no_twilio_region(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client reads these from os.environ even when region=None/edge=None
    # is passed, and would then rewrite 127.0.0.1 into a *.twilio.com host.
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    monkeypatch.delenv("TWILIO_EDGE", raising=False)


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


def make_client(
    fake: FakeTwilio,
    *,
    timeout: float | None = 5.0,
    account_sid: str | None = None,
    auth_token: str | None = None,
) -> Client:
    client = Client(
        account_sid or fake.account_sid,
        auth_token or fake.auth_token,
        region=None,
        edge=None,
        http_client=TwilioHttpClient(timeout=timeout),
    )
    client.api.base_url = fake.base_url
    return client


@pytest.fixture
def client(fake: FakeTwilio) -> Client:
    return make_client(fake)


def send(client: Client, to: str = "+15551230001", **kwargs: Any) -> Any:
    kwargs.setdefault("from_", SENDER)
    kwargs.setdefault("body", "Choir practice moved to 7pm")
    return client.messages.create(to=to, **kwargs)


def test_create_returns_sid_and_stores_message(fake: FakeTwilio, client: Client) -> None:
    message = send(
        client,
        status_callback="https://example.test/twilio/status",
        validity_period=600,
    )

    assert SID_RE.match(message.sid)
    assert message.status == "queued"
    assert message.to == "+15551230001"
    assert message.from_ == SENDER
    assert message.direction == "outbound-api"
    assert message.num_segments == "1"
    assert message.price is None and message.error_code is None
    assert message.api_version == "2010-04-01"
    assert isinstance(message.date_created, datetime)
    assert abs(message.date_created - datetime.now(UTC)) < timedelta(minutes=1)

    [stored] = fake.messages
    assert stored["sid"] == message.sid
    assert stored["body"] == "Choir practice moved to 7pm"
    assert stored["status_callback"] == "https://example.test/twilio/status"
    assert stored["validity_period"] == "600"
    assert stored["params"]["StatusCallback"] == "https://example.test/twilio/status"
    assert fake.sent_to("+15551230001") == 1
    assert fake.create_attempts == 1


def test_messaging_service_send_is_accepted(fake: FakeTwilio, client: Client) -> None:
    service_sid = "MG" + "a" * 32
    message = client.messages.create(
        to="+15551230001", messaging_service_sid=service_sid, body="hello"
    )
    assert message.status == "accepted"
    assert message.messaging_service_sid == service_sid
    assert message.from_ is None


def test_long_unicode_body_counts_segments(client: Client) -> None:
    assert send(client, body="x" * 161).num_segments == "2"
    assert send(client, body="é" * 160).num_segments == "1"  # é is in GSM-7
    assert send(client, body="🎵" * 36).num_segments == "2"  # 72 UCS-2 units


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": ""}, 21604),
        ({"body": ""}, 21602),
        ({"from_": None}, 21603),
        ({"to": "555-1234"}, 21211),
        ({"body": "x" * 1601}, 21617),
    ],
)
def test_validation_errors(
    fake: FakeTwilio, client: Client, kwargs: dict[str, Any], code: int
) -> None:
    params: dict[str, Any] = {"to": "+15551230001", "from_": SENDER, "body": "hi", **kwargs}
    with pytest.raises(TwilioRestException) as excinfo:
        client.messages.create(**params)
    assert excinfo.value.status == 400
    assert excinfo.value.code == code
    assert fake.messages == []
    assert fake.create_attempts == 1


def test_fail_number(fake: FakeTwilio, client: Client) -> None:
    fake.fail_number("+15551239999", 21610)

    with pytest.raises(TwilioRestException) as excinfo:
        send(client, to="+15551239999")
    assert (excinfo.value.status, excinfo.value.code) == (400, 21610)
    assert "unsubscribed" in excinfo.value.msg

    send(client, to="+15551230001")
    assert fake.sent_to("+15551239999") == 0
    assert fake.sent_to("+15551230001") == 1
    assert fake.create_attempts == 2


def test_scripted_429_then_success(fake: FakeTwilio, client: Client) -> None:
    fake.script(Reply(status=429, code=20429, headers={"Retry-After": "1"}))

    with pytest.raises(TwilioRestException) as excinfo:
        send(client)
    assert (excinfo.value.status, excinfo.value.code) == (429, 20429)

    message = send(client)
    assert [m["sid"] for m in fake.messages] == [message.sid]
    assert fake.create_attempts == 2
    assert fake.pending_script == 0


def test_500_with_record_stores_message_yet_raises(fake: FakeTwilio, client: Client) -> None:
    fake.script(Reply(status=500, record=True), Reply(status=503))

    with pytest.raises(TwilioRestException) as first:
        send(client, to="+15551230001")
    with pytest.raises(TwilioRestException) as second:
        send(client, to="+15551230002")

    assert (first.value.status, first.value.code) == (500, 20500)
    assert (second.value.status, second.value.code) == (503, 20503)
    # Only the "unknown outcome" one reached Twilio's store.
    assert [m["to"] for m in fake.messages] == ["+15551230001"]


def test_only_to_targets_one_recipient(fake: FakeTwilio, client: Client) -> None:
    fake.script(Reply(status=500, only_to="+15551230002"))

    send(client, to="+15551230001")
    with pytest.raises(TwilioRestException):
        send(client, to="+15551230002")
    send(client, to="+15551230002")

    assert fake.sent_to("+15551230001") == 1
    assert fake.sent_to("+15551230002") == 1


@pytest.mark.parametrize("record", [False, True])
def test_drop_closes_connection_without_answer(
    fake: FakeTwilio, client: Client, record: bool
) -> None:
    send(client)  # warm a keep-alive connection so the drop hits a pooled one
    fake.script(Reply(drop=True, record=record))

    with pytest.raises(requests.exceptions.ConnectionError):
        send(client, to="+15551230002")

    assert fake.sent_to("+15551230002") == int(record)
    send(client, to="+15551230003")  # the client recovers on a new connection
    assert fake.sent_to("+15551230003") == 1


def test_delay_triggers_client_timeout(fake: FakeTwilio) -> None:
    client = make_client(fake, timeout=0.2)
    fake.script(Reply(delay=1.0))

    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        send(client)
    assert time.monotonic() - started < 0.9

    # Twilio still accepted it after the client gave up: the classic unknown outcome.
    assert fake.wait_for_messages(1, timeout=5.0)
    assert fake.create_attempts == 1


def test_list_filters_across_pages(fake: FakeTwilio, client: Client) -> None:
    target = "+15551230001"
    # Delivered ones: a queued message has no DateSent yet (see the next test).
    expected = [fake.add_message(to=target, from_=SENDER)["sid"] for _ in range(7)]
    for _ in range(3):
        fake.add_message(to="+15551230002", from_=SENDER)
    for _ in range(2):
        fake.add_message(to=target, from_=OTHER_SENDER)
    fake.add_message(
        to=target, from_=SENDER, body="last week", date_sent=datetime.now(UTC) - timedelta(days=7)
    )
    since = datetime.now(UTC) - timedelta(days=1)

    listed = client.messages.list(to=target, from_=SENDER, date_sent_after=since, page_size=3)
    streamed = list(
        client.messages.stream(to=target, from_=SENDER, date_sent_after=since, page_size=2)
    )

    # Newest first, like Twilio.
    assert [m.sid for m in listed] == expected[::-1]
    assert [m.sid for m in streamed] == expected[::-1]
    assert all(m.to == target and m.from_ == SENDER for m in listed)

    first = client.messages.page(to=target, from_=SENDER, date_sent_after=since, page_size=3)
    assert first.next_page_url is not None
    assert "DateSent%3E=" in first.next_page_url
    assert first.previous_page_url is None


def test_queued_message_has_no_date_sent_and_date_filters_leave_it_out(
    fake: FakeTwilio, client: Client
) -> None:
    target = "+15551230001"
    queued = send(client, to=target)
    assert queued.status == "queued" and queued.date_sent is None
    assert queued.date_created is not None
    since = datetime.now(UTC) - timedelta(days=1)

    assert client.messages.list(to=target, date_sent_after=since) == []
    assert [m.sid for m in client.messages.list(to=target)] == [queued.sid]


def test_list_pages_newest_first_through_next_page_uri(fake: FakeTwilio, client: Client) -> None:
    target = "+15551230001"
    now = datetime.now(UTC)
    sids = [
        fake.add_message(to=target, body=f"n{i}", date_sent=now - timedelta(minutes=i))["sid"]
        for i in range(7)
    ]
    first = client.messages.page(to=target, page_size=3)
    assert [m.sid for m in first] == sids[:3]  # newest first
    assert first.next_page_url is not None and "PageSize=3" in first.next_page_url
    second = first.next_page()
    third = second.next_page()
    assert [m.sid for m in second] == sids[3:6]
    assert [m.sid for m in third] == sids[6:]
    assert third.next_page_url is None
    assert fake.list_requests == 3
    # Without PageSize, Twilio's default of 50 applies.
    for i in range(60):
        fake.add_message(to=target, date_sent=now - timedelta(days=1, minutes=i))
    assert len(list(client.messages.page(to=target))) == 50


def test_seeded_date_created_and_date_sent_differ(fake: FakeTwilio, client: Client) -> None:
    created = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    sent = datetime(2024, 3, 1, 12, 5, tzinfo=UTC)
    fake.add_message(to="+15551230001", date_created=created, date_sent=sent)
    [message] = client.messages.list(to="+15551230001")
    assert (message.date_created, message.date_sent) == (created, sent)
    fake.add_message(to="+15551230002", status="queued", date_sent=sent)
    [queued] = client.messages.list(to="+15551230002")
    assert (queued.date_created, queued.date_sent) == (sent, None)


def test_scripted_list_replies(fake: FakeTwilio, client: Client) -> None:
    sid = send(client, to="+15551230001").sid
    hold = threading.Event()
    fake.script_list(Reply(status=500), Reply(hold=hold))

    with pytest.raises(TwilioException):
        client.messages.list(to="+15551230001")

    answers: list[list[str]] = []
    reader = threading.Thread(
        target=lambda: answers.append([m.sid for m in client.messages.list(to="+15551230001")])
    )
    reader.start()
    assert fake.wait_for_list_requests(2)
    send(client, to="+15551230001")  # arrives after the held page was computed
    time.sleep(0.1)
    assert answers == []  # still held
    hold.set()
    reader.join(timeout=5)
    assert answers == [[sid]]
    assert fake.list_requests == 2


def test_smart_encoding_rewrites_look_alikes(fake: FakeTwilio, client: Client) -> None:
    fake.smart_encoding = True
    send(client, body="\u201cDon\u2019t\u201d \u2013 bring\u00a0food\u2026")
    assert fake.messages[-1]["body"] == '"Don\'t" - bring food...'


def test_list_date_sent_before_and_day_granularity(fake: FakeTwilio, client: Client) -> None:
    old = fake.add_message(to="+15551230001", date_sent=datetime(2024, 3, 1, 23, 59, tzinfo=UTC))
    older = fake.add_message(to="+15551230001", date_sent=datetime(2024, 2, 1, 8, 0, tzinfo=UTC))
    send(client, to="+15551230001")

    before = client.messages.list(date_sent_before=datetime(2024, 3, 2, tzinfo=UTC))
    assert [m.sid for m in before] == [old["sid"], older["sid"]]

    # A bare YYYY-MM-DD (what the API documents) matches the whole day.
    on_day = client.messages.list(date_sent="2024-03-01")
    assert [m.sid for m in on_day] == [old["sid"]]


def test_list_paging_is_stable_while_messages_arrive(fake: FakeTwilio, client: Client) -> None:
    for _ in range(4):
        send(client)
    page = client.messages.page(page_size=2)
    seen = [m.sid for m in page]
    send(client)  # a new message on top must not shift the next page
    next_page = page.next_page()
    assert next_page is not None
    seen += [m.sid for m in next_page]
    assert len(set(seen)) == 4


def test_fetch(fake: FakeTwilio, client: Client) -> None:
    sid = send(client).sid
    fetched = client.messages(sid).fetch()
    assert fetched.sid == sid
    assert fetched.body == "Choir practice moved to 7pm"

    with pytest.raises(TwilioRestException) as excinfo:
        client.messages("SM" + "0" * 32).fetch()
    assert (excinfo.value.status, excinfo.value.code) == (404, 20404)


def test_bad_auth(fake: FakeTwilio) -> None:
    client = make_client(fake, auth_token="wrong-token")

    with pytest.raises(TwilioRestException) as excinfo:
        send(client)
    assert (excinfo.value.status, excinfo.value.code) == (401, 20003)

    # Twilio's Page class raises a bare TwilioException for any non-200 list
    # response: no .status / .code to inspect, unlike create and fetch.
    with pytest.raises(TwilioException) as list_exc:
        client.messages.list()
    assert not isinstance(list_exc.value, TwilioRestException)
    assert fake.messages == []


def test_account_sid_in_url_must_match(fake: FakeTwilio) -> None:
    client = make_client(fake)
    other = client.api.v2010.accounts("AC" + "f" * 32).messages
    with pytest.raises(TwilioRestException) as excinfo:
        other.create(to="+15551230001", from_=SENDER, body="hi")
    assert (excinfo.value.status, excinfo.value.code) == (404, 20404)


def test_latency_and_max_concurrent(fake: FakeTwilio) -> None:
    fake.latency = 0.3
    clients = [make_client(fake) for _ in range(5)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=5) as pool:
        sids = list(pool.map(lambda c: send(c).sid, clients))
    elapsed = time.monotonic() - started

    assert len(set(sids)) == 5
    assert fake.max_concurrent == 5
    assert 0.3 <= elapsed < 1.4  # in parallel, not 5 x 0.3 s back to back


def test_reset(fake: FakeTwilio, client: Client) -> None:
    fake.latency = 0.05
    fake.fail_number("+15551230009", 21610)
    fake.script(Reply(status=500))
    fake.add_message(to="+15551230001")

    fake.reset()

    assert fake.latency == 0.0
    assert fake.pending_script == 0
    assert fake.messages == [] and fake.create_attempts == 0 and fake.max_concurrent == 0
    send(client, to="+15551230009")
    assert fake.sent_to("+15551230009") == 1


def test_keep_alive_is_fast(fake: FakeTwilio, client: Client) -> None:
    # Guards against Nagle/delayed-ACK stalls (~40 ms per request) that would
    # make the 10k-message benchmark measure the fake instead of the sender.
    started = time.monotonic()
    for index in range(200):
        send(client, to=f"+1555000{index:04d}")
    assert time.monotonic() - started < 4.0
    assert len(fake.messages) == 200


def test_standalone_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TWILIO_REGION", "TWILIO_EDGE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "messaging.tests.fake_twilio", "--port", "0", "--latency-ms", "20"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = _readline_with_timeout(proc, timeout=10.0)
        match = re.fullmatch(
            r"FAKE_TWILIO_URL=(http://127\.0\.0\.1:\d+) ACCOUNT_SID=(AC[0-9a-f]{32}) AUTH_TOKEN=(\S+)",
            line.strip(),
        )
        assert match, line
        url, account_sid, auth_token = match.groups()

        client = Client(account_sid, auth_token, region=None, edge=None)
        client.http_client = TwilioHttpClient(timeout=5.0)
        client.api.base_url = url
        message = client.messages.create(to="+15551230001", from_=SENDER, body="out of process")
        assert SID_RE.match(message.sid)

        stats = requests.get(f"{url}/_fake/stats", timeout=5).json()
        assert stats["stored"] == 1
        assert stats["create_attempts"] == 1
        assert stats["per_to"] == {"+15551230001": 1}
        messages = requests.get(f"{url}/_fake/messages", timeout=5).json()["messages"]
        assert messages[0]["sid"] == message.sid
    finally:
        proc.terminate()
        try:
            returncode = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
    assert returncode == 0


def _readline_with_timeout(proc: subprocess.Popen[str], timeout: float) -> str:
    # readline() blocks forever if the child hangs before printing; a helper
    # thread keeps a broken fake from hanging the whole test run.
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not result:
        raise AssertionError(f"fake_twilio did not announce itself within {timeout}s")
    return result[0]
