"""Store stage: the SQLite archive (sqlite-utils), one transaction per feed poll."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from harvester.diff import ArchiveState, Changes, FeedState, NewVersion, StoredTalk
from harvester.schema import migrate
from harvester.talk import CONTENT_FIELDS, TalkRecord
from harvester.urls import FeedKind, default_feed_name, feed_kind, mask_secrets, url_hash

BUSY_TIMEOUT_S = 60.0


class ArchiveError(Exception):
    """The archive cannot be opened or written; the message says which file and why."""


def open_archive(path: Path | str, *, file_mode: int = 0o600) -> Database:
    """Open (creating and migrating as needed) the archive at `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Created owner-only: the archive may hold what personal feeds revealed.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, file_mode))
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        db = Database(conn)
        db.execute("PRAGMA foreign_keys = ON")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.enable_wal()
        with immediate_transaction(db):
            migrate(db)
    except (OSError, sqlite3.Error) as exc:
        raise ArchiveError(f"{path}: cannot open the archive: {exc}") from None
    return db


@contextlib.contextmanager
def immediate_transaction(db: Database) -> Iterator[Database]:
    """BEGIN IMMEDIATE: take the write lock before reading the state a poll diffs against."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.rollback()
        raise
    else:
        db.execute("COMMIT")


def now_iso(moment: datetime) -> str:
    return moment.isoformat()


# --- feeds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedRow:
    id: int
    kind: FeedKind
    etag: str | None
    last_modified: str | None
    present: frozenset[str]
    held_removals: frozenset[str]


def ensure_feed(
    db: Database, url: str, name: str | None, at: datetime, kind: FeedKind | None = None
) -> int:
    """The feed's id, adding its row on first sight (URL stored with its token masked)."""
    key = url_hash(url)
    row = db.execute("SELECT id FROM feeds WHERE url_hash = ?", [key]).fetchone()
    if row:
        if name:
            db.execute(
                "UPDATE feeds SET name = ? WHERE id = ? AND name IS NOT ?", [name, row[0], name]
            )
        return int(row[0])
    cursor = db.execute(
        "INSERT INTO feeds (url, url_hash, name, kind, enabled, added_at, consecutive_failures)"
        " VALUES (?, ?, ?, ?, 1, ?, 0)",
        [
            mask_secrets(url),
            key,
            name or default_feed_name(url),
            kind or feed_kind(url),
            now_iso(at),
        ],
    )
    return int(cursor.lastrowid or 0)


def load_feed(db: Database, feed_id: int) -> FeedRow:
    row = db.execute(
        "SELECT kind, etag, last_modified, held_removals FROM feeds WHERE id = ?", [feed_id]
    ).fetchone()
    present = {
        r[0]
        for r in db.execute(
            "SELECT uid FROM feed_talks WHERE feed_id = ? AND present = 1", [feed_id]
        )
    }
    return FeedRow(
        id=feed_id,
        kind=row[0],
        etag=row[1],
        last_modified=row[2],
        present=frozenset(present),
        held_removals=frozenset(json.loads(row[3] or "[]")),
    )


def load_state(db: Database, feed: FeedRow, incoming: list[TalkRecord]) -> ArchiveState:
    """Everything the diff needs, read inside the poll's transaction."""
    uids = sorted({r.uid for r in incoming} | feed.present)
    talks = {}
    for row in db.query(
        "SELECT * FROM talks WHERE uid IN (SELECT value FROM json_each(?))", [json.dumps(uids)]
    ):
        talks[row["uid"]] = StoredTalk(
            uid=row["uid"],
            fingerprint=row["fingerprint"],
            dtstamp=row["dtstamp"],
            status=row["status"],
            version=row["version"],
            content={name: row[name] for name in CONTENT_FIELDS},
        )
    elsewhere = {
        r[0]
        for r in db.execute(
            "SELECT DISTINCT uid FROM feed_talks WHERE present = 1 AND feed_id != ?"
            " AND uid IN (SELECT value FROM json_each(?))",
            [feed.id, json.dumps(sorted(feed.present))],
        )
    }
    return ArchiveState(
        feed=FeedState(kind=feed.kind, present=feed.present, held_removals=feed.held_removals),
        talks=talks,
        carried_elsewhere=frozenset(elsewhere),
    )


# --- polls -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchFacts:
    """What one poll attempt saw, for its `fetches` row."""

    started_at: datetime
    finished_at: datetime
    http_status: int | None = None
    bytes: int | None = None
    etag: str | None = None
    last_modified: str | None = None


def insert_fetch(
    db: Database,
    feed_id: int,
    facts: FetchFacts,
    outcome: str,
    counts: dict[str, int],
    error: str | None,
) -> int:
    duration = (facts.finished_at - facts.started_at).total_seconds() * 1000
    row = {
        "feed_id": feed_id,
        "started_at": now_iso(facts.started_at),
        "finished_at": now_iso(facts.finished_at),
        "duration_ms": round(duration),
        "http_status": facts.http_status,
        "bytes": facts.bytes,
        "outcome": outcome,
        "error": error,
    } | counts
    return int(db.table("fetches").insert(row).last_pk or 0)


def record_success(
    db: Database,
    feed: FeedRow,
    facts: FetchFacts,
    outcome: str,
    changes: Changes | None,
    events: int,
    observed_at: datetime,
) -> int:
    """Write one successful poll (inside the caller's transaction); returns the fetch id."""
    counts = {"events": events} | (changes.counts if changes else {})
    fetch_id = insert_fetch(db, feed.id, facts, outcome, counts, None)
    if changes is not None:
        apply_changes(db, feed.id, changes, observed_at, fetch_id)
    db.execute(
        "UPDATE feeds SET last_fetched_at = ?, last_success_at = ?, last_outcome = ?,"
        " consecutive_failures = 0, last_error = NULL, etag = ?, last_modified = ?"
        " WHERE id = ?",
        [
            now_iso(facts.finished_at),
            now_iso(facts.finished_at),
            outcome,
            facts.etag or feed.etag if outcome == "not_modified" else facts.etag,
            facts.last_modified or feed.last_modified
            if outcome == "not_modified"
            else facts.last_modified,
            feed.id,
        ],
    )
    return fetch_id


def record_failure(db: Database, feed_id: int, facts: FetchFacts, error: str) -> int:
    """A failed poll: one `fetches` row and the feed's health columns, nothing else."""
    fetch_id = insert_fetch(db, feed_id, facts, "error", {}, error)
    db.execute(
        "UPDATE feeds SET last_fetched_at = ?, last_outcome = 'error',"
        " consecutive_failures = consecutive_failures + 1, last_error = ? WHERE id = ?",
        [now_iso(facts.finished_at), error, feed_id],
    )
    return fetch_id


def apply_changes(
    db: Database, feed_id: int, changes: Changes, observed_at: datetime, fetch_id: int
) -> None:
    at = now_iso(observed_at)
    for version in changes.versions:
        _write_version(db, version, at, fetch_id)
    db.conn.executemany(
        "UPDATE talks SET dtstamp = max(coalesce(dtstamp, ''), coalesce(?, '')), last_seen = ?"
        " WHERE uid = ?",
        [(r.dtstamp, at, r.uid) for r in changes.unchanged],
    )
    db.conn.executemany(
        "UPDATE talks SET fingerprint = ?, dtstamp = ?, last_seen = ? WHERE uid = ?",
        [(r.fingerprint, r.dtstamp, at, r.uid) for r in changes.refingerprinted],
    )
    db.conn.executemany(
        "INSERT INTO feed_talks (feed_id, uid, first_seen, last_seen, present)"
        " VALUES (?, ?, ?, ?, 1)"
        " ON CONFLICT (feed_id, uid) DO UPDATE SET last_seen = excluded.last_seen, present = 1",
        [(feed_id, uid, at, at) for uid in sorted(changes.present)],
    )
    db.conn.executemany(
        "UPDATE feed_talks SET present = 0 WHERE feed_id = ? AND uid = ?",
        [(feed_id, uid) for uid in sorted(changes.left)],
    )
    db.execute(
        "UPDATE feeds SET held_removals = ? WHERE id = ?",
        [json.dumps(sorted(changes.held_removals)) if changes.held_removals else None, feed_id],
    )


def _write_version(db: Database, version: NewVersion, at: str, fetch_id: int) -> None:
    record = version.record
    status = "removed" if version.change == "removed" else "active"
    talk: dict[str, Any] = dict(version.content) | {
        "version": version.version,
        "status": status,
        "changed_at": at,
    }
    if record is not None:
        talk |= {"dtstamp": record.dtstamp, "fingerprint": record.fingerprint, "last_seen": at}
    if version.change == "new":
        talk |= {"uid": version.uid, "first_seen": at}
        db.table("talks").insert(talk)
    else:
        talk["removed_at"] = at if status == "removed" else None
        db.table("talks").update(version.uid, talk)
    db.table("talk_versions").insert(
        dict(version.content)
        | {
            "uid": version.uid,
            "version": version.version,
            "observed_at": at,
            "fetch_id": fetch_id,
            "change": version.change,
            "changed_fields": json.dumps(list(version.changed_fields)),
            "status": status,
            "dtstamp": record.dtstamp if record else None,
            "fingerprint": record.fingerprint if record else None,
            "raw": record.raw if record else None,
        }
    )
