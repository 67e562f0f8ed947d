"""The managers' pages with 100k members and a 100k-delivery blast: their server time.

    .venv/bin/python bench/pages_100k.py [--members 100000] [--warmup 5] [--repeat 40]
                                         [--json out.json] [--profile-dir DIR] [--only TEXT]

Target (the compose and blast pages' issue): every page answers in a bounded number of
queries, p50 under 150 ms of server time.

For each database (SQLite always, in WAL mode as the app configures it; PostgreSQL too when
TEST_POSTGRES_URL is set, on a throwaway database), from a copy of the tree taken at the
start and each in a process of its own:

seed     ``bench/_pages.py seed``: a fresh database, migrated, static files collected (the
         manifest storage the app serves with DEBUG off), then 100,000 active members and
         a few inactive ones, a tag on 5,000 of them, an event with 10,000 registrations
         (7,000 of them members' numbers), a few small events, 2,000 unsubscribed and
         1,000 suppressed numbers, a Social manager, and one blast being sent with 100,000
         delivery rows: 78% delivered, 8% sent, 5% failed (six error codes), 5% pending,
         4% skipped; three small finished blasts besides, for the admin index.
measure  ``bench/_pages.py measure``: signed in as the Social manager through
         ``django.test.Client`` in that process, so the time is the server's own (request
         handling, queries, template rendering; no network, no HTTP server). Each page
         ``--warmup`` times, then ``--repeat`` timed requests: p50, p95 and max; then a
         few more inside ``CaptureQueriesContext`` for the number of queries per request
         and the queries' own time. A page answering other than 200 (say 500 while its
         view is being written) is skipped and named; re-run the benchmark as is later.
         A page over 150 ms at p50 gets one request profiled (cProfile): its hot spots
         are printed.

Prints markdown tables for docs/BENCHMARKS.md; the last stdout line is not JSON (the
workers' is): ``--json`` writes the raw results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PYTHON,
    ROOT,
    BenchError,
    bench_main,
    django_env,
    log,
    measure_in_a_copy,
    postgres_database,
    run,
    run_json,
)

TARGET_MS = 150.0

# What the measured pages run through, fingerprinted in the output.
PAGES_GLOBS = [
    "messaging/views/*.py",
    "messaging/services/composing.py",
    "messaging/services/creating.py",
    "messaging/templatetags/*.py",
    "messaging/segments.py",
    "messaging/templating.py",
    "messaging/twilio_errors.py",
    "messaging/models.py",
    "members/models.py",
    "events/models.py",
    "suppression/models.py",
    "suppression/services.py",
    "smsadmin/settings.py",
    "smsadmin/urls.py",
    "templates/messaging/*.html",
    "templates/admin/index.html",
]


def pages_sources(root: Path) -> list[str]:
    return sorted(
        str(path.relative_to(root)) for pattern in PAGES_GLOBS for path in root.glob(pattern)
    )


def pages_fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for name in pages_sources(root):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def git_state(sources: list[str]) -> dict[str, Any]:
    """The commit the work tree is on, and which measured sources differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - git, read only
            ["git", "-C", str(ROOT), *args],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout

    changed = git("status", "--porcelain", "--", *sources).splitlines()
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "changed": [c[3:] for c in changed],
    }


def machine() -> dict[str, Any]:
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.0f} GB"
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def prepare(
    src: Path, var_dir: Path, members: int, database_url: str | None
) -> tuple[dict[str, str], dict[str, Any]]:
    """A migrated, seeded database; its environment and what the seeding reports."""
    env = django_env(
        var_dir, None, database_url=database_url, extra={"ALLOWED_HOSTS": "testserver"}
    )
    run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], env, what="migrate", cwd=src)
    run(
        [PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        env,
        what="collectstatic",
        cwd=src,
    )
    seeded = run_json(
        [PYTHON, str(src / "bench" / "_pages.py"), "seed", "--members", str(members)],
        env,
        what="seeding",
        cwd=src,
    )
    if seeded["members_active"] != members or seeded["blast_rows"] != members:
        raise BenchError(
            f"seeded {seeded['members_active']} members and {seeded['blast_rows']} rows, "
            f"expected {members}"
        )
    (var_dir / "seed.json").write_text(json.dumps(seeded))
    return env, seeded


def measure_pages(
    src: Path, var_dir: Path, env: dict[str, str], args: argparse.Namespace, label: str
) -> dict[str, Any]:
    cmd = [
        PYTHON,
        str(src / "bench" / "_pages.py"),
        "measure",
        "--seed-json",
        str(var_dir / "seed.json"),
        "--warmup",
        str(args.warmup),
        "--repeat",
        str(args.repeat),
        "--profile-over-ms",
        str(args.profile_over_ms),
    ]
    if args.profile_dir is not None:
        cmd += ["--profile-dir", str(args.profile_dir / label)]
    for only in args.only:
        cmd += ["--only", only]
    load = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = run_json(cmd, env, what=f"measuring on {label}", cwd=src)
    if not Path(result["views_file"]).is_relative_to(src):
        raise BenchError(f"the pages ran {result['views_file']}, not the copy in {src}")
    result["load_before"] = load
    result["started"] = started
    return result


# --- Output ----------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    lines = [
        "| page | p50 ms | p95 ms | max ms | min ms | CPU ms (p50) | queries "
        "| queries' own ms (p50) | KB | p50 under 150 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for page in result["pages"]:
        name = "`{}`".format(page["name"].replace("|", "\\|"))
        if "skipped" in page:
            lines.append(f"| {name} | - | - | - | - | - | - | - | - | skipped: {page['skipped']} |")
            continue
        queries = str(page["queries"])
        if page["queries_min"] != page["queries"]:
            queries = f"{page['queries_min']}-{page['queries']}"
        within = "yes" if page["p50_ms"] < TARGET_MS else "**no**"
        lines.append(
            f"| {name} | {page['p50_ms']:.0f} | {page['p95_ms']:.0f} | {page['max_ms']:.0f} "
            f"| {page['min_ms']:.0f} | {page['cpu_ms_p50']:.0f} | {queries} | {page['sql_ms_p50']:.0f} | {page['bytes'] / 1024:.0f} | {within} |"
        )
    return "\n".join(lines)


def hot_spots(result: dict[str, Any], label: str) -> str:
    out = []
    for page in result["pages"]:
        profile = page.get("profile")
        if not profile:
            continue
        out.append(
            f"\n{label}: {page['name']}: p50 {page['p50_ms']:.0f} ms, "
            f"{page['queries']} queries, {page['sql_ms_p50']:.0f} ms in them (p50)"
        )
        out.append("  slowest queries (each one's median over the query-capturing runs):")
        for query in page["slowest_queries"]:
            out.append(f"    {query['ms']:8.2f} ms  {query['sql'][:400]}")
        out.append("  its SELECTs re-run alone, rows fetched (median of 3):")
        for query in page.get("queries_alone", []):
            out.append(f"    {query['ms']:8.2f} ms  {query['sql'][:400]}")
        out.append(
            f"  profiled request ({profile['profiled_ms']:.0f} ms under cProfile), by own time:"
        )
        for entry in profile["top_own"][:12]:
            out.append(
                f"    {entry['own_ms']:8.2f} ms own {entry['cumulative_ms']:8.2f} ms cum "
                f"{entry['calls']:7d} calls  {entry['function']}"
            )
        out.append("  by cumulative time:")
        for entry in profile["top_cumulative"][:25]:
            out.append(
                f"    {entry['cumulative_ms']:8.2f} ms cum {entry['own_ms']:8.2f} ms own "
                f"{entry['calls']:7d} calls  {entry['function']}"
            )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None, help="write raw results here")
    parser.add_argument(
        "--profile-dir", type=Path, default=None, help="keep the .prof files of profiled pages"
    )
    parser.add_argument(
        "--profile-over-ms",
        type=float,
        default=TARGET_MS,
        help="profile one request of each page whose p50 is over this",
    )
    parser.add_argument(
        "--only", action="append", default=[], help="only pages whose name contains this"
    )
    args = parser.parse_args()
    return measure_in_a_copy(measure, args)


def measure(args: argparse.Namespace, src: Path) -> int:
    postgres_url = os.environ.get("TEST_POSTGRES_URL", "")
    sources = pages_sources(src)
    fingerprint = pages_fingerprint(src)
    state = git_state(sources)
    host = machine()
    log(
        f"{args.members} members and blast rows; {args.warmup} warm-up + {args.repeat} timed "
        f"requests per page; {host['cpus']} CPUs, {host['memory']}; Python {host['python']}; "
        f"PostgreSQL: {'yes' if postgres_url else 'skipped (TEST_POSTGRES_URL is not set)'}"
    )
    log(
        f"running from a copy of the tree in {src}: commit {state['commit']}, changed "
        f"{', '.join(state['changed']) or 'nothing'}; pages sources fingerprint {fingerprint}"
    )
    runs: list[tuple[str, dict[str, Any]]] = []

    def save() -> None:
        if args.json is not None:
            args.json.write_text(
                json.dumps(
                    {
                        "pages_fingerprint": fingerprint,
                        "git": state,
                        "machine": host,
                        "runs": [{"label": label, **result} for label, result in runs],
                    }
                )
            )

    databases = [("SQLite", None)] + ([("PostgreSQL", postgres_url)] if postgres_url else [])
    for label, base_url in databases:
        var_dir = Path(tempfile.mkdtemp(prefix="smsadmin-bench-"))
        try:
            started = time.perf_counter()
            if base_url is None:
                env, seeded = prepare(src, var_dir, args.members, None)
                result = measure_pages(src, var_dir, env, args, label)
            else:
                with postgres_database(base_url, "pages") as url:
                    env, seeded = prepare(src, var_dir, args.members, url)
                    result = measure_pages(src, var_dir, env, args, label)
        finally:
            shutil.rmtree(var_dir, ignore_errors=True)
        result["seed"] = seeded
        runs.append((label, result))
        save()
        skipped = [p["name"] for p in result["pages"] if "skipped" in p]
        log(
            f"{label} {result['database_version']}: seeded in {seeded['seconds']:.0f} s, "
            f"{len(result['pages']) - len(skipped)} pages measured, {len(skipped)} skipped, "
            f"{time.perf_counter() - started:.0f} s in all"
        )
    if pages_fingerprint(ROOT) != fingerprint:
        log(f"note: the work tree's pages sources changed since the copy ({fingerprint})")
    print(
        f"\nPages sources fingerprint: {fingerprint} (commit {state['commit']}; changed: "
        f"{', '.join(state['changed']) or 'nothing'})"
    )
    print(f"Machine: {host['cpus']} CPUs, {host['memory']}, Python {host['python']}")
    for label, result in runs:
        seeded = result["seed"]
        print(
            f"\n{label} {result['database_version']}, Django {result['django']}, "
            f"{result['started']}, 1-min load average {result['load_before']:.2f} before, "
            f"{result['load_after']:.2f} after; "
            f"{seeded['members_active']:,} active members, blast rows "
            f"{seeded['blast_counts']}, failed codes {seeded['failed_codes']}\n"
        )
        print(table(result))
    for label, result in runs:
        spots = hot_spots(result, label)
        if spots:
            print(spots)
    skipped = {p["name"]: p["skipped"] for _, r in runs for p in r["pages"] if "skipped" in p}
    if skipped:
        print("\nSkipped (re-run later as is):")
        for name, why in skipped.items():
            print(f"- {name}: {why}")
    return 0


if __name__ == "__main__":
    bench_main(main)
