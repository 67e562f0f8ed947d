"""The other writer of bench/create_100k.py: short write transactions on the same SQLite file.

    python bench/_writer.py --db PATH [--interval-ms 20] [--timeout 30]

Plain ``sqlite3``, no Django: a stand-in for a worker recording outcomes or taking a
send slot while a blast is being created. It loops ``BEGIN IMMEDIATE; UPDATE
messaging_sendratelimiter ...; COMMIT`` then sleeps ``interval-ms``, with the busy
timeout the app uses (SQLITE_BUSY_TIMEOUT_SECONDS, 30 s), so a write that finds the
database locked waits for it the way the app's writers do. Prints READY once its row
exists, writes until a line (or end of file) arrives on stdin, then prints one JSON line:
every write's start (epoch seconds), its wait for the lock (the BEGIN IMMEDIATE), its
whole duration, and the error if it failed.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import threading
import time

KEY = "bench-other-writer"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    # isolation_level=None: no implicit transactions, so BEGIN IMMEDIATE is ours to issue.
    db = sqlite3.connect(args.db, timeout=args.timeout, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "INSERT INTO messaging_sendratelimiter (key, next_slot) "
        "SELECT ?, 0 WHERE NOT EXISTS (SELECT 1 FROM messaging_sendratelimiter WHERE key = ?)",
        (KEY, KEY),
    )
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    print("READY", flush=True)

    writes: list[list[float | str | None]] = []
    pause = args.interval_ms / 1000
    while not stop.is_set():
        started = time.time()
        t0 = time.perf_counter()
        waited: float | None = None
        error: str | None = None
        try:
            db.execute("BEGIN IMMEDIATE")
            waited = time.perf_counter() - t0
            db.execute(
                "UPDATE messaging_sendratelimiter SET next_slot = next_slot + 1 WHERE key = ?",
                (KEY,),
            )
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            error = str(exc)
            if db.in_transaction:
                db.execute("ROLLBACK")
        took = time.perf_counter() - t0
        writes.append([started, waited if waited is not None else took, took, error])
        stop.wait(pause)
    db.close()
    print(json.dumps({"writes": writes, "interval_ms": args.interval_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
