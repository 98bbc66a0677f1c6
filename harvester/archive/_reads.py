"""Reads: history, export and status; the daemon's heartbeat row; series metadata; what the
Datasette pages read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from harvester import textstore
from harvester.archive._connection import immediate_transaction
from harvester.model import CONTENT_FIELDS, JSON_FIELDS

EXPORT_FIELDS = ("uid", *CONTENT_FIELDS, "version", "first_seen", "changed_at")


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.loads(v) if k in JSON_FIELDS and v is not None else v for k, v in row.items()}


def talks_as_of(db: Database, as_of: datetime) -> list[dict[str, Any]]:
    """Every talk present at `as_of`, with the fields of its latest version at or before it."""
    columns = ", ".join(f"v.[{name}]" for name in CONTENT_FIELDS)
    # Only constant column names are interpolated into this SQL.
    sql = f"""
        WITH latest AS (
            SELECT uid, max(version) AS version, min(observed_at) AS first_seen
            FROM talk_versions WHERE observed_at <= :as_of GROUP BY uid
        )
        SELECT v.uid, {columns}, v.version, latest.first_seen, v.observed_at AS changed_at
        FROM talk_versions v JOIN latest ON v.uid = latest.uid AND v.version = latest.version
        WHERE v.change != 'removed'
        ORDER BY v.uid
    """  # noqa: S608
    return [_decoded(row) for row in db.query(sql, {"as_of": as_of.isoformat()})]


def talk_history(db: Database, uid: str) -> list[dict[str, Any]]:
    """Every version of one talk, oldest first (empty for an unknown UID)."""
    rows = db.query(
        "SELECT v.*, f.feed_id FROM talk_versions v LEFT JOIN fetches f ON f.id = v.fetch_id"
        " WHERE v.uid = ? ORDER BY v.version",
        [uid],
    )
    history = []
    for row in rows:
        row = _decoded(row)
        row["changed_fields"] = json.loads(row["changed_fields"] or "[]")
        row["kinds"] = json.loads(row["kinds"] or "[]")
        row["automatic"] = bool(row["automatic"])
        for name in ("raw", *textstore.STORED):
            row.pop(name, None)
        history.append(row)
    return history


def feed_status(db: Database) -> list[dict[str, Any]]:
    """One row per feed: health columns and the counts of its latest poll."""
    sql = """
        SELECT f.id, f.name, f.url, f.url_hash, f.kind, f.enabled, f.added_at,
               f.last_fetched_at, f.last_success_at,
               f.last_outcome, f.consecutive_failures, f.last_error,
               x.events, x.new, x.changed, x.removed, x.restored, x.unchanged, x.duration_ms,
               (SELECT count(*) FROM feed_talk_state t WHERE t.feed_id = f.id AND t.present = 1)
                   AS talks
        FROM feeds f
        LEFT JOIN fetches x ON x.id = (
            SELECT id FROM fetches WHERE feed_id = f.id ORDER BY id DESC LIMIT 1)
        ORDER BY f.name
    """
    return list(db.query(sql))


def reschedule_links(db: Database, uid: str) -> dict[str, Any]:
    """How a talk relates to a reschedule, as far as the archive can tell.

    `old_slot_of`: for an old slot (`<series>/-N`), the talk that moved away from it;
    `old_slots`: for a moved talk, the old slots the site kept (see the
    `rescheduled_slots` view).
    """
    moved = db.execute(
        "SELECT talk_uid, new_dtstart FROM rescheduled_slots WHERE old_slot_uid = ?", [uid]
    ).fetchone()
    slots = db.execute(
        "SELECT old_slot_uid FROM rescheduled_slots WHERE talk_uid = ? ORDER BY old_slot_uid",
        [uid],
    ).fetchall()
    return {
        "old_slot_of": moved[0] if moved else None,
        "moved_to_dtstart": moved[1] if moved else None,
        "old_slots": [row[0] for row in slots],
    }


# The daemon's heartbeat row (`daemon`, id 1; see harvester.health).

DAEMON_COLUMNS = (
    "pid",
    "host",
    "version",
    "config",
    "feeds",
    "started_at",
    "heartbeat_at",
    "heartbeat_every",
    "stopped_at",
)


def write_daemon_start(db: Database, row: Mapping[str, Any]) -> None:
    """The row of a daemon that starts, replacing the row of any earlier daemon."""
    values = {name: row.get(name) for name in DAEMON_COLUMNS}
    columns = ", ".join(DAEMON_COLUMNS)
    placeholders = ", ".join(f":{name}" for name in DAEMON_COLUMNS)
    with immediate_transaction(db):
        db.execute(
            f"INSERT OR REPLACE INTO daemon (id, {columns}) VALUES (1, {placeholders})",  # noqa: S608
            values,
        )


def write_daemon_beat(db: Database, pid: int, at: str, feeds: int) -> None:
    with immediate_transaction(db):
        db.execute(
            "UPDATE daemon SET heartbeat_at = ?, feeds = ?"
            " WHERE id = 1 AND pid = ? AND stopped_at IS NULL",
            [at, feeds, pid],
        )


def write_daemon_stop(db: Database, pid: int, at: str) -> None:
    with immediate_transaction(db):
        db.execute(
            "UPDATE daemon SET heartbeat_at = ?, stopped_at = ? WHERE id = 1 AND pid = ?",
            [at, at, pid],
        )


def daemon_row(db: Database) -> dict[str, Any] | None:
    """The heartbeat row, or None when no daemon ever used this archive."""
    rows = list(db.query(f"SELECT {', '.join(DAEMON_COLUMNS)} FROM daemon WHERE id = 1"))  # noqa: S608
    return rows[0] if rows else None


# Series metadata (`series`; see harvester.series).


def upsert_series(db: Database, rows: Iterable[tuple[Any, ...]]) -> None:
    """(shortname, name, institutions, topics, timezone, refreshed_at) per series."""
    with immediate_transaction(db):
        db.conn.executemany(
            "INSERT INTO series (shortname, name, institutions, topics, timezone, refreshed_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (shortname) DO UPDATE SET"
            " name = excluded.name, institutions = excluded.institutions,"
            " topics = excluded.topics, timezone = excluded.timezone,"
            " refreshed_at = excluded.refreshed_at",
            list(rows),
        )


def mark_series_checked(db: Database, shortnames: Iterable[str], at: str) -> None:
    """Only `refreshed_at` moves (what was known of each series before is kept)."""
    with immediate_transaction(db):
        db.conn.executemany(
            "INSERT INTO series (shortname, refreshed_at) VALUES (?, ?)"
            " ON CONFLICT (shortname) DO UPDATE SET refreshed_at = excluded.refreshed_at",
            [(name, at) for name in shortnames],
        )


def series_of_site_talks(db: Database, base_url: str) -> set[str]:
    """The series of every talk that a feed under `base_url` ever carried."""
    prefix = base_url.rstrip("/") + "/"
    rows = db.execute(
        "SELECT DISTINCT t.series_id FROM talks t"
        " JOIN feed_talk_state ft ON ft.uid = t.uid JOIN feeds f ON f.id = ft.feed_id"
        " WHERE t.series_id IS NOT NULL AND substr(f.url, 1, ?) = ?",
        [len(prefix), prefix],
    )
    return {row[0] for row in rows}


def series_refreshed_since(db: Database, shortnames: Iterable[str], since: str) -> set[str]:
    """Those of `shortnames` refreshed after `since`."""
    return {
        row[0]
        for row in db.execute(
            "SELECT shortname FROM series WHERE refreshed_at > ?"
            " AND shortname IN (SELECT value FROM json_each(?))",
            [since, json.dumps(sorted(set(shortnames)))],
        )
    }


def series_names(db: Database) -> dict[str, str]:
    """shortname → name of the series the API named."""
    return {row[0]: row[1] for row in db.execute("SELECT shortname, name FROM series") if row[1]}


# What the Datasette pages read (on Datasette's own connections, hence sqlite3.Connection).


def _dict_rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def talks_by_uid(conn: sqlite3.Connection, uids: Iterable[str]) -> list[dict[str, Any]]:
    """The talks with these UIDs as they are now (the fields the calendar shows), by start."""
    cursor = conn.execute(
        "SELECT uid, series_id, counter, title, speaker, speakers, series_name, abstract, room,"
        " talk_url, livestream_url, comments, dtstart, dtend, version, status, changed_at"
        " FROM talks WHERE uid IN (SELECT value FROM json_each(?)) ORDER BY dtstart, uid",
        [json.dumps(list(uids))],
    )
    return [_decoded(row) for row in _dict_rows(cursor)]


def talk_page(conn: sqlite3.Connection, uid: str) -> list[dict[str, Any]]:
    """Every version of one talk, newest first, with what changed (the talk page)."""
    cursor = conn.execute(
        "SELECT observed_at, version, change_kind, what_changed, title, speaker, dtstart, room,"
        " automatic, automatic_reason, previous_seen_at, status"
        " FROM talk_changes WHERE uid = ? ORDER BY version DESC",
        [uid],
    )
    return _dict_rows(cursor)


def recently_changed_talks(conn: sqlite3.Connection, limit: int = 30) -> list[dict[str, Any]]:
    """The talks that changed last (not first sightings), newest first: one row a talk."""
    cursor = conn.execute(
        "SELECT uid, title, series_name, max(observed_at) AS observed_at FROM ("
        "  SELECT uid, title, series_name, observed_at FROM talk_versions"
        "  WHERE change != 'new' ORDER BY observed_at DESC LIMIT ?"
        ") GROUP BY uid ORDER BY observed_at DESC",
        [limit * 3],
    )
    return _dict_rows(cursor)[:limit]


def weekly_changes(conn: sqlite3.Connection, since: str) -> list[dict[str, Any]]:
    """Changes per week and kind from the week of `since` (an ISO date) on."""
    cursor = conn.execute(
        "SELECT week, kind, changes FROM weekly_changes WHERE week >= date(?, '-6 days',"
        " 'weekday 1') ORDER BY week, kind",
        [since],
    )
    return _dict_rows(cursor)
