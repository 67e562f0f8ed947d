"""Twilio status callbacks against gunicorn: 10,000 sent messages reported (issue 8).

    .venv/bin/python bench/callbacks_10k.py [--rows 10000] [--concurrency 10] [--web 3x4]
                                            [--during-rates 120,0] [--latency-ms 150]
                                            [--no-during] [--probe-rows 300] [--json out.json]

Question: how many status callbacks a second does ``POST /webhooks/twilio/status/``
sustain, how long does each wait, and does it hold up while a worker sends a blast into
the same database? Twilio sends one callback per message per status change.

For each database (SQLite in WAL as the app configures it, always; PostgreSQL on a
throwaway database when TEST_POSTGRES_URL is set), from a copy of the tree taken at the
start, each step a process of its own:

seed     a fresh database, migrated; blast A with ``--rows`` delivery rows in status
         ``sent`` with a message SID each, as a real send leaves them; a probe blast of
         ``--probe-rows`` rows the same way (``bench/_callbacks.py seed``).
web      gunicorn serving ``smsadmin.wsgi`` on a loopback TCP port as
         deploy/systemd/smsadmin-web.service runs it (``--web WxT``: W workers of T threads,
         default 3x4 as deployed; ``3x1`` is sync workers), access log to a file with each
         request's time (``%(D)s``), DEBUG off, ``PUBLIC_BASE_URL=https://sms.bench.example``
         and ``TRUSTED_PROXY_COUNT=1``: the requests carry what nginx adds
         (X-Forwarded-Proto/Host/For), as in production.
load     ``bench/_callbacks.py load``, a process importing neither Django nor the app:
         ``--concurrency`` threads, one keep-alive connection each, post every callback of
         blast A, signed with ``TWILIO_AUTH_TOKEN`` over PUBLIC_BASE_URL + path + query as
         Twilio signs (``messaging.tests.fake_twilio.sign``): 'sent' then 'delivered' for
         each row, 5% 'undelivered' instead (ErrorCode 30003 and 30006 by turns: the
         classifier counts the first, suppresses the second), 2% final status before
         'sent', 2% final status twice, 1% 'sent' twice. A closed loop: callbacks/s is what
         the app sustains at that concurrency. Latency is the client's (connection
         included); the server's own time comes from gunicorn's access log.
check    every row of blast A is delivered, or failed with the code posted; one failure
         event per undelivered row; every 30006 number suppressed. Any answer other than
         2xx, or any row wrong, fails the benchmark.
probe    the same kinds of callbacks in one process through ``django.test.Client``
         (connections closed after each request as under gunicorn), inside
         ``CaptureQueriesContext``: SQL statements and server time per callback of each
         kind, the query plans of a 'delivered' callback, the cost of opening a database
         connection, and a cProfile of 'sent' + final callbacks (``--profile-dir`` keeps it).

During a send (``--during-rates``, SQLite; PostgreSQL too with ``--during-postgres``):
another fresh database with blast A and ``--rows`` community members; the fake Twilio
(``--latency-ms``, default 150) in a process of its own; gunicorn as above; a worker
process (``bench/_engine.py run``: ``blast_create`` for the community, then
``blast_process`` with SMS_RATE_PER_SECOND=0, SMS_MAX_IN_FLIGHT=10) sending blast B;
from its first message on, the load generator posts blast A's callbacks at a fixed rate
(an open loop: callback k is due at start + k/rate, and timed from then as well, so a
stall counts for every callback queued behind it); rate 0 is the closed loop, ``off``
the send alone. Latencies are those of callbacks answered during the send phase. The
send pass must lose no outcome: blast B ends with every row sent, the fake holds exactly
one message per member, and blast A's rows are checked as above.

Prints markdown tables for docs/BENCHMARKS.md; ``--json`` writes the raw results.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _callbacks import summary_ms  # noqa: E402
from _common import (  # noqa: E402
    ENGINE_SOURCES,
    PYTHON,
    ROOT,
    BenchError,
    bench_main,
    check_fake_stored,
    django_env,
    fake_reset,
    fake_stats,
    fake_twilio,
    log,
    measure_in_a_copy,
    postgres_database,
    run,
    run_json,
)

HOST = "sms.bench.example"
TOKEN = "bench-auth-token"  # noqa: S105 - signs the benchmark's own callbacks
GUNICORN = str(Path(PYTHON).parent / "gunicorn")
# Status, microseconds, method, path, query: the server's time per request.
ACCESS_FORMAT = "%(s)s %(D)s %(m)s %(U)s %(q)s"
# A blast at the default SMS_RATE_PER_SECOND=10 causes about this many callbacks a
# second (sent, then delivered, for each message; queued/sending too on some accounts).
DEFAULT_RATE_CALLBACKS = "20-30"

CALLBACK_SOURCES = sorted(
    {
        "messaging/webhooks.py",
        "messaging/services/callbacks.py",
        "messaging/services/busy.py",
        "messaging/services/lifecycle.py",
        "messaging/twilio_errors.py",
        "messaging/urls.py",
        "suppression/models.py",
        "smsadmin/urls.py",
        "smsadmin/middleware.py",
        *ENGINE_SOURCES,
    }
)


def sources(root: Path) -> list[str]:
    return [name for name in CALLBACK_SOURCES if (root / name).exists()]


def fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for name in sources(root):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def git_state() -> dict[str, Any]:
    """The commit the work tree is on, and which files of the tree differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - git, read only
            ["git", "-C", str(ROOT), *args],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout

    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    untracked = git("status", "--porcelain").splitlines()
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "changed": [c[3:] for c in changed],
        "untracked": [c[3:] for c in untracked if c.startswith("??")],
    }


def machine() -> dict[str, Any]:
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.0f} GB"
    except OSError:
        pass
    versions = run(
        [
            PYTHON,
            "-c",
            "import django, gunicorn, twilio, sqlite3; "
            "print(django.get_version(), gunicorn.__version__, twilio.__version__, "
            "sqlite3.sqlite_version)",
        ],
        os.environ,
        what="versions",
    ).split()
    return {
        "cpus": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "django": versions[0],
        "gunicorn": versions[1],
        "twilio": versions[2],
        "sqlite": versions[3],
        "platform": platform.platform(),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def web_env(var_dir: Path, fake: Any, database_url: str | None, token: str) -> dict[str, str]:
    return django_env(
        var_dir,
        fake,
        database_url=database_url,
        extra={
            "PUBLIC_BASE_URL": f"https://{HOST}",
            "ALLOWED_HOSTS": f"{HOST},testserver",
            "TRUSTED_PROXY_COUNT": "1",
            "TWILIO_AUTH_TOKEN": token,
        },
    )


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz", headers={"Host": HOST, "X-Forwarded-Proto": "https"})
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


@contextmanager
def gunicorn(
    src: Path, env: dict[str, str], var_dir: Path, workers: int, threads: int
) -> Iterator[dict[str, Any]]:
    """gunicorn as deploy/systemd/smsadmin-web.service starts it, on a loopback TCP port."""
    port = free_port()
    access, errors = var_dir / "access.log", var_dir / "gunicorn.log"
    proc = subprocess.Popen(  # noqa: S603 - our venv's gunicorn
        [
            GUNICORN,
            "smsadmin.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "60",
            "--access-logfile",
            str(access),
            "--access-logformat",
            ACCESS_FORMAT,
            "--error-logfile",
            str(errors),
        ],
        cwd=src,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = errors.read_text()[-3000:] if errors.exists() else ""
                raise BenchError(f"gunicorn did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.2)
        yield {"port": port, "pid": proc.pid, "access_log": access, "error_log": errors}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_times(access_log: Path) -> dict[str, Any]:
    """The status callbacks' own time in gunicorn (warm-up ones, without ``d``, left out)."""
    times, statuses = [], {}
    for line in access_log.read_text().splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[2] != "POST" or not parts[4].startswith("d="):
            continue
        statuses[parts[0]] = statuses.get(parts[0], 0) + 1
        times.append(int(parts[1]) / 1000)
    return {"statuses": statuses, **summary_ms(times)}


def errors_logged(error_log: Path) -> list[str]:
    """Lines of gunicorn's log (Django's logging goes there too) that say something broke."""
    lines = error_log.read_text().splitlines() if error_log.exists() else []
    words = ("ERROR", "Traceback", "CRITICAL", "database is locked", "WORKER TIMEOUT")
    return [line for line in lines if any(word in line for word in words)][:20]


def prepare(
    src: Path, var_dir: Path, env: dict[str, str], args: argparse.Namespace, members: int
) -> dict[str, Any]:
    # STATIC_ROOT: empty, but there (whitenoise warns otherwise; the webhook serves none).
    (var_dir / "static").mkdir(exist_ok=True)
    run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], env, what="migrate", cwd=src)
    seeded = run_json(
        [
            PYTHON,
            str(src / "bench" / "_callbacks.py"),
            "seed",
            "--rows",
            str(args.rows),
            "--probe-rows",
            str(args.probe_rows),
            "--members",
            str(members),
            "--out",
            str(var_dir / "rows.json"),
        ],
        env,
        what="seeding",
        cwd=src,
    )
    if seeded["blast_a_rows"] != args.rows or seeded["members"] != members:
        raise BenchError(f"seeding made {seeded}, expected {args.rows} rows, {members} members")
    return seeded


def load_args(
    src: Path, var_dir: Path, port: int, token: str, concurrency: int, rate: float, raw: bool
) -> list[str]:
    cmd = [
        PYTHON,
        str(src / "bench" / "_callbacks.py"),
        "load",
        "--rows-json",
        str(var_dir / "rows.json"),
        "--port",
        str(port),
        "--host",
        HOST,
        "--token",
        token,
        "--concurrency",
        str(concurrency),
        "--rate",
        f"{rate:g}",
    ]
    return [*cmd, "--raw"] if raw else cmd


def check_rows(src: Path, var_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    return run_json(
        [
            PYTHON,
            str(src / "bench" / "_callbacks.py"),
            "check",
            "--rows-json",
            str(var_dir / "rows.json"),
        ],
        env,
        what="checking blast A's rows",
        cwd=src,
    )


def parse_web(spec: str) -> tuple[int, int]:
    workers, _, threads = spec.partition("x")
    return int(workers), int(threads or 1)


def _no_errors(label: str, loaded: dict[str, Any], logged: list[str]) -> None:
    if loaded["non_2xx"]:
        raise BenchError(
            f"{label}: {loaded['non_2xx']} callbacks answered other than 2xx: "
            f"{loaded['statuses']}, e.g. {loaded['errors_sample'][:3]}"
        )
    if logged:
        raise BenchError(f"{label}: gunicorn's log shows errors: {logged[:5]}")


def callbacks_run(
    src: Path,
    label: str,
    database_url: str | None,
    web: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Blast A's callbacks, flat out, against gunicorn alone; then the check and the probe."""
    var_dir = Path(tempfile.mkdtemp(prefix="smsadmin-bench-"))
    try:
        env = web_env(var_dir, None, database_url, TOKEN)
        seeded = prepare(src, var_dir, env, args, members=0)
        workers, threads = parse_web(web)
        with gunicorn(src, env, var_dir, workers, threads) as server:
            load_before = os.getloadavg()[0]
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            loaded = run_json(
                load_args(src, var_dir, server["port"], TOKEN, args.concurrency, 0, False),
                os.environ,
                what="load generator",
                cwd=src,
            )
            load_after = os.getloadavg()[0]
        result: dict[str, Any] = {
            "label": label,
            "web": web,
            "started": started,
            "load_before": load_before,
            "load_after": load_after,
            "seed": seeded,
            "load": loaded,
            "server": server_times(server["access_log"]),
        }
        _no_errors(label, loaded, errors_logged(server["error_log"]))
        result["check"] = check_rows(src, var_dir, env)
        profile_out = []
        if args.profile_dir is not None:
            args.profile_dir.mkdir(parents=True, exist_ok=True)
            slug = label.lower().replace(" ", "_")
            profile_out = ["--profile-out", str(args.profile_dir / f"{slug}_{web}.prof")]
        result["probe"] = run_json(
            [
                PYTHON,
                str(src / "bench" / "_callbacks.py"),
                "probe",
                "--rows-json",
                str(var_dir / "rows.json"),
                "--host",
                HOST,
                "--token",
                TOKEN,
                *profile_out,
            ],
            env,
            what="probe",
            cwd=src,
        )
        if not Path(result["probe"]["callbacks_file"]).is_relative_to(src):
            raise BenchError(f"the probe ran {result['probe']['callbacks_file']}, not the copy")
        return result
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def during_run(
    src: Path,
    label: str,
    database_url: str | None,
    rate: float | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Blast A's callbacks while a worker sends blast B to ``--rows`` members (rate None:
    the send alone, for comparison)."""
    var_dir = Path(tempfile.mkdtemp(prefix="smsadmin-bench-"))
    try:
        with fake_twilio(args.latency_ms, root=src) as fake:
            env = web_env(var_dir, fake, database_url, fake.auth_token)
            seeded = prepare(src, var_dir, env, args, members=args.rows)
            fake_reset(fake)
            workers, threads = parse_web(args.web[0])
            with gunicorn(src, env, var_dir, workers, threads) as server:
                load_before = os.getloadavg()[0]
                started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
                worker = subprocess.Popen(  # noqa: S603 - our interpreter and script
                    [PYTHON, str(src / "bench" / "_engine.py"), "run"],
                    cwd=src,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                worker_started = time.time()
                loaded = None
                try:
                    # The callbacks start with the send phase: when the first message
                    # reaches the fake (after the worker's start and blast_create).
                    deadline = time.monotonic() + 300
                    while fake_stats(fake)["stored"] == 0 and worker.poll() is None:
                        if time.monotonic() > deadline:
                            raise BenchError("the worker sent nothing in 300 s")
                        time.sleep(0.05)
                    if rate is not None:
                        loaded = run_json(
                            load_args(
                                src,
                                var_dir,
                                server["port"],
                                fake.auth_token,
                                args.concurrency,
                                rate,
                                True,
                            ),
                            os.environ,
                            what="load generator",
                            cwd=src,
                        )
                    out, err = worker.communicate(timeout=3600)
                finally:
                    if worker.poll() is None:
                        worker.kill()
                        worker.wait()
                worker_ended = time.time()
                load_after = os.getloadavg()[0]
            try:
                engine = json.loads(out.strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                raise BenchError(
                    f"the worker printed no JSON (exit {worker.returncode}):\n"
                    f"{out[-2000:]}\n{err[-4000:]}"
                ) from None
            if worker.returncode != 0 or "error" in engine:
                raise BenchError(f"the send pass went wrong: {engine.get('error')}\n{err[-3000:]}")
            if not Path(engine["services_file"]).is_relative_to(src):
                raise BenchError(f"the worker ran {engine['services_file']}, not the copy")
            stored = check_fake_stored(fake, expected=args.rows)
        result: dict[str, Any] = {
            "label": label,
            "web": args.web[0],
            "rate": rate,
            "latency_ms": args.latency_ms,
            "started": started,
            "load_before": load_before,
            "load_after": load_after,
            "seed": seeded,
            "engine": engine,
            "worker_wall_s": worker_ended - worker_started,
            "fake": {k: v for k, v in stored.items() if k != "per_to"},
        }
        if loaded is None:
            return result
        raw = loaded.pop("raw")
        # The send phase: from blast_create's end to the worker's last outcome.
        send_start = worker_ended - engine["process_s"]
        window = [
            (lat, sched)
            for answered, lat, sched in raw
            if send_start <= loaded["t0_epoch"] + answered <= worker_ended
        ]
        result |= {
            "load": loaded,
            "server": server_times(server["access_log"]),
            "during_send": {
                "callbacks": len(window),
                "seconds": engine["process_s"],
                "latency": summary_ms([lat for lat, _ in window]),
                "from_schedule": summary_ms([sched for _, sched in window]) if rate else None,
                "over_100ms": sum(1 for lat, _ in window if lat > 100),
                "over_1s": sum(1 for lat, _ in window if lat > 1000),
            },
        }
        _no_errors(label, loaded, errors_logged(server["error_log"]))
        result["check"] = check_rows(src, var_dir, env)
        return result
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


# --- Output ------------------------------------------------------------------------------------


def tables(output: dict[str, Any]) -> str:
    lines = [
        "Callbacks alone (closed loop):",
        "",
        "| database | gunicorn | connections | callbacks | callbacks/s | p50 ms | p95 ms "
        "| p99 ms | max ms | server p50 ms | server p99 ms | non-2xx | rows as posted |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in output["runs"]:
        lat, srv = r["load"]["latency"], r["server"]
        check = r.get("check", {})
        lines.append(
            f"| {r['label']} | {_web(r['web'])} | {r['load']['concurrency']} "
            f"| {r['load']['callbacks']:,} | {r['load']['per_s']:.0f} | {lat['p50_ms']:.1f} "
            f"| {lat['p95_ms']:.1f} | {lat['p99_ms']:.1f} | {lat['max_ms']:.0f} "
            f"| {srv['p50_ms']:.1f} | {srv['p99_ms']:.1f} | {r['load']['non_2xx']} "
            f"| {'yes' if check.get('ok') else '**no**'} ({check.get('counts')}) |"
        )
    lines += [
        "",
        "By kind (client latency, the runs above):",
        "",
        "| database | gunicorn | kind | callbacks | p50 ms | p99 ms | max ms |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in output["runs"]:
        for kind, s in r["load"]["by_kind"].items():
            lines.append(
                f"| {r['label']} | {_web(r['web'])} | {kind} | {s['n']:,} | {s['p50_ms']:.1f} "
                f"| {s['p99_ms']:.1f} | {s['max_ms']:.0f} |"
            )
    probes = [(r["label"], r["probe"]) for r in output["runs"] if "probe" in r]
    seen = set()
    lines += [
        "",
        "In-process (django.test.Client, one at a time), per callback:",
        "",
        "| database | kind | callbacks | SQL statements | by verb | server ms p50 | CPU ms p50 |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for label, p in probes:
        if label in seen:
            continue
        seen.add(label)
        for phase in p["phases"]:
            verbs = ", ".join(f"{v} {c:g}" for v, c in phase["by_verb_per_callback"].items())
            lines.append(
                f"| {label} | {phase['kind']} | {phase['callbacks']} "
                f"| {phase['statements_per_callback']:g} | {verbs} | {phase['server_ms_p50']:.2f} "
                f"| {phase['cpu_ms_p50']:.2f} |"
            )
        lines.append(
            f"| {label} | (opening / closing a connection) | 30 | - | - "
            f"| {p['connect_ms_p50']:.2f} / {p['close_ms_p50']:.2f} | - |"
        )
    if output["during"]:
        lines += [
            "",
            "While a worker sends a blast (callbacks answered during its send phase):",
            "",
            "| database | callbacks posted at | callbacks in the send | p50 ms | p99 ms | max ms "
            "| p99 from schedule ms | max from schedule ms | > 1 s | non-2xx | blast B sent "
            "| send phase s | msg/s | rows as posted |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: "
            "| ---: | --- |",
        ]
        for r in output["during"]:
            sent = r["engine"]["counts"].get("sent", 0)
            blast_b = (
                f"| {sent:,} of {r['engine']['recipients']:,}, fake {r['fake']['stored']:,} "
                f"| {r['engine']['process_s']:.1f} "
                f"| {r['engine']['recipients'] / r['engine']['process_s']:.1f}"
            )
            if r["rate"] is None:
                lines.append(
                    f"| {r['label']} | none (the send alone) | - | - | - | - | - | - | - | - "
                    f"{blast_b} | - |"
                )
                continue
            d = r["during_send"]
            sched = d["from_schedule"] or {}
            lines.append(
                f"| {r['label']} | {_rate(r['rate'])} | {d['callbacks']:,} "
                f"| {d['latency']['p50_ms']:.1f} | {d['latency']['p99_ms']:.1f} "
                f"| {d['latency']['max_ms']:.0f} | {_ms(sched.get('p99_ms'))} "
                f"| {_ms(sched.get('max_ms'))} | {d['over_1s']} | {r['load']['non_2xx']} "
                f"{blast_b} | {'yes' if r['check']['ok'] else '**no**'} |"
            )
    return "\n".join(lines)


def _web(spec: str) -> str:
    workers, threads = parse_web(spec)
    return f"{workers} workers x {threads} threads" if threads > 1 else f"{workers} sync workers"


def _rate(rate: float | None) -> str:
    if rate is None:
        return "none"
    return f"{rate:g}/s" if rate else "flat out"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def hot_spots(output: dict[str, Any]) -> str:
    out = []
    for r in output["runs"]:
        p = r.get("probe")
        if not p or r["label"] in {o.split(":")[0] for o in out}:
            continue
        prof = p["profile"]
        out.append(
            f"{r['label']}: profile of {prof['callbacks']} callbacks ('sent' then final), "
            f"{prof['ms_per_callback_profiled']:.2f} ms each under cProfile; per callback:"
        )
        for e in prof["top_cumulative"][:22]:
            out.append(
                f"  {e['cum_ms_per_callback']:7.3f} ms cum {e['own_ms_per_callback']:7.3f} own "
                f"{e['calls_per_callback']:6.2f} calls  {e['function']}"
            )
        out.append("  query plans of a 'delivered' callback:")
        for plan in p["plans"]:
            out.append(f"    {plan['sql'][:200]}\n      -> {plan['plan'][:300]}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--web",
        action="append",
        default=None,
        help="gunicorn WORKERSxTHREADS, repeatable (default 3x4, as deployed; 3x1: sync)",
    )
    parser.add_argument(
        "--during-rates",
        default="120,0",
        help="callbacks/s posted while a blast is sent, comma-separated; 0 = flat out, "
        "off = the send alone",
    )
    parser.add_argument("--no-during", action="store_true", help="skip the runs during a send")
    parser.add_argument(
        "--during-postgres", action="store_true", help="the runs during a send on PostgreSQL too"
    )
    parser.add_argument("--latency-ms", type=float, default=150.0, help="the fake Twilio's")
    parser.add_argument("--probe-rows", type=int, default=300)
    parser.add_argument("--profile-dir", type=Path, default=None, help="keep the .prof files")
    parser.add_argument("--json", type=Path, default=None, help="write raw results here")
    args = parser.parse_args()
    args.web = args.web or ["3x4"]
    return measure_in_a_copy(measure, args)


def measure(args: argparse.Namespace, src: Path) -> int:
    postgres_url = os.environ.get("TEST_POSTGRES_URL", "")
    host = machine()
    state = git_state()
    print_ = fingerprint(src)
    began = time.perf_counter()
    log(
        f"{args.rows} rows, {args.concurrency} connections, gunicorn {', '.join(args.web)}; "
        f"{host['cpus']} CPUs, {host['memory']}; Python {host['python']}, Django "
        f"{host['django']}, gunicorn {host['gunicorn']}, SQLite {host['sqlite']}; PostgreSQL: "
        f"{'yes' if postgres_url else 'skipped (TEST_POSTGRES_URL is not set)'}"
    )
    log(
        f"running from a copy of the tree in {src}: commit {state['commit']}, changed "
        f"{', '.join(state['changed']) or 'nothing'}; sources fingerprint {print_}"
    )
    output: dict[str, Any] = {
        "fingerprint": print_,
        "sources": sources(src),
        "git": state,
        "machine": host,
        "runs": [],
        "during": [],
    }

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(output, indent=1))

    databases: list[tuple[str, str | None]] = [("SQLite", None)]
    if postgres_url:
        databases.append(("PostgreSQL", postgres_url))
    try:
        for label, base_url in databases:
            for web in args.web:
                t0 = time.perf_counter()
                if base_url is None:
                    result = callbacks_run(src, label, None, web, args)
                else:
                    with postgres_database(base_url, f"cb_{web}") as url:
                        result = callbacks_run(src, label, url, web, args)
                output["runs"].append(result)
                save()
                lat = result["load"]["latency"]
                log(
                    f"{label}, gunicorn {web}: {result['load']['per_s']:.0f} callbacks/s, p50 "
                    f"{lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max "
                    f"{lat['max_ms']:.0f} ms; rows {result['check']['counts']}; "
                    f"{time.perf_counter() - t0:.0f} s in all"
                )
        if not args.no_during:
            rates = [
                None if x.strip() == "off" else float(x)
                for x in args.during_rates.split(",")
                if x.strip()
            ]
            during_dbs = databases if args.during_postgres else databases[:1]
            for label, base_url in during_dbs:
                for rate in rates:
                    t0 = time.perf_counter()
                    if base_url is None:
                        result = during_run(src, label, None, rate, args)
                    else:
                        with postgres_database(base_url, f"during_{_rate(rate)}") as url:
                            result = during_run(src, label, url, rate, args)
                    output["during"].append(result)
                    save()
                    d = result.get("during_send")
                    seen = (
                        f"{d['callbacks']} in the send phase, p99 {d['latency']['p99_ms']:.0f} "
                        f"ms, max {d['latency']['max_ms']:.0f} ms; "
                        if d
                        else ""
                    )
                    log(
                        f"{label} during a send, callbacks {_rate(rate)}: {seen}blast B "
                        f"{result['engine']['counts']} in {result['engine']['process_s']:.1f} s; "
                        f"{time.perf_counter() - t0:.0f} s in all"
                    )
    finally:
        save()
    output["total_s"] = time.perf_counter() - began
    save()
    if fingerprint(ROOT) != print_:
        log(f"note: the work tree's measured sources changed since the copy ({print_})")
    print(
        f"\nSources fingerprint: {print_} (commit {state['commit']}; changed: "
        f"{', '.join(state['changed']) or 'nothing'})"
    )
    print(
        f"Machine: {host['cpus']} CPUs, {host['memory']}, Python {host['python']}, Django "
        f"{host['django']}, gunicorn {host['gunicorn']}, twilio {host['twilio']}, SQLite "
        f"{host['sqlite']}; {output['total_s']:.0f} s in all\n"
    )
    print(tables(output))
    print()
    print(hot_spots(output))
    return 0


if __name__ == "__main__":
    bench_main(main)
