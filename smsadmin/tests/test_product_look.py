"""Every admin-looking page carries smsadmin's name and stylesheet, never "Django administration",
also where it is rendered outside the admin's own views (no site_header in its context)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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


# --- `make run`: the address it names and how it stops --------------------------------------

REPO = Path(__file__).resolve().parents[2]


def make_dry_run(folder: Path, *args: str) -> str:
    """What `make run` would do in ``folder`` (a copy of the Makefile), without doing it."""
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(REPO / name, folder / name)
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_BIND", "MAKEFLAGS")}
    result = subprocess.run(
        ["make", "-n", "run", *args], cwd=folder, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def banner(output: str) -> str:
    return next(line for line in output.splitlines() if "smsadmin: web on" in line)


def test_make_run_names_the_address_of_web_bind(tmp_path: Path) -> None:
    assert "http://127.0.0.1:8000/admin/" in banner(make_dry_run(tmp_path))
    assert "http://0.0.0.0:9000/admin/" in banner(make_dry_run(tmp_path, "WEB_BIND=0.0.0.0:9000"))
    # honcho gives the .env's WEB_BIND to the Procfile over the environment's; so does the banner.
    (tmp_path / ".env").write_text("SECRET_KEY=x\nWEB_BIND=127.0.0.1:8123\n")
    assert "http://127.0.0.1:8123/admin/" in banner(make_dry_run(tmp_path))


def test_every_procfile_program_is_execd_so_signals_reach_it() -> None:
    lines = [line for line in (REPO / "Procfile").read_text().splitlines() if line.strip()]
    assert {line.split(":", 1)[0] for line in lines} == {"web", "worker", "beat"}
    for line in lines:
        assert line.split(":", 1)[1].strip().startswith("exec "), line


# A program that takes longer than honcho's own 5 seconds to stop warmly, as a Celery
# worker finishing its task does, and notes that it did.
SLOW_STOPPER = """\
import pathlib, signal, sys, time
def stop(*_):
    time.sleep(7)
    pathlib.Path("stopped-warmly").write_text("yes")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


@pytest.mark.slow
def test_ctrl_c_lets_the_worker_stop_warmly_and_ends_cleanly(tmp_path: Path) -> None:
    """The run recipe's last command, on a Procfile of a quick and a slow-to-stop program:
    Ctrl-C (SIGINT to the foreground group) ends it with status 0, after the slow one
    stopped by itself."""
    recipe = make_dry_run(tmp_path, "RUN_STOP_SECONDS=20")
    command = recipe[recipe.index("trap : INT TERM") :]
    command = command.replace(".venv/bin/python", sys.executable)
    (tmp_path / "slow.py").write_text(SLOW_STOPPER)
    (tmp_path / "Procfile").write_text(
        f"web: exec sleep 600\nworker: exec {sys.executable} -u slow.py\n"
    )
    run = subprocess.Popen(
        ["sh", "-c", command],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        seen = ""
        while "ready" not in seen and time.monotonic() < deadline:
            assert run.stdout is not None
            seen += run.stdout.readline()
        assert "ready" in seen, seen
        os.killpg(run.pid, signal.SIGINT)
        out, _ = run.communicate(timeout=40)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, seen + out
    assert "smsadmin: stopped." in out
    assert (tmp_path / "stopped-warmly").exists(), seen + out
    assert "SIGKILL" not in out
