"""The production shape: `check --deploy` is clean, http goes to https (but for the local
health probe), and the pages work under a Content-Security-Policy that runs no inline
script."""

from __future__ import annotations

import re
import secrets
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from members.models import ImportJob
from messaging.services import blast_create
from messaging.tests.conftest import make_members
from messaging.tests.processes import manage, program_env, shell_json

REPO_ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "sms.example.org",
    "PUBLIC_BASE_URL": "https://sms.example.org",
    "TRUSTED_PROXY_COUNT": "1",
    # As a real deployment has them: nothing from the suite's own environment.
    "SECURE_SSL_REDIRECT": None,
    "SESSION_COOKIE_SECURE": None,
    "SECURE_HSTS_SECONDS": None,
    "CSP_REPORT_ONLY": None,
}


# --- check --deploy --------------------------------------------------------------------------


def test_check_deploy_is_clean_with_the_production_settings(tmp_path):
    env = program_env(tmp_path, **PRODUCTION, SECRET_KEY=secrets.token_urlsafe(50))
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, log_dir=tmp_path)
    assert result.returncode == 0, str(result)
    assert "WARNING" not in result.output, str(result)
    assert "no issues" in result.output, str(result)


def test_make_run_keeps_working_over_plain_http(tmp_path):
    # What `make run` writes into .env: no https redirect and no HSTS on loopback.
    make_run = {"DEBUG": "false", "SESSION_COOKIE_SECURE": "false"}
    env = program_env(tmp_path, **{**dict.fromkeys(PRODUCTION), **make_run})
    shown = shell_json(
        "from django.conf import settings as s\n"
        "emit([s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE])",
        env=env,
        log_dir=tmp_path,
    )
    assert shown == [False, 0, False]


def test_production_defaults_redirect_and_send_hsts_for_a_year(tmp_path):
    env = program_env(tmp_path, **PRODUCTION)
    shown = shell_json(
        "from django.conf import settings as s\n"
        "emit([s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS,"
        " s.SECURE_HSTS_PRELOAD, s.SECURE_PROXY_SSL_HEADER])",
        env=env,
        log_dir=tmp_path,
    )
    assert shown == [True, 31536000, True, False, ["HTTP_X_FORWARDED_PROTO", "https"]]


# --- https behind the proxy ------------------------------------------------------------------


@pytest.fixture
def behind_nginx(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.mark.django_db
def test_plain_http_is_sent_to_https(client, behind_nginx):
    response = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="http")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


@pytest.mark.django_db
def test_https_through_nginx_gets_the_page_and_hsts(client, behind_nginx):
    response = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_the_local_health_probe_works_over_plain_http(client, behind_nginx):
    assert client.get("/healthz").status_code == 200


# --- Content-Security-Policy -----------------------------------------------------------------


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {words[0]: words[1:] for words in directives}


class _Scripts(HTMLParser):
    """Every script a page would run inline: <script> without src, on* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        # JSON data blocks (json_script, the admin's constants) are never run.
        data = (names.get("type") or "").lower() == "application/json"
        if tag == "script" and "src" not in names and not data:
            self.inline.append(self.get_starttag_text() or tag)
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.inline.append(self.get_starttag_text() or tag)


def inline_scripts(html: str) -> list[str]:
    parser = _Scripts()
    parser.feed(html)
    return parser.inline


def test_the_inline_script_finder_finds_them():
    assert inline_scripts("<p>hi</p><script>alert(1)</script>")
    assert inline_scripts('<button onclick="go()">x</button>')
    assert inline_scripts('<a href="javascript:go()">x</a>')
    assert not inline_scripts('<script src="/static/a.js" defer></script>')
    assert not inline_scripts('<script id="c" type="application/json">{}</script>')


@pytest.mark.django_db
def test_admin_and_compose_pages_carry_the_policy_and_run_no_inline_script(
    admin_client, manager_user
):
    make_members(3)
    blast = blast_create(body="Hello {first_name}", community=True, name="Spring news")
    job = ImportJob.objects.create(
        created_by=manager_user,
        pool=ImportJob.Pool.MEMBERS,
        file_name="list.csv",
        status=ImportJob.Status.PENDING,
        line_count=3,
        size=30,
        sha256="0" * 64,
    )
    pages = [
        "/admin/",
        reverse("admin:members_member_changelist"),
        reverse("admin:members_member_add"),
        reverse("admin:messaging_blast_changelist"),
        reverse("messaging:compose"),
        reverse("messaging:blast", args=[blast.pk]),
        reverse("admin:members_importjob_change", args=[job.pk]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        csp = policy(response)
        assert csp["default-src"] == ["'self'"], url
        assert csp["script-src"] == ["'self'"], url
        assert csp["style-src"] == ["'self'"], url
        assert csp["img-src"] == ["'self'", "data:"], url
        assert csp["frame-ancestors"] == ["'none'"], url
        assert csp["form-action"] == ["'self'"], url
        assert csp["base-uri"] == ["'self'"], url
        assert inline_scripts(response.content.decode()) == [], url


@pytest.mark.django_db
def test_a_running_import_polls_from_a_static_file(admin_client, manager_user):
    job = ImportJob.objects.create(
        created_by=manager_user,
        pool=ImportJob.Pool.MEMBERS,
        file_name="list.csv",
        status=ImportJob.Status.PENDING,
        line_count=3,
        size=30,
        sha256="0" * 64,
    )
    page = admin_client.get(reverse("admin:members_importjob_change", args=[job.pk]))
    assert 'id="import-progress"' in page.content.decode()
    assert "members/import_progress.js" in page.content.decode()


def test_the_policy_can_be_tried_in_report_only_mode(tmp_path):
    env = program_env(tmp_path, **{**PRODUCTION, "CSP_REPORT_ONLY": "true"})
    shown = shell_json(
        "from django.conf import settings as s\n"
        "emit([hasattr(s, 'CONTENT_SECURITY_POLICY'),"
        " s.CONTENT_SECURITY_POLICY_REPORT_ONLY['DIRECTIVES']['script-src']])",
        env=env,
        log_dir=tmp_path,
    )
    assert shown == [False, ["'self'"]]


# --- Templates -------------------------------------------------------------------------------


def template_files() -> list[Path]:
    folders = [Path(d) for t in django_settings.TEMPLATES for d in t["DIRS"]]
    folders += [
        REPO_ROOT / app / "templates" for app in ("smsadmin", "members", "events", "messaging")
    ]
    folders += [REPO_ROOT / "suppression" / "templates"]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*.html"))


def test_no_template_of_ours_has_an_inline_script():
    # The policy refuses inline scripts: one in a template would silently not run.
    # Move it into a static file (see messaging/static/messaging/blast.js).
    files = template_files()
    assert files, "no templates found"
    found = {
        str(path.relative_to(REPO_ROOT)): tags
        for path in files
        if (tags := inline_scripts(re.sub(r"{%.*?%}|{{.*?}}", "x", path.read_text())))
    }
    assert found == {}
