"""Compaction of old unchanged polls into `poll_days` (migrations/0009_poll_days.sql)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlite_utils import Database

from harvester.archive._connection import immediate_transaction, meta
from harvester.archive._polls import _LAST_SUCCESS_SQL, LATEST_FIRST

COMPACTED_BEFORE_KEY = "polls_compacted_before"  # archive_meta: the day compaction reached
# Polls per write transaction at most. A batch touches about two pages per feed whatever
# its size (each feed's index entries and its poll_days row), so batches of a few slots of
# every feed cost little more than one.
COMPACT_BATCH = 5000
# A batch is folded in chunks of this many polls (an INSERT and a DELETE each) and commits
# early once it has held the write lock for COMPACT_BUDGET_S: on a loaded machine a batch
# can take many times its usual ~100 ms, and the budget, checked between two chunks, bounds
# what a concurrent poll waits to about the budget and one chunk.
COMPACT_CHUNK = 500
COMPACT_BUDGET_S = 0.2
# The write lock is left free this long between batches: SQLite's busy handler retries
# every 100 ms at most, so a poll that waited during a batch gets in before the next one.
COMPACT_PAUSE_S = 0.12
# Exactly `outcome IN ('unchanged', 'not_modified')` with no new, changed, removed or
# restored talk; a row without overrides is decided on its stored columns alone.
_COMPACTABLE = (
    "(overrides IS NULL AND outcome_code IN (0, 1) OR overrides IS NOT NULL"
    " AND outcome IN ('unchanged', 'not_modified') AND coalesce(new, 0) = 0"
    " AND coalesce(changed, 0) = 0 AND coalesce(removed, 0) = 0"
    " AND coalesce(restored, 0) = 0)"
)
# `started_at < :bound` (an ISO time of a whole second), on the stored columns when it can.
_STARTED_BEFORE = (
    "CASE WHEN started_unix IS NOT NULL THEN started_unix < :{0}_unix ELSE started_at < :{0} END"
)


@dataclass(frozen=True)
class Compaction:
    polls: int  # fetches rows folded into poll_days
    batches: int  # write transactions taken
    before: str  # the UTC day whose start bounds what was compacted
    skipped: bool = False  # already compacted up to that day (and not forced)


def compact_polls(
    db: Database,
    now: datetime,
    keep_s: float,
    *,
    force: bool = False,
    batch: int = COMPACT_BATCH,
    chunk: int = COMPACT_CHUNK,
    budget_s: float = COMPACT_BUDGET_S,
    clock: Callable[[], float] = time.monotonic,
    should_stop: Callable[[], bool] | None = None,
    pause: Callable[[], None] = lambda: time.sleep(COMPACT_PAUSE_S),
) -> Compaction:
    """Fold the unchanged polls that started before the UTC day of `now - keep_s` into one
    `poll_days` row per feed and day; failed and changing polls, and each feed's latest
    poll, stay in `fetches`.

    Candidates are read outside any transaction; each batch of at most `batch` polls is
    then one short `BEGIN IMMEDIATE` transaction, folded `chunk` polls at a time, which
    commits early once it has held the write lock for `budget_s` (by `clock`; the rest of
    the batch goes to the next transaction). `pause` runs between two batches so that a
    concurrent poll waits for one batch at most. Without `force`, a run that an earlier
    run already covered (same day) reads only the marker. `should_stop` is asked between
    batches (the daemon stopping).
    """
    day = (now - timedelta(seconds=keep_s)).astimezone(UTC).date()
    bounds = _day_bounds("before", day) | _day_bounds("stop_at", day + timedelta(days=1))
    before = bounds["before"]
    done = meta(db, COMPACTED_BEFORE_KEY)
    if not force and done and done >= before:
        return Compaction(0, 0, before, skipped=True)
    protected = _latest_polls(db)
    after, polls, batches = 0, 0, 0
    while not (should_stop and should_stop()):
        rows = db.execute(_COMPACT_SCAN, bounds | {"after": after, "batch": batch}).fetchall()
        if not rows:
            break
        after = rows[-1][0]
        ids = [i for i, old, _later in rows if old and i not in protected]
        while ids:  # a batch whose budget ran out goes on in the next transaction
            if batches:
                pause()
            folded, ids = _fold_polls(db, ids, bounds, chunk, budget_s, clock)
            polls += folded
            batches += 1
            if ids and should_stop and should_stop():
                return Compaction(polls, batches, before)
        if any(later for _i, _old, later in rows):
            break  # every later poll is newer (ids follow time, a poll lasts minutes)
    else:
        return Compaction(polls, batches, before)
    with immediate_transaction(db):
        db.execute(
            "INSERT INTO archive_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            [COMPACTED_BEFORE_KEY, before],
        )
    return Compaction(polls, batches, before)


_COMPACT_SCAN = f"""
    SELECT id, {_STARTED_BEFORE.format("before")}, NOT {_STARTED_BEFORE.format("stop_at")}
    FROM fetches WHERE id > :after AND {_COMPACTABLE} ORDER BY id LIMIT :batch
"""  # noqa: S608


def _day_bounds(name: str, day: date) -> dict[str, Any]:
    """The start of a UTC day as the query parameters `:name` (ISO) and `:name_unix`."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return {name: start.isoformat(), f"{name}_unix": int(start.timestamp())}


def _latest_polls(db: Database) -> set[int]:
    """Each feed's latest poll and latest successful poll (what the next poll reads)."""
    protected: set[int] = set()
    for (feed_id,) in db.execute("SELECT id FROM feeds").fetchall():
        for sql in (
            f"SELECT id FROM fetches WHERE feed_id = ? {LATEST_FIRST} LIMIT 1",  # noqa: S608
            f"SELECT id {_LAST_SUCCESS_SQL}",
        ):
            row = db.execute(sql, [feed_id]).fetchone()
            if row:
                protected.add(int(row[0]))
    return protected


_FOLD_WHERE = f"""
    id IN (SELECT value FROM json_each(:ids)) AND {_COMPACTABLE}
    AND {_STARTED_BEFORE.format("before")}
"""  # noqa: S608
_FOLD_INSERT = f"""
    INSERT INTO poll_days (feed_id, day, polls, unchanged, not_modified, first_started_at,
                           last_started_at, last_finished_at, bytes, duration_ms, events)
    SELECT feed_id, substr(started_at, 1, 10), count(*), sum(outcome = 'unchanged'),
           sum(outcome = 'not_modified'), min(started_at), max(started_at), max(finished_at),
           sum(bytes), sum(duration_ms), max(events)
    FROM fetches WHERE {_FOLD_WHERE} GROUP BY 1, 2
    ON CONFLICT (feed_id, day) DO UPDATE SET
        polls = polls + excluded.polls,
        unchanged = unchanged + excluded.unchanged,
        not_modified = not_modified + excluded.not_modified,
        first_started_at = min(first_started_at, excluded.first_started_at),
        last_started_at = max(last_started_at, excluded.last_started_at),
        last_finished_at = max(coalesce(last_finished_at, ''),
                               coalesce(excluded.last_finished_at, '')),
        bytes = coalesce(bytes, 0) + coalesce(excluded.bytes, 0),
        duration_ms = coalesce(duration_ms, 0) + coalesce(excluded.duration_ms, 0),
        events = max(coalesce(events, 0), coalesce(excluded.events, 0))
"""  # noqa: S608
_FOLD_DELETE = f"DELETE FROM fetches WHERE {_FOLD_WHERE}"  # noqa: S608


def _fold_polls(
    db: Database,
    ids: list[int],
    bounds: Mapping[str, Any],
    chunk: int,
    budget_s: float,
    clock: Callable[[], float],
) -> tuple[int, list[int]]:
    """One batch, one transaction: chunk by chunk, the day rows grow by these polls and the
    polls leave `fetches`, until `budget_s` is spent. The polls folded, and those left."""
    folded = 0
    with immediate_transaction(db):
        deadline = clock() + budget_s
        for start in range(0, len(ids), chunk):
            params = {**bounds, "ids": json.dumps(ids[start : start + chunk])}
            db.execute(_FOLD_INSERT, params)
            folded += int(db.execute(_FOLD_DELETE, params).rowcount)
            if clock() >= deadline:
                return folded, ids[start + chunk :]
    return folded, []
