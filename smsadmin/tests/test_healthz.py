"""/healthz, for load balancers and monitoring."""

from datetime import datetime, timedelta

import pytest
from django.db import connections
from django.utils import timezone

from messaging.services.scheduling import scheduled_dispatch
from smsadmin.models import Heartbeat

pytestmark = pytest.mark.django_db


def test_healthz_answers_200_json(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "status": "ok",
        "database": "ok",
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
    assert response.json() == {"status": "error", "database": "OperationalError"}


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
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "scheduler": {"last_run": at.isoformat(), "status": "ok"},
    }


def test_a_late_scheduler_answers_503(client, settings):
    # Late after 3 beats and a minute: 3 x 30 s + 60 s = 150 s.
    settings.SCHEDULER_POLL_SECONDS = 30
    at = beat(seconds_ago=151)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "ok",
        "scheduler": {"last_run": at.isoformat(), "status": "late"},
    }


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
