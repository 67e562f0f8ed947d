"""The send rate shared by every worker process, on every machine, on the database's clock."""

from __future__ import annotations

import time

from django.db import IntegrityError, connection, transaction

from messaging.models import SendRateLimiter
from messaging.services.busy import retry_when_busy

# One statement takes the next free slot and says what time the database thinks it is,
# so the schedule never depends on a worker host's clock. 'now' is fixed for the whole
# statement on both databases.
# A next slot further ahead than the horizon (the first parameter) can only be left by
# a clock that stepped back (NTP): start again from now rather than wait it out with
# every worker frozen.
_RESERVE_SQL = {
    "postgresql": (
        "WITH clock AS (SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now) "
        "UPDATE messaging_sendratelimiter SET next_slot = CASE "
        "WHEN next_slot > clock.now + %s THEN clock.now "
        "ELSE GREATEST(next_slot, clock.now) END + %s "
        "FROM clock WHERE key = %s RETURNING next_slot - %s, clock.now"
    ),
    "sqlite": (
        "UPDATE messaging_sendratelimiter SET next_slot = CASE "
        "WHEN next_slot > (julianday('now') - 2440587.5) * 86400.0 + %s "
        "THEN (julianday('now') - 2440587.5) * 86400.0 "
        "ELSE MAX(next_slot, (julianday('now') - 2440587.5) * 86400.0) END + %s "
        "WHERE key = %s "
        "RETURNING next_slot - %s, (julianday('now') - 2440587.5) * 86400.0"
    ),
}


class RateLimiter:
    """SMS_RATE_PER_SECOND for the whole deployment: one send slot per message.

    A slot is taken from the database right before the message it is for, and slots
    are 1/rate apart on the database's clock, whichever worker or machine takes them.
    A slot is only used close to its time: a worker that wakes up late (a slow reply, a
    busy machine) lets it go and takes a new one, so a late worker never adds a burst
    on top of the others' sends. Any one-second window then holds at most rate + 1 sends.
    """

    def __init__(self, *, key: str, rate: float) -> None:
        self.key = key
        self.rate = rate
        # How late after its time a slot may still be used: under half an interval, so
        # a slot used late and the next one used early never share a window unfairly.
        self.tolerance = min(0.05, 0.45 / rate) if rate > 0 else 0.0

    def reserve(self) -> float:
        """Take the next slot; its time as a local ``time.monotonic()`` value."""
        step = 1.0 / self.rate
        # Every worker waiting its turn legitimately pushes the next slot ahead by one
        # step; a minute (or a hundred steps) ahead is past any such queue.
        horizon = max(60.0, 100 * step)
        sql = _RESERVE_SQL[connection.vendor]
        params = [horizon, step, self.key, step]

        def take() -> tuple[float, float]:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    row = cursor.fetchone()
                if row is None:
                    self._create_row()
                    with connection.cursor() as cursor:
                        cursor.execute(sql, params)
                        row = cursor.fetchone()
            return row

        # A busy database delays the slot; raising here would leave the requests
        # already in flight with no one to record their answers.
        slot, db_now = retry_when_busy(take, what="taking a send slot")
        return time.monotonic() + max(0.0, slot - db_now)

    def _create_row(self) -> None:
        try:
            with transaction.atomic():
                SendRateLimiter.objects.create(key=self.key)
        except IntegrityError:  # another worker created it first
            pass

    def usable(self, slot: float) -> bool:
        """Whether a slot reserved earlier may still be spent now."""
        return time.monotonic() <= slot + self.tolerance
