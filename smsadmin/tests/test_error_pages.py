"""Refusals and errors (security review 6): a 403 is logged as one line, not a traceback,
and 400, 403, 404 and 500 answer with pages in the product's look and a way back."""

import logging

import pytest
from django.test import Client
from django.urls import path

pytestmark = pytest.mark.django_db


def _raises(request):
    raise RuntimeError("boom for the test")


# A URLconf for these tests only (pytest.mark.urls): the site itself has no URL that fails.
urlpatterns = [path("boom/", _raises)]


def test_a_refusal_is_logged_as_one_line_without_a_traceback(manager_client, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = manager_client.get("/admin/smsadmin/user/?q=x")
    assert response.status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert len(records) == 1
    assert records[0].getMessage() == (
        "Forbidden: GET /admin/smsadmin/user/ user=sam-manager (no permission)"
    )
    assert records[0].exc_info is None
    assert "Traceback" not in caplog.text


def test_an_anonymous_refusal_names_no_user(caplog, settings):
    # A directly returned 403 (Twilio's webhook without a valid signature).
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = Client().post("/webhooks/twilio/status/", {})
    assert response.status_code == 403
    messages = [r.getMessage() for r in caplog.records if r.name == "django.request"]
    assert messages == ["Forbidden: POST /webhooks/twilio/status/ user=anonymous (refused)"]


def test_the_403_page_says_what_happened_and_links_back(manager_client):
    response = manager_client.get("/admin/smsadmin/user/")
    assert response.status_code == 403
    page = response.content.decode()
    assert "smsadmin" in page
    assert "You may not open this page" in page
    assert 'href="/admin/"' in page
    assert "403 Forbidden" not in page


def test_the_404_page_says_what_happened_and_links_back(manager_client):
    response = manager_client.get("/no-such-page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "<title>Page not found | smsadmin</title>" in page
    assert 'href="/admin/"' in page


def test_the_404_page_for_someone_not_signed_in():
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    assert "Back to smsadmin's front page" in response.content.decode()


@pytest.mark.urls(__name__)
def test_the_500_page_renders_in_the_products_look(caplog):
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/boom/")
    assert response.status_code == 500
    page = response.content.decode()
    assert "<title>Server error | smsadmin</title>" in page
    assert "/static/admin/css/base.css" in page
    assert 'href="/admin/"' in page
    assert "boom for the test" not in page
    # An error keeps its traceback in the log.
    assert "RuntimeError: boom for the test" in caplog.text


def test_the_400_page_renders_in_the_products_look():
    response = Client().get("/admin/", HTTP_HOST="not-this-site.example")
    assert response.status_code == 400
    page = response.content.decode()
    assert "<title>Bad request | smsadmin</title>" in page
    assert 'href="/admin/"' in page
