"""`manage.py backup`: a whole, private copy of the SQLite database while the app writes."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from smsadmin.management.commands.backup import backups_rotate, sqlite_backup


def make_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    db.commit()
    db.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_backup_taken_while_another_process_writes_is_whole(tmp_path):
    source = tmp_path / "live.sqlite3"
    make_database(source)
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        # Web, worker and beat: commits one after another, each its own transaction.
        db = sqlite3.connect(source, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        n = 0
        while not stop.is_set():
            n += 1
            with db:
                db.execute("INSERT INTO note (text) VALUES (?)", (f"note {n} " + "x" * 500,))
            written.append(n)
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 2000:
            time.sleep(0.01)
        copies = [sqlite_backup(source=source, folder=tmp_path / "backups", keep=5)]
        copies.append(sqlite_backup(source=source, folder=tmp_path / "backups", keep=5))
    finally:
        stop.set()
        thread.join()

    for copy in copies:
        db = sqlite3.connect(copy)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        ids = [row[0] for row in db.execute("SELECT id FROM note ORDER BY id")]
        # Every note up to a point, none missing in between: one moment's database.
        assert len(ids) >= 2000
        assert ids == list(range(1, len(ids) + 1))
        # A single file, readable without a -wal beside it.
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        db.close()
    assert len(written) > len(ids)  # the writer went on meanwhile


def test_backups_are_private_and_timestamped(tmp_path):
    source = tmp_path / "live.sqlite3"
    make_database(source)
    folder = tmp_path / "backups"
    copy = sqlite_backup(
        source=source, folder=folder, keep=3, now=datetime(2026, 5, 1, 3, 17, 9, tzinfo=UTC)
    )
    assert copy.name == "smsadmin-20260501-031709.sqlite3"
    assert mode(folder) == 0o700
    assert mode(copy) == 0o600
    assert [p.name for p in folder.iterdir()] == [copy.name]  # no partial file left


def test_rotation_keeps_the_newest_n(tmp_path):
    source = tmp_path / "live.sqlite3"
    make_database(source)
    folder = tmp_path / "backups"
    folder.mkdir()
    # An operator's own copy, not named as ours: never rotated away.
    (folder / "smsadmin-before-upgrade.sqlite3").write_text("mine")
    start = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    made = [
        sqlite_backup(source=source, folder=folder, keep=3, now=start + timedelta(days=d))
        for d in range(6)
    ]
    # Two in the same second: the second is the newer.
    made.append(sqlite_backup(source=source, folder=folder, keep=3, now=start + timedelta(days=5)))
    kept = sorted(p.name for p in folder.glob("smsadmin-2*.sqlite3"))
    assert kept == sorted([made[4].name, made[5].name, made[6].name])
    assert made[6].name == "smsadmin-20260506-030000-2.sqlite3"
    assert (folder / "smsadmin-before-upgrade.sqlite3").exists()
    assert backups_rotate(folder=folder, keep=1) == [made[4], made[5]]


@pytest.mark.django_db
def test_the_command_backs_up_the_app_database(tmp_path, settings, capsys):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the SQLite pass covers this")
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.BACKUP_KEEP = 2
    call_command("backup")
    out = capsys.readouterr().out
    copies = list((tmp_path / "backups").glob("smsadmin-*.sqlite3"))
    assert len(copies) == 1
    assert f"Backed up the database to {copies[0]}" in out
    db = sqlite3.connect(copies[0])
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "messaging_delivery" in tables
    db.close()


def test_the_command_refuses_postgresql_and_points_to_pg_dump(settings):
    from django.db import connections

    original = connections["default"].settings_dict["ENGINE"]
    connections["default"].settings_dict["ENGINE"] = "django.db.backends.postgresql"
    try:
        with pytest.raises(CommandError, match="pg_dump"):
            call_command("backup")
    finally:
        connections["default"].settings_dict["ENGINE"] = original
