"""End-to-end throughput of a 10k blast against the fake Twilio server (issue 3).

    .venv/bin/python bench/send_10k.py [--recipients 10000] [--latencies 0,150]
                                       [--repeat 1] [--profile-latency 0] [--json out.json]

For each latency the fake Twilio server runs in a process of its own (standalone mode),
so its CPU does not share the GIL with what is measured, and then:

engine      a fresh SQLite database in a temp dir, migrated and seeded with N members
            (bulk_create); one process then times blast_create(community=True) plus
            blast_process(time_budget=10**6) until the blast's status is final.
            SMS_RATE_PER_SECOND=0 (unlimited: this measures the engine, not the
            configured rate), SMS_MAX_IN_FLIGHT=10, the real TwilioBackend.
plain loop  the same twilio client calls (one Client per thread, base_url at the fake)
            from ThreadPoolExecutor(max_workers=10): no Django, no database.

After each side the fake must have stored exactly N messages, one per number, or the run
fails. With TEST_POSTGRES_URL set, the engine also runs on a throwaway PostgreSQL
database created next to that URL's. ``--profile-latency`` adds a cProfile run of the
engine (not timed in the table) and writes its report under the temp dir it prints.
Prints markdown tables for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ENGINE_SOURCES,
    PYTHON,
    ROOT,
    BenchError,
    Fake,
    bench_main,
    check_fake_stored,
    django_env,
    engine_fingerprint,
    fake_reset,
    fake_stats,
    fake_twilio,
    log,
    measure_in_a_copy,
    postgres_database,
    run,
    run_json,
)

MAX_IN_FLIGHT = 10


def engine_run(
    src: Path,
    fake: Fake,
    recipients: int,
    *,
    database_url: str | None = None,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    var_dir = Path(tempfile.mkdtemp(prefix="smsadmin-bench-"))
    script = str(src / "bench" / "_engine.py")
    try:
        env = django_env(var_dir, fake, database_url=database_url)
        run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            env,
            what="migrate",
            cwd=src,
        )
        seeded = run_json(
            [PYTHON, script, "seed", "--recipients", str(recipients)],
            env,
            what="seeding members",
            cwd=src,
        )
        if seeded["members"] != recipients:
            raise BenchError(f"seeded {seeded['members']} members, expected {recipients}")
        fake_reset(fake)
        args = [PYTHON, script, "run"]
        if profile_dir is not None:
            args += ["--profile", str(profile_dir)]
        result = run_json(args, env, what="engine run", cwd=src)
        if not Path(result["services_file"]).is_relative_to(src):
            raise BenchError(f"the engine ran {result['services_file']}, not the copy in {src}")
        result["fake"] = _summary(check_fake_stored(fake, expected=recipients))
        return result
    finally:
        fake_reset(fake)
        shutil.rmtree(var_dir, ignore_errors=True)


def plain_run(src: Path, fake: Fake, recipients: int) -> dict[str, Any]:
    fake_reset(fake)
    try:
        result = run_json(
            [
                PYTHON,
                str(src / "bench" / "_plain.py"),
                "--url",
                fake.url,
                "--account-sid",
                fake.account_sid,
                "--auth-token",
                fake.auth_token,
                "--recipients",
                str(recipients),
                "--max-workers",
                str(MAX_IN_FLIGHT),
            ],
            os.environ,
            what="plain loop",
            cwd=src,
        )
        result["fake"] = _summary(check_fake_stored(fake, expected=recipients))
        return result
    finally:
        fake_reset(fake)


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k != "per_to"}


def _rate(result: dict[str, Any]) -> float:
    return result["recipients"] / result["total_s"]


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` side had the median rate (the lower one of an even count)."""
    ordered = sorted((run for run in runs if key in run), key=lambda run: _rate(run[key]))
    return ordered[(len(ordered) - 1) // 2][key]


def tables(results: list[dict[str, Any]]) -> str:
    """Medians over the runs of each latency; "(a-b)" is the engine's range over them."""
    lines = [
        "| latency | database | engine msg/s | plain loop msg/s | ratio engine/plain "
        "| engine wall s | runs |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        runs = r["runs"]
        plain = _median_run(runs, "plain")
        for database, key in (("SQLite", "engine"), ("PostgreSQL", "postgres")):
            if not any(key in run for run in runs):
                continue
            engine = _median_run(runs, key)
            spread = ""
            if len(runs) > 1:
                rates = sorted(_rate(run[key]) for run in runs)
                spread = f" ({rates[0]:.0f}-{rates[-1]:.0f})"
            lines.append(
                f"| {r['latency_ms']:g} ms | {database} | {_rate(engine):.0f}{spread} "
                f"| {_rate(plain):.0f} | {_rate(engine) / _rate(plain):.2f} "
                f"| {engine['total_s']:.1f} | {len(runs)} |"
            )
    lines += [
        "",
        "| latency | database | blast_create s | send phase s | send phase msg/s "
        "| engine CPU s | plain loop CPU s | plain loop wall s | SQL statements / message "
        "| ceiling msg/s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        plain = _median_run(r["runs"], "plain")
        ceiling = f"{MAX_IN_FLIGHT / (r['latency_ms'] / 1000):.1f}" if r["latency_ms"] else "-"
        for database, key in (("SQLite", "engine"), ("PostgreSQL", "postgres")):
            if not any(key in run for run in r["runs"]):
                continue
            engine = _median_run(r["runs"], key)
            n = engine["recipients"]
            statements = sum(engine["process_sql"].values()) / n
            lines.append(
                f"| {r['latency_ms']:g} ms | {database} | {engine['create_s']:.2f} "
                f"| {engine['process_s']:.1f} | {n / engine['process_s']:.0f} "
                f"| {engine['create_cpu_s'] + engine['process_cpu_s']:.1f} "
                f"| {plain['cpu_s']:.1f} | {plain['total_s']:.1f} | {statements:.2f} "
                f"| {ceiling} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--latencies", default="0,150", help="comma-separated, in ms")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per latency; the tables show medians"
    )
    parser.add_argument(
        "--profile-latency",
        type=float,
        default=None,
        help="also run the engine under cProfile at this latency (not in the table)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write raw results here")
    args = parser.parse_args()
    return measure_in_a_copy(measure, args)


def measure(args: argparse.Namespace, src: Path) -> int:
    latencies = [float(x) for x in args.latencies.split(",") if x.strip()]
    postgres_url = os.environ.get("TEST_POSTGRES_URL", "")
    n = args.recipients
    log(
        f"{n} recipients; latencies {latencies} ms; {args.repeat} run(s) each; "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}; PostgreSQL: "
        f"{'yes' if postgres_url else 'skipped (TEST_POSTGRES_URL is not set)'}"
    )
    fingerprint = engine_fingerprint(src)
    log(
        f"running from a copy of the tree in {src}; engine sources fingerprint "
        f"{fingerprint} ({', '.join(ENGINE_SOURCES)})"
    )
    results: list[dict[str, Any]] = []
    output: dict[str, Any] = {"engine_fingerprint": fingerprint, "results": results}

    def save() -> None:  # after every run, so a late failure keeps what was measured
        if args.json is not None:
            args.json.write_text(json.dumps(output, indent=2))

    for latency in latencies:
        entry: dict[str, Any] = {"latency_ms": latency, "runs": []}
        results.append(entry)
        with fake_twilio(latency, root=src) as fake:
            log(f"latency {latency:g} ms: fake Twilio at {fake.url} (pid {fake.pid})")
            for index in range(args.repeat):
                # Other work on the machine skews the 0 ms figures: keep a trace of it.
                load = os.getloadavg()[0]
                run_: dict[str, Any] = {"load_before": load, "engine": engine_run(src, fake, n)}
                log(
                    f"  [{index + 1}] 1-min load average before the run: {load:.2f}; "
                    f"after the engine: {os.getloadavg()[0]:.2f}"
                )
                log(
                    f"  [{index + 1}] engine (SQLite): {_rate(run_['engine']):.1f} msg/s, "
                    f"{run_['engine']['total_s']:.1f} s "
                    f"(blast_create {run_['engine']['create_s']:.2f} s)"
                )
                run_["plain"] = plain_run(src, fake, n)
                log(
                    f"  [{index + 1}] plain loop: {_rate(run_['plain']):.1f} msg/s, "
                    f"{run_['plain']['total_s']:.1f} s"
                )
                if postgres_url:
                    with postgres_database(postgres_url, f"{latency:g}_{index}") as url:
                        run_["postgres"] = engine_run(src, fake, n, database_url=url)
                    log(f"  [{index + 1}] engine (PostgreSQL): {_rate(run_['postgres']):.1f} msg/s")
                if fake_stats(fake)["stored"] != 0:
                    raise BenchError("the fake was not reset between runs")
                entry["runs"].append(run_)
                save()
    if args.profile_latency is not None:
        profile_dir = Path(tempfile.mkdtemp(prefix="smsadmin-bench-profile-"))
        with fake_twilio(args.profile_latency, root=src) as fake:
            profiled = engine_run(src, fake, n, profile_dir=profile_dir)
        log(
            f"profiled engine run at {args.profile_latency:g} ms: {_rate(profiled):.1f} msg/s "
            f"under cProfile; report in {profile_dir / 'engine_profile.txt'}"
        )
        output["profile"] = profiled
    save()
    if engine_fingerprint(ROOT) != fingerprint:
        log(f"note: the work tree's engine sources changed since the copy ({fingerprint})")
    print(f"Engine sources fingerprint: {fingerprint}\n")
    print(tables(results))
    return 0


if __name__ == "__main__":
    bench_main(main)
