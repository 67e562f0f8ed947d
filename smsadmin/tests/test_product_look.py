"""Every admin-looking page carries smsadmin's name and stylesheet, never "Django administration",
also where it is rendered outside the admin's own views (no site_header in its context)."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string

pytestmark = pytest.mark.django_db

DJANGO_NAMES = ("Django administration", "Django site admin")


def title(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match, "no <title>"
    return " ".join(match.group(1).split())


def assert_product_page(html: str, page_title: str) -> None:
    for name in DJANGO_NAMES:
        assert name not in html
    assert title(html) == f"{page_title} | smsadmin"
    assert re.search(r'<div id="site-name"><a href="/admin/">smsadmin</a></div>', html)
    assert re.search(r'<link rel="stylesheet" href="/static/smsadmin/product\.css"', html)


def test_the_base_page_without_the_admins_context_is_smsadmin() -> None:
    """What a lockout or error page gets: a title and nothing of the admin site's context."""
    assert_product_page(
        render_to_string("admin/base_site.html", {"title": "Locked out"}), "Locked out"
    )


def test_a_page_without_a_title_is_just_smsadmin() -> None:
    html = render_to_string("admin/base_site.html", {})
    assert title(html) == "smsadmin"
    assert "Django administration" not in html


def test_the_sign_in_page_is_smsadmin(client) -> None:
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert_product_page(response.content.decode(), "Log in")


def test_the_password_change_pages_are_smsadmin(admin_client) -> None:
    response = admin_client.get("/admin/password_change/")
    assert response.status_code == 200
    assert_product_page(response.content.decode(), "Change your password")

    response = admin_client.get("/admin/password_change/done/")
    assert response.status_code == 200
    assert_product_page(response.content.decode(), "Password changed")


def test_the_admin_has_no_view_site_link_to_a_missing_page(admin_client) -> None:
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "View site" not in html
    assert 'href="/"' not in html
    assert_product_page(html, "Contacts, events and blasts")


def test_the_stylesheet_has_the_colours_and_the_phone_rules() -> None:
    path = finders.find("smsadmin/product.css")
    assert path, "smsadmin/product.css is not among the static files"
    with open(path, encoding="utf-8") as css:
        text = css.read()
    assert "--smsadmin-brand:" in text
    phone = text[text.index("@media (max-width: 767px)") :]
    assert re.search(r"#changelist \.results[^{]*\{[^}]*overflow-x: auto", phone)
