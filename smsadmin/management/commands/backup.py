"""``manage.py backup``: a consistent copy of the SQLite database, taken while the app runs."""

from __future__ import annotations

import os
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

PREFIX = "smsadmin-"
SUFFIX = ".sqlite3"
# Only files named as we name them are ever rotated away; "-2" is a second backup within
# the same second.
_NAME = re.compile(r"smsadmin-(\d{8}-\d{6})(?:-(\d+))?\.sqlite3")


class BackupError(Exception):
    pass


def sqlite_backup(
    *, source: Path, folder: Path, keep: int, timeout: float = 30.0, now: datetime | None = None
) -> Path:
    """Copy ``source`` into ``folder`` as smsadmin-<UTC time>.sqlite3; keep the newest ``keep``.

    SQLite's online backup API copies the database as one transaction saw it, whatever
    web, worker and beat write meanwhile (in WAL mode they go on writing while it reads).
    The copy is a single file (no -wal beside it), checked with integrity_check before it
    takes its final name, so a backup that exists is whole. Only the owner may read it:
    it holds every phone number.
    """
    if not source.is_file():
        raise BackupError(f"There is no database file at {source}.")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    target = folder / f"{PREFIX}{stamp}{SUFFIX}"
    n = 1
    while target.exists():  # two backups within a second
        n += 1
        target = folder / f"{PREFIX}{stamp}-{n}{SUFFIX}"
    partial = target.with_name(target.name + ".partial")
    # Created by us with its mode before SQLite opens it: never readable by others.
    os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        src = sqlite3.connect(source, timeout=timeout)
        try:
            dst = sqlite3.connect(partial)
            try:
                # All pages in one step: a step-by-step copy restarts whenever another
                # connection writes, and on a busy day might never end.
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
                (check,) = dst.execute("PRAGMA integrity_check").fetchone()
                if check != "ok":
                    raise BackupError(f"The copy failed its integrity check: {check}")
            finally:
                dst.close()
        finally:
            src.close()
        partial.chmod(0o600)
        with open(partial, "rb") as copied:
            os.fsync(copied.fileno())
        partial.rename(target)
        _fsync_folder(folder)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    backups_rotate(folder=folder, keep=keep)
    return target


def backups_rotate(*, folder: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` backups; return the removed.

    Files whose names are not a backup's (an operator's copy "before-upgrade") stay.
    """
    named = []
    for path in folder.iterdir():
        if (match := _NAME.fullmatch(path.name)) and path.is_file():
            named.append(((match.group(1), int(match.group(2) or 1)), path))
    backups = [path for _, path in sorted(named)]
    removed = backups[:-keep] if keep > 0 else backups
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Command(BaseCommand):
    help = (
        "Copy the SQLite database, consistently and while the app runs, into BACKUP_DIR "
        "with the time in its name; keeps the newest BACKUP_KEEP copies. On PostgreSQL, "
        "use pg_dump instead."
    )

    def handle(self, *args: object, **options: object) -> None:
        db = connections["default"].settings_dict
        if db["ENGINE"] != "django.db.backends.sqlite3":
            raise CommandError(
                "The database is not SQLite: back up PostgreSQL with pg_dump, e.g. "
                '`pg_dump -Fc -f smsadmin-$(date +%Y%m%d).dump "$DATABASE_URL"`, and '
                "restore with pg_restore (README.md, 'Backups and restore')."
            )
        try:
            target = sqlite_backup(
                source=Path(db["NAME"]),
                folder=settings.BACKUP_DIR,
                keep=settings.BACKUP_KEEP,
                # SQLITE_BUSY_TIMEOUT_SECONDS, as the app's own connections wait.
                timeout=db.get("OPTIONS", {}).get("timeout", 30),
            )
        except (BackupError, sqlite3.Error, OSError) as exc:
            raise CommandError(f"Backup failed: {exc}") from exc
        size = target.stat().st_size / 1024 / 1024
        self.stdout.write(
            f"Backed up the database to {target} ({size:.1f} MB); "
            f"keeping the newest {settings.BACKUP_KEEP} in {target.parent}."
        )
