"""Politeness towards each host: at most N requests in flight and a minimum gap between starts.

One `HostLimiter` is shared by every thread of a sync (it lives in the client's fetch
policy), so the limits hold across feeds, retries and redirect hops alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class HostLimiter:
    """Per-host semaphores plus a schedule of request start times.

    `min_gap` spaces the *starts* of requests to one host; a request waits for its turn
    after it has a slot, so a host never has more than `per_host` requests in flight.
    """

    def __init__(
        self,
        per_host: int = 2,
        min_gap: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_host < 1:
            raise ValueError(f"per_host must be at least 1, got {per_host}")
        self.per_host = per_host
        self.min_gap = max(min_gap, 0.0)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next_start: dict[str, float] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of the host's slots for the duration of the block (request + body)."""
        with self._lock:
            semaphore = self._slots.get(host)
            if semaphore is None:
                semaphore = self._slots[host] = threading.BoundedSemaphore(self.per_host)
        with semaphore:
            self._wait_for_turn(host)
            yield

    def _wait_for_turn(self, host: str) -> None:
        if not self.min_gap:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start.get(host, now))
            self._next_start[host] = start + self.min_gap
        if start > now:
            self._sleep(start - now)
