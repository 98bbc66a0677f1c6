"""The notifications outbox (`[[notify]]`): targets by key, with their filters on words and
speakers (`notify_targets.match`, `speakers`); one row per (version, target)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from harvester.archive._connection import immediate_transaction, now_iso
from harvester.diff import NewVersion
from harvester.notify import Target as NotifyTarget
from harvester.notify import wants
from harvester.redact import redact


def register_notify_targets(db: Database, targets: Iterable[NotifyTarget], at: datetime) -> None:
    """The config's targets (keys and filters, never URLs) become the active ones; targets
    no longer configured stay, inactive, so that their rows keep their meaning."""
    targets = list(targets)
    rows = [
        {
            "key": t.key,
            "series": None if t.series is None else json.dumps(sorted(t.series)),
            "kinds": json.dumps(sorted(t.kinds)),
            "upcoming_only": int(t.upcoming_only),
            "updated_at": now_iso(at),
        }
        for t in targets
    ]
    current = {
        tuple(r)
        for r in db.execute(
            "SELECT key, series, kinds, upcoming_only FROM notify_targets WHERE active = 1"
        )
    }
    wanted = {(r["key"], r["series"], r["kinds"], r["upcoming_only"]) for r in rows}
    if current != wanted:  # the usual case: nothing to write
        with immediate_transaction(db):
            db.execute("UPDATE notify_targets SET active = 0 WHERE active = 1")
            db.conn.executemany(
                "INSERT INTO notify_targets (key, series, kinds, upcoming_only, active, updated_at)"
                " VALUES (:key, :series, :kinds, :upcoming_only, 1, :updated_at)"
                " ON CONFLICT (key) DO UPDATE SET series = excluded.series,"
                " kinds = excluded.kinds, upcoming_only = excluded.upcoming_only, active = 1,"
                " updated_at = excluded.updated_at",
                rows,
            )
    _register_target_filters(db, targets)


def _register_target_filters(db: Database, targets: Iterable[NotifyTarget]) -> None:
    """The targets' `match` and `speakers`, where they differ from what is stored."""
    wanted = {
        t.key: (t.match, json.dumps(list(t.speakers), ensure_ascii=False) if t.speakers else None)
        for t in targets
    }
    stored = {
        row[0]: (row[1], row[2])
        for row in db.execute("SELECT key, match, speakers FROM notify_targets WHERE active = 1")
    }
    changed = [(*filters, key) for key, filters in wanted.items() if stored.get(key) != filters]
    if changed:
        with immediate_transaction(db):
            db.conn.executemany(
                "UPDATE notify_targets SET match = ?, speakers = ? WHERE key = ?", changed
            )


def _active_notify_targets(db: Database) -> list[NotifyTarget]:
    return [
        NotifyTarget(
            key=key,
            url="",
            series=None if series is None else frozenset(json.loads(series)),
            kinds=frozenset(json.loads(kinds)),
            upcoming_only=bool(upcoming_only),
            match=match,
            speakers=tuple(json.loads(speakers)) if speakers else (),
        )
        for key, series, kinds, upcoming_only, match, speakers in db.execute(
            "SELECT key, series, kinds, upcoming_only, match, speakers FROM notify_targets"
            " WHERE active = 1"
        )
    ]


_MATCHING_SQL = (
    "SELECT s.uid FROM json_each(:uids) j JOIN talk_state s ON s.uid = j.value"
    " JOIN talks_fts ON talks_fts.rowid = s.version_id WHERE talks_fts MATCH :match"
)


def _matched_versions(
    db: Database, targets: list[NotifyTarget], versions: list[NewVersion]
) -> set[tuple[str, str]]:
    """(target key, uid) of the new versions each target's `match` finds: the archive's own
    search over the talk's row in talks_fts (written before this, in the same transaction)."""
    uids = json.dumps(sorted({v.uid for v in versions}))
    found: set[tuple[str, str]] = set()
    for target in targets:
        if target.match is None:
            continue
        try:
            rows = db.execute(_MATCHING_SQL, {"uids": uids, "match": target.match}).fetchall()
        except sqlite3.OperationalError:  # a query checked by an older release: matches nothing
            continue
        found |= {(target.key, row[0]) for row in rows}
    return found


def queue_notifications(db: Database, versions: list[NewVersion], observed_at: datetime) -> None:
    """Inside the poll's transaction: one outbox row per (new version, target that wants it)."""
    if not versions:
        return
    targets = _active_notify_targets(db)
    if not targets:
        return
    at = now_iso(observed_at)
    matched = _matched_versions(db, targets, versions)
    rows = []
    for version in versions:
        change = dict(version.content) | {
            "uid": version.uid,
            "change": version.change,
            "kinds": list(version.kinds),
            "automatic": version.automatic_reason is not None,
        }
        rows += [
            (version.uid, version.version, target.key, at, at)
            for target in targets
            if wants(target, change, observed_at, matched=(target.key, version.uid) in matched)
        ]
    db.conn.executemany(
        "INSERT INTO notifications (uid, version, target, created_at, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        rows,
    )


_OUTBOX_FIELDS = ("title", "speaker", "dtstart", "dtend")
_CLAIM_SQL = (
    "SELECT n.id, n.target, n.attempts, v.uid, v.version, v.change, v.kinds, v.automatic,"
    " v.series_id, v.series_name, v.title, v.speaker, v.dtstart, v.dtend, v.talk_url,"
    " {previous} FROM notifications n"
    " JOIN talk_versions v ON v.uid = n.uid AND v.version = n.version"
    " LEFT JOIN talk_versions p ON p.uid = n.uid AND p.version = n.version - 1"
    " WHERE {due} AND n.target IN (SELECT value FROM json_each(:keys))"
    " AND coalesce(n.claimed_until, '') <= :now ORDER BY n.id"
)


def claim_notifications(
    db: Database, keys: Iterable[str], now: datetime, lease_until: datetime, *, retry: bool
) -> list[dict[str, Any]]:
    """Take the due rows of these targets for one send (a lease, so that two processes do
    not send one row twice), each with its version's fields and the previous version's as
    `previous_<field>`, oldest first. `retry`: failed rows and rows backing off too."""
    due = "n.status IN ('pending', 'failed')" if retry else "n.status = 'pending'"
    if not retry:
        due += " AND coalesce(n.next_attempt_at, '') <= :now"
    previous = ", ".join(f"p.[{f}] AS [previous_{f}]" for f in _OUTBOX_FIELDS)
    sql = _CLAIM_SQL.format(previous=previous, due=due)
    rows = lease(db, sql, keys, now, lease_until)
    for row in rows:
        row["kinds"] = json.loads(row["kinds"] or "[]")
    return rows


def lease(
    db: Database, sql: str, keys: Iterable[str], now: datetime, until: datetime, retry: bool = False
) -> list[dict[str, Any]]:
    """The outbox rows of targets `keys` that `sql` selects, claimed until `until` in the
    same transaction (`sql` reads :keys, :now and :retry)."""
    keys = sorted(set(keys))
    if not keys:
        return []
    params = {"now": now_iso(now), "keys": json.dumps(keys), "retry": int(retry)}
    with immediate_transaction(db):
        rows = [dict(r) for r in db.query(sql, params)]
        db.conn.executemany(
            "UPDATE notifications SET claimed_until = ? WHERE id = ?",
            [(now_iso(until), r["id"]) for r in rows],
        )
    return rows


def mark_notifications_sent(db: Database, ids: Iterable[int], at: datetime) -> None:
    with immediate_transaction(db):
        db.conn.executemany(
            "UPDATE notifications SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
            " claimed_until = NULL, last_error = NULL, next_attempt_at = NULL WHERE id = ?",
            [(now_iso(at), i) for i in ids],
        )


def mark_notifications_failed(
    db: Database, outcomes: Iterable[tuple[int, str, str | None]], error: str
) -> None:
    """Each (id, status, next attempt) after a failed send, with the (masked) error."""
    error = redact(error)
    with immediate_transaction(db):
        db.conn.executemany(
            "UPDATE notifications SET status = ?, attempts = attempts + 1, last_error = ?,"
            " next_attempt_at = ?, claimed_until = NULL WHERE id = ?",
            [(status, error, next_at, i) for i, status, next_at in outcomes],
        )


def notification_counts(db: Database) -> dict[str, int]:
    """Outbox rows by status: pending, failed, sent."""
    counts = dict.fromkeys(("pending", "failed", "sent"), 0)
    for status, count in db.execute("SELECT status, count(*) FROM notifications GROUP BY status"):
        counts[str(status)] = int(count)
    return counts
