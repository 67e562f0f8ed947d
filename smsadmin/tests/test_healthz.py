"""/healthz, for load balancers and monitoring."""

import pytest
from django.db import connections

pytestmark = pytest.mark.django_db


def test_healthz_answers_200_json(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "database": "ok"}
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
