"""Start the real programs (manage.py, Celery worker and beat, the fake Twilio) for e2e tests.

Every process gets its own session (``start_new_session=True``), so it and all its
children (a prefork worker's pool processes) form one process group that is stopped
as a whole. Output goes to a log file, never to a pipe nobody reads: a chatty worker
would otherwise block on a full pipe buffer.

Nothing here touches the test process's own database: the programs get their
environment explicitly, usually a SQLite file under a temporary VAR_DIR.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
MANAGE_PY = str(REPO_ROOT / "manage.py")
PYTHON = sys.executable
# The venv's own console scripts sit next to its python.
CELERY = str(Path(sys.executable).parent / "celery")
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def gunicorn_command(bind: str) -> list[str]:
    """gunicorn serving the project on ``bind`` (host:port), its logs on stdout."""
    return [
        GUNICORN,
        "smsadmin.wsgi:application",
        "--bind",
        bind,
        "--workers",
        "2",
        "--threads",
        "4",
        "--access-logfile",
        "-",
        "--error-logfile",
        "-",
    ]


# Variables from the test process that must not leak into the programs under test: the
# suite's own database and broker, and anything that would change how they behave.
_DROPPED = ("TWILIO_REGION", "TWILIO_EDGE", "DATABASE_URL", "TEST_SMS_BACKEND", "PUBLIC_BASE_URL")
_DROPPED_PREFIXES = ("SMS_", "TWILIO_", "CELERY_")

T = TypeVar("T")


def program_env(var_dir: Path, **overrides: str | None) -> dict[str, str]:
    """A clean environment for one deployment living in ``var_dir``.

    The embedded default (SQLite + filesystem broker under VAR_DIR, console backend),
    never reading a .env; ``overrides`` set or (with None) remove variables.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _DROPPED and not k.startswith(_DROPPED_PREFIXES)
    }
    env.update(
        {
            "SMSADMIN_ENV_FILE": "",
            "SECRET_KEY": "e2e-test-secret-key",
            "DJANGO_SETTINGS_MODULE": "smsadmin.settings",
            "VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "SMS_BACKEND": "console",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
        }
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Signal the process group ``proc`` leads (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen[Any], *, grace: float = 3.0) -> None:
    """SIGTERM the leader, SIGKILL the whole group after ``grace`` seconds, reap the leader.

    Only the leader gets SIGTERM: a Celery worker then shuts its pool down itself.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Children (pool processes) may outlive a leader that exited on SIGTERM.
    kill_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclass
class Result:
    args: list[str]
    returncode: int
    output: str  # stdout and stderr, interleaved as written
    seconds: float

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n(exit {self.returncode} after {self.seconds:.1f}s)\n"
            f"{self.output}"
        )


def run(args: list[str], *, env: Mapping[str, str], timeout: float = 60.0, log_dir: Path) -> Result:
    """Run a program to its end (in its own session, killed as a group on timeout)."""
    log_path = log_dir / f"run-{uuid.uuid4().hex[:8]}.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc, grace=1.0)
            output = log_path.read_text(errors="replace")
            raise AssertionError(
                f"$ {' '.join(args)}\nstill running after {timeout:g}s; killed. Output:\n{output}"
            ) from None
        finally:
            kill_group(proc)  # anything it left behind
    return Result(
        args=list(args),
        returncode=proc.returncode,
        output=log_path.read_text(errors="replace"),
        seconds=time.monotonic() - started,
    )


def manage(*args: str, env: Mapping[str, str], timeout: float = 60.0, log_dir: Path) -> Result:
    return run([PYTHON, MANAGE_PY, *args], env=env, timeout=timeout, log_dir=log_dir)


_JSON_MARK = "@@E2E-JSON@@"


def shell_json(code: str, *, env: Mapping[str, str], log_dir: Path, timeout: float = 60.0) -> Any:
    """Run ``code`` in ``manage.py shell -c``; it calls ``emit(obj)`` once to return a value.

    ``emit`` prints the JSON after a marker, so whatever else the shell prints (logging,
    auto-import notices) does not get in the way.
    """
    prelude = (
        f"import json\ndef emit(obj):\n    print({_JSON_MARK!r} + json.dumps(obj, default=str))\n"
    )
    result = manage("shell", "-c", prelude + code, env=env, timeout=timeout, log_dir=log_dir)
    assert result.returncode == 0, str(result)
    for line in result.output.splitlines():
        if line.startswith(_JSON_MARK):
            return json.loads(line[len(_JSON_MARK) :])
    raise AssertionError(f"the shell code emitted nothing\n{result}")


def wait_for(
    what: str,
    check: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.2,
    describe: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``describe()`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:g}s waiting for {what}.\n{describe()}")
        time.sleep(interval)


@dataclass
class Service:
    """A long-running program (worker, beat, fake Twilio) and its log file."""

    name: str
    args: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 60) -> str:
        text = "\n".join(self.log().splitlines()[-lines:])
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"--- {self.name} (pid {self.proc.pid}, {state}): {self.log_path}\n{text}"

    def wait_for_log(self, pattern: str, *, timeout: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)

        def check() -> re.Match[str] | None:
            match = regex.search(self.log())
            if match is None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited before logging {pattern!r}\n{self.tail()}"
                )
            return match

        return wait_for(
            f"{self.name} to log {pattern!r}", check, timeout=timeout, describe=self.tail
        )

    def kill_hard(self) -> None:
        """kill -9 the whole process group, as a crash or the OOM killer would."""
        kill_group(self.proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


@dataclass
class Services:
    """Every long-running program a test started; ``stop_all`` ends them all."""

    log_dir: Path
    env: dict[str, str]
    started: list[Service] = field(default_factory=list)

    def start(self, name: str, args: list[str], *, env: Mapping[str, str] | None = None) -> Service:
        log_path = self.log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                env=dict(env if env is not None else self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = Service(name=name, args=list(args), proc=proc, log_path=log_path)
        self.started.append(service)
        return service

    def worker(self, name: str = "worker", *, env: Mapping[str, str] | None = None) -> Service:
        """A real prefork worker, as the Procfile starts it; returns once it is ready."""
        service = self.start(
            name,
            [
                CELERY,
                "-A",
                "smsadmin",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--without-gossip",
                "--without-mingle",
                "-P",
                "prefork",
                # A name of its own: other test runs may have workers on this host.
                "-n",
                f"e2e-{name}-{uuid.uuid4().hex[:8]}@%h",
            ],
            env=env,
        )
        service.wait_for_log(r"\bready\.", timeout=45)
        return service

    def beat(self, schedule: Path, *, env: Mapping[str, str] | None = None) -> Service:
        service = self.start(
            "beat",
            [CELERY, "-A", "smsadmin", "beat", "--loglevel", "INFO", "--schedule", str(schedule)],
            env=env,
        )
        service.wait_for_log(r"beat: Starting", timeout=45)
        return service

    def web(self, port: int, *, name: str = "web", env: Mapping[str, str] | None = None) -> Service:
        """gunicorn as the Procfile starts it, on 127.0.0.1:``port``; returns once it answers.

        Any answer from /healthz will do (a 503 is an answer): what it says is the test's
        business. Raises, with the log, if gunicorn exits instead (the port was taken).
        """
        service = self.start(name, gunicorn_command(f"127.0.0.1:{port}"), env=env)
        service.wait_for_log(r"Listening at: http://127\.0\.0\.1:\d+", timeout=30)

        def answers() -> bool:
            if service.proc.poll() is not None:
                raise AssertionError(f"{name} exited at start\n{service.tail()}")
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except requests.RequestException:
                return False
            return True

        wait_for(f"{name} to answer on port {port}", answers, timeout=30, describe=service.tail)
        return service

    def fake_twilio(self, *, latency_ms: float = 0.0) -> tuple[Service, str]:
        """The fake Twilio API in its own process; returns it and its base URL."""
        service = self.start(
            "fake-twilio",
            [
                PYTHON,
                "-m",
                "messaging.tests.fake_twilio",
                "--port",
                "0",
                "--latency-ms",
                str(latency_ms),
            ],
        )
        match = service.wait_for_log(r"FAKE_TWILIO_URL=(\S+)", timeout=20)
        return service, match.group(1)

    def tails(self) -> str:
        return "\n".join(service.tail() for service in self.started)

    def stop_all(self) -> None:
        # A short grace: an idle worker on the filesystem broker needs ~6 s for its warm
        # shutdown, and nothing is left to finish once a test is over.
        for service in reversed(self.started):
            stop_group(service.proc, grace=1.0)
