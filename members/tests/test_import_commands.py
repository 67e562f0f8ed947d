"""manage.py import_members / import_registrations: the same importer, same summary."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from events.models import Registration
from members.models import ImportJob, Member

pytestmark = pytest.mark.django_db

CONTENT = "first;last;phone\nAnn;Lee;2015550123\nBo;Ng;12345\n\nAnn;Lee;201-555-0123\n"


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_import_members_prints_the_summary(csv_file):
    path = csv_file(CONTENT)

    out = run("import_members", str(path))

    assert "contacts.csv: 3 rows (utf-8, delimiter ';')" in out
    assert "Columns: first_name <- 'first', last_name <- 'last', phone <- 'phone'." in out
    assert "Imported: 1 new, 0 updated, 0 unchanged." in out
    assert "Skipped: 1 invalid, 1 duplicate in the file, 1 blank lines." in out
    assert "line 3: invalid: '12345' is too short to be a phone number." in out
    assert "line 5: duplicate: Same phone as line 2, which is kept." in out
    assert Member.objects.get().full_name == "Ann Lee"
    assert ImportJob.objects.count() == 0


def test_dry_run_writes_nothing_and_says_so(csv_file):
    out = run("import_members", str(csv_file(CONTENT)), "--dry-run")

    assert "Would import: 1 new, 0 updated, 0 unchanged." in out
    assert "Dry run: nothing was written." in out
    assert Member.objects.count() == 0


def test_second_run_finds_everything_unchanged(csv_file):
    path = csv_file(CONTENT)
    run("import_members", str(path))

    assert "Imported: 0 new, 0 updated, 1 unchanged." in run("import_members", str(path))
    assert Member.objects.count() == 1


def test_errors_option_writes_the_full_report(csv_file, tmp_path):
    report = tmp_path / "problems.csv"

    run("import_members", str(csv_file(CONTENT)), "--errors", str(report))

    lines = report.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == '"line","problem","reason","first","last","phone"'
    assert len(lines) == 3


def test_more_than_50_problems_are_summed_up(csv_file):
    out = run("import_members", str(csv_file("phone\n" + "bad\n" * 60)))

    assert "... and 10 more (see --errors)." in out


def test_import_registrations_for_an_event(csv_file, event):
    out = run("import_registrations", "--event", str(event.pk), str(csv_file(CONTENT)))

    assert out.startswith("Event: Picnic (2026-07-04)")
    assert "Imported: 1 new, 0 updated, 0 unchanged." in out
    assert Registration.objects.get().event == event
    assert Member.objects.count() == 0


def test_unknown_event_is_an_error(csv_file):
    with pytest.raises(CommandError, match="no event with id 999"):
        run("import_registrations", "--event", "999", str(csv_file(CONTENT)))


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "The file is empty."), (b"a,b\n1,2\n", "No phone column."), (b"\x00\x01", "binary")],
)
def test_unreadable_files_raise_and_write_nothing(csv_file, content, message):
    with pytest.raises(CommandError, match=message) as caught:
        run("import_members", str(csv_file(content)))

    assert "Nothing was written." in str(caught.value)
    assert Member.objects.count() == 0


def test_missing_file_raises(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        run("import_members", str(tmp_path / "nope.csv"))


def test_exit_codes_from_a_real_process(csv_file, tmp_path):
    """The command as staff run it: 0 on success (even with invalid rows), 1 when unreadable."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "SECRET_KEY": "test-only-secret-key",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
    }

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(root / "manage.py"), *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert manage("migrate", "-v", "0").returncode == 0
    good = manage("import_members", str(csv_file(CONTENT)))
    assert good.returncode == 0, good.stderr
    assert "Imported: 1 new" in good.stdout
    empty = manage("import_members", str(csv_file(b"", name="empty.csv")))
    assert empty.returncode == 1
    assert "The file is empty." in empty.stderr
    assert "Traceback" not in empty.stderr
    missing = manage("import_members", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1
