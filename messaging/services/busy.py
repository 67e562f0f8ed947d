"""Surviving a busy database: a writer waits its turn instead of losing what it writes."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")

# SQLite's busy timeout already makes a writer wait (SQLITE_BUSY_TIMEOUT_SECONDS); these
# are the answers that can still come back when another writer held the database longer,
# or when PostgreSQL picked this transaction as a deadlock victim.
_BUSY_WORDS = ("database is locked", "database table is locked", "deadlock detected")


def is_busy(exc: OperationalError) -> bool:
    text = str(exc).lower()
    return any(word in text for word in _BUSY_WORDS)


def retry_when_busy(write: Callable[[], T], *, what: str, attempts: int = 6) -> T:
    """Run ``write`` (one whole transaction), again after a pause if the database was busy.

    Outside any transaction only: retrying inside one would repeat half of it.
    """
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except OperationalError as exc:
            if not is_busy(exc) or attempt == attempts or connection.in_atomic_block:
                raise
            pause = min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
            logger.warning("%s: database busy (%s); trying again in %.1fs", what, exc, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")
