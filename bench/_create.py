"""The creating side of bench/create_100k.py, run in a process of its own.

    python bench/_create.py [--create-batch N] [--create-pause SECONDS]

Reads its settings from the environment bench/_common.django_env builds, times
``blast_create(body=BODY, community=True)`` for every active member and prints one JSON
line: wall and CPU time (and their epoch start and end, to line up with the other
writer's log), rows written, the blast's status, this process's RSS before and its peak
(ru_maxrss), and on SQLite each of blast_create's write transactions, from the moment
its BEGIN IMMEDIATE got the lock to its COMMIT: how long this process held the lock.
``--create-batch`` and ``--create-pause`` override messaging.services.creating's
CREATE_BATCH and CREATE_PAUSE_SECONDS in this process only: experiments on the batch
size and the pause between batches, never the default figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsadmin.settings")

import django  # noqa: E402

django.setup()

from _common import BODY  # noqa: E402
from django.db import connection  # noqa: E402

from members.models import Member  # noqa: E402
from messaging import services  # noqa: E402
from messaging.models import Blast, Delivery  # noqa: E402
from messaging.services import creating  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _LockHolds:
    """On SQLite: when each BEGIN IMMEDIATE got the lock, and how long until its COMMIT.

    Diagnostic only, in this benchmark process: it wraps the connection's commit.
    """

    def __init__(self) -> None:
        self.began: float | None = None
        self.holds: list[float] = []
        self.statements = 0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.statements += 1
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("BEGIN"):
            self.began = time.perf_counter()
        return result

    def install(self) -> None:
        real_commit = connection.commit

        def commit() -> None:
            real_commit()
            if self.began is not None:
                self.holds.append(time.perf_counter() - self.began)
                self.began = None

        connection.commit = commit  # type: ignore[method-assign]


class _CountBusy(logging.Handler):
    """retry_when_busy's warnings: the creator found the database busy and tried again."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--create-batch", type=int, default=None)
    parser.add_argument("--create-pause", type=float, default=None)
    args = parser.parse_args()
    if args.create_batch is not None:
        creating.CREATE_BATCH = args.create_batch
    if args.create_pause is not None:
        creating.CREATE_PAUSE_SECONDS = args.create_pause
    members = Member.objects.filter(is_active=True).count()
    busy = _CountBusy()
    logging.getLogger("messaging.services.busy").addHandler(busy)
    holds = _LockHolds()
    holds.install()
    rss_before = _rss_mb()
    with connection.execute_wrapper(holds):
        epoch0, cpu0, t0 = time.time(), time.process_time(), time.perf_counter()
        blast = services.blast_create(body=BODY, community=True)
        t1, cpu1, epoch1 = time.perf_counter(), time.process_time(), time.time()
    rows = Delivery.objects.filter(blast=blast).count()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result: dict[str, Any] = {
        "database": connection.vendor,
        "members": members,
        "rows": rows,
        "recipient_count": blast.recipient_count,
        "status": blast.status,
        "create_s": t1 - t0,
        "cpu_s": cpu1 - cpu0,
        "start_epoch": epoch0,
        "end_epoch": epoch1,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_kb / 1024,
        "statements": holds.statements,
        "lock_holds_s": holds.holds,
        "busy_retries": busy.count,
        "create_batch": creating.CREATE_BATCH,
        "experiment": args.create_batch is not None or args.create_pause is not None,
        "create_pause_s": creating.CREATE_PAUSE_SECONDS,
        "services_file": services.__file__,
    }
    problems = []
    if rows != members or blast.recipient_count != members:
        problems.append(f"{rows} rows ({blast.recipient_count} counted) for {members} members")
    if blast.status != Blast.Status.QUEUED:
        problems.append(f"blast status is {blast.status!r}, not queued")
    if problems:
        result["error"] = "; ".join(problems)
    print(json.dumps(result))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
