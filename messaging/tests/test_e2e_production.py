"""End to end in the production shape: gunicorn, a Celery worker and Celery beat as real
processes on PostgreSQL and Redis, Twilio (the fake, its own process) over HTTP.

A Social manager signs in and sends a blast over HTTP only, as a browser would (cookies,
CSRF tokens, the compose form's hidden fields); Twilio's signed status callbacks reach the
web process at PUBLIC_BASE_URL; /healthz reports the database and the scheduler that beat
drives. Each of the three programs is needed: without the web process nobody signs in,
without the worker nothing is sent (the wait for the messages times out), without beat the
scheduler never runs and /healthz does not say "ok" for it (the second test shows that).

Both tests need the servers CI starts: TEST_POSTGRES_URL (each test gets a database of its
own, dropped afterwards) and TEST_REDIS_URL (each test claims a database number of its own,
flushed before and after). Without them they are skipped, or fail when CI is set. Every
program logs to the test's temporary folder; failures show the end of each log.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from twilio.request_validator import RequestValidator

from messaging.tests.fake_twilio import API_VERSION, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from messaging.tests.processes import Service, Services, manage, wait_for
from messaging.tests.test_e2e_processes import (  # noqa: F401 - fixtures
    _service_url,
    create_members,
    good_members,
    log_dir,
    migrated_db,
    postgres_database_url,
    services,
    twilio_env,
    var_dir,
)
from messaging.tests.test_e2e_webhooks import free_port
from smsadmin.phones import phone_display
from smsadmin.testing.browser import SOCIAL_MANAGER, LiveApp

_MISSING = [name for name in ("TEST_POSTGRES_URL", "TEST_REDIS_URL") if not os.environ.get(name)]
pytestmark = [
    pytest.mark.slow,
    # Skipped before any fixture runs (the migrated templates cost seconds); in CI the
    # fixtures fail the tests instead (see _service_url).
    pytest.mark.skipif(
        bool(_MISSING) and not os.environ.get("CI"),
        reason=f"{' and '.join(_MISSING)} not set (CI sets them); run .ci/run or set them.",
    ),
]

MEMBERS = 20
POLL_SECONDS = 2  # beat's dispatch pass, the scheduler /healthz reports on
BODY = "Hi {first_name}, the picnic is on Sunday at noon. Reply STOP to opt out."
UNDELIVERED = 30003  # Twilio: unreachable destination handset
HTTP_TIMEOUT = 10

# Marks a Redis database as taken by one test run, so runs side by side (other engineers,
# other checkouts) never flush each other's queues.
REDIS_CLAIM_KEY = "smsadmin-e2e-production:claimed-by"


# --- Fixtures ----------------------------------------------------------------------------


@pytest.fixture
def redis_broker_url() -> Iterator[str]:
    """A database number of this test's own on the Redis server TEST_REDIS_URL names.

    Database 0 is left to TEST_REDIS_URL's other users; of 15..1 the first nobody has
    claimed is taken, flushed (a crashed run's queues go), and flushed again afterwards.
    """
    import redis

    base = urlsplit(_service_url("TEST_REDIS_URL"))
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    for number in range(15, 0, -1):
        url = urlunsplit(base._replace(path=f"/{number}"))
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            if client.set(REDIS_CLAIM_KEY, token, nx=True, ex=900):
                break
        except redis.ResponseError:  # the server has fewer databases
            pass
        client.close()
    else:
        pytest.fail(f"Every Redis database 1-15 on {base.netloc} is claimed by another run.")
    try:
        client.flushdb()
        client.set(REDIS_CLAIM_KEY, token, ex=900)
        yield url
    finally:
        client.flushdb()
        client.close()


# --- Helpers -----------------------------------------------------------------------------


class _Forms(HTMLParser):
    """Each <form>'s action and the (name, value) of its hidden inputs, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, list[tuple[str, str]]]] = []
        self._current: list[tuple[str, str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._current = []
            self.forms.append((found.get("action", ""), self._current))
        elif tag == "input" and self._current is not None and found.get("type") == "hidden":
            self._current.append((found.get("name", ""), found.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def hidden_fields(html: str, action: str) -> list[tuple[str, str]]:
    """The hidden inputs of the page's form posting to ``action``."""
    parser = _Forms()
    parser.feed(html)
    for form_action, fields in parser.forms:
        if form_action == action:
            return fields
    raise AssertionError(f"no form posting to {action} on the page:\n{html[:3000]}")


def page_text(html: str) -> str:
    """What a person reads on the page: no tags, no scripts, whitespace collapsed."""
    html = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def expect_status(response: requests.Response, status: int, started: Services) -> None:
    if response.status_code != status:
        raise AssertionError(
            f"{response.request.method} {response.url}: {response.status_code}, expected "
            f"{status}\n{page_text(response.text)[:2000]}\n{started.tails()}"
        )


def healthz(app: LiveApp) -> tuple[int, dict[str, Any]]:
    response = requests.get(app.url_for("/healthz"), timeout=HTTP_TIMEOUT)
    return response.status_code, response.json()


# Parts of /healthz besides the scheduler that must say "ok" when it reports them.
HEALTH_PARTS = ("database", "broker", "beat", "worker")


def wait_until_healthy(app: LiveApp) -> dict[str, Any]:
    """Wait for /healthz to answer 200, "ok", with the scheduler (beat's dispatch pass) and
    every other part it reports ok; its JSON."""
    last: dict[str, Any] = {}

    def healthy() -> bool:
        code, body = healthz(app)
        last.update(code=code, body=body)
        parts = [body[name] for name in HEALTH_PARTS if name in body]
        return (
            code == 200
            and body.get("status") == "ok"
            and body.get("scheduler", {}).get("status") == "ok"
            and all(part == "ok" for part in parts)
        )

    wait_for(
        "/healthz to report everything ok (beat runs its dispatch pass, a worker runs it)",
        healthy,
        # Generous for a worker heartbeat beat sends less often than the dispatch pass.
        timeout=45,
        interval=0.5,
        describe=lambda: f"last /healthz: {last}\n{app.logs()}",
    )
    assert last["body"]["database"] == "ok", last
    return last["body"]


def deploy(
    *,
    started: Services,
    var: Path,
    logs: Path,
    static: Path,
    database_url: str,
    broker_url: str,
    with_beat: bool,
) -> tuple[LiveApp, str, Service | None]:
    """Migrate, then start web, worker and (``with_beat``) beat: the app, the fake
    Twilio's URL and beat."""
    _, fake_url = started.fake_twilio(latency_ms=5)
    (var / "static").symlink_to(static, target_is_directory=True)
    # Another program may take the port between our probe and gunicorn's bind; nothing
    # but migrate has used the environment (and the port in it) before gunicorn starts.
    for attempt in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = twilio_env(
            var,
            fake_url,
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=broker_url,
            # StatusCallback URLs point at our own web process, which checks Twilio's
            # signatures against this address.
            PUBLIC_BASE_URL=url,
            ALLOWED_HOSTS="127.0.0.1",
            DEBUG="false",
            # Plain http on loopback: cookies marked Secure would never come back, and
            # an https redirect would lead nowhere.
            SESSION_COOKIE_SECURE="false",
            SECURE_SSL_REDIRECT="false",
            SCHEDULER_POLL_SECONDS=str(POLL_SECONDS),
            # Where /healthz also reports a worker heartbeat beat sends it.
            WORKER_HEARTBEAT_SECONDS=str(POLL_SECONDS),
            QUIET_HOURS="",  # whatever time of day the test runs at
            SMS_RATE_PER_SECOND="50",
        )
        started.env = env
        if attempt == 0:
            migrated = manage("migrate", "--noinput", env=env, log_dir=logs, timeout=120)
            assert migrated.returncode == 0, str(migrated)
        try:
            web = started.web(port, name=f"web-{attempt}")
            break
        except AssertionError:
            if attempt == 2 or "in use" not in started.started[-1].log():
                raise
    worker = started.worker()
    beat = started.beat(var / "celerybeat-schedule") if with_beat else None
    app = LiveApp(
        url=url,
        env=env,
        var_dir=var,
        log_dir=logs,
        web=web,
        worker=worker,
        services=started,
    )
    return app, fake_url, beat


def sign_in_over_http(app: LiveApp, username: str, password: str) -> requests.Session:
    """The admin's sign-in form, as a browser fills it in: cookie, token, credentials."""
    session = requests.Session()
    login_url = app.url_for("/admin/login/?next=/admin/")
    page = session.get(login_url, timeout=HTTP_TIMEOUT)
    expect_status(page, 200, app.services)
    assert session.cookies.get("csrftoken"), f"no csrftoken cookie: {page.headers}"
    fields = dict(hidden_fields(page.text, "/admin/login/?next=/admin/"))
    assert fields.get("csrfmiddlewaretoken"), fields
    answer = session.post(
        login_url,
        data={**fields, "username": username, "password": password},
        headers={"Referer": login_url, "Origin": app.url},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/admin/", (
        f"sign-in failed: {answer.status_code} {answer.headers.get('Location')}\n"
        f"{page_text(answer.text)[:1500]}\n{app.logs()}"
    )
    assert session.cookies.get("sessionid"), answer.headers
    return session


def post_form(
    app: LiveApp, session: requests.Session, path: str, data: list[tuple[str, str]], *, page: str
) -> requests.Response:
    """POST ``data`` to ``path`` from the page at ``page``, without following a redirect."""
    return session.post(
        app.url_for(path),
        data=data,
        headers={"Referer": app.url_for(page), "Origin": app.url},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )


def status_callback(
    url: str, message: dict[str, Any], status: str, *, error_code: int | None = None
) -> tuple[dict[str, str], str]:
    """The form Twilio posts to a message's StatusCallback, and its X-Twilio-Signature."""
    params = {
        "AccountSid": DEFAULT_ACCOUNT_SID,
        "ApiVersion": API_VERSION,
        "From": message["from"],
        "MessageSid": message["sid"],
        "MessageStatus": status,
        "SmsSid": message["sid"],
        "SmsStatus": status,
        "To": message["to"],
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params, RequestValidator(DEFAULT_AUTH_TOKEN).compute_signature(url, params)


# --- 1. The whole production shape -------------------------------------------------------


def test_a_manager_sends_a_blast_over_http_and_twilio_reports_back(
    postgres_database_url: str,  # noqa: F811 - before services: dropped after they stop
    redis_broker_url: str,
    live_app_template: Path,
    var_dir: Path,  # noqa: F811
    log_dir: Path,  # noqa: F811
    services: Services,  # noqa: F811
) -> None:
    app, fake_url, beat = deploy(
        started=services,
        var=var_dir,
        logs=log_dir,
        static=live_app_template / "static",
        database_url=postgres_database_url,
        broker_url=redis_broker_url,
        with_beat=True,
    )
    assert beat is not None
    manager = app.create_staff("sam-manager", SOCIAL_MANAGER, first_name="Sam")
    members = good_members(MEMBERS)
    create_members(members, env=app.env, log_dir=log_dir)

    browser = sign_in_over_http(app, manager.username, manager.password)

    # Compose: the form carries its idempotency key from the moment it is shown.
    compose = browser.get(app.url_for("/compose/?community=1"), timeout=HTTP_TIMEOUT)
    expect_status(compose, 200, services)
    fields = dict(hidden_fields(compose.text, "/compose/"))
    assert fields.get("idempotency_key") and fields.get("csrfmiddlewaretoken"), fields
    review = post_form(
        app,
        browser,
        "/compose/",
        [
            ("csrfmiddlewaretoken", fields["csrfmiddlewaretoken"]),
            ("idempotency_key", fields["idempotency_key"]),
            ("body", BODY),
            ("community", "on"),
            ("when", "now"),
        ],
        page="/compose/?community=1",
    )
    expect_status(review, 200, services)
    assert f"Confirm and send to {MEMBERS}" in review.text, page_text(review.text)[:2000]
    assert "Nothing has been sent yet." in page_text(review.text)

    confirmed = post_form(
        app,
        browser,
        "/compose/confirm/",
        [
            *hidden_fields(review.text, "/compose/confirm/"),
            ("confirm", f"Confirm and send to {MEMBERS}"),  # the button pressed
        ],
        page="/compose/",
    )
    expect_status(confirmed, 302, services)
    landing = re.fullmatch(r"/blasts/(\d+)/", confirmed.headers["Location"])
    assert landing, confirmed.headers["Location"]
    blast_path = landing.group(0)
    blast_page = browser.get(app.url_for(blast_path), timeout=HTTP_TIMEOUT)
    expect_status(blast_page, 200, services)
    assert f"Sending to {MEMBERS} people." in page_text(blast_page.text)

    # The worker sends them all; nothing would be sent without it.
    last: dict[str, Any] = {}

    def progress() -> dict[str, Any]:
        response = browser.get(app.url_for(f"{blast_path}progress/"), timeout=HTTP_TIMEOUT)
        expect_status(response, 200, services)
        last.update(response.json())
        return last

    def all_sent() -> bool:
        now = progress()
        return now["final"] and now["counts"]["sent"] == MEMBERS

    wait_for(
        f"the Celery worker to send all {MEMBERS} messages (nothing is sent without one)",
        all_sent,
        timeout=30,
        interval=0.5,
        describe=lambda: f"last progress: {last}\n{services.tails()}",
    )
    assert last["status"] == "sent" and last["handled"] == MEMBERS, last

    messages = requests.get(f"{fake_url}/_fake/messages", timeout=HTTP_TIMEOUT).json()["messages"]
    assert sorted((m["to"], m["body"]) for m in messages) == sorted(
        (phone, BODY.replace("{first_name}", first)) for first, phone in members
    ), messages
    callback_base = f"{app.url}/webhooks/twilio/status/?d="
    assert all(m["status_callback"].startswith(callback_base) for m in messages), [
        m["status_callback"] for m in messages
    ]

    # Twilio reports back: delivered for all but one, which the carrier could not reach.
    unreachable = messages[len(messages) // 2]
    first = messages[0]
    forged_params, _ = status_callback(
        first["status_callback"], first, "undelivered", error_code=UNDELIVERED
    )
    unsigned = requests.post(first["status_callback"], data=forged_params, timeout=HTTP_TIMEOUT)
    expect_status(unsigned, 403, services)
    wrong_key = requests.post(
        first["status_callback"],
        data=forged_params,
        headers={
            "X-Twilio-Signature": RequestValidator("not-the-token").compute_signature(
                first["status_callback"], forged_params
            )
        },
        timeout=HTTP_TIMEOUT,
    )
    expect_status(wrong_key, 403, services)
    for message in messages:
        outcome = ("undelivered", UNDELIVERED) if message is unreachable else ("delivered", None)
        params, signature = status_callback(
            message["status_callback"], message, outcome[0], error_code=outcome[1]
        )
        answer = requests.post(
            message["status_callback"],
            data=params,
            headers={"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"},
            timeout=HTTP_TIMEOUT,
        )
        expect_status(answer, 200, services)

    def reported() -> bool:
        counts = progress()["counts"]
        return counts["delivered"] == MEMBERS - 1 and counts["failed"] == 1

    wait_for(
        "the progress to show the delivered and the failed message",
        reported,
        timeout=10,
        interval=0.5,
        describe=lambda: f"last progress: {last}\n{services.tails()}",
    )
    assert last["counts"]["sent"] == 0, last  # every message has its final status

    shown = browser.get(app.url_for(blast_path), timeout=HTTP_TIMEOUT)
    expect_status(shown, 200, services)
    text = page_text(shown.text)
    assert f"Delivered {MEMBERS - 1}" in text, text
    assert "Failed 1" in text, text
    # The failed one is the number Twilio could not reach (the forged callback about
    # another number changed nothing), with what its error means.
    failed = browser.get(app.url_for(f"{blast_path}?status=failed"), timeout=HTTP_TIMEOUT)
    expect_status(failed, 200, services)
    text = page_text(failed.text)
    assert "1 recipient shown." in text, text
    # The page shows numbers as people write them.
    assert phone_display(unreachable["to"]) in text, text
    assert phone_display(first["to"]) not in text, text
    assert f"{UNDELIVERED}: Unreachable destination handset" in text, text

    # /healthz: the database answers and the scheduler beat drives runs on time.
    body = wait_until_healthy(app)
    assert body["scheduler"]["last_run"], body
    assert re.search(r"Sending due task dispatch-scheduled", beat.log()), beat.tail()


# --- 2. Without beat the scheduler never runs, and /healthz says so ------------------------


def test_without_beat_healthz_does_not_report_the_scheduler_ok(
    postgres_database_url: str,  # noqa: F811
    redis_broker_url: str,
    live_app_template: Path,
    var_dir: Path,  # noqa: F811
    log_dir: Path,  # noqa: F811
    services: Services,  # noqa: F811
) -> None:
    app, _, beat = deploy(
        started=services,
        var=var_dir,
        logs=log_dir,
        static=live_app_template / "static",
        database_url=postgres_database_url,
        broker_url=redis_broker_url,
        with_beat=False,
    )
    assert beat is None
    # Web and worker are up: what beat would have done by now (a dispatch pass every
    # POLL_SECONDS) nobody does.
    time.sleep(3 * POLL_SECONDS)
    code, body = healthz(app)
    assert body["database"] == "ok", body
    assert body["scheduler"]["status"] != "ok", f"{code} {body}\n{services.tails()}"
    # A scheduler that never ran is reported as such, still with 200 (a fresh install
    # before beat first started); one that stopped is late, with 503.
    assert body["scheduler"]["status"] in ("never", "late"), body
    assert code == 503 or body["scheduler"]["status"] == "never", (code, body)
    if "beat" in body:  # reported on its own too
        assert body["beat"] == body["scheduler"]["status"], body

    # The same deployment with beat started: the scheduler is soon reported ok.
    services.beat(var_dir / "celerybeat-schedule")
    wait_until_healthy(app)
