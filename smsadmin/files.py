"""Files with contacts or secrets in them are readable by the app's own user only.

Uploads, problem reports and the SQLite database hold names and phone numbers; the
filesystem broker's folders hold queued tasks. Each such file is created 0600 and each
such folder 0700. The app never sets a global umask: static files under VAR_DIR must stay
readable by the web server's group (deploy/install.sh).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Besides the database file itself, SQLite keeps these next to it; it creates them with
# the database file's own mode, but one left from before keeps whatever it had.
_SQLITE_SIBLINGS = ("-wal", "-shm", "-journal")


def private_dir(path: Path | str) -> Path:
    """Create ``path`` (and missing parents) and make ``path`` itself 0700.

    Parents keep the usual mode: only the folder named is private.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    _chmod_if_needed(folder, PRIVATE_DIR_MODE)
    return folder


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for open(): the file is 0600 before a byte is written to it.

    open(path, "wb", opener=private_opener). A file that already exists is made 0600 too.
    """
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != PRIVATE_FILE_MODE:
            os.fchmod(fd, PRIVATE_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def sqlite_file_paths(name: Any) -> list[Path]:
    """The database file of a SQLite NAME and its siblings; none for an in-memory database."""
    name = str(name or "")
    if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        return []
    return [Path(name), *(Path(name + suffix) for suffix in _SQLITE_SIBLINGS)]


def sqlite_files_private(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    """connection_created receiver: a SQLite database file and its siblings become 0600.

    Runs as each connection opens, before its first query. SQLite gives the -wal and
    -shm files it creates later the database file's mode, so they are 0600 as well.
    """
    if connection is None or connection.vendor != "sqlite":
        return
    for path in sqlite_file_paths(connection.settings_dict.get("NAME")):
        _chmod_if_needed(path, PRIVATE_FILE_MODE)


def broker_dirs_private(broker_dir: Path | str | None, transport_options: dict[str, Any]) -> None:
    """The filesystem broker's folders (queued tasks, with their arguments) become 0700."""
    keys = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")
    for folder in {Path(transport_options[key]) for key in keys if transport_options.get(key)}:
        private_dir(folder)
    if broker_dir is not None:
        # Only the broker's folders live in BROKER_DIR (settings.py).
        _chmod_if_needed(Path(broker_dir), PRIVATE_DIR_MODE)


def _chmod_if_needed(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)
    except FileNotFoundError:
        return
    except PermissionError:
        # Owned by another user (an operator ran manage.py as root, say): say so, and
        # let the program go on; the deploy's own checks are the place to fail.
        logger.warning("Cannot make %s private (mode %o): not its owner.", path, mode)


def ready() -> None:
    """Called once from SmsadminConfig.ready(): hooks and folders, in every process."""
    from django.conf import settings
    from django.db.backends.signals import connection_created

    connection_created.connect(sqlite_files_private, dispatch_uid="smsadmin-sqlite-private")
    if str(getattr(settings, "CELERY_BROKER_URL", "")).startswith("filesystem://"):
        broker_dirs_private(
            getattr(settings, "BROKER_DIR", None),
            getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {},
        )
