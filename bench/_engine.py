"""The send engine's side of bench/send_10k.py, run in a process of its own.

    python bench/_engine.py seed --recipients 10000
    python bench/_engine.py run [--profile DIR]

Both read their settings from the environment bench/_common.django_env builds. ``run``
prints one JSON line: wall and CPU times of blast_create and blast_process, the final
status and row counts, and the SQL statements the measuring thread issued.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsadmin.settings")

import django  # noqa: E402

django.setup()

from _common import BODY, first_name, phone  # noqa: E402
from django.db import connection  # noqa: E402

from members.models import Member  # noqa: E402
from messaging import services  # noqa: E402
from messaging.models import Blast  # noqa: E402


def seed(recipients: int) -> dict[str, Any]:
    Member.objects.all().delete()
    started = time.perf_counter()
    batch = 2000
    for start in range(0, recipients, batch):
        Member.objects.bulk_create(
            Member(first_name=first_name(i), last_name="Bench", phone=phone(i))
            for i in range(start, min(start + batch, recipients))
        )
    return {"members": Member.objects.count(), "seconds": time.perf_counter() - started}


class _Statements:
    """Counts the SQL statements of this thread's connection by their first word."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.counts[sql.lstrip().split(None, 1)[0].upper()] += 1
        return execute(sql, params, many, context)


class _AllThreadsProfile:
    """cProfile for the main thread and every thread started while it is on (Python 3.11)."""

    def __init__(self) -> None:
        self.main = cProfile.Profile()
        self.threads: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self.threads.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread's life

    def __enter__(self) -> _AllThreadsProfile:
        threading.setprofile(self._hook)
        self.main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self.main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]

    def dump(self, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        self.main.dump_stats(directory / "engine_main.prof")
        merged = pstats.Stats(self.threads[0]) if self.threads else None
        for profile in self.threads[1:]:
            merged.add(profile)  # type: ignore[union-attr]
        if merged is not None:
            merged.dump_stats(directory / "engine_threads.prof")
        report = io.StringIO()
        for title, stats in (("main thread", pstats.Stats(self.main)), ("send threads", merged)):
            if stats is None:
                continue
            for key in ("tottime", "cumulative"):
                report.write(f"===== {title}, by {key} =====\n")
                stats.stream = report  # type: ignore[attr-defined]
                stats.sort_stats(key).print_stats(35)
        (directory / "engine_profile.txt").write_text(report.getvalue())
        return {"profile_dir": str(directory), "threads_started": len(self.threads)}


def run_blast(profile_dir: Path | None) -> dict[str, Any]:
    recipients = Member.objects.filter(is_active=True).count()
    clients_built = 0
    if profile_dir is not None:
        # Diagnostic only (profile runs): how many twilio clients the engine builds.
        from messaging import sms

        real_client = sms.Client

        class CountingClient(real_client):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                nonlocal clients_built
                clients_built += 1
                super().__init__(*args, **kwargs)

        sms.Client = CountingClient
    profiler = _AllThreadsProfile() if profile_dir is not None else None
    if profiler is not None:
        profiler.__enter__()
    create_sql, process_sql = _Statements(), _Statements()
    cpu0, t0 = time.process_time(), time.perf_counter()
    with connection.execute_wrapper(create_sql):
        blast = services.blast_create(body=BODY, community=True)
    cpu1, t1 = time.process_time(), time.perf_counter()
    passes = 0
    with connection.execute_wrapper(process_sql):
        while True:
            passes += 1
            again = services.blast_process(blast_id=blast.pk, time_budget=10**6)
            if again is None or passes >= 20:
                break
            time.sleep(again)
    blast.refresh_from_db()
    cpu2, t2 = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.__exit__(None, None, None)
    counts = blast.counts()
    result: dict[str, Any] = {
        "recipients": recipients,
        "blast_id": blast.pk,
        "services_file": services.__file__,
        "status": blast.status,
        "counts": {k: v for k, v in counts.items() if v},
        "passes": passes,
        "create_s": t1 - t0,
        "process_s": t2 - t1,
        "total_s": t2 - t0,
        "create_cpu_s": cpu1 - cpu0,
        "process_cpu_s": cpu2 - cpu1,
        "create_sql": dict(create_sql.counts),
        "process_sql": dict(process_sql.counts),
    }
    if profiler is not None and profile_dir is not None:
        result.update(profiler.dump(profile_dir))
        result["twilio_clients_built"] = clients_built
    problems = []
    if blast.status not in Blast.FINAL_STATUSES:
        problems.append(f"blast status is {blast.status!r}, not final")
    if counts.get("sent", 0) != recipients:
        problems.append(f"{counts.get('sent', 0)} rows sent of {recipients}")
    if problems:
        result["error"] = "; ".join(problems)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    seed_parser = sub.add_parser("seed")
    seed_parser.add_argument("--recipients", type=int, required=True)
    run_parser = sub.add_parser("run")
    run_parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    result = seed(args.recipients) if args.command == "seed" else run_blast(args.profile)
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
