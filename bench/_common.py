"""Shared by the benchmarks under bench/: the fake Twilio process, environments, subprocesses,
the copy of the tree every process runs from, and throwaway PostgreSQL databases.

Nothing here imports Django: the drivers (bench/send_10k.py, bench/create_100k.py) only
start processes and read their JSON, so what they measure runs in processes of its own,
each with the GIL to itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
FROM_NUMBER = "+15005550006"
# One GSM-7 segment whatever the name, like most real blasts.
BODY = "Hi {first_name}, the community garden opens Saturday at 9am. Reply STOP to opt out."


# The code a blast runs through, fingerprinted in the output. The work tree is edited
# while benchmarks run, so every process runs from a copy taken at the start: all runs
# measure the same code, and the fingerprint says which.
ENGINE_SOURCES = [
    *sorted(f"messaging/services/{p.name}" for p in (ROOT / "messaging/services").glob("*.py")),
    "messaging/sms.py",
    "messaging/models.py",
    "messaging/templating.py",
    "suppression/services.py",
    "smsadmin/phones.py",
    "smsadmin/settings.py",
]
SNAPSHOT_SKIP = {".git", ".venv", "var", ".env", ".pytest_cache", ".ruff_cache", "__pycache__"}


class BenchError(RuntimeError):
    """A benchmark run went wrong: its figures must not be reported."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def engine_fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for name in ENGINE_SOURCES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def snapshot_tree(parent: Path) -> Path:
    """A copy of the project's code (no venv, git, var or .env) to run every process from."""
    dest = parent / "src"
    shutil.copytree(
        ROOT,
        dest,
        ignore=lambda folder, names: [n for n in names if n in SNAPSHOT_SKIP],
    )
    return dest


def measure_in_a_copy(measure: Callable[[Any, Path], int], args: Any) -> int:
    """Run ``measure`` on a snapshot of the tree, so edits made meanwhile cannot mix
    versions in one table."""
    work = Path(tempfile.mkdtemp(prefix="smsadmin-bench-src-"))
    try:
        return measure(args, snapshot_tree(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_main(main: Callable[[], int]) -> None:
    """A benchmark's entry point: its exit status, or 2 and why when it failed."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        sys.exit(2)


@contextmanager
def postgres_database(base_url: str, suffix: str) -> Iterator[str]:
    """A throwaway database on TEST_POSTGRES_URL's server, dropped afterwards."""
    import psycopg

    name = f"smsadmin_bench_{os.getpid()}_{suffix}"
    parts = urlsplit(base_url)
    admin = psycopg.connect(base_url, autocommit=True)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def phone(i: int) -> str:
    """The i-th recipient's number: unique, E.164, a plausible US number."""
    return f"+1415{200 + i // 10_000:03d}{i % 10_000:04d}"


def first_name(i: int) -> str:
    return f"Member{i}"


@dataclass(frozen=True)
class Fake:
    url: str
    account_sid: str
    auth_token: str
    latency_ms: float
    pid: int


@contextmanager
def fake_twilio(
    latency_ms: float, *, root: Path = ROOT, start_timeout: float = 20.0
) -> Iterator[Fake]:
    """The fake Twilio server in a process of its own (standalone mode), stopped on exit."""
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            PYTHON,
            "-m",
            "messaging.tests.fake_twilio",
            "--port",
            "0",
            "--latency-ms",
            f"{latency_ms:g}",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        assert proc.stdout is not None
        reader = threading.Thread(
            target=lambda: [lines.put(line) for line in proc.stdout],  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        deadline = time.monotonic() + start_timeout
        fields: dict[str, str] = {}
        while "FAKE_TWILIO_URL" not in fields:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                raise BenchError(f"fake Twilio did not start (exit code {proc.poll()})")
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line.startswith("FAKE_TWILIO_URL="):
                fields = dict(part.split("=", 1) for part in line.split())
        yield Fake(
            url=fields["FAKE_TWILIO_URL"],
            account_sid=fields["ACCOUNT_SID"],
            auth_token=fields["AUTH_TOKEN"],
            latency_ms=latency_ms,
            pid=proc.pid,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _fake_request(fake: Fake, method: str, path: str) -> Any:
    request = urllib.request.Request(fake.url + path, method=method)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return json.load(response)


def fake_stats(fake: Fake) -> dict[str, Any]:
    return _fake_request(fake, "GET", "/_fake/stats")


def fake_reset(fake: Fake) -> None:
    _fake_request(fake, "POST", "/_fake/reset")


def check_fake_stored(fake: Fake, *, expected: int) -> dict[str, Any]:
    """Fail loudly unless the fake stored exactly ``expected`` messages, one per number."""
    stats = fake_stats(fake)
    per_to: dict[str, int] = stats["per_to"]
    problems = []
    if stats["stored"] != expected:
        problems.append(f"stored {stats['stored']} messages, expected {expected}")
    if len(per_to) != expected:
        problems.append(f"{len(per_to)} distinct recipients, expected {expected}")
    twice = {to: n for to, n in per_to.items() if n != 1}
    if twice:
        sample = dict(list(twice.items())[:5])
        problems.append(f"{len(twice)} numbers got other than one message, e.g. {sample}")
    missing = [phone(i) for i in range(expected) if phone(i) not in per_to]
    if missing:
        problems.append(f"{len(missing)} numbers got nothing, e.g. {missing[:5]}")
    if problems:
        raise BenchError("fake Twilio disagrees: " + "; ".join(problems))
    return stats


def django_env(
    var_dir: Path,
    fake: Fake | None,
    *,
    database_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a Django process of the benchmark: nothing from .env.

    Inherited SMS_*, TWILIO_* (TWILIO_REGION / TWILIO_EDGE included), CELERY_* and
    DATABASE_URL are dropped so the machine's own settings cannot leak into a run.
    Without a fake, the console backend: for benchmarks that send nothing.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SMS_", "TWILIO_", "CELERY_", "DATABASE_URL", "PUBLIC_BASE_URL"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "smsadmin.settings",
            "DATABASE_URL": database_url or f"sqlite:///{var_dir / 'db.sqlite3'}",
            "VAR_DIR": str(var_dir),
            "SMSADMIN_ENV_FILE": "",
            "SECRET_KEY": "bench",
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "SMS_BACKEND": "console",
            # Unlimited: the benchmark measures the engine, not the configured rate.
            "SMS_RATE_PER_SECOND": "0",
            "SMS_MAX_IN_FLIGHT": "10",
            "CELERY_BROKER_URL": "memory://",
        }
    )
    if fake is not None:
        env.update(
            {
                "SMS_BACKEND": "twilio",
                "TWILIO_API_BASE_URL": fake.url,
                "TWILIO_ACCOUNT_SID": fake.account_sid,
                "TWILIO_AUTH_TOKEN": fake.auth_token,
                "TWILIO_FROM_NUMBER": FROM_NUMBER,
            }
        )
    env.update(extra or {})
    return env


def run(args: list[str], env: Mapping[str, str], *, what: str, cwd: Path = ROOT) -> str:
    """Run a command to completion in ``cwd`` (a project tree); its stdout, or BenchError."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and scripts
        args, cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(
            f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    if done.stderr.strip():
        sys.stderr.write(done.stderr)
    return done.stdout


def run_json(
    args: list[str], env: Mapping[str, str], *, what: str, cwd: Path = ROOT
) -> dict[str, Any]:
    """Run a bench script whose last stdout line is a JSON object, and return it."""
    out = run(args, env, what=what, cwd=cwd)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        raise BenchError(f"{what} printed no JSON result:\n{out[-3000:]}") from None
