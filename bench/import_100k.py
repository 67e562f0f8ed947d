"""Benchmark: import a generated 100k-row member file through manage.py import_members.

Each run gets a fresh SQLite database in a temporary folder (migrated first) and runs
the command in its own process; wall time and that process's peak RSS (os.wait4's
rusage, so the migrate run does not count) are printed as markdown table rows, ready
for docs/BENCHMARKS.md. Target (issue 4): under 30 s and 300 MB on a 2-core machine.

    python bench/import_100k.py                 # first import, re-import, dry run, admin path
    python bench/import_100k.py --rows 20000
    python bench/import_100k.py --with-import-export   # also django-import-export, if installed
    python bench/import_100k.py --tags          # the same file with a Groups column of tags
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 30
TARGET_MB = 300

FIRST = ["José", "Zoë", "Ana", "Li", "Mary Ann", "Kwame", "Olga", "Sam", "Priya", "Noah", "Chloé"]
LAST = ["García", "Nguyen", "O'Brien", "Smith", "Müller", "Okafor", "de la Cruz", "Lee", "Patel"]
AREAS = [201, 212, 312, 415, 646, 718, 917, 305, 404, 617]
FORMS = ["({a}) {x}-{y}", "{a}-{x}-{y}", "{a}.{x}.{y}", "+1 {a} {x} {y}", "1{a}{x}{y}", "{a}{x}{y}"]
# Spelled in several cases on purpose: one tag each, whatever the case.
TAGS = ["volunteers", "Volunteers", "north side", "North Side", "drivers", "board", "youth", ""]


def generate(path: Path, rows: int, *, tags: bool = False) -> None:
    """A messy but realistic sign-up export: Excel's UTF-8 with BOM, CRLF, phone numbers
    in every form, about 1% repeated phones, 1% invalid numbers, some blank lines.

    With ``tags``, a "Groups" column holds none to three tags per row ("volunteers;
    North Side"), from eight spellings of six tags."""
    rng = random.Random(4)
    tag_rng = random.Random(5)  # its own, so the other columns are the same either way
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        header = ["First Name", "Surname", "Mobile", "E-mail", "Signed up"]
        writer.writerow([*header, "Groups"] if tags else header)
        for i in range(rows):
            if i and i % 1000 == 0:
                out.write("\r\n")
            roll = rng.random()
            repeat = roll < 0.01 and i > 10  # a phone seen earlier in the file
            number = 2_000_000 + (rng.randrange(i) if repeat else i)
            digits = f"{number:07d}"
            phone = rng.choice(FORMS).format(a=AREAS[number % 10], x=digits[:3], y=digits[3:])
            if 0.01 <= roll < 0.02:
                phone = digits[:5]  # too short
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"member.{i}@example.org" if roll > 0.3 else ""
            cells = [first, last, phone, email, f"2026-0{1 + i % 9}-1{i % 9}"]
            if tags:
                cells.append("; ".join(tag_rng.sample(TAGS, tag_rng.randrange(4))))
            writer.writerow(cells)


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB, and stdout of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - our own manage.py, arguments built here
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # Read before waiting, so a chatty child never blocks on a full pipe.
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{out}\n{err}")
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    peak_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return wall, peak_mb, out


def fresh_env(folder: Path, name: str) -> dict[str, str]:
    db = folder / f"{name}.sqlite3"
    for leftover in folder.glob(f"{name}.sqlite3*"):
        leftover.unlink()
    env = {
        **os.environ,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "DATABASE_URL": f"sqlite:///{db}",
        "IMPORT_DIR": str(folder / f"{name}-imports"),
        "LOG_LEVEL": "WARNING",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    run([*manage, "migrate", "--noinput", "-v", "0"], env)
    return env


def row(label: str, rows: int, wall: float, peak_mb: float) -> str:
    ok = "yes" if wall < TARGET_SECONDS and peak_mb < TARGET_MB else "**no**"
    return f"| {label} | {rows:,} | {wall:.1f} | {rows / wall:,.0f} | {peak_mb:.0f} | {ok} |"


ADMIN_PATH = """
from pathlib import Path
from members.import_jobs import import_job_confirm, import_job_create, import_job_run
from members.models import ImportJob
with open({path!r}, "rb") as f:
    job = import_job_create(upload=f, file_name="bench.csv", pool="members", event=None, user=None)
import_job_run(job_id=job.pk)
import_job_confirm(job_id=job.pk)
import_job_run(job_id=job.pk)
job.refresh_from_db()
assert job.status == ImportJob.Status.APPLIED, (job.status, job.status_message)
print(job.counts())
"""

IMPORT_EXPORT = """
import sys, tablib
from import_export import resources
from members.models import Member
from smsadmin.phones import normalize_phone

class MemberResource(resources.ModelResource):
    class Meta:
        model = Member
        import_id_fields = ("phone",)
        fields = ("first_name", "last_name", "phone", "email")
        use_bulk = True
        batch_size = 1000
        skip_unchanged = True

    def before_import_row(self, row, **kwargs):
        row["phone"] = normalize_phone(row["phone"])

with open({path!r}, encoding="utf-8-sig") as f:
    data = tablib.Dataset().load(f.read(), format="csv")
result = MemberResource().import_data(data, dry_run=False, raise_errors=False)
print(dict(result.totals))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--with-import-export",
        action="store_true",
        help="Also time django-import-export on a file with plain headers (if installed).",
    )
    parser.add_argument(
        "--tags", action="store_true", help="Give the file a Groups column of tags."
    )
    options = parser.parse_args()
    manage = [sys.executable, str(ROOT / "manage.py")]
    lines = []
    with tempfile.TemporaryDirectory(prefix="smsadmin-bench-") as tmp:
        folder = Path(tmp)
        path = folder / "members.csv"
        generate(path, options.rows, tags=options.tags)
        size_mb = path.stat().st_size / (1024 * 1024)
        print(
            f"Generated {options.rows:,} rows ({size_mb:.1f} MB{', with tags' if options.tags else ''})."
        )

        env = fresh_env(folder, "cli")
        wall, peak, out = run([*manage, "import_members", str(path)], env)
        print("\n".join(out.splitlines()[:6]))
        lines.append(row("import_members, empty database (all new)", options.rows, wall, peak))
        wall, peak, out = run([*manage, "import_members", str(path)], env)
        lines.append(row("import_members again (all unchanged)", options.rows, wall, peak))
        wall, peak, out = run([*manage, "import_members", "--dry-run", str(path)], env)
        lines.append(row("import_members --dry-run", options.rows, wall, peak))

        env = fresh_env(folder, "admin")
        shell = [*manage, "shell", "-v", "0", "-c", ADMIN_PATH.format(path=str(path))]
        wall, peak, out = run(shell, env)
        lines.append(
            row("admin path: upload, preview, confirm (3 passes)", options.rows, wall, peak)
        )

        if options.with_import_export and importlib.util.find_spec("import_export") is None:
            print("django-import-export is not installed: skipped.")
        elif options.with_import_export:
            plain = folder / "plain.csv"
            with path.open(encoding="utf-8-sig", newline="") as src:
                rows = list(csv.reader(src))
            with plain.open("w", encoding="utf-8", newline="") as dst:
                writer = csv.writer(dst)
                writer.writerow(["first_name", "last_name", "phone", "email"])
                # Valid, unique rows only: it has no way to skip the others cleanly.
                seen = set()
                for cells in rows[1:]:
                    if len(cells) < 4 or len(cells[2]) < 10:
                        continue
                    digits = "".join(c for c in cells[2] if c.isdigit())[-10:]
                    if digits in seen:
                        continue
                    seen.add(digits)
                    writer.writerow(cells[:4])
            env = fresh_env(folder, "ie")
            script = [*manage, "shell", "-v", "0", "-c", IMPORT_EXPORT.format(path=str(plain))]
            wall, peak, out = run(script, env)
            print("django-import-export:", out.strip())
            lines.append(row("django-import-export (all new)", len(seen), wall, peak))
            wall, peak, out = run(script, env)
            lines.append(row("django-import-export again (all unchanged)", len(seen), wall, peak))

    print()
    print(f"{date.today():%Y-%m-%d}, {platform.node()}: {os.cpu_count()} cores, ", end="")
    print(f"Python {platform.python_version()}, SQLite (WAL), {size_mb:.1f} MB file")
    print()
    print("| run | rows | wall s | rows/s | peak MB | within 30 s / 300 MB |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
