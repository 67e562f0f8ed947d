"""The Django side of bench/pages_100k.py, run in processes of their own.

    python bench/_pages.py seed [--members 100000]
    python bench/_pages.py measure --seed-json FILE [--warmup 5] [--repeat 40]
                                   [--queries-runs 5] [--profile-over-ms 150] [--only NAME]

Both read their settings from the environment bench/_common.django_env builds (plus
ALLOWED_HOSTS with "testserver"). ``seed`` fills a migrated database: N active members and
a few inactive ones, a tag on 5,000 of them, an event with 10,000 registrations (7,000 of
them members' numbers), a few small events, unsubscribed and suppressed numbers, a Social
manager, and one blast of N delivery rows in a mix of statuses (plus three small
finished blasts for the admin index), and prints one JSON line with the ids ``measure``
needs.

``measure`` signs in as that Social manager through ``django.test.Client`` in this
process (no network, no test instrumentation of templates: the server's own time, from
the request entering the handler to the response's content) and times each page
``--warmup`` + ``--repeat`` times, one page after the other. Then, apart from the timed
runs, it repeats each page ``--queries-runs`` times inside ``CaptureQueriesContext`` for
its number of queries and their own time. A page answering other than its expected
status (e.g. 500 while its view is still being written) is reported as skipped with the
error, and the rest go on. For a page whose p50 is over ``--profile-over-ms``, one more
request is run under cProfile (its top functions are in the result), and each SELECT of
that page is run again alone with its rows fetched (its slowest queries). One JSON line.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsadmin.settings")

import django  # noqa: E402

django.setup()

from _common import BODY, first_name, phone  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection, models, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from events.models import Event, Registration  # noqa: E402
from members.models import Member, Tag  # noqa: E402
from messaging.models import Blast, Delivery  # noqa: E402
from smsadmin.phones import PhoneNumberField  # noqa: E402
from smsadmin.roles import SOCIAL_MANAGER  # noqa: E402
from suppression.models import SuppressedContact, UnsubscribedContact  # noqa: E402

MANAGER = "bench-manager"
BATCH = 10_000
S = Delivery.Status

# Failed rows' codes, as a blast to a community list meets them: unreachable handsets,
# unknown numbers and landlines most, a few invalid numbers, filtered texts and opt-outs.
FAILED_CODES = [30003] * 5 + [30005] * 3 + [30006] * 2 + [21211, 30007, 21610]


# --- Seeding ---------------------------------------------------------------------------------


def raw_insert(model: type[models.Model], rows: Iterable[Mapping[str, Any]]) -> int:
    """INSERT rows of ``model`` with executemany, BATCH at a time, bypassing the ORM's
    per-object work; phone fields go in as given (already E.164), which skips their
    validation (phonenumbers), the slow part. Columns a row does not give take the
    field's default (``now`` for auto_now/auto_now_add, None for nullable ones)."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    now = timezone.now()

    def default(field: models.Field) -> Any:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            return now
        if field.has_default():
            return field.get_default()
        if field.null:
            return None
        return ""

    constants = {f.attname: f.get_db_prep_save(default(f), connection) for f in fields}
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 - names from _meta, quoted
        connection.ops.quote_name(model._meta.db_table),
        ", ".join(connection.ops.quote_name(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )

    def prepared(row: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for f in fields:
            if f.attname not in row:
                values.append(constants[f.attname])
            elif isinstance(f, PhoneNumberField):
                values.append(row[f.attname])
            else:
                values.append(f.get_db_prep_save(row[f.attname], connection))
        return tuple(values)

    count = 0
    batch: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for row in rows:
            batch.append(prepared(row))
            if len(batch) >= BATCH:
                with transaction.atomic():
                    cursor.executemany(sql, batch)
                count += len(batch)
                batch = []
        if batch:
            with transaction.atomic():
                cursor.executemany(sql, batch)
            count += len(batch)
    return count


def member_name(i: int) -> str:
    # One name in 997 outside GSM-7: the pre-flight's worst case over names finds it.
    return f"Zoë{i}" if i % 997 == 0 else first_name(i)


def delivery_mix(i: int) -> dict[str, Any]:
    """Row i of the big blast: 78% delivered, 8% sent, 5% failed, 5% pending, 4% skipped."""
    slot = (i * 7919) % 100  # spread over the table, not in runs
    if slot < 78:
        return {"status": S.DELIVERED, "twilio_status": "delivered"}
    if slot < 86:
        return {"status": S.SENT, "twilio_status": "sent"}
    if slot < 91:
        code = FAILED_CODES[i % len(FAILED_CODES)]
        return {
            "status": S.FAILED,
            "twilio_status": "undelivered",
            "error_code": code,
            "error_message": f"Twilio error {code}",
        }
    if slot < 96:
        return {"status": S.PENDING}
    reason = Delivery.SkipReason.UNSUBSCRIBED if i % 3 else Delivery.SkipReason.SUPPRESSED
    return {"status": S.SKIPPED, "skip_reason": reason}


def deliveries(blast_id: int, count: int, *, start: int = 0) -> Iterable[dict[str, Any]]:
    now = timezone.now()
    for i in range(start, start + count):
        row: dict[str, Any] = {
            "blast_id": blast_id,
            "phone": phone(i),
            "first_name": member_name(i),
            "last_name": "Bench",
            "body": BODY.replace("{first_name}", member_name(i)),
            **delivery_mix(i),
        }
        if row["status"] in (S.SENT, S.DELIVERED, S.FAILED):
            row["twilio_sid"] = f"SM{blast_id:08x}{i:024x}"
            row["attempts"] = 1
            row["sent_at"] = now
            if row["status"] == S.DELIVERED:
                row["delivered_at"] = now
        yield row


def seed(members: int) -> dict[str, Any]:
    started = time.perf_counter()
    took: dict[str, float] = {}

    def lap(name: str, mark: list[float] = [started]) -> None:  # noqa: B006 - a timer
        now = time.perf_counter()
        took[name] = round(now - mark[0], 2)
        mark[0] = now

    inactive = max(1, members // 500)
    raw_insert(
        Member,
        (
            {
                "first_name": member_name(i),
                "last_name": "Bench",
                "phone": phone(i),
                "is_active": i < members,
            }
            for i in range(members + inactive)
        ),
    )
    lap("members")
    tag = Tag.objects.create(name="volunteers")
    Tag.objects.bulk_create(Tag(name=name) for name in ("north side", "drivers", "choir"))
    tagged = list(
        Member.objects.filter(is_active=True).order_by("id").values_list("id", flat=True)[::20]
    )[:5000]
    Member.tags.through.objects.bulk_create(
        (Member.tags.through(member_id=m, tag_id=tag.pk) for m in tagged), batch_size=BATCH
    )
    lap("tags")
    starts = timezone.now() + datetime.timedelta(days=30)
    event = Event.objects.create(name="Spring Gala", starts_at=starts, location="Town hall")
    small = Event.objects.bulk_create(
        Event(name=f"Workshop {k}", starts_at=starts - datetime.timedelta(days=60 + k))
        for k in range(5)
    )
    # 7,000 of the gala's registrations are members' numbers, 3,000 are not.
    gala = [phone(i) for i in range(members // 2, members // 2 + min(7000, members // 2))]
    gala += [phone(500_000 + j) for j in range(3000)]
    registrations = [
        {"event_id": event.pk, "first_name": f"Guest{n}", "last_name": "Bench", "phone": p}
        for n, p in enumerate(gala)
    ]
    for k, other in enumerate(small):
        registrations += [
            {"event_id": other.pk, "first_name": f"W{j}", "last_name": "Bench", "phone": phone(j)}
            for j in range(k * 100, k * 100 + 100)
        ]
    raw_insert(Registration, registrations)
    lap("registrations")
    raw_insert(
        UnsubscribedContact,
        (
            {"phone": phone(i), "source": UnsubscribedContact.Source.KEYWORD}
            for i in range(7, members, 50)
        ),
    )
    raw_insert(
        SuppressedContact,
        (
            {"phone": phone(i), "error_code": 21211, "failure_count": 1}
            for i in range(13, members, 100)
        ),
    )
    lap("unsubscribed and suppressed")
    user = get_user_model().objects.create_user(
        username=MANAGER,
        password=None,
        is_staff=True,
        must_change_password=False,
    )
    user.groups.add(Group.objects.get(name=SOCIAL_MANAGER))
    # Three small finished blasts first, then the big one, being sent: the newest.
    for k in range(3):
        small_blast = Blast.objects.create(
            name=f"Earlier blast {k}",
            body=BODY,
            audience_community=True,
            status=Blast.Status.SENT,
            recipient_count=500,
            created_by=user,
        )
        raw_insert(Delivery, deliveries(small_blast.pk, 500, start=k * 1000))
    blast = Blast.objects.create(
        name="Garden opening",
        body=BODY,
        audience_community=True,
        status=Blast.Status.SENDING,
        recipient_count=members,
        created_by=user,
        started_at=timezone.now(),
        canary_passed=True,
    )
    rows = raw_insert(Delivery, deliveries(blast.pk, members))
    lap("blasts")
    if connection.vendor == "postgresql":
        # The state autovacuum reaches soon after a bulk load: statistics and the
        # visibility map. (SQLite gets no ANALYZE: the app never runs one.)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        lap("vacuum analyze")
    counts = blast.counts()
    codes = dict(
        Delivery.objects.filter(blast_id=blast.pk, status=S.FAILED)
        .order_by()
        .values_list("error_code")
        .annotate(n=models.Count("id"))
    )
    return {
        "members_active": Member.objects.filter(is_active=True).count(),
        "members_inactive": Member.objects.filter(is_active=False).count(),
        "tag_id": tag.pk,
        "tagged": len(tagged),
        "event_id": event.pk,
        "registrations": Registration.objects.filter(event=event).count(),
        "unsubscribed": UnsubscribedContact.objects.count(),
        "suppressed": SuppressedContact.objects.count(),
        "blast_id": blast.pk,
        "blast_rows": rows,
        "blast_counts": {k: v for k, v in counts.items() if v},
        "failed_codes": {str(k): v for k, v in sorted(codes.items())},
        "seconds": round(time.perf_counter() - started, 1),
        "seed_laps": took,
    }


# --- Measuring -------------------------------------------------------------------------------


def pages(seed_info: dict[str, Any]) -> list[dict[str, Any]]:
    """What is timed: name, method, path, data, and a check of the answer."""
    event, tag, blast = seed_info["event_id"], seed_info["tag_id"], seed_info["blast_id"]
    code = int(next(iter(seed_info["failed_codes"])))

    def preflight(audience: dict[str, Any]) -> dict[str, Any]:
        return {"body": BODY, **audience}

    def ok_json(response: Any) -> str | None:
        answer = json.loads(response.content)
        if not answer.get("ok"):
            return f"not ok: {answer.get('errors')}"
        if not answer.get("recipients"):
            return "no recipients"
        return None

    def contains(text: str) -> Callable[[Any], str | None]:
        return lambda r: None if text in r.content.decode() else f"{text!r} not in the page"

    return [
        {"name": "GET /compose/?community=1", "method": "get", "path": "/compose/?community=1"},
        {
            "name": "GET /compose/?community=1&event=<gala>",
            "method": "get",
            "path": f"/compose/?community=1&event={event}",
        },
        {
            "name": "POST /compose/preflight/ community",
            "method": "post",
            "path": "/compose/preflight/",
            "data": preflight({"community": "on"}),
            "check": ok_json,
        },
        {
            "name": "POST /compose/preflight/ community, tag",
            "method": "post",
            "path": "/compose/preflight/",
            "data": preflight({"community": "on", "tags": [tag]}),
            "check": ok_json,
        },
        {
            "name": "POST /compose/preflight/ event",
            "method": "post",
            "path": "/compose/preflight/",
            "data": preflight({"events": [event]}),
            "check": ok_json,
        },
        {
            "name": "POST /compose/preflight/ community + event",
            "method": "post",
            "path": "/compose/preflight/",
            "data": preflight({"community": "on", "events": [event]}),
            "check": ok_json,
        },
        {
            "name": "POST /compose/ (review, community)",
            "method": "post",
            "path": "/compose/",
            "data": {"body": BODY, "community": "on", "idempotency_key": str(uuid.uuid4())},
            "check": contains("Confirm and send to"),
        },
        {"name": "GET /blasts/<id>/", "method": "get", "path": f"/blasts/{blast}/"},
        {
            "name": "GET /blasts/<id>/progress/",
            "method": "get",
            "path": f"/blasts/{blast}/progress/",
        },
        {
            "name": "GET /blasts/<id>/?status=failed",
            "method": "get",
            "path": f"/blasts/{blast}/?status=failed",
        },
        {
            "name": f"GET /blasts/<id>/?code={code}",
            "method": "get",
            "path": f"/blasts/{blast}/?code={code}",
        },
        {
            "name": "GET /blasts/<id>/?page=50",
            "method": "get",
            "path": f"/blasts/{blast}/?page=50",
        },
        {"name": "GET /admin/ (index, dashboard)", "method": "get", "path": "/admin/"},
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _request(client: Client, page: dict[str, Any]) -> Any:
    if page["method"] == "get":
        return client.get(page["path"])
    return client.post(page["path"], page["data"])


def _failure(page: dict[str, Any], response: Any) -> str | None:
    """Why this answer is not the page (None when it is)."""
    if response.status_code != 200:
        exc = getattr(response, "exc_info", None)
        detail = f": {exc[0].__name__}: {exc[1]}" if exc else ""
        return f"HTTP {response.status_code}{detail}"
    check = page.get("check")
    return check(response) if check else None


def _profile(client: Client, page: dict[str, Any], directory: Path | None) -> dict[str, Any]:
    """One request under cProfile: its top functions, cumulative and own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    _request(client, page)
    profiler.disable()
    stats = pstats.Stats(profiler)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        slug = "".join(c if c.isalnum() else "_" for c in page["name"]).strip("_")
        stats.dump_stats(directory / f"{slug}.prof")
    entries = []
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename
        for marker in ("site-packages/", "/src/"):
            if marker in filename:
                short = filename.split(marker, 1)[1]
        entries.append(
            {
                "function": f"{short}:{line}({func})",
                "calls": calls,
                "own_ms": round(tottime * 1000, 2),
                "cumulative_ms": round(cumtime * 1000, 2),
            }
        )
    report = io.StringIO()
    stats.stream = report  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)
    return {
        "profiled_ms": round(sum(e["own_ms"] for e in entries), 1),
        "top_cumulative": sorted(entries, key=lambda e: -e["cumulative_ms"])[:30],
        "top_own": sorted(entries, key=lambda e: -e["own_ms"])[:20],
        "text": report.getvalue()[-20000:],
    }


def _alone(captured: list[dict[str, str]], runs: int = 3) -> list[dict[str, Any]]:
    """Each SELECT of one request run again on its own, rows fetched: median ms, slowest
    first. (CaptureQueriesContext times the execute call only; SQLite produces most rows
    of a scan or a DISTINCT while they are fetched, so its figures understate them.)"""
    timed = []
    with connection.cursor() as cursor:
        for query in captured:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                cursor.execute(sql)
                cursor.fetchall()
                times.append(time.perf_counter() - t0)
            timed.append({"ms": round(statistics.median(times) * 1000, 2), "sql": sql[:600]})
    return sorted(timed, key=lambda q: -q["ms"])[:8]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    seed_info = json.loads(Path(args.seed_json).read_text())
    user = get_user_model().objects.get(username=MANAGER)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    results = []
    for page in pages(seed_info):
        if args.only and not any(o in page["name"] for o in args.only):
            continue
        result: dict[str, Any] = {"name": page["name"], "path": page["path"]}
        first = _request(client, page)
        failure = _failure(page, first)
        if failure is not None:
            result["skipped"] = failure
            results.append(result)
            continue
        result["bytes"] = len(first.content)
        for _ in range(args.warmup - 1):
            _request(client, page)
        times, cpu = [], []
        for _ in range(args.repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            _request(client, page)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        query_counts, sql_ms, captures = [], [], []
        for _ in range(args.queries_runs):
            with CaptureQueriesContext(connection) as captured:
                _request(client, page)
            query_counts.append(len(captured.captured_queries))
            sql_ms.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
            captures.append(captured.captured_queries)
        # Each query's median time over the runs (the same queries each time, in order).
        same = [c for c in captures if len(c) == len(captures[0])]
        per_query = [
            (statistics.median(float(c[i]["time"]) for c in same) * 1000, captures[0][i]["sql"])
            for i in range(len(captures[0]))
        ]
        slowest = sorted(per_query, key=lambda q: -q[0])[:6]
        ms = [t * 1000 for t in times]
        result.update(
            {
                "runs": len(ms),
                "p50_ms": statistics.median(ms),
                "p95_ms": _percentile(ms, 0.95),
                "max_ms": max(ms),
                "min_ms": min(ms),
                # This process's CPU: the whole request on SQLite (in-process), all but
                # the server's side of the queries on PostgreSQL. Less sensitive than
                # wall time to other processes competing for the cores.
                "cpu_ms_p50": statistics.median(c * 1000 for c in cpu),
                "queries": max(query_counts),
                "queries_min": min(query_counts),
                "sql_ms_p50": statistics.median(sql_ms),
                "slowest_queries": [{"ms": round(ms, 2), "sql": sql[:600]} for ms, sql in slowest],
            }
        )
        if result["p50_ms"] > args.profile_over_ms:
            result["profile"] = _profile(client, page, args.profile_dir)
            result["queries_alone"] = _alone(captures[0])
        results.append(result)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
        else:
            cursor.execute("SELECT sqlite_version()")
        db_version = cursor.fetchone()[0]
    return {
        "load_after": os.getloadavg()[0],
        "database": connection.vendor,
        "database_version": db_version,
        "django": django.get_version(),
        "python": platform.python_version(),
        "views_file": sys.modules["messaging.views.blast"].__file__,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "pages": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    seed_parser = sub.add_parser("seed")
    seed_parser.add_argument("--members", type=int, default=100_000)
    measure_parser = sub.add_parser("measure")
    measure_parser.add_argument("--seed-json", type=Path, required=True)
    measure_parser.add_argument("--warmup", type=int, default=5)
    measure_parser.add_argument("--repeat", type=int, default=40)
    measure_parser.add_argument("--queries-runs", type=int, default=5)
    measure_parser.add_argument("--profile-over-ms", type=float, default=150.0)
    measure_parser.add_argument("--profile-dir", type=Path, default=None)
    measure_parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()
    result = seed(args.members) if args.command == "seed" else measure(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
