"""Compaction of old unchanged polls into poll_days (issue 12, item 5)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlite_utils import Database

from harvester.archive import (
    FetchFacts,
    compact_polls,
    ensure_feed,
    immediate_transaction,
    insert_fetch,
    open_archive,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
ZERO = dict.fromkeys(("new", "changed", "removed", "restored", "unchanged", "stale"), 0)


def poll_counts(db: Database, feed_id: int) -> dict[str, int]:
    """All the polls a feed ever had by outcome, compacted ones included."""
    counts = dict(
        db.execute(
            "SELECT outcome, count(*) FROM fetches WHERE feed_id = ? GROUP BY outcome", [feed_id]
        ).fetchall()
    )
    days = db.execute(
        "SELECT coalesce(sum(unchanged), 0), coalesce(sum(not_modified), 0) FROM poll_days"
        " WHERE feed_id = ?",
        [feed_id],
    ).fetchone()
    counts["unchanged"] = counts.get("unchanged", 0) + int(days[0])
    counts["not_modified"] = counts.get("not_modified", 0) + int(days[1])
    return {k: int(v) for k, v in counts.items()}


def fill(path: Path, feeds: int, days: int) -> dict[str, int]:
    db = open_archive(path)
    kept = {"error": 0, "changed": 0}
    with immediate_transaction(db):
        ids = [ensure_feed(db, f"https://example.org/f{n}/ics", None, START) for n in range(feeds)]
        for step in range(days * 48):
            at = START + timedelta(minutes=30 * step)
            for n, feed_id in enumerate(ids):
                outcome = "unchanged"
                if (step + n) % 336 == 0:
                    outcome = "changed"
                elif (step * 7 + n) % 500 == 0:
                    outcome = "error"
                kept[outcome] = kept.get(outcome, 0) + 1
                counts = ZERO | {"events": 100, "changed": int(outcome == "changed")}
                facts = FetchFacts(at, at + timedelta(seconds=1), 200, 5000)
                insert_fetch(
                    db, feed_id, facts, outcome, counts, "boom" if outcome == "error" else None
                )
    db.conn.close()
    return kept


@pytest.mark.slow
def test_compaction_keeps_errors_and_changes_and_counts_every_poll(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    kept = fill(path, feeds=5, days=40)
    db = open_archive(path)
    before = {
        o: db.execute("SELECT count(*) FROM fetches WHERE outcome = ?", [o]).fetchone()[0]
        for o in kept
    }
    totals = [poll_counts(db, i) for i in range(1, 6)]
    now = START + timedelta(days=40)
    pauses: list[None] = []
    done = compact_polls(db, now, 30 * 86400.0, batch=200, pause=lambda: pauses.append(None))
    assert done.polls > 0 and done.batches > 1
    assert len(pauses) == done.batches - 1  # the write lock left free between two batches
    for outcome in ("error", "changed"):
        after = db.execute("SELECT count(*) FROM fetches WHERE outcome = ?", [outcome]).fetchone()[
            0
        ]
        assert after == before[outcome]
    assert [poll_counts(db, i) for i in range(1, 6)] == totals
    oldest = db.execute(
        "SELECT min(started_at) FROM fetches WHERE outcome = 'unchanged'"
    ).fetchone()[0]
    assert oldest >= "2026-01-11"
    assert db.execute("SELECT count(*) FROM poll_days").fetchone()[0] == 5 * 10  # 1 to 10 January
    again = compact_polls(db, now, 30 * 86400.0)
    assert again.skipped


@pytest.mark.slow
def test_compaction_never_blocks_a_poll_long(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    fill(path, feeds=20, days=45)
    waits: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        other = open_archive(path)
        while not stop.is_set():
            t0 = time.monotonic()
            other.execute("BEGIN IMMEDIATE")
            waits.append(time.monotonic() - t0)
            other.execute("COMMIT")
            time.sleep(0.005)
        other.conn.close()

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        db = open_archive(path)
        done = compact_polls(db, START + timedelta(days=45), 30 * 86400.0)
    finally:
        stop.set()
        thread.join()
    assert done.polls > 10_000
    assert waits and max(waits) < 1.0


class SteppingClock:
    """A clock that moves `step` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.slow
def test_a_batch_commits_once_its_time_budget_is_spent(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    fill(path, feeds=5, days=40)
    db = open_archive(path)
    totals = [poll_counts(db, i) for i in range(1, 6)]
    left: list[int] = [db.execute("SELECT count(*) FROM fetches").fetchone()[0]]

    def pause() -> None:  # between two transactions: what the last one folded
        left.append(db.execute("SELECT count(*) FROM fetches").fetchone()[0])

    # 0.15 s a chunk against a 0.2 s budget: every transaction stops after two chunks.
    done = compact_polls(
        db,
        START + timedelta(days=40),
        30 * 86400.0,
        batch=1000,
        chunk=100,
        budget_s=0.2,
        clock=SteppingClock(0.15),
        pause=pause,
    )
    left.append(db.execute("SELECT count(*) FROM fetches").fetchone()[0])
    folded = [a - b for a, b in itertools.pairwise(left)]
    assert sum(folded) == done.polls > 2000  # more than two batches of 1,000
    assert len(folded) == done.batches
    assert max(folded) == 200 and folded.count(200) >= done.batches - 2
    assert [poll_counts(db, i) for i in range(1, 6)] == totals
    oldest = db.execute(
        "SELECT min(started_at) FROM fetches WHERE outcome = 'unchanged'"
    ).fetchone()[0]
    assert oldest >= "2026-01-11"  # every batch finished in later transactions
    db.close()


@pytest.mark.slow
def test_a_still_clock_folds_each_batch_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    fill(path, feeds=5, days=40)
    db = open_archive(path)
    done = compact_polls(
        db, START + timedelta(days=40), 30 * 86400.0, batch=500, chunk=100, clock=lambda: 0.0
    )
    assert done.polls > 2000
    assert done.batches == -(-done.polls // 500)  # 500 polls a transaction, the last fewer
    db.close()


@pytest.mark.slow
def test_a_stop_within_a_batch_leaves_the_rest_for_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    fill(path, feeds=5, days=40)
    db = open_archive(path)
    totals = [poll_counts(db, i) for i in range(1, 6)]
    now = START + timedelta(days=40)
    asked: list[None] = []

    def should_stop() -> bool:  # asked before the first batch, then after the first transaction
        asked.append(None)
        return len(asked) > 1

    first = compact_polls(
        db,
        now,
        30 * 86400.0,
        chunk=100,
        budget_s=0.2,
        clock=SteppingClock(0.15),
        should_stop=should_stop,
    )
    assert first.batches == 1 and first.polls == 200  # stopped after its first transaction
    assert [poll_counts(db, i) for i in range(1, 6)] == totals
    rest = compact_polls(db, now, 30 * 86400.0)
    assert not rest.skipped  # the first run did not mark the day done
    oldest = db.execute(
        "SELECT min(started_at) FROM fetches WHERE outcome = 'unchanged'"
    ).fetchone()[0]
    assert oldest >= "2026-01-11"
    assert [poll_counts(db, i) for i in range(1, 6)] == totals
    db.close()


def test_a_poll_in_another_time_format_is_compacted_by_its_text(tmp_path: Path) -> None:
    # Its text is kept verbatim (not in the harvester's UTC format), its instant in
    # started_unix: compacted by that instant, into its UTC day.
    db = open_archive(tmp_path / "a.db")
    counts = ZERO | {"events": 3, "unchanged": 3}
    with immediate_transaction(db):
        feed_id = ensure_feed(db, "https://example.org/f/ics", None, START)
        old = START.astimezone(timezone(timedelta(hours=1)))  # text "2026-01-01T01:00+01:00"
        ids = [
            insert_fetch(db, feed_id, FetchFacts(at, at, 200, 10), "unchanged", counts, None)
            for at in (old, START + timedelta(days=40), START + timedelta(days=41))
        ]
    row = db.execute("SELECT started_unix, started_at FROM fetches WHERE id = ?", [ids[0]])
    assert row.fetchone() == (int(START.timestamp()), old.isoformat())
    done = compact_polls(db, START + timedelta(days=45), 30 * 86400.0)
    assert done.polls == 1
    assert [r[0] for r in db.execute("SELECT id FROM fetches ORDER BY id")] == ids[1:]
    assert db.execute("SELECT day, polls FROM poll_days").fetchall() == [("2026-01-01", 1)]
    db.close()


def test_the_latest_poll_stays_whatever_its_age(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    counts = ZERO | {"events": 3, "unchanged": 3}
    with immediate_transaction(db):
        feed_id = ensure_feed(db, "https://example.org/f/ics", None, START)
        ids = [
            insert_fetch(db, feed_id, FetchFacts(at, at, 200, 10), "unchanged", counts, None)
            for at in (START, START + timedelta(hours=1))
        ]
    done = compact_polls(db, START + timedelta(days=60), 30 * 86400.0)
    assert done.polls == 1
    assert [r[0] for r in db.execute("SELECT id FROM fetches")] == ids[1:]
    db.close()
