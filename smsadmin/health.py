"""What /healthz reports: the database, the broker, beat and the worker.

Each part is "ok" or says what is wrong: "late" (a heartbeat older than its margin),
"never" (no heartbeat yet: a fresh install before beat or the worker first ran, not an
error), or "error: <what>". Error details stay in the log: the endpoint answers anyone,
so it names the kind of failure, never a host, a user or a path.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from messaging.services.repeating import scheduler_state
from messaging.services.scheduling import heartbeat, last_heartbeat

logger = logging.getLogger(__name__)

WORKER = "worker"
# A probe must answer before the load balancer or monitor gives up on it.
BROKER_TIMEOUT_SECONDS = 2.0
# Parts whose "never" is not a failure.
_NEVER_OK = {"beat", "worker"}


@dataclass
class Health:
    database: str
    broker: str
    beat: str
    worker: str
    beat_last_run: datetime | None = None
    worker_last_run: datetime | None = None
    failing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failing

    def as_json(self) -> dict[str, object]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "status": "ok" if self.ok else "error",
            "failing": self.failing,
            "database": self.database,
            "broker": self.broker,
            "beat": self.beat,
            "worker": self.worker,
            "last_run": {"beat": iso(self.beat_last_run), "worker": iso(self.worker_last_run)},
            # The shape /healthz had before beat and worker were reported apart; monitors
            # written against it keep working.
            "scheduler": {"last_run": iso(self.beat_last_run), "status": self.beat},
        }


def worker_heartbeat_record() -> None:
    """Written by a task beat sends every WORKER_HEARTBEAT_SECONDS: a worker took it."""
    heartbeat(name=WORKER)


def worker_late_after() -> timedelta:
    """Three missed heartbeats and a minute's slack, as for the scheduler."""
    return timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS + 60)


def health_check(*, now: datetime | None = None) -> Health:
    now = now or timezone.now()
    database = _database_state()
    health = Health(database=database, broker=_broker_state(), beat="", worker="")
    if database != "ok":
        # Both heartbeats live in the database.
        health.beat = health.worker = "error: database"
    else:
        try:
            scheduler = scheduler_state(now=now)
            health.beat, health.beat_last_run = scheduler.status, scheduler.last_run
            health.worker_last_run = last_heartbeat(name=WORKER)
        except Exception as exc:  # a table missing before migrate, a lock held too long
            logger.warning("healthz: reading the heartbeats failed: %r", exc)
            health.beat = health.worker = f"error: {type(exc).__name__}"
        else:
            if health.worker_last_run is None:
                health.worker = "never"
            elif now - health.worker_last_run > worker_late_after():
                health.worker = "late"
            else:
                health.worker = "ok"
    for name in ("database", "broker", "beat", "worker"):
        state = getattr(health, name)
        if state != "ok" and not (state == "never" and name in _NEVER_OK):
            health.failing.append(name)
    return health


def _database_state() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not healthy"
        logger.warning("healthz: the database does not answer: %r", exc)
        return f"error: {type(exc).__name__}"
    return "ok"


def _broker_state() -> str:
    url = settings.CELERY_BROKER_URL
    scheme = url.split("://", 1)[0].lower()
    try:
        if scheme == "filesystem":
            return _filesystem_broker_state()
        if scheme in ("redis", "rediss"):
            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=BROKER_TIMEOUT_SECONDS,
                socket_timeout=BROKER_TIMEOUT_SECONDS,
            )
            try:
                client.ping()
            finally:
                client.close()
            return "ok"
        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        return "ok"
    except Exception as exc:
        logger.warning("healthz: the broker does not answer: %r", exc)
        return f"error: {type(exc).__name__}"


def _filesystem_broker_state() -> str:
    # Web, worker and beat pass tasks as files in these folders: one missing or
    # read-only loses every task sent.
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    roles = {"data_folder_in": "queue", "data_folder_out": "queue", "control_folder": "control"}
    for key, role in roles.items():
        folder = Path(options[key])
        if not folder.is_dir():
            logger.warning("healthz: the broker's folder %s is missing", folder)
            return f"error: its {role} folder is missing"
        if not os.access(folder, os.W_OK | os.X_OK):
            logger.warning("healthz: the broker's folder %s is not writable", folder)
            return f"error: its {role} folder is not writable"
    return "ok"
