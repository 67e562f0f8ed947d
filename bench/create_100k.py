"""Creating a 100k-recipient blast, and what another writer of the database sees meanwhile.

    .venv/bin/python bench/create_100k.py [--members 100000] [--repeat 1] [--json out.json]
                                          [--no-baseline] [--create-batch N]
                                          [--create-pause SECONDS]

Each run gets a fresh SQLite database in a temp dir (migrated, then seeded with N active
members by bulk_create), and then, in processes of their own:

other writer  bench/_writer.py: plain sqlite3 on the same file, ``BEGIN IMMEDIATE;
              UPDATE messaging_sendratelimiter ...; COMMIT`` every 20 ms with the app's
              busy timeout (30 s), like a worker recording outcomes or taking a send slot.
              It logs how long each write waited for the lock.
creator       bench/_create.py: times ``blast_create(body=..., community=True)`` for the
              N members, and reports its peak RSS and how long each of its write
              transactions held the lock.

The writer starts a second before the creator and stops half a second after it; only its
writes that started while blast_create ran count as "during creation". A run without the
other writer comes first, as the baseline (``--no-baseline`` skips it). With TEST_POSTGRES_URL set, creation is also
timed on a throwaway PostgreSQL database (creation only, no other writer). Every process
runs from a copy of the tree taken at the start. ``--create-batch`` and ``--create-pause``
are experiments: they override blast_create's rows per write transaction
(CREATE_BATCH) and its pause between them (CREATE_PAUSE_SECONDS) in the creating
process only. Prints markdown rows for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ENGINE_SOURCES,
    PYTHON,
    ROOT,
    BenchError,
    bench_main,
    django_env,
    engine_fingerprint,
    log,
    measure_in_a_copy,
    postgres_database,
    run,
    run_json,
)

WRITER_INTERVAL_MS = 20
BUSY_TIMEOUT_S = 30  # the app's SQLITE_BUSY_TIMEOUT_SECONDS default


def prepare(src: Path, var_dir: Path, members: int, database_url: str | None) -> dict[str, str]:
    """A migrated database seeded with ``members`` active members; its environment."""
    env = django_env(var_dir, None, database_url=database_url)
    run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], env, what="migrate", cwd=src)
    seeded = run_json(
        [PYTHON, str(src / "bench" / "_engine.py"), "seed", "--recipients", str(members)],
        env,
        what="seeding members",
        cwd=src,
    )
    if seeded["members"] != members:
        raise BenchError(f"seeded {seeded['members']} members, expected {members}")
    return env


def create(src: Path, env: dict[str, str], overrides: list[str]) -> dict[str, Any]:
    args = [PYTHON, str(src / "bench" / "_create.py"), *overrides]
    result = run_json(args, env, what="blast_create", cwd=src)
    if not Path(result["services_file"]).is_relative_to(src):
        raise BenchError(f"blast_create ran {result['services_file']}, not the copy in {src}")
    return result


def create_with_writer(
    src: Path, env: dict[str, str], db_path: Path, overrides: list[str]
) -> dict[str, Any]:
    writer = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [
            PYTHON,
            str(src / "bench" / "_writer.py"),
            "--db",
            str(db_path),
            "--interval-ms",
            str(WRITER_INTERVAL_MS),
            "--timeout",
            str(BUSY_TIMEOUT_S),
        ],
        cwd=src,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        if writer.stdout.readline().strip() != "READY":
            raise BenchError(f"the other writer did not start (exit {writer.poll()})")
        time.sleep(1.0)  # its uncontended writes, for comparison
        created = create(src, env, overrides)
        time.sleep(0.5)
        out, _ = writer.communicate("stop\n", timeout=120)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    if writer.returncode != 0:
        raise BenchError(f"the other writer failed (exit {writer.returncode})")
    writes = json.loads(out.strip().splitlines()[-1])["writes"]
    created["writer"] = writer_summary(writes, created["start_epoch"], created["end_epoch"])
    return created


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def writer_summary(writes: list[list[Any]], start: float, end: float) -> dict[str, Any]:
    during = [w for w in writes if start <= w[0] <= end]
    before = [w for w in writes if w[0] < start]
    if not during:
        raise BenchError("the other writer made no write while blast_create ran")
    waits = [w[1] for w in during]
    return {
        "writes_total": len(writes),
        "writes_during": len(during),
        "writes_per_s_during": len(during) / (end - start),
        "writes_per_s_before": len(before) / max(1e-9, before[-1][0] - before[0][0])
        if len(before) > 1
        else None,
        "wait_max_s": max(waits),
        "wait_p99_s": _percentile(waits, 0.99),
        "wait_p50_s": statistics.median(waits),
        "waits_over_100ms": sum(1 for w in waits if w > 0.1),
        "write_max_s": max(w[2] for w in during),
        "wait_max_before_s": max((w[1] for w in before), default=None),
        "errors": [w[3] for w in writes if w[3]],
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| database | other writer | rows | rows per batch, pause | blast_create s | CPU s | peak MB "
        "| creator's write transactions | longest held ms "
        "| other writer's writes during creation | waited > 100 ms | longest wait ms "
        "| p99 wait ms | median wait ms | 'database is locked' |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
    ]
    for r in runs:
        holds = r["lock_holds_s"]
        w = r.get("writer")
        database = "SQLite" if r["database"] == "sqlite" else "PostgreSQL"
        writer_cells = (
            f"{w['writes_during']:,} | {w['waits_over_100ms']} | {_ms(w['wait_max_s'])} "
            f"| {_ms(w['wait_p99_s'])} | {_ms(w['wait_p50_s'])} | {len(w['errors'])}"
            if w
            else "- | - | - | - | - | -"
        )
        batch = f"{r['create_batch']:,}, {r['create_pause_s']:g} s" + (
            " (experiment)" if r["experiment"] else ""
        )
        lines.append(
            f"| {database} | {'every 20 ms' if w else 'none'} | {r['rows']:,} | {batch} "
            f"| {r['create_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} "
            f"| {len(holds) if holds else '-'} | {_ms(max(holds)) if holds else '-'} "
            f"| {writer_cells} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each kind")
    parser.add_argument("--json", type=Path, default=None, help="write raw results here")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run without the other writer"
    )
    parser.add_argument(
        "--create-batch",
        type=int,
        default=None,
        help="experiment: override blast_create's CREATE_BATCH in the creating process",
    )
    parser.add_argument(
        "--create-pause",
        type=float,
        default=None,
        help="experiment: override blast_create's CREATE_PAUSE_SECONDS likewise",
    )
    args = parser.parse_args()
    return measure_in_a_copy(measure, args)


def measure(args: argparse.Namespace, src: Path) -> int:
    postgres_url = os.environ.get("TEST_POSTGRES_URL", "")
    fingerprint = engine_fingerprint(src)
    log(
        f"{args.members} members; {args.repeat} run(s) each; {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; PostgreSQL: "
        f"{'yes' if postgres_url else 'skipped (TEST_POSTGRES_URL is not set)'}"
    )
    log(
        f"running from a copy of the tree in {src}; engine sources fingerprint "
        f"{fingerprint} ({', '.join(ENGINE_SOURCES)})"
    )
    runs: list[dict[str, Any]] = []
    overrides: list[str] = []
    if args.create_batch is not None:
        overrides += ["--create-batch", str(args.create_batch)]
    if args.create_pause is not None:
        overrides += ["--create-pause", str(args.create_pause)]

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps({"engine_fingerprint": fingerprint, "runs": runs}))

    for index in range(args.repeat):
        for with_writer in (True,) if args.no_baseline else (False, True):
            var_dir = Path(tempfile.mkdtemp(prefix="smsadmin-bench-"))
            try:
                env = prepare(src, var_dir, args.members, None)
                load = os.getloadavg()[0]
                if with_writer:
                    result = create_with_writer(src, env, var_dir / "db.sqlite3", overrides)
                else:
                    result = create(src, env, overrides)
            finally:
                shutil.rmtree(var_dir, ignore_errors=True)
            result["load_before"] = load
            runs.append(result)
            save()
            w = result.get("writer")
            log(
                f"[{index + 1}] SQLite, other writer: {'yes' if w else 'no'}: "
                f"{result['rows']} rows in {result['create_s']:.1f} s, peak "
                f"{result['peak_rss_mb']:.0f} MB (load before {load:.2f})"
                + (
                    f"; other writer {w['writes_during']} writes, longest wait "
                    f"{_ms(w['wait_max_s'])} ms, p99 {_ms(w['wait_p99_s'])} ms, "
                    f"{len(w['errors'])} errors"
                    if w
                    else ""
                )
            )
        if postgres_url:
            var_dir = Path(tempfile.mkdtemp(prefix="smsadmin-bench-"))
            try:
                with postgres_database(postgres_url, f"create_{index}") as url:
                    env = prepare(src, var_dir, args.members, url)
                    result = create(src, env, overrides)
            finally:
                shutil.rmtree(var_dir, ignore_errors=True)
            runs.append(result)
            save()
            log(f"[{index + 1}] PostgreSQL: {result['rows']} rows in {result['create_s']:.1f} s")
    if engine_fingerprint(ROOT) != fingerprint:
        log(f"note: the work tree's engine sources changed since the copy ({fingerprint})")
    print(f"\nEngine sources fingerprint: {fingerprint}\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    bench_main(main)
