"""deploy/: install.sh run for real in a scratch prefix, without root or systemd.

install.sh --prefix DIR --no-system writes every file it would write on a server (env file,
units, nginx site, the smsadmin-manage wrapper), copies the app, migrates and collects
static files under DIR, and only prints apt-get, useradd, chown and systemctl. The tests
use the running venv (--venv, --no-pip) and check what a server would get: the env file's
secret and mode, the units' paths, the nginx site's headers and exceptions, a second run
that keeps the env file, and, when the tools are installed, `systemd-analyze verify` and
`nginx -t` (CI installs nginx).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL = DEPLOY / "install.sh"
UNITS = ("smsadmin-web", "smsadmin-worker", "smsadmin-beat")
HOST = "example.test"
PLACEHOLDER = re.compile(r"@[A-Z_]+@")

pytestmark = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="no database of the suite involved: the SQLite pass ran these",
)


def clean_env() -> dict[str, str]:
    """What a root shell would have: none of the suite's settings leak into the install."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {
        "PATH": f"{path}:/usr/sbin:/sbin",
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
    }


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    if check:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def install(prefix: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(
        "bash",
        INSTALL,
        "--prefix",
        prefix,
        "--no-system",
        "--no-pip",
        "--venv",
        sys.prefix,
        *extra,
        check=check,
    )


class Layout:
    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.env_file = prefix / "etc/smsadmin/env"
        self.app = prefix / "opt/smsadmin/app"
        self.data = prefix / "var/lib/smsadmin"
        self.units = prefix / "etc/systemd/system"
        self.site = prefix / "etc/nginx/sites-available/smsadmin"
        self.manage = prefix / "usr/local/bin/smsadmin-manage"

    def unit(self, name: str) -> str:
        return (self.units / f"{name}.service").read_text()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Layout, subprocess.CompletedProcess[str]]:
    prefix = tmp_path_factory.mktemp("prefix")
    return Layout(prefix), install(prefix, "--host", HOST)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def env_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


# --- The scripts ----------------------------------------------------------------------


def test_scripts_parse():
    for script in ("install.sh", "check-nginx.sh"):
        run("bash", "-n", DEPLOY / script)
    run("sh", "-n", DEPLOY / "smsadmin-manage")


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed")
def test_scripts_pass_shellcheck():
    run("shellcheck", DEPLOY / "install.sh", DEPLOY / "check-nginx.sh", DEPLOY / "smsadmin-manage")


def test_refuses_a_bad_host_and_no_pip_without_a_venv(tmp_path):
    result = run("bash", INSTALL, "--render-nginx", tmp_path / "x", "--host", "a;b", check=False)
    assert result.returncode != 0 and "not a host name" in result.stderr
    result = run(
        "bash",
        INSTALL,
        "--prefix",
        tmp_path,
        "--no-system",
        "--no-pip",
        "--host",
        HOST,
        check=False,
    )
    assert result.returncode != 0 and "--no-pip needs an existing venv" in result.stderr
    assert not (tmp_path / "etc/smsadmin/env").exists()


# --- A run in a scratch prefix --------------------------------------------------------


def test_install_skips_the_system_steps_and_says_what_is_left(installed):
    _, result = installed
    out = result.stdout
    for skipped in ("apt-get install", "useradd", "chown", "systemctl restart", "nginx -t"):
        assert re.search(rf"skipped \(--no-system\): .*{skipped}", out), skipped
    assert f"https://{HOST}/webhooks/twilio/inbound/" in out
    assert f"https://{HOST}/webhooks/twilio/status/" in out
    assert (
        f"certbot certonly --webroot -w {installed[0].prefix}/var/www/letsencrypt -d {HOST}" in out
    )
    assert "ensure_admin" in out
    assert "journalctl -u smsadmin-web" in out


def test_env_file_has_a_fresh_secret_and_mode_600(installed):
    layout, _ = installed
    assert mode(layout.env_file) == 0o600
    assert mode(layout.env_file.parent) == 0o750
    text = layout.env_file.read_text()
    assert not PLACEHOLDER.search(text)
    values = env_values(layout.env_file)
    assert re.fullmatch(r"[A-Za-z0-9_-]{50,}", values["SECRET_KEY"])
    assert values["DEBUG"] == "false"
    assert values["ALLOWED_HOSTS"] == HOST
    assert values["PUBLIC_BASE_URL"] == f"https://{HOST}"
    assert values["TRUSTED_PROXY_COUNT"] == "1"
    assert values["SMS_BACKEND"] == "twilio"
    assert values["CELERY_BROKER_URL"].startswith("redis://")
    assert values["VAR_DIR"] == str(layout.data)
    assert "DATABASE_URL" not in values  # SQLite unless --postgres
    assert "#DATABASE_URL=postgres:///smsadmin" in text


def test_env_template_names_every_production_setting_of_the_readme():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    # Development and test knobs, not for a server.
    not_for_servers = {
        "SMSADMIN_ENV_FILE",
        "CELERY_TASK_ALWAYS_EAGER",
        "TWILIO_API_BASE_URL",
        "SESSION_COOKIE_SECURE",
    }
    template = (DEPLOY / "env.example").read_text()
    missing = sorted(
        name
        for name in names - not_for_servers
        if not re.search(rf"^#?{name}=", template, re.MULTILINE)
    )
    assert len(names) > 30
    assert not missing, f"add these README settings to deploy/env.example: {missing}"


def test_the_app_is_copied_without_checkout_state_and_migrated(installed):
    layout, _ = installed
    assert (layout.app / "manage.py").is_file()
    assert (layout.app / "deploy/install.sh").is_file()
    for absent in (".git", ".venv", "var", ".env", ".pytest_cache"):
        assert not (layout.app / absent).exists(), absent

    assert mode(layout.data) == 0o710
    assert mode(layout.data / "imports") == 0o700
    assert mode(layout.data / "backups") == 0o700
    assert (layout.data / "static/staticfiles.json").is_file()  # collectstatic ran
    with sqlite3.connect(layout.data / "smsadmin.sqlite3") as db:
        applied = db.execute("SELECT count(*) FROM django_migrations").fetchone()[0]
    assert applied > 10


def test_smsadmin_manage_runs_django_with_the_env_file(installed):
    layout, _ = installed
    code = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.ALLOWED_HOSTS, s.TRUSTED_PROXY_COUNT, s.PUBLIC_BASE_URL, "
        "s.STATIC_ROOT, len(s.SECRET_KEY))"
    )
    result = run(layout.manage, "shell", "-c", code)
    secret_length = len(env_values(layout.env_file)["SECRET_KEY"])
    assert result.stdout.splitlines()[-1].split() == [
        "False",
        f"['{HOST}']",
        "1",
        f"https://{HOST}",
        str(layout.data / "static"),
        str(secret_length),
    ]


def test_units_have_the_install_paths_and_the_hardening(installed):
    layout, _ = installed
    for name in UNITS:
        text = layout.unit(name)
        assert not PLACEHOLDER.search(text), name
        lines = set(text.splitlines())
        for expected in (
            f"EnvironmentFile={layout.env_file}",
            f"WorkingDirectory={layout.app}",
            f"ReadWritePaths={layout.data}",
            f"User={_current_user()}",
            "Restart=always",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ProtectHome=yes",
            "StandardOutput=journal",
            "StandardError=journal",
        ):
            assert expected in lines, f"{name}: {expected}"
        assert f"ExecStart={sys.prefix}/bin/" in text
    web = layout.unit("smsadmin-web")
    assert "--bind unix:/run/smsadmin/web.sock" in web
    assert "RuntimeDirectory=smsadmin" in web
    assert "-A smsadmin worker" in layout.unit("smsadmin-worker")
    beat = layout.unit("smsadmin-beat")
    assert f"--schedule {layout.data}/celerybeat-schedule" in beat
    assert sorted(p.name for p in layout.units.iterdir()) == sorted(f"{u}.service" for u in UNITS)


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units(installed):
    layout, _ = installed
    result = run(
        "systemd-analyze",
        "verify",
        *(layout.units / f"{u}.service" for u in UNITS),
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ignoring" not in output.lower() and "unknown" not in output.lower(), output


# --- nginx ----------------------------------------------------------------------------


def test_nginx_site_without_a_certificate_serves_only_the_acme_challenge(installed):
    layout, _ = installed
    site = layout.site.read_text()
    assert (layout.prefix / "etc/nginx/sites-enabled/smsadmin").resolve() == layout.site
    assert not PLACEHOLDER.search(site)
    assert f"server_name {HOST};" in site
    assert f"root {layout.prefix}/var/www/letsencrypt;" in site
    assert "return 301 https://$host$request_uri;" in site
    assert "listen 443" not in site and "ssl_certificate" not in site


def test_nginx_site_with_https(tmp_path):
    out = tmp_path / "site.conf"
    cert = tmp_path / "live" / HOST
    run(
        "bash", INSTALL, "--render-nginx", out, "--host", HOST, "--cert", cert, "--prefix", tmp_path
    )
    site = out.read_text()
    assert not PLACEHOLDER.search(site)
    assert site.count(f"server_name {HOST};") == 2
    assert f"ssl_certificate {cert}/fullchain.pem;" in site
    assert f"ssl_certificate_key {cert}/privkey.pem;" in site
    assert re.search(r"location \^~ /\.well-known/acme-challenge/ \{", site)
    # The headers the app reads: overwritten X-Forwarded-For, never appended to.
    assert "proxy_set_header Host $host;" in site
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in site
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in site
    assert "proxy_add_x_forwarded_for" not in site
    assert f"alias {tmp_path}/var/lib/smsadmin/static/;" in site
    assert "server unix:/run/smsadmin/web.sock" in site
    # Room for an IMPORT_MAX_BYTES (50 MB) upload and its form.
    size = re.search(r"client_max_body_size (\d+)m;", site)
    assert size and int(size.group(1)) * 1024 * 1024 > 50 * 1024 * 1024

    # Basic auth: offered (commented) for the site, switched off for Twilio and /healthz.
    blocks = _locations(site)
    assert "#auth_basic " in blocks["/"]
    assert "auth_basic off;" in blocks["/webhooks/"]
    assert "auth_basic off;" in blocks["= /healthz"]


def _locations(site: str) -> dict[str, str]:
    """The body of each location of the https server, by its match."""
    https = site[site.index("listen 443") :]
    return {
        match.group(1).strip(): match.group(2)
        for match in re.finditer(r"location ([^{]+)\{(.*?)\n    \}", https, re.DOTALL)
    }


needs_nginx = pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) or not shutil.which("openssl"),
    reason="nginx or openssl is not installed (CI installs both)",
)


@needs_nginx
def test_nginx_t_accepts_the_https_site():
    result = run("bash", DEPLOY / "check-nginx.sh")
    assert "test is successful" in result.stderr


@needs_nginx
def test_nginx_t_accepts_the_site_install_wrote(installed):
    layout, _ = installed
    result = run("bash", DEPLOY / "check-nginx.sh", layout.site)
    assert "test is successful" in result.stderr


@needs_nginx
def test_nginx_t_fails_on_a_broken_site(tmp_path):
    broken = tmp_path / "broken.conf"
    broken.write_text("server { listen 80; no_such_directive on; }\n")
    result = run("bash", DEPLOY / "check-nginx.sh", broken, check=False)
    assert result.returncode != 0
    assert "no_such_directive" in result.stderr


# --- An extra worker machine ----------------------------------------------------------


def test_worker_only_needs_the_first_machines_env_file(tmp_path):
    result = install(tmp_path, "--worker-only", "--host", HOST, check=False)
    assert result.returncode != 0
    assert "copy" in result.stderr and "from the first machine" in result.stderr
    assert not (tmp_path / "etc/smsadmin/env").exists()


def test_worker_only_runs_the_worker_alone(installed, tmp_path):
    layout, _ = installed
    worker = Layout(tmp_path)
    worker.env_file.parent.mkdir(parents=True)
    shutil.copy2(layout.env_file, worker.env_file)  # its VAR_DIR: the first machine's
    env_before = worker.env_file.read_bytes()

    out = install(tmp_path, "--worker-only").stdout

    assert worker.env_file.read_bytes() == env_before
    assert (
        "skipped (--no-system): systemctl disable --now --quiet smsadmin-web smsadmin-beat" in out
    )
    assert "skipped (--no-system): systemctl enable --quiet smsadmin-worker \n" in out
    assert "restart smsadmin-worker \n" in out
    assert not re.search(r"apt-get install .*(nginx|redis-server)", out)
    assert not worker.site.exists()
    assert (worker.units / "smsadmin-worker.service").is_file()


# --- Running it again -----------------------------------------------------------------


def test_a_second_run_keeps_the_env_file_and_rewrites_nothing(installed):
    layout, _ = installed
    with layout.env_file.open("a") as env_file:
        env_file.write("ORG_NAME=Edited by hand\n")
    env_before = layout.env_file.read_bytes()
    env_mtime = layout.env_file.stat().st_mtime_ns
    units_before = {u: layout.unit(u) for u in UNITS}
    site_before = layout.site.read_text()

    # No --host: it comes from PUBLIC_BASE_URL in the env file.
    result = install(layout.prefix)

    assert layout.env_file.read_bytes() == env_before
    assert layout.env_file.stat().st_mtime_ns == env_mtime
    assert mode(layout.env_file) == 0o600
    assert "kept as it is" in result.stdout
    assert {u: layout.unit(u) for u in UNITS} == units_before
    assert layout.site.read_text() == site_before
    for name in UNITS:
        assert f"unchanged: {layout.units}/{name}.service" in result.stdout
    assert "No migrations to apply." in result.stdout
    assert not list(layout.prefix.rglob("*.new")) and not list(layout.prefix.rglob("*.old"))
    assert not [p for p in (layout.prefix / "etc").rglob(".*") if p.is_file()]
