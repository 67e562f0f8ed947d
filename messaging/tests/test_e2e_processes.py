"""End to end, with the real programs: manage.py, a Celery prefork worker, beat, a fake Twilio.

Each test is its own deployment: a temporary VAR_DIR holding its SQLite file, the
filesystem broker's folders and beat's schedule, passed to every program through the
environment. The test process's own database (SQLite or, in CI's second pass,
PostgreSQL) is never used, so there is no ``db`` fixture here.

Every program runs in its own process group and is stopped in the ``services``
fixture's teardown, whatever happened in the test.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from messaging.tests.fake_twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from messaging.tests.processes import (
    Result,
    Services,
    manage,
    program_env,
    shell_json,
    wait_for,
)

pytestmark = pytest.mark.slow

BAD_NUMBER = "+15005550001"  # the console backend and Twilio answer 21211 for it
SENDER = "+15005550006"


# --- Fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `manage.py migrate` per module; each test starts from a copy of its result."""
    var_dir = tmp_path_factory.mktemp("e2e-template")
    result = manage("migrate", "--noinput", env=program_env(var_dir), log_dir=var_dir, timeout=120)
    assert result.returncode == 0, str(result)
    return var_dir / "db.sqlite3"


@pytest.fixture
def var_dir(tmp_path: Path, migrated_db: Path) -> Path:
    var = tmp_path / "var"
    var.mkdir()
    # migrate exited cleanly, so its WAL was checkpointed into the main file.
    for suffix in ("", "-wal", "-shm"):
        source = migrated_db.with_name(migrated_db.name + suffix)
        if source.exists():
            shutil.copy(source, var / source.name)
    (tmp_path / "logs").mkdir()
    return var


@pytest.fixture
def log_dir(var_dir: Path) -> Path:
    return var_dir.parent / "logs"


@pytest.fixture
def services(var_dir: Path, log_dir: Path) -> Iterator[Services]:
    started = Services(log_dir=log_dir, env=program_env(var_dir))
    try:
        yield started
    finally:
        started.stop_all()
        # Shown by pytest only when the test failed: what each program said.
        print(started.tails())


# --- Helpers -----------------------------------------------------------------------------


def good_members(count: int) -> list[tuple[str, str]]:
    """(first name, phone) pairs of valid US numbers in the 555-01xx fiction range."""
    return [(f"Member{i:02d}", f"+1202555{100 + i:04d}") for i in range(count)]


def create_members(members: list[tuple[str, str]], *, env: dict[str, str], log_dir: Path) -> None:
    created = shell_json(
        "from members.models import Member\n"
        f"rows = {members!r}\n"
        "Member.objects.bulk_create(\n"
        "    Member(first_name=first, last_name='Example', phone=phone) for first, phone in rows\n"
        ")\n"
        "emit(Member.objects.count())\n",
        env=env,
        log_dir=log_dir,
    )
    assert created == len(members)


def blast_state(blast_id: int, *, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    return shell_json(
        "from messaging.models import Blast, Delivery\n"
        f"blast = Blast.objects.get(pk={blast_id})\n"
        "emit({\n"
        "    'status': blast.status,\n"
        "    'status_reason': blast.status_reason,\n"
        "    'enqueued_at': blast.enqueued_at,\n"
        "    'counts': blast.counts(),\n"
        "    'rows': list(Delivery.objects.filter(blast=blast).order_by('id').values(\n"
        "        'id', 'phone', 'status', 'attempts', 'twilio_sid', 'error_code',\n"
        "        'error_message', 'claimed_at')),\n"
        "})\n",
        env=env,
        log_dir=log_dir,
    )


def blast_id_of(result: Result) -> int:
    match = re.search(r"Blast (\d+) created: ", result.output)
    assert match, str(result)
    return int(match.group(1))


def twilio_env(var_dir: Path, url: str, **overrides: str | None) -> dict[str, str]:
    return program_env(
        var_dir,
        SMS_BACKEND="twilio",
        TWILIO_API_BASE_URL=url,
        TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN,
        TWILIO_FROM_NUMBER=SENDER,
        SMS_HTTP_TIMEOUT_SECONDS="5",
        **overrides,
    )


def send_blast_wait(audience: str, *, env: dict[str, str], log_dir: Path) -> Result:
    """`manage.py send_blast --wait` to one audience, as an operator would run it."""
    return manage(
        "send_blast",
        "--audience",
        audience,
        "--body",
        "Hi {first_name}",
        "--wait",
        "--timeout",
        "60",
        env=env,
        log_dir=log_dir,
        timeout=90,
    )


def fake_stats(url: str) -> dict[str, Any]:
    response = requests.get(f"{url}/_fake/stats", timeout=5)
    response.raise_for_status()
    return response.json()


# --- 1. send_blast --wait on the embedded default ------------------------------------------


def test_send_blast_wait_with_a_real_worker_on_the_embedded_default(
    var_dir: Path, log_dir: Path, services: Services
) -> None:
    env = program_env(var_dir, SMS_BACKEND="console", SMS_RATE_PER_SECOND="50")
    services.env = env
    members = good_members(29)
    create_members([*members[:10], ("Broken", BAD_NUMBER), *members[10:]], env=env, log_dir=log_dir)
    worker = services.worker()

    result = send_blast_wait("community", env=env, log_dir=log_dir)

    # Partially failed is a finished blast: the command fails only on failed, paused
    # or cancelled.
    assert result.returncode == 0, f"{result}\n{worker.tail()}"
    assert "Blast 1 created: 30 recipients." in result.output, str(result)
    assert re.search(r"^\[#+\.*\] \d+/30 sent \d+, failed \d+", result.output, re.M), str(result)
    assert "[" + "#" * 30 + "] 30/30 sent 29, failed 1, unknown 0" in result.output, str(result)
    assert "Blast 1: Partially failed." in result.output, str(result)

    outbox = shell_json(
        "from messaging.models import OutboxMessage\n"
        "emit(list(OutboxMessage.objects.order_by('id').values('to', 'body', 'from_number')))\n",
        env=env,
        log_dir=log_dir,
    )
    assert sorted((m["to"], m["body"]) for m in outbox) == sorted(
        (phone, f"Hi {first}") for first, phone in members
    )
    assert not [m for m in outbox if m["to"] == BAD_NUMBER]
    state = blast_state(1, env=env, log_dir=log_dir)
    [bad] = [row for row in state["rows"] if row["phone"] == BAD_NUMBER]
    assert (bad["status"], bad["error_code"]) == ("failed", 21211)


def test_send_blast_wait_fails_when_every_recipient_fails(
    var_dir: Path, log_dir: Path, services: Services
) -> None:
    env = program_env(var_dir, SMS_BACKEND="console", SMS_RATE_PER_SECOND="50")
    services.env = env
    event_id = shell_json(
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from events.models import Event, Registration\n"
        "event = Event.objects.create(name='Picnic', starts_at=timezone.now() + timedelta(days=3))\n"
        f"Registration.objects.create(event=event, first_name='Broken', phone={BAD_NUMBER!r})\n"
        "emit(event.pk)\n",
        env=env,
        log_dir=log_dir,
    )
    worker = services.worker()

    result = send_blast_wait(f"event:{event_id}", env=env, log_dir=log_dir)

    state = blast_state(1, env=env, log_dir=log_dir)
    assert result.returncode != 0, f"{result}\n{state}\n{worker.tail()}"
    assert "Blast 1 created: 1 recipients." in result.output, str(result)
    assert "[" + "#" * 30 + "] 1/1 sent 0, failed 1" in result.output, str(result)
    assert [(r["status"], r["error_code"]) for r in state["rows"]] == [("failed", 21211)]
    # Not auto-paused by the canary: with nobody left to send to, a pause would only
    # hide the outcome.
    assert "Blast 1: Failed." in result.output, f"{result}\n{state}"
    assert "Blast 1 ended failed." in result.output, str(result)
    assert state["status"] == "failed", state


# --- 2. Broker down at compose time: beat's sweeper sends it -------------------------------


def seed_beat_schedule(
    schedule: Path, *, ran_seconds_ago: float, env: dict[str, str], log_dir: Path
) -> list[str]:
    """Write beat's schedule file as if beat had last run its entries that long ago.

    A fresh beat runs an every-60-s entry only 60 s after it starts. Rather than wait
    that long (or enqueue the sweep ourselves, which would prove nothing about beat),
    the test hands the real beat a schedule file like the one a beat that has been
    up for a while leaves behind: the entries are the ones in settings, only their
    last run lies in the past, so beat itself sends the sweep a few seconds after start.
    """
    return shell_json(
        "from datetime import timedelta\n"
        "from celery.beat import PersistentScheduler\n"
        "from smsadmin.celery import app\n"
        f"scheduler = PersistentScheduler(app=app, schedule_filename={str(schedule)!r})\n"
        f"ran = app.now() - timedelta(seconds={ran_seconds_ago})\n"
        "for entry in scheduler.schedule.values():\n"
        "    entry.last_run_at = ran\n"
        "names = sorted(scheduler.schedule)\n"
        "scheduler.sync()\n"
        "scheduler.close()\n"
        "emit(names)\n",
        env=env,
        log_dir=log_dir,
    )


def test_beat_sweeps_out_a_blast_saved_while_the_broker_was_down(
    var_dir: Path, log_dir: Path, services: Services
) -> None:
    fake, url = services.fake_twilio()
    env = twilio_env(var_dir, url, SMS_RATE_PER_SECOND="50")
    services.env = env
    members = good_members(20)
    create_members(members, env=env, log_dir=log_dir)

    # Compose while the broker is unreachable (nothing listens on port 1): the blast is
    # saved, not enqueued, and the command says so without hanging.
    result = manage(
        "send_blast",
        "--audience",
        "community",
        "--body",
        "Hello {first_name}, see you Sunday",
        env={**env, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"},
        log_dir=log_dir,
        timeout=30,
    )
    assert result.returncode == 0, str(result)
    assert "Blast 1 created: 20 recipients." in result.output, str(result)
    assert "The task queue cannot be reached right now." in result.output, str(result)
    # redis-py and kombu retry a refused connection for a few seconds before giving up.
    assert result.seconds < 10, f"send_blast took {result.seconds:.1f}s with the broker down"
    state = blast_state(1, env=env, log_dir=log_dir)
    assert (state["status"], state["enqueued_at"]) == ("queued", None), state
    assert state["counts"]["pending"] == 20, state

    worker = services.worker()
    time.sleep(2)  # the worker polls the queue folder every second: nothing is there
    assert fake_stats(url)["create_attempts"] == 0, services.tails()
    schedule = var_dir / "celerybeat-schedule"
    names = seed_beat_schedule(schedule, ran_seconds_ago=55, env=env, log_dir=log_dir)
    assert {"sweep-blasts", "reconcile-deliveries"} <= set(names), names
    beat = services.beat(schedule)

    beat.wait_for_log(r"Sending due task sweep-blasts \(messaging\.sweep_blasts\)", timeout=30)
    worker.wait_for_log(
        r"Task messaging\.sweep_blasts\[[^\]]+\] succeeded in [^\n]*'requeued': 1\b", timeout=30
    )

    def finished() -> dict[str, Any] | None:
        state = blast_state(1, env=env, log_dir=log_dir)
        return state if state["status"] not in ("queued", "sending") else None

    state = wait_for(
        "the blast to finish", finished, timeout=40, interval=0.5, describe=services.tails
    )
    stats = fake_stats(url)
    assert state["status"] == "sent", state
    assert stats["per_to"] == {phone: 1 for _, phone in members}, stats
    assert stats["create_attempts"] == 20, stats
    assert {r["status"] for r in state["rows"]} == {"sent"}, state
    messages = requests.get(f"{url}/_fake/messages", timeout=5).json()["messages"]
    assert sorted((m["to"], m["body"], m["from"]) for m in messages) == sorted(
        (phone, f"Hello {first}, see you Sunday", SENDER) for first, phone in members
    )


# --- 3. A worker killed mid-blast -----------------------------------------------------------


def test_a_worker_killed_mid_blast_loses_nothing_and_sends_nothing_twice(
    var_dir: Path, log_dir: Path, services: Services
) -> None:
    fake, url = services.fake_twilio(latency_ms=200)
    env = twilio_env(var_dir, url, SMS_RATE_PER_SECOND="5")
    services.env = env
    members = good_members(40)
    create_members(members, env=env, log_dir=log_dir)
    first = services.worker("worker-1")

    result = manage(
        "send_blast",
        "--audience",
        "community",
        "--body",
        "Hello {first_name}",
        env=env,
        log_dir=log_dir,
        timeout=30,
    )
    assert result.returncode == 0, str(result)
    assert "Blast 1 created: 40 recipients." in result.output, str(result)
    assert "cannot be reached" not in result.output, str(result)

    wait_for(
        "a few messages to go out",
        lambda: fake_stats(url)["stored"] >= 5,
        timeout=30,
        describe=services.tails,
    )
    first.kill_hard()
    at_kill = fake_stats(url)
    state = blast_state(1, env=env, log_dir=log_dir)
    # The worker really died mid-blast: work was left claimed and unfinished.
    assert state["status"] == "sending", state
    assert at_kill["stored"] < 40, at_kill
    assert state["counts"]["sending"] > 0, state

    # The next worker treats claims older than 5 s as abandoned and reconciles unknown
    # rows at once. Its own claims must stay far younger than that: a claim that outlives
    # SMS_CLAIM_STALE_SECONDS is taken for a dead worker's while that worker is still
    # sending it (the defaults keep this with 240-s passes and 300-s staleness). Chunks
    # of 3 at 5 messages a second are done in about a second.
    recovery_env = {
        **env,
        "SMS_CLAIM_STALE_SECONDS": "5",
        "SMS_RECONCILE_AFTER_MINUTES": "0",
        "SMS_CHUNK_SIZE": "3",
    }
    services.worker("worker-2", env=recovery_env)
    queue = var_dir / "broker" / "queue"

    def sweep_and_reconcile() -> dict[str, Any] | None:
        # What beat does every minute, through the real broker to the real worker; a
        # new round only once the worker has taken everything queued before.
        enqueue = not any(queue.glob("*.msg"))
        state = shell_json(
            "from messaging.models import Blast\n"
            "from messaging.tasks import reconcile_deliveries_task, sweep_blasts_task\n"
            "blast = Blast.objects.get(pk=1)\n"
            f"if {enqueue!r} and blast.status in ('queued', 'sending'):\n"
            "    sweep_blasts_task.delay()\n"
            "    reconcile_deliveries_task.delay()\n"
            "emit({'status': blast.status, 'counts': blast.counts()})\n",
            env=recovery_env,
            log_dir=log_dir,
        )
        return state if state["status"] not in ("queued", "sending") else None

    wait_for(
        "the blast to finish after the crash",
        sweep_and_reconcile,
        timeout=45,
        interval=0.5,
        describe=services.tails,
    )
    state = blast_state(1, env=env, log_dir=log_dir)
    stats = fake_stats(url)
    twice = {to: n for to, n in stats["per_to"].items() if n != 1}
    missing = sorted({phone for _, phone in members} - set(stats["per_to"]))
    assert not twice and not missing, (
        f"sent more than once: {twice}; never sent: {missing}\n"
        f"at the kill: {at_kill}\nrows: {state['rows']}"
    )
    assert state["status"] == "sent", state
    assert {r["status"] for r in state["rows"]} == {"sent"}, state
    sids = {m["sid"] for m in requests.get(f"{url}/_fake/messages", timeout=5).json()["messages"]}
    assert {r["twilio_sid"] for r in state["rows"]} == sids, state


# --- 4. The production shape: PostgreSQL, Redis, a worker, Twilio over HTTP ----------------


def _service_url(name: str) -> str:
    url = os.environ.get(name, "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{name} must be set in CI: .ci/run starts the server it names.")
        pytest.skip(f"{name} is not set (CI sets it); run .ci/run or set it to try this.")
    return url


@pytest.fixture
def postgres_database_url() -> Iterator[str]:
    """A database of its own on the server TEST_POSTGRES_URL names, dropped afterwards."""
    import psycopg

    base = _service_url("TEST_POSTGRES_URL")
    name = f"smsadmin_e2e_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_blast_on_postgresql_and_redis_through_twilio_over_http(
    var_dir: Path, log_dir: Path, services: Services, postgres_database_url: str
) -> None:
    redis_url = _service_url("TEST_REDIS_URL")
    fake, url = services.fake_twilio(latency_ms=20)
    env = twilio_env(
        var_dir,
        url,
        DATABASE_URL=postgres_database_url,
        CELERY_BROKER_URL=redis_url,
        SMS_RATE_PER_SECOND="100",
    )
    services.env = env
    migrated = manage("migrate", "--noinput", env=env, log_dir=log_dir, timeout=120)
    assert migrated.returncode == 0, str(migrated)
    members = good_members(40)
    create_members(members, env=env, log_dir=log_dir)
    services.worker()

    result = send_blast_wait("community", env=env, log_dir=log_dir)

    assert result.returncode == 0, str(result)
    assert "Blast 1: Sent." in result.output, str(result)
    stats = fake_stats(url)
    assert stats["per_to"] == {phone: 1 for _, phone in members}
    state = blast_state(1, env=env, log_dir=log_dir)
    assert state["counts"]["sent"] == 40
    assert all(row["twilio_sid"].startswith("SM") for row in state["rows"])
