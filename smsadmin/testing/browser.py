"""Browser tests: Debian's Chromium, driven by Playwright, against the real programs.

A pytest plugin (listed in the root conftest's ``pytest_plugins``). The app under test runs
as it does in production: gunicorn serving ``smsadmin.wsgi`` with DEBUG off and collected
static files, and a Celery prefork worker on the filesystem broker, each a real process
with its own VAR_DIR and SQLite file (see docs/TESTING.md).

Fixtures:

- ``live_app``: one running app per test module (``live_app_env`` adds settings to it);
  ``start_app(**env)``: a fresh app of the test's own, stopped when the test ends.
- ``browser``, ``page`` (1280x900) and ``phone_page`` (390x844, touch); each page leaves a
  full-page screenshot in SCREENSHOT_DIR when its test ends, whatever the outcome.
- ``sign_in`` and ``assert_no_sideways_scroll`` are plain functions to import.

The test process never opens the app's database itself: Playwright's sync API keeps an
asyncio loop marked running in the main thread, where Django refuses ORM calls. Data goes
in and out through ``manage.py`` (``LiveApp.shell``), as an operator's would.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from messaging.tests.processes import (
    REPO_ROOT,
    Result,
    Service,
    Services,
    gunicorn_command,
    manage,
    program_env,
    shell_json,
    wait_for,
)
from smsadmin.roles import ADMIN, SOCIAL_MANAGER

__all__ = [
    "ADMIN",
    "SOCIAL_MANAGER",
    "STAFF_PASSWORD",
    "LiveApp",
    "StaffUser",
    "assert_no_sideways_scroll",
    "sign_in",
]

# Long and uncommon enough for every AUTH_PASSWORD_VALIDATORS entry.
STAFF_PASSWORD = "Staple-Horse-Battery-42"  # noqa: S105 - a test account's password


# A page that does not show what a test waits for should fail the test in seconds, not
# after Playwright's default half minute.
ACTION_TIMEOUT_MS = 5_000
NAVIGATION_TIMEOUT_MS = 10_000
EXPECT_TIMEOUT_MS = 5_000

DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}

_BROWSER_FIXTURES = frozenset({"browser", "page", "phone_page"})
_APP_FIXTURES = frozenset({"live_app", "start_app"})


def screenshot_dir() -> Path:
    return Path(os.environ.get("SCREENSHOT_DIR") or REPO_ROOT / "var" / "screenshots")


def screenshot_path(item: pytest.Item, suffix: str = "") -> Path:
    """``<module>.<test name><suffix>.png``: the same test writes the same file on every run."""
    module = Path(str(item.path)).stem if getattr(item, "path", None) else ""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{module}.{item.name}{suffix}").strip("-.")
    return screenshot_dir() / f"{name[:180]}.png"


# --- The app under test --------------------------------------------------------------------


@dataclass
class StaffUser:
    id: int
    username: str
    password: str
    role: str
    first_name: str = ""
    last_name: str = ""


@dataclass
class LiveApp:
    """One running deployment: gunicorn on ``url`` and a Celery worker sharing ``env``."""

    url: str  # no trailing slash: url_for("/admin/") is the address of a page
    env: dict[str, str]
    var_dir: Path
    log_dir: Path
    web: Service
    worker: Service
    services: Services = field(repr=False)

    def url_for(self, path: str = "/") -> str:
        return self.url + (path if path.startswith("/") else "/" + path)

    def manage(self, *args: str, timeout: float = 60.0) -> Result:
        """``manage.py <args>`` against this app's database; check ``returncode`` yourself."""
        return manage(*args, env=self.env, log_dir=self.log_dir, timeout=timeout)

    def shell(self, code: str, *, timeout: float = 60.0) -> Any:
        """Run ``code`` in ``manage.py shell``; the value it passes to ``emit(obj)``, via JSON."""
        return shell_json(code, env=self.env, log_dir=self.log_dir, timeout=timeout)

    def create_staff(
        self,
        username: str,
        role: str = SOCIAL_MANAGER,
        *,
        password: str = STAFF_PASSWORD,
        first_name: str = "",
        last_name: str = "",
        mobile_phone: str = "",
    ) -> StaffUser:
        """A staff member in one role group (ADMIN or SOCIAL_MANAGER) who signs in normally:
        no forced password change, not a superuser.
        """
        user_id = self.shell(
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.models import Group\n"
            "from smsadmin.phones import normalize_phone\n"
            f"mobile = {mobile_phone!r}\n"
            "user = get_user_model().objects.create_user(\n"
            f"    username={username!r}, password={password!r},\n"
            f"    email={username + '@example.org'!r},\n"
            f"    first_name={first_name!r}, last_name={last_name!r},\n"
            "    mobile_phone=normalize_phone(mobile) if mobile else '',\n"
            "    is_staff=True, must_change_password=False,\n"
            ")\n"
            f"user.groups.add(Group.objects.get(name={role!r}))\n"
            "emit(user.pk)\n"
        )
        return StaffUser(
            id=user_id,
            username=username,
            password=password,
            role=role,
            first_name=first_name,
            last_name=last_name,
        )

    def logs(self) -> str:
        """The end of what gunicorn and the worker wrote."""
        return self.services.tails()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppLauncher:
    """Starts apps from the session's migrated template; ``stop_all`` ends every one."""

    def __init__(self, template: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.template = template
        self.tmp_path_factory = tmp_path_factory
        self.apps: list[LiveApp] = []
        self._services: list[Services] = []

    def __call__(self, **env: str | int | float | None) -> LiveApp:
        """A fresh app; ``env`` sets its settings (``SMS_RATE_PER_SECOND=2``; None unsets)."""
        root = self.tmp_path_factory.mktemp("live-app")
        var_dir, log_dir = root / "var", root / "logs"
        var_dir.mkdir()
        log_dir.mkdir()
        # The template's migrate exited cleanly, so its WAL is checkpointed into the file.
        shutil.copy(self.template / "db.sqlite3", var_dir / "db.sqlite3")
        (var_dir / "static").symlink_to(self.template / "static", target_is_directory=True)
        overrides = {key: None if value is None else str(value) for key, value in env.items()}
        # Another program may take the port between our probe and gunicorn's bind.
        for attempt in range(3):
            app = self._start(var_dir, log_dir, overrides, last_try=attempt == 2)
            if app is not None:
                self.apps.append(app)
                return app
        raise AssertionError("unreachable")

    def _start(
        self, var_dir: Path, log_dir: Path, overrides: dict[str, str | None], *, last_try: bool
    ) -> LiveApp | None:
        url = f"http://127.0.0.1:{_free_port()}"
        settings: dict[str, str | None] = {
            "DEBUG": "false",
            # Plain http on loopback: cookies marked Secure would never come back.
            "SESSION_COOKIE_SECURE": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PUBLIC_BASE_URL": url,
            "CSRF_TRUSTED_ORIGINS": url,
        }
        env = program_env(var_dir, **{**settings, **overrides})
        services = Services(log_dir=log_dir, env=env)
        self._services.append(services)
        web = services.start(
            "web",
            gunicorn_command(url.removeprefix("http://")),
        )
        # The worker boots while gunicorn does.
        worker = services.worker()

        def healthy() -> bool:
            if web.proc.poll() is not None:
                return True  # judged below
            try:
                return requests.get(url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for("the web server to answer /healthz", healthy, timeout=30, describe=web.tail)
        if web.proc.poll() is not None:
            services.stop_all()
            if "in use" in web.log() and not last_try:
                return None
            raise AssertionError(f"gunicorn exited at start\n{web.tail()}")
        return LiveApp(
            url=url,
            env=env,
            var_dir=var_dir,
            log_dir=log_dir,
            web=web,
            worker=worker,
            services=services,
        )

    def stop_all(self) -> None:
        # Everyone is told at once, so their shutdowns overlap instead of adding up.
        for services in self._services:
            for service in services.started:
                with contextlib.suppress(ProcessLookupError):
                    service.proc.send_signal(signal.SIGTERM)
        for services in reversed(self._services):
            services.stop_all()


@pytest.fixture(scope="session")
def live_app_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VAR_DIR holding a migrated database and the collected static files, made once."""
    template = tmp_path_factory.mktemp("live-app-template")
    env = program_env(template, DEBUG="false")
    for args in (("migrate", "--noinput"), ("collectstatic", "--noinput", "-v", "0")):
        result = manage(*args, env=env, log_dir=template, timeout=180)
        assert result.returncode == 0, str(result)
    return template


@pytest.fixture(scope="module")
def live_app_env() -> dict[str, str]:
    """Settings for the module's ``live_app``; override in a test module to change them."""
    return {}


@pytest.fixture(scope="module")
def live_app(
    live_app_template: Path,
    live_app_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveApp]:
    """One app for the whole module: tests share its database, so each makes its own data."""
    launcher = AppLauncher(live_app_template, tmp_path_factory)
    try:
        yield launcher(**live_app_env)
    finally:
        launcher.stop_all()


@pytest.fixture
def start_app(
    live_app_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppLauncher]:
    """``start_app(BLAST_APPROVAL_THRESHOLD=5) -> LiveApp``: apps of this test's own."""
    launcher = AppLauncher(live_app_template, tmp_path_factory)
    try:
        yield launcher
    finally:
        launcher.stop_all()


# --- The browser ---------------------------------------------------------------------------


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


class _Chromium:
    """One Chromium for a run of consecutive browser tests.

    Stopped before any test that does not use it: while Playwright runs, the main thread
    has an asyncio loop marked running, and Django then refuses every ORM call of the
    ordinary tests that follow (SynchronousOnlyOperation).
    """

    def __init__(self) -> None:
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def get(self) -> Browser:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        self.stop()
        path = chromium_path()
        if not path:
            reason = (
                "No Chromium: install Debian's package (apt-get install chromium) or set "
                "CHROMIUM_PATH to a Chromium binary."
            )
            if os.environ.get("CI"):
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=path, headless=True)
        except Exception:
            self.stop()
            raise
        return self._browser

    def stop(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        try:
            if browser is not None and browser.is_connected():
                browser.close()
        finally:
            if playwright is not None:
                playwright.stop()


_CHROMIUM = _Chromium()
_screenshots: list[Path] = []


@pytest.fixture
def browser() -> Browser:
    """The Chromium of the run (launched on first use, see _Chromium)."""
    return _CHROMIUM.get()


def _open_page(browser: Browser, request: pytest.FixtureRequest, suffix: str, **options: Any):
    context = browser.new_context(**options)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        try:
            # The last page the test had open: a link may have opened another one.
            open_pages = [p for p in context.pages if not p.is_closed()]
            if open_pages:
                path = screenshot_path(request.node, suffix)
                path.parent.mkdir(parents=True, exist_ok=True)
                open_pages[-1].screenshot(path=str(path), full_page=True, timeout=10_000)
                _screenshots.append(path)
        finally:
            context.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A desktop browser tab (1280x900) of its own: no cookies from other tests."""
    yield from _open_page(browser, request, "", **DESKTOP)


@pytest.fixture
def phone_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A phone-sized tab (390x844, touch); its screenshot ends in ``-phone.png``."""
    yield from _open_page(browser, request, "-phone", **PHONE)


# --- Helpers for tests ---------------------------------------------------------------------


def sign_in(page: Page, app: LiveApp, username: str, password: str = STAFF_PASSWORD) -> None:
    """Fill in and send the sign-in form, as a person would; asserts nothing about the outcome."""
    page.goto(app.url_for(f"/admin/login/?next={quote('/admin/')}"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


# Elements reaching past the right edge of the screen and holding nothing that does (the
# culprits, not every ancestor they stretch), skipping what a scrolling box of its own clips.
_OVERFLOW_JS = """() => {
  const limit = Math.min(window.innerWidth, document.documentElement.clientWidth);
  const clips = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== "visible") return true;
    }
    return false;
  };
  const wide = (el) => el.getBoundingClientRect().right > limit + 0.5;
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    [...el.classList].map((c) => "." + c).join("");
  const culprits = [...document.body.querySelectorAll("*")]
    .filter((el) => wide(el) && !clips(el) && ![...el.children].some(wide))
    .slice(0, 8)
    .map((el) => {
      const path = [];
      for (let p = el; p && p !== document.body; p = p.parentElement) path.unshift(name(p));
      const r = el.getBoundingClientRect();
      return `${path.join(" > ")} (${Math.round(r.left)}..${Math.round(r.right)} px)`;
    });
  return {scrollWidth: document.documentElement.scrollWidth, limit, culprits};
}"""


def assert_no_sideways_scroll(page: Page) -> None:
    """The page fits the screen's width: nobody has to scroll sideways to read it.

    Compared with the document's client width as well as ``innerWidth``: on a mobile
    context Chromium widens the layout viewport (and ``innerWidth``) to fit a page that is
    too wide, which would hide the very overflow this looks for.
    """
    found = page.evaluate(_OVERFLOW_JS)
    assert found["scrollWidth"] <= found["limit"], (
        f"{page.url} scrolls sideways: {found['scrollWidth']} px wide on a "
        f"{found['limit']} px screen. Too wide:\n  " + "\n  ".join(found["culprits"])
    )


# --- Hooks ---------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Before the -m selection runs, so `-m "not slow"` leaves these out.
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & (_BROWSER_FIXTURES | _APP_FIXTURES):
            item.add_marker(pytest.mark.slow)
        if names & _BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
        _CHROMIUM.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.failed and report.when == "call":
        funcargs = getattr(item, "funcargs", {})
        apps: list[LiveApp] = []
        if isinstance(funcargs.get("live_app"), LiveApp):
            apps.append(funcargs["live_app"])
        if isinstance(funcargs.get("start_app"), AppLauncher):
            apps.extend(funcargs["start_app"].apps)
        for app in apps:
            report.sections.append((f"live app {app.url} (logs in {app.log_dir})", app.logs()))
        shots = [
            str(screenshot_path(item, suffix))
            for fixture, suffix in (("page", ""), ("phone_page", "-phone"))
            if fixture in funcargs
        ]
        if shots:
            report.sections.append(("screenshots (taken at teardown)", "\n".join(shots)))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    _CHROMIUM.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _screenshots:
        terminalreporter.write_line(
            f"{len(_screenshots)} browser screenshot(s) in {screenshot_dir()}"
        )
