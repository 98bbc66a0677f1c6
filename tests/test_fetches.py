"""The compact `fetches` layout (0014): every column reads back exactly what was written."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from harvester import _schema
from harvester.archive import (
    FETCH_COLUMNS,
    FETCH_STORED,
    FetchFacts,
    apply_gone,
    ensure_feed,
    immediate_transaction,
    insert_fetch,
    open_archive,
    write_fetch,
)
from harvester.diff import Changes

READABLE = ["id", *FETCH_COLUMNS]
COMPACT = "0014_compact_fetches"
NOW = datetime.now(UTC).replace(microsecond=0)

# --- values read back as written ----------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
# Any text but NUL, which SQLite's JSON functions cut short, and lone surrogates, which are
# no UTF-8 (a time or an outcome is the harvester's own text, and never holds either).
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
times = st.one_of(
    st.none(),
    moments.map(datetime.isoformat),
    moments.map(lambda m: m.replace(microsecond=0).isoformat()),
    moments.map(lambda m: m.astimezone(timezone(timedelta(hours=2))).isoformat()),
    moments.map(lambda m: m.replace(tzinfo=None).isoformat()),
    moments.map(lambda m: m.isoformat(timespec="milliseconds")),
    texts,
)
counts = st.one_of(st.none(), st.integers(-3, 3), st.integers(0, 5000))
outcomes = st.one_of(st.sampled_from(["unchanged", "not_modified", "changed", "error"]), texts)


@st.composite
def readable_rows(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {"feed_id": 1, "outcome": draw(outcomes)}
    started = draw(moments)
    if draw(st.booleans()):  # as the harvester writes them: a start and a little later
        after = draw(st.integers(-2_000_000, 90_000_000))
        row["started_at"] = started.isoformat()
        row["finished_at"] = (started + timedelta(microseconds=after)).isoformat()
        row["duration_ms"] = round(after / 1000)
    else:
        row |= {name: draw(times) for name in ("started_at", "finished_at")}
        row["duration_ms"] = draw(counts)
    for name in ("http_status", "bytes", "events", "new", "changed", "removed", "restored"):
        row[name] = draw(counts)
    row["stale"] = draw(counts)
    row["unchanged"] = draw(
        st.one_of(counts, st.just(_events_left(row)))
    )  # the common case: every event not counted otherwise
    row["error"] = draw(st.one_of(st.none(), st.text(max_size=20)))
    return row


def _events_left(row: dict[str, Any]) -> int | None:
    terms = [row["events"], row["new"], row["changed"], row["restored"], row["stale"]]
    return None if None in terms else terms[0] - sum(terms[1:])


def insert_stored(conn: sqlite3.Connection, values: dict[str, Any]) -> int:
    return write_fetch(Database(conn), values)


def read_back(conn: sqlite3.Connection, fetch_id: int) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {', '.join(READABLE)} FROM fetches WHERE id = ?",
        [fetch_id],
    ).fetchone()
    return dict(zip(READABLE, row, strict=True))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    path = tmp_path_factory.mktemp("fetches") / "a.db"
    open_archive(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO feeds (id, url, url_hash, kind) VALUES (1, 'u', 'h', 'series')")
    yield conn
    conn.close()


@pytest.mark.slow
@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=readable_rows())
def test_every_column_reads_back_what_was_written(
    archive: sqlite3.Connection, values: dict[str, Any]
) -> None:
    fetch_id = insert_stored(archive, values)
    assert read_back(archive, fetch_id) == {"id": fetch_id} | values


def test_an_unchanged_poll_stores_only_small_integers(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    started = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    facts = FetchFacts(started, started + timedelta(milliseconds=250), 200, 360_000)
    counts = {"events": 200, "new": 0, "changed": 0, "removed": 0, "restored": 0}
    with immediate_transaction(db):
        feed_id = ensure_feed(db, "https://example.org/a/ics", None, started)
        fetch_id = insert_fetch(
            db, feed_id, facts, "unchanged", counts | {"unchanged": 200, "stale": 0}, None
        )
    row = db.execute(
        f"SELECT {', '.join(FETCH_STORED)} FROM fetches WHERE id = ?",
        [fetch_id],
    ).fetchone()
    assert row == (
        feed_id,
        200,
        360_000,
        200,
        None,
        int(started.timestamp()),
        123456,
        250_000,
        0,
        None,
    )
    assert read_back(db.conn, fetch_id) == {
        "id": fetch_id,
        "feed_id": feed_id,
        "started_at": "2026-03-01T12:00:00.123456+00:00",
        "finished_at": "2026-03-01T12:00:00.373456+00:00",
        "duration_ms": 250,
        "http_status": 200,
        "bytes": 360_000,
        "outcome": "unchanged",
        "events": 200,
        "new": 0,
        "changed": 0,
        "removed": 0,
        "restored": 0,
        "unchanged": 200,
        "stale": 0,
        "error": None,
    }
    db.close()


def test_a_feed_gone_counts_its_removals_on_the_failed_poll(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    with immediate_transaction(db):
        feed_id = ensure_feed(db, "https://example.org/a/ics", None, at)
        fetch_id = insert_fetch(db, feed_id, FetchFacts(at, at, 404), "error", {}, "HTTP 404")
        apply_gone(db, feed_id, Changes(), at, fetch_id)
    row = read_back(db.conn, fetch_id)
    assert (row["outcome"], row["removed"], row["new"], row["error"]) == (
        "error",
        0,
        None,
        "HTTP 404",
    )
    db.close()


# --- the migration ------------------------------------------------------------------------

OLD_ROWS: list[tuple[Any, ...]] = [
    # id, started_at, finished_at, duration_ms, http_status, bytes, outcome, events, new,
    # changed, removed, restored, unchanged, stale, error
    (
        3,
        "2026-01-01T00:00:00.250000+00:00",
        "2026-01-01T00:00:00.500001+00:00",
        250,
        200,
        9,
        "unchanged",
        4,
        0,
        0,
        0,
        0,
        4,
        0,
        None,
    ),
    (
        5,
        "2026-01-01T00:30:00+00:00",
        "2026-01-01T00:30:01+00:00",
        1000,
        200,
        9,
        "changed",
        4,
        1,
        2,
        1,
        0,
        1,
        0,
        None,
    ),
    (
        7,
        "2026-01-01T01:00:00+00:00",
        "2026-01-01T01:00:00.0005+00:00",
        0,
        503,
        None,
        "error",
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        "HTTP 503",
    ),
    (
        8,
        "2026-01-01T02:00:00+02:00",
        "2026-01-01 00:00:01",
        None,
        304,
        0,
        "not_modified",
        0,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ),
    (9, None, None, None, None, None, "something else", 3, 0, 0, 0, 0, 3, 2, None),
    (
        12,
        "1969-12-31T23:59:59.5+00:00",
        "soon",
        12.5,
        200,
        1,
        "unchanged",
        5,
        0,
        0,
        0,
        0,
        "many",
        0,
        None,
    ),
    (
        13,
        f"{(NOW - timedelta(hours=2)).isoformat()}",
        f"{(NOW - timedelta(hours=1)).isoformat()}",
        3_600_000,
        200,
        9,
        "unchanged",
        2,
        0,
        0,
        0,
        0,
        2,
        0,
        None,
    ),
    (
        14,
        f"{(NOW - timedelta(hours=3)).isoformat()}",
        None,
        None,
        500,
        None,
        "error",
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        "HTTP 500",
    ),
]


def archive_before_compact(path: Path) -> sqlite3.Connection:
    """An archive as the migrations before 0014 leave it, with polls of every odd kind."""
    conn = sqlite3.connect(path, isolation_level=None)  # foreign keys off: versions of no talk
    before = max(m.name for m in _schema.shipped() if m.name < COMPACT)
    conn.execute("BEGIN")
    _schema.apply_pending(conn, upto=before)
    conn.execute("INSERT INTO feeds (id, url, url_hash, kind) VALUES (1, 'u', 'h', 'series')")
    conn.executemany(
        "INSERT INTO fetches (id, feed_id, started_at, finished_at, duration_ms, http_status,"
        " bytes, outcome, events, new, changed, removed, restored, unchanged, stale, error)"
        " VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        OLD_ROWS,
    )
    conn.executemany(
        "INSERT INTO talk_versions (uid, version, fetch_id, change) VALUES ('S/1', ?, ?, ?)",
        [(1, 3, "new"), (2, 5, "changed")],
    )
    conn.execute("COMMIT")
    return conn


def everything(conn: sqlite3.Connection, source: str) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT * FROM {source} ORDER BY 1, 2").fetchall()


def versions(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Every column of talk_versions but `raw` and the `raw_z` it came from (0018 turns
    them into one plain column: tests/test_plain_archive.py)."""
    names = [r[1] for r in conn.execute("PRAGMA table_xinfo(talk_versions)")]
    kept = ", ".join(n for n in names if n not in ("raw", "raw_z"))
    return conn.execute(f"SELECT {kept} FROM talk_versions ORDER BY 1, 2").fetchall()


def test_the_migration_keeps_every_value_id_and_reference(tmp_path: Path) -> None:
    conn = archive_before_compact(tmp_path / "a.db")
    columns = ", ".join(READABLE)
    polls = conn.execute(f"SELECT {columns} FROM fetches ORDER BY id").fetchall()
    views = {v: everything(conn, v) for v in ("feed_health", "poll_history")}
    old_versions = versions(conn)
    conn.close()
    db = open_archive(tmp_path / "a.db")  # migrates, foreign keys on
    assert db.execute(f"SELECT {columns} FROM fetches ORDER BY id").fetchall() == polls
    assert {v: everything(db.conn, v) for v in views} == views
    assert versions(db.conn) == old_versions
    dangling = db.execute("PRAGMA foreign_key_check(talk_versions)").fetchall()
    assert [row for row in dangling if row[2] == "fetches"] == []
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # The rows in the harvester's own format store no overrides.
    plain = db.execute("SELECT id FROM fetches WHERE overrides IS NULL ORDER BY id").fetchall()
    assert plain == [(3,), (13,), (14,)]
    db.close()


def test_a_migrated_archive_has_the_schema_of_a_new_one(tmp_path: Path) -> None:
    archive_before_compact(tmp_path / "old.db").close()
    open_archive(tmp_path / "old.db").close()
    open_archive(tmp_path / "new.db").close()
    assert schema(tmp_path / "old.db") == schema(tmp_path / "new.db")


def schema(path: Path) -> set[tuple[str, str, str, str | None]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    conn.close()
    return set(rows)


def test_latest_poll_queries_use_the_index(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    plans = [
        " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
        for sql, params in (
            (
                "SELECT id FROM fetches WHERE feed_id = ? AND outcome IN ('changed', 'unchanged')"
                " ORDER BY started_unix DESC, started_microsecond DESC, id DESC LIMIT 1",
                [1],
            ),
            ("SELECT * FROM feed_health", []),
        )
    ]
    assert all("idx_fetches_feed_id_started_unix" in plan for plan in plans), plans
    assert "SCAN y" not in plans[1]
    db.close()
