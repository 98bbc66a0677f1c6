"""Following (`[[follow]]`): the series topics bring in (`series.followed_since`,
`followed_by`, `left_at`), the check of a notify `match` query, and the weekly digests
(rows of `notifications` with uid 'digest/<week>' and a message)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlite_utils import Database

from harvester.archive._connection import immediate_transaction, meta, now_iso, set_meta
from harvester.archive._notifications import lease
from harvester.redact import redact


def search_problem(query: str) -> str | None:
    """Why the archive's search (FTS5, talks_fts's tokenizer) cannot run `query`, or None."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(
            "CREATE VIRTUAL TABLE talks_fts USING FTS5 (title, speaker, abstract, series_name,"
            " tokenize='porter unicode61 remove_diacritics 2')"
        )
        conn.execute("SELECT rowid FROM talks_fts WHERE talks_fts MATCH ?", [query]).fetchall()
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        conn.close()
    return None


FOLLOW_REFRESHED_KEY = "follow_refreshed_at"  # archive_meta: the last topic search, and of what


def follow_refreshed(db: Database) -> dict[str, Any] | None:
    """When the topics were last searched, and which `[[follow]]` entries they were."""
    stored = meta(db, FOLLOW_REFRESHED_KEY)
    try:
        value = json.loads(stored) if stored else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def record_followed(
    db: Database, found: Mapping[str, str], entries: Iterable[str], at: datetime
) -> tuple[list[str], list[str]]:
    """One transaction: the series the topics bring in now (shortname → why) are followed,
    those no longer in any topic leave; returns (joined, left), sorted. A series that was
    followed and stays keeps its `followed_since`."""
    moment = now_iso(at)
    with immediate_transaction(db):
        before = {
            row[0]
            for row in db.execute(
                "SELECT shortname FROM series WHERE followed_since IS NOT NULL AND left_at IS NULL"
            )
        }
        db.conn.executemany(
            "INSERT INTO series (shortname, followed_since, followed_by) VALUES (?, ?, ?)"
            " ON CONFLICT (shortname) DO UPDATE SET followed_by = excluded.followed_by,"
            " followed_since = CASE WHEN series.followed_since IS NULL"
            " OR series.left_at IS NOT NULL THEN excluded.followed_since"
            " ELSE series.followed_since END, left_at = NULL",
            [(name, moment, why) for name, why in sorted(found.items())],
        )
        left = sorted(before - set(found))
        db.conn.executemany(
            "UPDATE series SET left_at = ? WHERE shortname = ?", [(moment, name) for name in left]
        )
        refreshed = {"at": moment, "follow": sorted(entries)}
        set_meta(db, FOLLOW_REFRESHED_KEY, json.dumps(refreshed))
    return sorted(set(found) - before), left


def followed_series(db: Database, *, with_left: bool = False) -> list[dict[str, Any]]:
    """The series `[[follow]]` brought in (those that left too, if asked), by shortname."""
    return [
        dict(row)
        for row in db.query(
            "SELECT shortname, name, followed_since, followed_by, left_at FROM series"
            " WHERE followed_since IS NOT NULL AND (:with_left OR left_at IS NULL)"
            " ORDER BY shortname",
            {"with_left": int(with_left)},
        )
    ]


_WEEK_TALKS_SQL = (
    "SELECT uid, series_id, series_name, title, speaker, speakers, dtstart, dtend, talk_url"
    " FROM talks WHERE status = 'active' AND coalesce(counter, 0) >= 0"
    " AND dtstart >= :start AND dtstart < :end"
    " AND (:series IS NULL OR series_id IN (SELECT value FROM json_each(:series)))"
    " {match} ORDER BY dtstart, uid"
)


def talks_between(
    db: Database, start: datetime, end: datetime, series: Iterable[str] | None, match: str | None
) -> list[dict[str, Any]]:
    """Active talks starting in [start, end), of `series` (None: all), that `match` finds
    (None: every one)."""
    sql = _WEEK_TALKS_SQL.format(
        match=""
        if match is None
        else "AND version_id IN (SELECT rowid FROM talks_fts WHERE talks_fts MATCH :match)"
    )
    params = {
        # As the archive writes a talk's start: `2026-12-10T15:00:00+00:00`.
        "start": start.astimezone(UTC).isoformat(timespec="seconds"),
        "end": end.astimezone(UTC).isoformat(timespec="seconds"),
        "series": None if series is None else json.dumps(sorted(series)),
        "match": match,
    }
    try:
        return [dict(row) for row in db.query(sql, params)]
    except sqlite3.OperationalError:  # a query checked by an older release
        return []


def digest_uid(week: str) -> str:
    return f"digest/{week}"


def digest_queued(db: Database, key: str, week: str) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM notifications WHERE uid = ? AND version = 0 AND target = ?",
            [digest_uid(week), key],
        ).fetchone()
        is not None
    )


def queue_digest(db: Database, key: str, week: str, title: str, body: str, at: datetime) -> bool:
    """One outbox row for the target's digest of `week`; False when it was queued before
    (by this process or another)."""
    moment = now_iso(at)
    with immediate_transaction(db):
        cursor = db.execute(
            "INSERT INTO notifications (uid, version, target, created_at, next_attempt_at,"
            " title, body) VALUES (?, 0, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [digest_uid(week), key, moment, moment, redact(title), redact(body)],
        )
        return cursor.rowcount == 1


def claim_digests(
    db: Database, keys: Iterable[str], now: datetime, lease_until: datetime, *, retry: bool
) -> list[dict[str, Any]]:
    """As `claim_notifications`, for the due digest rows (each with its own message)."""
    sql = (
        "SELECT id, target, attempts, uid, title, body FROM notifications"
        " WHERE version = 0 AND body IS NOT NULL"
        " AND (status = 'pending' AND (:retry OR coalesce(next_attempt_at, '') <= :now)"
        " OR :retry AND status = 'failed')"
        " AND target IN (SELECT value FROM json_each(:keys))"
        " AND coalesce(claimed_until, '') <= :now ORDER BY id"
    )
    return lease(db, sql, keys, now, lease_until, retry)
