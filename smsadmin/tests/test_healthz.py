"""/healthz, for load balancers and monitoring."""

import os
import time
from datetime import datetime, timedelta

import pytest
from django.db import connections
from django.utils import timezone

from messaging.services.scheduling import scheduled_dispatch
from messaging.tasks import worker_heartbeat_task
from smsadmin.models import Heartbeat

pytestmark = pytest.mark.django_db


def test_healthz_answers_200_json(client):
    # A fresh install: nothing has run yet, and that is not an error.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "status": "ok",
        "failing": [],
        "database": "ok",
        "broker": "ok",
        "beat": "never",
        "worker": "never",
        "last_run": {"beat": None, "worker": None},
        "scheduler": {"last_run": None, "status": "never"},
    }
    assert "no-cache" in response["Cache-Control"]


def test_healthz_needs_no_sign_in(client):
    # Anonymous, and not sent to the login page.
    assert client.get("/healthz", follow=False).status_code == 200


def test_healthz_answers_503_when_the_database_does_not(client, monkeypatch):
    from django.db import OperationalError

    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connections["default"], "cursor", broken_cursor)
    response = client.get("/healthz")
    monkeypatch.undo()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "error: OperationalError"
    # The heartbeats live in the database: unknown, not "never".
    assert body["beat"] == body["worker"] == "error: database"
    assert body["failing"] == ["database", "beat", "worker"]
    # Nothing about the server in a public answer.
    assert "refused" not in response.content.decode()


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405


# --- The scheduler -------------------------------------------------------------------------


def beat(*, seconds_ago: float) -> datetime:
    """The scheduler's heartbeat, as a dispatch pass writes it."""
    at = timezone.now() - timedelta(seconds=seconds_ago)
    Heartbeat.objects.update_or_create(name="scheduler", defaults={"at": at})
    return at


def test_a_scheduler_on_time_is_ok(client, settings):
    settings.SCHEDULER_POLL_SECONDS = 30
    at = beat(seconds_ago=40)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["beat"] == "ok"
    assert body["last_run"]["beat"] == at.isoformat()
    assert body["scheduler"] == {"last_run": at.isoformat(), "status": "ok"}


def test_a_late_scheduler_answers_503(client, settings):
    # Late after 3 beats and a minute: 3 x 30 s + 60 s = 150 s.
    settings.SCHEDULER_POLL_SECONDS = 30
    at = beat(seconds_ago=151)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["failing"] == ["beat"]
    assert body["database"] == "ok"
    assert body["beat"] == "late"
    assert body["scheduler"] == {"last_run": at.isoformat(), "status": "late"}


def test_just_inside_the_margin_is_still_ok(client, settings):
    settings.SCHEDULER_POLL_SECONDS = 30
    beat(seconds_ago=140)
    assert client.get("/healthz").json()["scheduler"]["status"] == "ok"


def test_the_margin_follows_the_poll_interval(client, settings):
    settings.SCHEDULER_POLL_SECONDS = 300  # late after 960 s
    beat(seconds_ago=600)
    assert client.get("/healthz").status_code == 200
    beat(seconds_ago=1000)
    assert client.get("/healthz").status_code == 503


def test_a_scheduler_that_never_ran_is_reported_but_not_an_error(client):
    # A fresh install before Celery beat first started.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["scheduler"] == {"last_run": None, "status": "never"}


def test_a_dispatch_pass_makes_it_ok(client):
    beat(seconds_ago=3600)
    assert client.get("/healthz").status_code == 503
    scheduled_dispatch()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["scheduler"]["status"] == "ok"


# --- The worker ----------------------------------------------------------------------------


def worker_beat(*, seconds_ago: float) -> datetime:
    at = timezone.now() - timedelta(seconds=seconds_ago)
    Heartbeat.objects.update_or_create(name="worker", defaults={"at": at})
    return at


def test_a_worker_that_never_ran_is_reported_but_not_an_error(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["worker"] == "never"


def test_the_heartbeat_task_makes_the_worker_ok(client):
    # What a worker does with the task beat sends it every WORKER_HEARTBEAT_SECONDS.
    worker_heartbeat_task()
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["worker"] == "ok"
    assert body["last_run"]["worker"] is not None


def test_a_late_worker_answers_503_naming_it(client, settings):
    # Late after 3 heartbeats and a minute: 3 x 30 s + 60 s = 150 s.
    settings.WORKER_HEARTBEAT_SECONDS = 30
    beat(seconds_ago=10)
    worker_beat(seconds_ago=140)
    assert client.get("/healthz").status_code == 200
    at = worker_beat(seconds_ago=151)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["worker"]
    assert body["worker"] == "late"
    assert body["last_run"]["worker"] == at.isoformat()
    assert body["beat"] == "ok"


def test_late_beat_and_worker_are_both_named(client):
    beat(seconds_ago=3600)
    worker_beat(seconds_ago=3600)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["beat", "worker"]


# --- The broker ----------------------------------------------------------------------------


@pytest.fixture
def filesystem_broker(settings, tmp_path):
    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }
    return folders


def test_the_filesystem_broker_is_ok_when_its_folders_are_there(client, filesystem_broker):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["broker"] == "ok"


def test_a_missing_queue_folder_answers_503(client, filesystem_broker):
    filesystem_broker["queue"].rmdir()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["broker"] == "error: its queue folder is missing"
    assert body["failing"] == ["broker"]
    # The path stays in the log, not in a public answer.
    assert str(filesystem_broker["queue"]) not in response.content.decode()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
def test_a_read_only_control_folder_answers_503(client, filesystem_broker):
    filesystem_broker["control"].chmod(0o500)
    try:
        response = client.get("/healthz")
    finally:
        filesystem_broker["control"].chmod(0o700)
    assert response.status_code == 503
    assert response.json()["broker"] == "error: its control folder is not writable"


def test_redis_that_answers_is_ok(client, settings):
    url = os.environ.get("TEST_REDIS_URL", "")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set (CI sets it).")
    settings.CELERY_BROKER_URL = url
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["broker"] == "ok"


def test_redis_that_does_not_answer_is_reported_quickly(client, settings):
    # Nothing listens on port 1: a probe must not hang the load balancer's check.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    body = response.json()
    assert body["broker"].startswith("error: ")
    assert body["failing"] == ["broker"]
