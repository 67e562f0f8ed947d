"""The processes of bench/callbacks_10k.py: seeding, the load generator, checks, the probe.

    python bench/_callbacks.py seed --rows 10000 --probe-rows 300 --members 0 --out rows.json
    python bench/_callbacks.py load --port P --host H --token T --rows-json rows.json
                                    [--concurrency 10] [--rate 0] [--warmup 10] [--raw]
    python bench/_callbacks.py check --rows-json rows.json
    python bench/_callbacks.py probe --rows-json rows.json --host H --token T

``seed``, ``check`` and ``probe`` are Django processes (settings from the environment
bench/_common.django_env builds); ``load`` is not: it imports neither Django nor the
app, only the twilio library's signature (through ``messaging.tests.fake_twilio.sign``)
and ``http.client``, so its own CPU is small and is not the app's. Each prints one JSON
line.

``seed`` fills a migrated database with one blast already sent ("blast A", status
``sent``): ``--rows`` delivery rows in status ``sent``, each with a message SID,
``twilio_status`` ``queued``, one attempt, ``sent_at`` and ``claimed_at`` set, as the send
engine leaves them, and the StatusCallback URL the engine gave Twilio for each (the
measured tree's ``messaging.sms.status_callback_url``); a small "probe" blast of
``--probe-rows`` rows in the same state for ``probe``; and ``--members`` community
members (numbers ``phone(0)``... as in bench/send_10k.py) for a blast a worker sends
meanwhile. Blast A's and the probe's numbers are other numbers (``phone(1_000_000 + i)``,
``phone(2_000_000 + i)``), so the suppressions their callbacks cause never touch that
blast's audience.

``load`` posts the callbacks of ``plan()`` for blast A to gunicorn as Twilio would (form
fields, ``X-Twilio-Signature`` over ``PUBLIC_BASE_URL`` + path + query, and the headers
nginx adds in front of the app) from ``--concurrency`` threads, one keep-alive connection
each. ``--rate 0`` is a closed loop (each thread posts its next callback as soon as the
last is answered: the most the app sustains at that concurrency); ``--rate R`` schedules
callback k at start + k/R (an open loop) and times it from its schedule as well, so a
stall shows as the queue behind it does.

``check`` compares blast A's rows with what ``plan()`` posted: every row delivered, or
failed with the posted code; one FailureEvent per undelivered row; every 30006 number
suppressed. ``probe`` runs the same kinds of callbacks in-process through
``django.test.Client`` (connections closed after each request as gunicorn's
request_finished does) inside ``CaptureQueriesContext``: SQL statements and server time
per callback of each kind, query plans, the cost of opening a connection, and a
cProfile of a batch.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BODY, FROM_NUMBER, first_name, phone  # noqa: E402

STATUS_PATH = "/webhooks/twilio/status/"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
# Blast A's and the probe's numbers: clear of the members' phone(0)...
ROWS_OFFSET = 1_000_000
PROBE_OFFSET = 2_000_000

# The mix of callbacks (by the row's index i in blast A):
UNDELIVERED_EVERY, UNDELIVERED_AT = 20, 7  # 5% undelivered, 30003 and 30006 by turns
OUT_OF_ORDER_EVERY, OUT_OF_ORDER_AT = 50, 17  # 2% final status before 'sent'
DUP_FINAL_EVERY, DUP_FINAL_AT = 50, 47  # 2% final status twice
DUP_SENT_EVERY, DUP_SENT_AT = 100, 71  # 1% 'sent' twice
# A row's final callback comes this many rows' 'sent' callbacks after its own 'sent'
# (with 10 connections at a few hundred a second: a second or two, like Twilio).
LAG = 400


@dataclass(frozen=True)
class Callback:
    delivery_id: int
    sid: str
    phone: str
    status: str
    code: int | None
    kind: str  # sent, delivered, undelivered, duplicate, late sent
    # The StatusCallback path and query the engine gave Twilio for this row.
    path: str = ""


def _final(i: int) -> tuple[str, int | None]:
    if i % UNDELIVERED_EVERY == UNDELIVERED_AT:
        return "undelivered", (30003 if (i // UNDELIVERED_EVERY) % 2 == 0 else 30006)
    return "delivered", None


def plan(rows: Sequence[Sequence[Any]]) -> list[Callback]:
    """Blast A's callbacks in the order they are posted; deterministic.

    Each row gets 'sent', then its final status LAG rows later; some rows get the final
    status first and 'sent' after (out of order), some a callback twice.
    """
    timed: list[tuple[int, int, Callback]] = []
    for i, (pk, sid, number, path) in enumerate(rows):
        status, code = _final(i)
        sent = Callback(pk, sid, number, "sent", None, "sent", path)
        final = Callback(pk, sid, number, status, code, status, path)
        late = Callback(pk, sid, number, "sent", None, "late sent", path)
        if i % OUT_OF_ORDER_EVERY == OUT_OF_ORDER_AT:
            steps = [(i, final), (i + LAG, late)]
        else:
            steps = [(i, sent), (i + LAG, final)]
        if i % DUP_FINAL_EVERY == DUP_FINAL_AT:
            again = Callback(pk, sid, number, status, code, "duplicate", path)
            steps.append((i + LAG + LAG // 2, again))
        if i % DUP_SENT_EVERY == DUP_SENT_AT:
            steps.append((i + 5, Callback(pk, sid, number, "sent", None, "duplicate", path)))
        timed += [(t, len(timed) + k, cb) for k, (t, cb) in enumerate(steps)]
    timed.sort(key=lambda item: (item[0], item[1]))
    return [cb for _, _, cb in timed]


def expected(rows: Sequence[Sequence[Any]]) -> dict[int, tuple[str, int | None]]:
    """What each row of blast A must end as: (status, error code)."""
    out = {}
    for i, (pk, *_rest) in enumerate(rows):
        status, code = _final(i)
        out[pk] = ("delivered", None) if status == "delivered" else ("failed", code)
    return out


def callback_params(cb: Callback) -> dict[str, str]:
    """The form Twilio posts to a StatusCallback (as the fake Twilio builds it)."""
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": FROM_NUMBER,
        "MessageSid": cb.sid,
        "MessageStatus": cb.status,
        "SmsSid": cb.sid,
        "SmsStatus": cb.status,
        "To": cb.phone,
    }
    if cb.code is not None:
        params["ErrorCode"] = str(cb.code)
    if cb.status == "delivered":
        params["RawDlrDoneDate"] = time.strftime("%y%m%d%H%M", time.gmtime())
    return params


def signed_request(cb: Callback, public_base: str, token: str) -> tuple[str, bytes, str]:
    """The callback's path with its query, its urlencoded form, and its signature."""
    from messaging.tests.fake_twilio import sign

    path = cb.path or f"{STATUS_PATH}?d={cb.delivery_id}"
    params = callback_params(cb)
    return path, urlencode(params).encode(), sign(token, public_base + path, params)


def proxy_headers(host: str) -> dict[str, str]:
    """What nginx (deploy/nginx.conf) adds in front of gunicorn, and Twilio's own."""
    return {
        "Host": host,
        "X-Forwarded-Host": host,
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "User-Agent": "TwilioProxy/1.1",
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (as numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.50), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(max(values, default=0.0), 2),
    }


# --- The load generator (no Django) -----------------------------------------------------------


def load(args: argparse.Namespace) -> dict[str, Any]:
    rows = json.loads(Path(args.rows_json).read_text())["blast_a"]
    public_base = f"https://{args.host}"
    headers = proxy_headers(args.host)
    callbacks = plan(rows)
    prepared = [signed_request(cb, public_base, args.token) for cb in callbacks]
    n = len(prepared)
    results: list[tuple[float, float, int, str] | None] = [None] * n
    reconnects = Counter[str]()
    lock = threading.Lock()

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", args.port, timeout=120)

    def post(conn: http.client.HTTPConnection, path: str, body: bytes, sig: str) -> int:
        conn.request("POST", path, body, {**headers, "X-Twilio-Signature": sig})
        response = conn.getresponse()
        response.read()
        if response.getheader("Connection", "").lower() == "close":
            conn.close()  # sync workers close after each answer; reconnect next time
        return response.status

    # Warm-up: callbacks of a SID no row holds and no delivery id (answered 200, logged,
    # nothing written) so every gunicorn worker has imported the views and opened what
    # it opens on its first request.
    from messaging.tests.fake_twilio import sign

    warm_cb = Callback(0, "SM" + "0" * 32, phone(0), "sent", None, "warm-up")
    warm_params = callback_params(warm_cb)
    warm_body = urlencode(warm_params).encode()
    warm_path = STATUS_PATH
    warm_sig = sign(args.token, public_base + warm_path, warm_params)
    warm_statuses: Counter[int] = Counter()

    def warm() -> None:
        conn = connect()
        for _ in range(args.warmup):
            status = post(conn, warm_path, warm_body, warm_sig)
            with lock:
                warm_statuses[status] += 1
        conn.close()

    threads = [threading.Thread(target=warm) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    counter = itertools.count()
    t0 = time.perf_counter() + 0.05
    t0_epoch = time.time() + (t0 - time.perf_counter())

    def worker() -> None:
        conn = connect()
        while True:
            k = next(counter)
            if k >= n:
                break
            due = t0 + k / args.rate if args.rate else t0
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            path, body, sig = prepared[k]
            began = time.perf_counter()
            status, error = 0, ""
            for attempt in range(2):
                try:
                    status = post(conn, path, body, sig)
                    break
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = connect()
                    with lock:
                        reconnects[type(exc).__name__] += 1
                    error = f"{type(exc).__name__}: {exc}"
                    if attempt == 1:
                        status = 0
            results[k] = (began, time.perf_counter(), status, error if status == 0 else "")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    cpu0 = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.perf_counter()
    cpu = time.process_time() - cpu0

    statuses: Counter[int] = Counter()
    errors: list[str] = []
    latency: list[float] = []
    from_schedule: list[float] = []
    by_kind: dict[str, list[float]] = {}
    # Per second since t0: callbacks answered, their slowest.
    per_second: dict[int, list[float]] = {}
    for k, result in enumerate(results):
        assert result is not None
        began, ended, status, error = result
        statuses[status] += 1
        if not 200 <= status < 300:
            errors.append(error or f"HTTP {status} for {prepared[k][0]}")
        ms = (ended - began) * 1000
        latency.append(ms)
        due = t0 + k / args.rate if args.rate else began
        from_schedule.append((ended - due) * 1000)
        by_kind.setdefault(callbacks[k].kind, []).append(ms)
        second = per_second.setdefault(int(ended - t0), [0, 0.0])
        second[0] += 1
        second[1] = max(second[1], ms)
    first = min(r[0] for r in results if r)  # type: ignore[index]
    wall = end - first
    raw = None
    if args.raw:
        # [answered at (s since t0), latency ms, ms since it was due], in posting order.
        raw = [
            [round(r[1] - t0, 4), round(lat, 2), round(sched, 2)]
            for r, lat, sched in zip(results, latency, from_schedule, strict=True)
            if r is not None
        ]
    return {
        "callbacks": n,
        "rows": len(rows),
        "kinds": dict(Counter(cb.kind for cb in callbacks)),
        "concurrency": args.concurrency,
        "rate": args.rate,
        "warmup_statuses": {str(k): v for k, v in warm_statuses.items()},
        # time.time() at t0, the moment the first callback was due; the timings below
        # count from it.
        "t0_epoch": t0_epoch,
        "wall_s": wall,
        "per_s": n / wall,
        "generator_cpu_s": cpu,
        "statuses": {str(k): v for k, v in statuses.items()},
        "non_2xx": sum(v for k, v in statuses.items() if not 200 <= k < 300),
        "errors_sample": errors[:10],
        "reconnects": dict(reconnects),
        "latency": summary_ms(latency),
        "from_schedule": summary_ms(from_schedule) if args.rate else None,
        "by_kind": {kind: summary_ms(values) for kind, values in sorted(by_kind.items())},
        "over_100ms": sum(1 for ms in latency if ms > 100),
        "over_1s": sum(1 for ms in latency if ms > 1000),
        "per_second": [
            [second, count, round(worst, 1)]
            for second, (count, worst) in sorted(per_second.items())
        ],
        "raw": raw,
    }


# --- Django processes -------------------------------------------------------------------------


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsadmin.settings")
    import django

    django.setup()


def _sent_rows(blast: Any, offset: int, count: int) -> list[list[Any]]:
    import inspect

    from django.conf import settings
    from django.utils import timezone

    from messaging.models import Delivery
    from messaging.sms import status_callback_url

    # The URL the engine gives Twilio as StatusCallback for the row's first attempt, as
    # the measured tree builds it (with the attempt where it takes one).
    takes_attempt = "attempt" in inspect.signature(status_callback_url).parameters

    def callback_path(pk: int) -> str:
        url = status_callback_url(pk, 1) if takes_attempt else status_callback_url(pk)
        if not url or not url.startswith(settings.PUBLIC_BASE_URL):
            raise RuntimeError(f"no StatusCallback URL under PUBLIC_BASE_URL: {url!r}")
        return url.removeprefix(settings.PUBLIC_BASE_URL)

    now = timezone.now()
    batch = 2000
    for start in range(0, count, batch):
        Delivery.objects.bulk_create(
            Delivery(
                blast=blast,
                phone=phone(offset + i),
                first_name=first_name(offset + i),
                last_name="Bench",
                body=BODY.replace("{first_name}", first_name(offset + i)),
                status=Delivery.Status.SENT,
                twilio_sid=f"SM{blast.pk:08x}{i:024x}",
                twilio_status="queued",
                attempts=1,
                claimed_at=now,
                sent_at=now,
            )
            for i in range(start, min(start + batch, count))
        )
    return [
        [pk, sid, number, callback_path(pk)]
        for pk, sid, number in Delivery.objects.filter(blast=blast)
        .order_by("pk")
        .values_list("pk", "twilio_sid", "phone")
    ]


def seed(args: argparse.Namespace) -> dict[str, Any]:
    _django()
    from django.utils import timezone

    from members.models import Member
    from messaging.models import Blast

    started = time.perf_counter()
    if args.members:
        batch = 2000
        for start in range(0, args.members, batch):
            Member.objects.bulk_create(
                Member(first_name=first_name(i), last_name="Bench", phone=phone(i))
                for i in range(start, min(start + batch, args.members))
            )
    now = timezone.now()
    blasts = {}
    for key, name, offset, count in (
        ("blast_a", "Blast A (sent, its callbacks posted)", ROWS_OFFSET, args.rows),
        ("probe", "Probe blast (in-process callbacks)", PROBE_OFFSET, args.probe_rows),
    ):
        blast = Blast.objects.create(
            name=name,
            body=BODY,
            audience_community=True,
            status=Blast.Status.SENT,
            recipient_count=count,
            canary_passed=True,
            started_at=now,
            finished_at=now,
        )
        blasts[key] = {"id": blast.pk, "rows": _sent_rows(blast, offset, count)}
    Path(args.out).write_text(json.dumps({key: value["rows"] for key, value in blasts.items()}))
    return {
        "blast_a": blasts["blast_a"]["id"],
        "blast_a_rows": len(blasts["blast_a"]["rows"]),
        "probe": blasts["probe"]["id"],
        "probe_rows": len(blasts["probe"]["rows"]),
        "members": Member.objects.count(),
        "seconds": time.perf_counter() - started,
    }


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Blast A's rows against what was posted; the suppressions and failures it caused."""
    _django()
    from messaging.models import Delivery
    from suppression.models import FailureEvent, SuppressedContact

    rows = json.loads(Path(args.rows_json).read_text())["blast_a"]
    want = expected(rows)
    got = {
        pk: (status, code, twilio_status, delivered_at is not None)
        for pk, status, code, twilio_status, delivered_at in Delivery.objects.filter(
            pk__gte=min(want), pk__lte=max(want)
        ).values_list("pk", "status", "error_code", "twilio_status", "delivered_at")
    }
    wrong = []
    for pk, (status, code) in want.items():
        found = got.get(pk)
        ok = found is not None and found[:2] == (status, code)
        if ok and status == "delivered":
            ok = found[2] == "delivered" and found[3]
        elif ok:
            ok = found[2] == "undelivered"
        if not ok:
            wrong.append({"id": pk, "expected": [status, code], "found": found})
    failed_numbers = [r[2] for r in rows if want[r[0]][0] == "failed"]
    bad_numbers = [r[2] for r in rows if want[r[0]][1] == 30006]
    events = FailureEvent.objects.filter(phone__in=failed_numbers)
    suppressed = SuppressedContact.objects.filter(phone__in=bad_numbers, lifted=False).count()
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} rows not as posted, e.g. {wrong[:3]}")
    if events.count() != len(failed_numbers):
        problems.append(f"{events.count()} failure events for {len(failed_numbers)} failures")
    if suppressed != len(bad_numbers):
        problems.append(f"{suppressed} of the {len(bad_numbers)} 30006 numbers suppressed")
    counts = Counter(status for status, *_ in got.values())
    return {
        "rows": len(rows),
        "counts": dict(counts),
        "failed_codes": dict(Counter(code for status, code, *_ in got.values() if code)),
        "failure_events": events.count(),
        "failure_actions": dict(Counter(events.values_list("action", flat=True))),
        "suppressed": suppressed,
        "wrong": len(wrong),
        "ok": not problems,
        "problems": problems,
    }


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """Each kind of callback in-process: statements, server time, plans, a profile."""
    _django()
    import cProfile
    import io
    import platform
    import pstats

    import django
    from django.db import close_old_connections, connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    rows = json.loads(Path(args.rows_json).read_text())["probe"]
    neighbour = None
    if connection.vendor == "sqlite":
        # Under gunicorn other connections to the file are open (the other workers and
        # threads, the Celery worker, beat), so closing one is not closing the last: no
        # checkpoint and no removal of the WAL at every close. Stand in for them.
        import sqlite3

        neighbour = sqlite3.connect(connection.settings_dict["NAME"])
        neighbour.execute("SELECT COUNT(*) FROM messaging_blast").fetchone()
    half = len(rows) // 2
    timed_rows, profiled_rows = rows[:half], rows[half:]
    public_base = f"https://{args.host}"
    client = Client(
        HTTP_HOST=args.host,
        HTTP_X_FORWARDED_HOST=args.host,
        HTTP_X_FORWARDED_FOR="203.0.113.7",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_USER_AGENT="TwilioProxy/1.1",
    )

    def post(cb: Callback) -> int:
        path, body, sig = signed_request(cb, public_base, args.token)
        response = client.post(
            path,
            body,
            content_type="application/x-www-form-urlencoded; charset=utf-8",
            HTTP_X_TWILIO_SIGNATURE=sig,
        )
        # What request_finished does under gunicorn (the test client skips it): SQLite's
        # connection is closed (CONN_MAX_AGE 0), PostgreSQL's kept (60 s).
        close_old_connections()
        return response.status_code

    def cb_of(i: int, row: Sequence[Any], status: str, kind: str) -> Callback:
        final, code = _final(i)
        if status == "final":
            status = final
        code = code if status != "sent" else None
        return Callback(row[0], row[1], row[2], status, code, kind, row[3])

    phases: list[tuple[str, list[Callback]]] = [
        ("sent", [cb_of(i, r, "sent", "sent") for i, r in enumerate(timed_rows)]),
        (
            "delivered",
            [
                cb_of(i, r, "final", "delivered")
                for i, r in enumerate(timed_rows)
                if _final(i)[0] == "delivered"
            ],
        ),
        (
            "undelivered (classifier)",
            [
                cb_of(i, r, "final", "undelivered")
                for i, r in enumerate(timed_rows)
                if _final(i)[0] == "undelivered"
            ],
        ),
        (
            "duplicate final",
            [cb_of(i, r, "final", "duplicate") for i, r in enumerate(timed_rows)],
        ),
        ("late sent", [cb_of(i, r, "sent", "late sent") for i, r in enumerate(timed_rows)]),
    ]
    results = []
    sample_sql: dict[str, list[str]] = {}
    for name, callbacks in phases:
        if not callbacks:
            continue
        statuses: Counter[int] = Counter()
        times, cpu = [], []
        verbs: Counter[str] = Counter()
        sql_ms = 0.0
        with CaptureQueriesContext(connection) as captured:
            for cb in callbacks:
                mark = len(captured.captured_queries)
                c0, t0 = time.process_time(), time.perf_counter()
                statuses[post(cb)] += 1
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                if name not in sample_sql:
                    sample_sql[name] = [q["sql"] for q in captured.captured_queries[mark:]]
        for query in captured.captured_queries:
            verbs[query["sql"].lstrip().split(None, 1)[0].upper()] += 1
            sql_ms += float(query["time"]) * 1000
        n = len(callbacks)
        results.append(
            {
                "kind": name,
                "callbacks": n,
                "statuses": {str(k): v for k, v in statuses.items()},
                "statements_per_callback": round(len(captured.captured_queries) / n, 2),
                "by_verb_per_callback": {v: round(c / n, 2) for v, c in verbs.most_common()},
                "server_ms_p50": round(statistics.median(times), 2),
                "server_ms_mean": round(statistics.fmean(times), 2),
                "cpu_ms_p50": round(statistics.median(cpu), 2),
                "sql_ms_per_callback": round(sql_ms / n, 2),
            }
        )

    # Opening a connection, as each request does on SQLite (CONN_MAX_AGE 0): connect and
    # the init_command's PRAGMAs. Not in the statement counts above.
    connect_ms, close_ms = [], []
    for _ in range(30):
        connection.ensure_connection()
        t0 = time.perf_counter()
        connection.close()
        t1 = time.perf_counter()
        connection.ensure_connection()
        connect_ms.append((time.perf_counter() - t1) * 1000)
        close_ms.append((t1 - t0) * 1000)

    # Query plans of one 'delivered' callback's statements.
    plans = []
    with connection.cursor() as cursor:
        for sql in sample_sql.get("delivered", []):
            if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "DELETE")):
                continue
            if connection.vendor == "sqlite":
                cursor.execute("EXPLAIN QUERY PLAN " + sql)
                plan_text = "; ".join(str(r[-1]) for r in cursor.fetchall())
            else:
                cursor.execute("EXPLAIN " + sql)
                plan_text = "; ".join(r[0].strip() for r in cursor.fetchall())
            plans.append({"sql": sql[:700], "plan": plan_text[:700]})

    # The profile: 'sent' then the final status for the other half, each as under gunicorn.
    profiler = cProfile.Profile()
    profiled = [cb_of(i, r, "sent", "sent") for i, r in enumerate(profiled_rows)] + [
        cb_of(i, r, "final", "final") for i, r in enumerate(profiled_rows)
    ]
    t0 = time.perf_counter()
    profiler.enable()
    for cb in profiled:
        post(cb)
    profiler.disable()
    profiled_s = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    entries = []
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename
        for marker in ("site-packages/", "/src/"):
            if marker in filename:
                short = filename.split(marker, 1)[1]
        entries.append(
            {
                "function": f"{short}:{line}({func})",
                "calls_per_callback": round(calls / len(profiled), 2),
                "own_ms_per_callback": round(tottime * 1000 / len(profiled), 3),
                "cum_ms_per_callback": round(cumtime * 1000 / len(profiled), 3),
            }
        )
    report = io.StringIO()
    stats.stream = report  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(45)
    if args.profile_out:
        stats.dump_stats(args.profile_out)
        Path(str(args.profile_out) + ".txt").write_text(report.getvalue())

    if neighbour is not None:
        neighbour.close()
    with connection.cursor() as cursor:
        cursor.execute(
            "SHOW server_version"
            if connection.vendor == "postgresql"
            else "SELECT sqlite_version()"
        )
        db_version = cursor.fetchone()[0]
    return {
        "database": connection.vendor,
        "database_version": db_version,
        "django": django.get_version(),
        "python": platform.python_version(),
        "callbacks_file": sys.modules["messaging.services.callbacks"].__file__,
        "phases": results,
        "connect_ms_p50": round(statistics.median(connect_ms), 2),
        "close_ms_p50": round(statistics.median(close_ms), 2),
        "plans": plans,
        "profile": {
            "callbacks": len(profiled),
            "ms_per_callback_profiled": round(profiled_s * 1000 / len(profiled), 2),
            "top_cumulative": sorted(entries, key=lambda e: -e["cum_ms_per_callback"])[:30],
            "top_own": sorted(entries, key=lambda e: -e["own_ms_per_callback"])[:20],
        },
    }


def _rows_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows-json", type=Path, required=True)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("seed")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--probe-rows", type=int, default=300)
    p.add_argument("--members", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("load")
    _rows_arg(p)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--raw", action="store_true", help="add every callback's timing")
    p = sub.add_parser("check")
    _rows_arg(p)
    p = sub.add_parser("probe")
    _rows_arg(p)
    p.add_argument("--host", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--profile-out", type=Path, default=None)
    args = parser.parse_args(list(argv) if argv is not None else None)
    command = {"seed": seed, "load": load, "check": check, "probe": probe}[args.command]
    result = command(args)
    print(json.dumps(result))
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
