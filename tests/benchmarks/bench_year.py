"""Benchmark: a simulated year of polls, then compaction (issue 12, item 5).

    .venv/bin/python tests/benchmarks/bench_year.py [--feeds 500] [--days 365]
    .venv/bin/python tests/benchmarks/bench_year.py --quick     # smoke test

Writes the `fetches` rows of --feeds series feeds (talk counts spread as on the site)
polled every 30 minutes for --days days straight into a fresh archive (plain SQL of the
rows `archive.write_fetch` writes, no HTTP): 1% of all talks change each week (each
change is one `changed` poll of its feed), and --error-rate of the polls fail. Then runs `archive.compact_polls` as the daemon does
(`[archive] keep_polls`, default 30 days) while another process plays a poll: every 20 ms
it takes the write lock with `BEGIN IMMEDIATE`, writes a `fetches` row and commits, and
records how long it waited for the lock.

Prints `fetches` and its indexes (dbstat) before and after (target after: under 50 MB),
checks that every failed and every changed poll is still there and that no poll was lost
(fetches + poll_days), and prints the longest wait of the concurrent poll (target ≤ 1 s),
with its median and 99th percentile.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Run as a script: make the checkout importable (`tests.benchmarks.*`).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlite_utils import Database

from harvester.archive import FETCH_COLUMNS, compact_polls, open_archive, write_fetch
from tests.benchmarks.common import machine, megabytes, print_table, table_sizes
from tests.benchmarks.sitegen import site_sizes

START = datetime(2025, 1, 1, tzinfo=UTC)
PERIOD = timedelta(minutes=30)
FETCH_TABLES = ("fetches", "idx_fetches_feed_id_started_unix")
SIZE_TARGET = 50e6
WAIT_TARGET = 1.0
COLUMNS = list(FETCH_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--keep-days", type=float, default=30)
    parser.add_argument("--error-rate", type=float, default=0.002)
    parser.add_argument("--quick", action="store_true", help="a quick run (for the smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.feeds, args.days = 20, 45
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        return run(Path(tmp) / "archive.db", args)


def run(path: Path, args: argparse.Namespace) -> int:
    talks = site_sizes(args.feeds, 20, 1000)
    db = open_archive(path)
    db.conn.execute("BEGIN")
    for n in range(args.feeds):
        db.conn.execute(
            "INSERT INTO feeds (id, url, url_hash, name, kind, enabled, added_at)"
            " VALUES (?, ?, ?, ?, 'series', 1, ?)",
            [n + 1, f"https://researchseminars.org/seminar/S{n}/ics", f"h{n}", f"S{n}", "x"],
        )
    db.conn.execute("COMMIT")
    start = time.perf_counter()
    written = {"polls": 0, "error": 0, "changed": 0}
    for day in simulate(talks, args.days, args.error_rate, written):
        db.conn.execute("BEGIN")
        for row in day:
            write_fetch(db, dict(zip(COLUMNS, row, strict=True)))
        db.conn.execute("COMMIT")
    wrote_s = time.perf_counter() - start
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = fetch_bytes(db.conn)
    kept_before = outcome_ids(db.conn)

    now = START + timedelta(days=args.days)
    spawn = multiprocessing.get_context("spawn")  # no fork of this process's connection
    stop, results = spawn.Event(), spawn.Queue()
    poller = spawn.Process(target=poll_concurrently, args=(str(path), now, stop, results))
    poller.start()
    if not results.get(timeout=60) == "ready":
        raise RuntimeError("the concurrent poll did not start")
    start = time.perf_counter()
    done = compact_polls(db, now, args.keep_days * 86400)
    compact_s = time.perf_counter() - start
    time.sleep(0.1)
    stop.set()
    waits: list[float] = results.get(timeout=60)
    poller.join(timeout=60)

    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = fetch_bytes(db.conn)
    kept_after = outcome_ids(db.conn)
    for outcome in ("error", "changed"):
        assert kept_before[outcome] <= kept_after[outcome], f"a poll that was {outcome} is gone"
        assert len(kept_before[outcome]) == written[outcome], (outcome, written)
    polls = db.conn.execute("SELECT count(*) FROM fetches").fetchone()[0]
    folded = db.conn.execute("SELECT coalesce(sum(polls), 0) FROM poll_days").fetchone()[0]
    assert polls + folded == written["polls"] + len(waits), "a poll was lost"
    days = db.conn.execute("SELECT count(*) FROM poll_days").fetchone()[0]
    poll_days_bytes = dict(table_sizes(db.conn)).get("poll_days", 0)
    file_bytes = path.stat().st_size
    db.close()

    longest = max(waits) if waits else float("nan")
    rows = [
        (
            "polls written",
            f"{written['polls']}",
            f"{args.feeds} feeds ({sum(talks)} talks) × {args.days} days every 30 min,"
            f" in {wrote_s:.0f} s; {written['changed']} changed, {written['error']} failed",
        ),
        ("fetches + its indexes before", megabytes(before), dbstat_note()),
        (
            "fetches + its indexes after",
            megabytes(after),
            f"target < {SIZE_TARGET / 1e6:g} MB: {'MET' if after < SIZE_TARGET else 'MISSED'}",
        ),
        (
            "compaction",
            f"{compact_s:.1f} s",
            f"{done.polls} polls folded in {done.batches} transactions into {days} poll_days"
            f" rows ({megabytes(poll_days_bytes)}); keep_polls {args.keep_days:g} days",
        ),
        (
            "every failed and changed poll kept",
            "yes",
            f"{len(kept_after['error'])} failed, {len(kept_after['changed'])} changed;"
            f" {polls} fetches rows left",
        ),
        (
            "longest BEGIN IMMEDIATE wait of a concurrent poll",
            f"{longest * 1000:.1f} ms",
            f"target ≤ {WAIT_TARGET:g} s: {'MET' if longest <= WAIT_TARGET else 'MISSED'}"
            f" ({len(waits)} polls, median {statistics.median(waits) * 1000:.1f} ms,"
            f" p99 {percentile(waits, 0.99) * 1000:.1f} ms)",
        ),
        ("archive file after (not vacuumed)", megabytes(file_bytes), ""),
    ]
    print_table("a simulated year of polls, then compaction", rows)
    return 0


def simulate(
    talks: list[int], days: int, error_rate: float, written: dict[str, int]
) -> Iterator[list[tuple[Any, ...]]]:
    """The polls of each day in the order they started, as `fetches` rows."""
    rng = random.Random(1)
    feeds = len(talks)
    total = sum(talks)
    per_poll = 0.01 * total / (7 * 48)  # changed talks per poll slot, all feeds together
    weights = [t / total for t in talks]
    offsets = [rng.uniform(0, PERIOD.total_seconds()) for _ in range(feeds)]
    for day in range(days):
        rows = []
        changes: dict[tuple[int, int], int] = {}
        for slot in range(48):
            for feed in rng.choices(range(feeds), weights, k=poisson(rng, per_poll)):
                changes[(slot, feed)] = changes.get((slot, feed), 0) + 1
        for slot in range(48):
            base = START + timedelta(days=day) + slot * PERIOD
            for feed, events in enumerate(talks):
                started = base + timedelta(seconds=offsets[feed])
                duration = rng.randint(20, 400)
                finished = started + timedelta(milliseconds=duration)
                size = events * 1800
                changed = changes.get((slot, feed), 0)
                row: tuple[Any, ...]
                if rng.random() < error_rate:
                    row = (feed + 1, started.isoformat(), finished.isoformat(), duration, 503)
                    row += (None, "error", *([None] * 7), "HTTP 503 Service Unavailable")
                    written["error"] += 1
                elif changed:
                    row = (feed + 1, started.isoformat(), finished.isoformat(), duration, 200)
                    row += (size, "changed", events, 0, changed, 0, 0, events - changed, 0, None)
                    written["changed"] += 1
                else:
                    row = (feed + 1, started.isoformat(), finished.isoformat(), duration, 200)
                    row += (size, "unchanged", events, 0, 0, 0, 0, events, 0, None)
                rows.append(row)
        rows.sort(key=lambda row: row[1])
        written["polls"] += len(rows)
        yield rows


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; the means here are small)."""
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def poll_concurrently(path: str, now: datetime, stop: Any, results: Any) -> None:
    """Another process's polls: the wait for the write lock of each, until told to stop."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    db = Database(conn)
    waits = []
    results.put("ready")
    while not stop.is_set():
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        waits.append(time.perf_counter() - start)
        at = now.isoformat()
        row = (1, at, at, 0, 200, 1000, "unchanged", 1, 0, 0, 0, 0, 1, 0, None)
        write_fetch(db, dict(zip(COLUMNS, row, strict=True)))
        conn.execute("UPDATE feeds SET last_fetched_at = ? WHERE id = 1", [at])
        conn.execute("COMMIT")
        time.sleep(0.02)
    conn.close()
    results.put(waits)


def fetch_bytes(conn: sqlite3.Connection) -> int:
    sizes = dict(table_sizes(conn))
    return sum(sizes.get(name, 0) for name in FETCH_TABLES)


def dbstat_note() -> str:
    return "dbstat pages of " + " + ".join(FETCH_TABLES)


def outcome_ids(conn: sqlite3.Connection) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {"error": set(), "changed": set()}
    for id_, outcome in conn.execute(
        "SELECT id, outcome FROM fetches WHERE outcome IN ('error', 'changed')"
    ):
        found[outcome].add(id_)
    return found


if __name__ == "__main__":
    sys.exit(main())
