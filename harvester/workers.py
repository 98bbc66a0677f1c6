"""A worker process beside the sync, so that large batches of new events parse on two cores.

icalendar is pure Python: one process parses on one core whatever its threads do. When a
poll brings many new events that the lexer cannot read alone (not in the site's regular
form, see `parse.talk_from_block`), the fast path hands half of them to this process and
parses the other half itself. The pool starts on first use
(spawn: the process that asks may have threads) and is shut down at exit; anything that
goes wrong in it makes the caller parse the events itself.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # multiprocessing: imported by the first poll that needs it, not at start
    from concurrent.futures import ProcessPoolExecutor

MIN_EVENTS = 100  # fewer new events than this are parsed in place: cheaper than handing over
_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def parse_pool() -> ProcessPoolExecutor | None:
    """The shared worker process, or None on one core (or HARVESTER_PARSE_WORKERS=0)."""
    global _pool
    if (os.cpu_count() or 1) < 2 or os.environ.get("HARVESTER_PARSE_WORKERS") == "0":
        return None
    with _lock:
        if _pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
            atexit.register(shutdown)
        return _pool


def shutdown() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
