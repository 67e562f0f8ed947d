"""The send rate shared by every worker process."""

from __future__ import annotations

import logging
import math
import time
from collections import deque

from django.db import IntegrityError, transaction

from messaging.models import Blast, Delivery, SendRateLimiter

logger = logging.getLogger(__name__)

S = Delivery.Status
B = Blast.Status


class RateLimiter:
    """SMS_RATE_PER_SECOND for the whole deployment: send slots reserved in the database.

    Each reservation takes a short window of slots (about half a second's worth) under
    a row lock, so workers never overlap and the database sees a few writes a second.
    """

    def __init__(self, *, key: str, rate: float) -> None:
        self.key = key
        self.rate = rate
        self.slots: deque[float] = deque()

    def _reserve(self) -> None:
        n = max(1, min(500, math.ceil(self.rate * 0.5)))
        with transaction.atomic():
            row = SendRateLimiter.objects.select_for_update().filter(key=self.key).first()
            if row is None:
                try:
                    with transaction.atomic():
                        row = SendRateLimiter.objects.create(key=self.key)
                except IntegrityError:
                    row = SendRateLimiter.objects.select_for_update().get(key=self.key)
            start = max(row.next_slot, time.time())
            row.next_slot = start + n / self.rate
            row.save(update_fields=["next_slot"])
        self.slots.extend(start + i / self.rate for i in range(n))

    def next_slot(self) -> float:
        """The epoch time at which the next message may go out."""
        if self.rate <= 0:
            return 0.0
        if not self.slots:
            self._reserve()
        return self.slots.popleft()
