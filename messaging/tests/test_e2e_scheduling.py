"""End to end, with the real programs: `manage.py send_blast --at`, Celery beat running the
scheduler's dispatch pass and a prefork worker sending.

Each test is its own deployment in a temporary VAR_DIR (SQLite, filesystem broker, beat's
schedule file), like the other end-to-end tests; the fixtures come from
test_e2e_processes. Beat runs its dispatch pass every 2 s here (SCHEDULER_POLL_SECONDS)
instead of every 30 s.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from messaging.tests.processes import Services, manage, program_env, shell_json, wait_for
from messaging.tests.test_e2e_processes import (  # noqa: F401 - fixtures
    blast_state,
    create_members,
    good_members,
    log_dir,
    migrated_db,
    services,
    var_dir,
)

pytestmark = pytest.mark.slow

POLL_SECONDS = 2
# send_blast wants --at at least a minute ahead when it checks, about a second after
# it starts; a few seconds more keep the test from depending on how fast it starts.
AHEAD = timedelta(seconds=65)


def scheduler_env(var: Path) -> dict[str, str]:
    return program_env(
        var,
        SCHEDULER_POLL_SECONDS=str(POLL_SECONDS),
        SMS_RATE_PER_SECOND="50",
        # Whatever time of day the test runs at.
        QUIET_HOURS="",
    )


def start_scheduler(started: Services, var: Path) -> None:
    """A worker, and beat with its schedule file in the deployment's VAR_DIR."""
    started.worker()
    started.beat(var / "celerybeat-schedule")


def scheduler_facts(env: dict[str, str], logs: Path) -> dict[str, Any]:
    return shell_json(
        "from django.utils import timezone\n"
        "from messaging.models import Blast, OutboxMessage\n"
        "from messaging.services.scheduling import last_heartbeat\n"
        "emit({\n"
        "    'now': timezone.now().isoformat(),\n"
        "    'heartbeat': last_heartbeat(),\n"
        "    'blasts': list(Blast.objects.order_by('pk').values(\n"
        "        'pk', 'status', 'status_reason', 'scheduled_for')),\n"
        "    'outbox': list(OutboxMessage.objects.order_by('created_at', 'id').values(\n"
        "        'to', 'body', 'created_at')),\n"
        "})\n",
        env=env,
        log_dir=logs,
    )


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_blast_scheduled_a_minute_ahead_goes_out_at_its_time_once(
    var_dir: Path,  # noqa: F811
    log_dir: Path,  # noqa: F811
    services: Services,  # noqa: F811
) -> None:
    env = scheduler_env(var_dir)
    services.env = env
    members = good_members(6)
    create_members(members, env=env, log_dir=log_dir)
    at = (datetime.now().astimezone() + AHEAD).isoformat(timespec="seconds")

    result = manage(
        "send_blast",
        "--audience",
        "community",
        "--body",
        "Hi {first_name}, see you Sunday",
        "--at",
        at,
        env=env,
        log_dir=log_dir,
        timeout=30,
    )

    assert result.returncode == 0, str(result)
    # The deployment's TIME_ZONE is the default, UTC.
    utc = moment(at).astimezone(UTC)
    shown = f"{utc:%Y-%m-%d %H:%M:%S}" if utc.second else f"{utc:%Y-%m-%d %H:%M}"
    assert re.search(
        rf"^Blast 1 scheduled for {shown} UTC; its recipients are taken when it is due\.$",
        result.output,
        re.M,
    ), str(result)
    state = blast_state(1, env=env, log_dir=log_dir)
    assert (state["status"], state["rows"]) == ("scheduled", []), state

    # Beat and the worker start while the blast waits for its time.
    start_scheduler(services, var_dir)

    def sent() -> dict[str, Any] | None:
        facts = scheduler_facts(env, log_dir)
        return facts if facts["blasts"][0]["status"] == "sent" else None

    facts = wait_for(
        "the scheduled blast to be sent",
        sent,
        timeout=AHEAD.total_seconds() + 30,
        interval=1.0,
        describe=services.tails,
    )
    outbox = facts["outbox"]
    assert sorted((m["to"], m["body"]) for m in outbox) == sorted(
        (phone, f"Hi {first}, see you Sunday") for first, phone in members
    ), outbox
    scheduled_for = moment(facts["blasts"][0]["scheduled_for"])
    assert scheduled_for == moment(at), facts
    first_sent = moment(outbox[0]["created_at"])
    assert first_sent >= scheduled_for, f"sent at {first_sent}, scheduled for {scheduled_for}"
    assert moment(facts["now"]) - moment(facts["heartbeat"]) < timedelta(
        seconds=POLL_SECONDS * 5
    ), facts


def test_a_blast_found_hours_late_when_beat_comes_back_is_missed_not_sent(
    var_dir: Path,  # noqa: F811
    log_dir: Path,  # noqa: F811
    services: Services,  # noqa: F811
) -> None:
    env = scheduler_env(var_dir)
    services.env = env
    create_members(good_members(4), env=env, log_dir=log_dir)
    # Scheduled while beat was down, and beat came back two hours after its time.
    blast_id = shell_json(
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from messaging.models import Blast\n"
        "from messaging.services import blast_create\n"
        "blast = blast_create(body='Hi {first_name}', community=True,\n"
        "                     scheduled_for=timezone.now() + timedelta(hours=1))\n"
        "Blast.objects.filter(pk=blast.pk).update(\n"
        "    scheduled_for=timezone.now() - timedelta(hours=2))\n"
        "emit(blast.pk)\n",
        env=env,
        log_dir=log_dir,
    )
    assert blast_state(blast_id, env=env, log_dir=log_dir)["status"] == "scheduled"

    start_scheduler(services, var_dir)

    def missed() -> dict[str, Any] | None:
        facts = scheduler_facts(env, log_dir)
        return facts if facts["blasts"][0]["status"] != "scheduled" else None

    facts = wait_for(
        "beat's dispatch pass to find the late blast",
        missed,
        timeout=30,
        interval=1.0,
        describe=services.tails,
    )
    [blast] = facts["blasts"]
    assert blast["status"] == "missed", facts
    assert "Send it now or cancel it" in blast["status_reason"], facts
    # Later passes leave it alone: nothing goes out on its own.
    first_heartbeat = moment(facts["heartbeat"])

    def another_pass() -> dict[str, Any] | None:
        facts = scheduler_facts(env, log_dir)
        return facts if moment(facts["heartbeat"]) > first_heartbeat else None

    later = wait_for(
        "another dispatch pass",
        another_pass,
        timeout=20,
        interval=1.0,
        describe=services.tails,
    )
    assert later["blasts"][0]["status"] == "missed", later
    assert later["outbox"] == [], later
    assert blast_state(blast_id, env=env, log_dir=log_dir)["rows"] == []
