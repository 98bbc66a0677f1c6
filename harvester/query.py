"""Read-side queries behind `history`, `export` and `status` (no writes)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from harvester.talk import CONTENT_FIELDS, JSON_FIELDS

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
        row.pop("raw", None)
        history.append(row)
    return history


def feed_status(db: Database) -> list[dict[str, Any]]:
    """One row per feed: health columns and the counts of its latest poll."""
    sql = """
        SELECT f.id, f.name, f.url, f.url_hash, f.kind, f.enabled, f.added_at,
               f.last_fetched_at, f.last_success_at,
               f.last_outcome, f.consecutive_failures, f.last_error,
               x.events, x.new, x.changed, x.removed, x.restored, x.unchanged, x.duration_ms,
               (SELECT count(*) FROM feed_talks t WHERE t.feed_id = f.id AND t.present = 1)
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
