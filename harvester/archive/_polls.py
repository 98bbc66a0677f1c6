"""Writing a poll: its `fetches` row, what it confirms, and the versions it adds."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from harvester import textstore
from harvester.archive._connection import now_iso
from harvester.archive._feeds import FeedRow
from harvester.archive._notifications import queue_notifications
from harvester.diff import Changes, NewVersion
from harvester.model import TalkRecord
from harvester.redact import redact


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
    return write_fetch(
        db,
        {
            "feed_id": feed_id,
            "started_at": now_iso(facts.started_at),
            "finished_at": now_iso(facts.finished_at),
            "duration_ms": round(duration),
            "http_status": facts.http_status,
            "bytes": facts.bytes,
            "outcome": outcome,
            "error": None if error is None else redact(error),
        }
        | counts,
    )


# What a `fetches` row reads as (besides its id), in the table's order.
FETCH_COLUMNS = (
    "feed_id",
    "started_at",
    "finished_at",
    "duration_ms",
    "http_status",
    "bytes",
    "outcome",
    "events",
    "new",
    "changed",
    "removed",
    "restored",
    "unchanged",
    "stale",
    "error",
)
# `fetches` stores a few small columns; the others are generated from them (see
# migrations/0014_compact_fetches.sql), and `overrides` keeps, verbatim, any value that the
# generated columns would read otherwise. Only the SQL knows what they read.
FETCH_STORED = (
    "feed_id",
    "http_status",
    "bytes",
    "events",
    "error",
    "started_unix",
    "started_microsecond",
    "finished_after_us",
    "outcome_code",
    "overrides",
)
_INSERT_FETCH = """
    INSERT INTO fetches (feed_id, http_status, bytes, events, error, started_unix,
                         started_microsecond, finished_after_us, outcome_code, overrides)
    SELECT :feed_id, :http_status, :bytes, :events, :error, s, us,
           (CAST(strftime('%s', :finished_at) AS INTEGER) - s) * 1000000 + fus - us,
           code, CASE WHEN code IS NULL THEN json_object('outcome', :outcome) END
    FROM (SELECT CASE :outcome WHEN 'unchanged' THEN 0 WHEN 'not_modified' THEN 1
                               WHEN 'changed' THEN 2 WHEN 'error' THEN 3 END AS code,
                 CAST(strftime('%s', :started_at) AS INTEGER) AS s,
                 CASE WHEN substr(:started_at, 20, 1) = '.'
                      THEN CAST(substr(:started_at, 21, 6) AS INTEGER) ELSE 0 END AS us,
                 CASE WHEN substr(:finished_at, 20, 1) = '.'
                      THEN CAST(substr(:finished_at, 21, 6) AS INTEGER) ELSE 0 END AS fus)
"""
# The generated columns as read: every one but `unchanged`, then `unchanged`, which the SQL
# computes from the other counts as read.
_GENERATED = [name for name in FETCH_COLUMNS if name not in FETCH_STORED]
_READ_GENERATED = ([name for name in _GENERATED if name != "unchanged"], ["unchanged"])
# Latest start first: the stored columns in the index, for `ORDER BY started_at DESC`.
LATEST_FIRST = "ORDER BY started_unix DESC, started_microsecond DESC, id DESC"
_LAST_SUCCESS_SQL = (
    f"FROM fetches WHERE feed_id = ? AND outcome IN ('changed', 'unchanged') {LATEST_FIRST} LIMIT 1"
)


def write_fetch(db: Database, values: Mapping[str, Any]) -> int:
    """Insert a `fetches` row that reads back exactly as `values` (the readable columns,
    times as ISO text; any missing is NULL); returns its id.

    The stored columns are taken from `values`; whatever the generated columns then read
    otherwise goes into `overrides`.
    """
    values = {name: values.get(name) for name in FETCH_COLUMNS}
    fetch_id = int(db.execute(_INSERT_FETCH, values).lastrowid or 0)
    overrides = json.loads(
        db.execute(
            "SELECT coalesce(overrides, '{}') FROM fetches WHERE id = ?", [fetch_id]
        ).fetchone()[0]
    )  # an outcome with no code: the INSERT keeps it there
    for names in _READ_GENERATED:
        sql = f"SELECT {', '.join(names)} FROM fetches WHERE id = ?"  # noqa: S608 (schema names)
        read = db.execute(sql, [fetch_id])
        wrong = {
            name: values[name]
            for name, got in zip(names, read.fetchone(), strict=True)
            if got != values[name] or type(got) is not type(values[name])
        }
        if wrong:
            overrides |= wrong
            db.execute(
                "UPDATE fetches SET overrides = ? WHERE id = ?",
                [json.dumps(overrides, separators=(",", ":")), fetch_id],
            )
    return fetch_id


def record_success(
    db: Database,
    feed: FeedRow,
    facts: FetchFacts,
    outcome: str,
    changes: Changes | None,
    events: int,
    observed_at: datetime,
    *,
    body_fingerprint: str | None = None,
    texts: PreparedTexts | None = None,
) -> int:
    """Write one successful poll (inside the caller's transaction); returns the fetch id.

    With `changes` (a body was archived) the feed's body fingerprint becomes
    `body_fingerprint`; a 304 keeps the one of the body it confirms. `texts` is what
    `prepare_texts` made of the poll's records before its transaction.
    """
    counts = {"events": events} | (changes.counts if changes else {})
    fetch_id = insert_fetch(db, feed.id, facts, outcome, counts, None)
    before = _last_vouch(db, feed.id)
    stamp = before.dtstamp if changes is None else poll_dtstamp(changes, before.dtstamp)
    now = Vouch(now_iso(observed_at), stamp)
    _keep_floors_if_going_back(db, feed.id, before, now)
    if changes is not None:
        apply_changes(
            db,
            feed.id,
            changes,
            observed_at,
            fetch_id,
            per_talk_dtstamps=now.dtstamp is None,
            vouched=feed.vouched,
            texts=texts,
        )
    _mark_success(
        db,
        feed,
        facts,
        outcome,
        body_fingerprint if changes else feed.body_fingerprint,
        now,
    )
    return fetch_id


# --- what a poll vouches for (rule 2: no per-talk write for unchanged work) ---------------
#
# `talks.last_seen`/`talks.dtstamp` are views (migrations/0011_talk_state.sql): the largest
# of the talk's floors (talk_state) and the last poll (feeds.last_seen_at, last_dtstamp) of
# each feed that vouches for it, i.e. carried it at that poll with its current fingerprint
# (feed_talk_state.present = 1, last_seen NULL, same fingerprint). Before a feed stops
# vouching for a talk, or its poll values go back in time, the feed's values are kept in
# the talk's floors: the derived values never go down.


@dataclass(frozen=True)
class Vouch:
    """A feed's last successful poll: its time and the DTSTAMP its events shared (or None)."""

    seen_at: str | None
    dtstamp: str | None


def _last_vouch(db: Database, feed_id: int) -> Vouch:
    sql = "SELECT last_seen_at, last_dtstamp FROM feeds WHERE id = ?"
    return Vouch(*db.execute(sql, [feed_id]).fetchone())


def poll_dtstamp(changes: Changes, last: str | None) -> str | None:
    """The DTSTAMP every talk of the poll carries (the site stamps a download with one
    value), None when they do not share one, and `last` when the poll carries none."""
    stamps = {t.dtstamp for t in (*changes.unchanged, *changes.refingerprinted)}
    stamps |= {v.record.dtstamp for v in changes.versions if v.record is not None}
    if not stamps:
        return last
    return stamps.pop() if len(stamps) == 1 else None


def _keep_floors_if_going_back(db: Database, feed_id: int, before: Vouch, now: Vouch) -> None:
    """A poll older than the feed's last (an import with an earlier time), or one whose
    events do not share a DTSTAMP: the talks the feed vouches for keep its last values in
    their floors (a write per talk, for such polls only)."""
    seen_back = before.seen_at is not None and (now.seen_at or "") < before.seen_at
    stamp_back = before.dtstamp is not None and (now.dtstamp or "") < before.dtstamp
    if seen_back or stamp_back:
        _raise_floors(db, feed_id, before)


_RAISE_FLOORS = """
    UPDATE talk_state AS s SET
        last_seen = CASE WHEN :seen > coalesce(s.last_seen, '') THEN :seen ELSE s.last_seen END,
        dtstamp = CASE WHEN :stamp > coalesce(s.dtstamp, '') THEN :stamp ELSE s.dtstamp END
    FROM feed_talk_state AS ft
    WHERE ft.feed_id = :feed AND ft.present = 1 AND ft.last_seen IS NULL
      AND ft.uid = s.uid AND ft.fingerprint = s.fingerprint
      AND (:seen > coalesce(s.last_seen, '') OR :stamp > coalesce(s.dtstamp, ''))
"""


def _raise_floors(
    db: Database, feed_id: int, vouch: Vouch, uids: Iterable[str] | None = None
) -> None:
    """The floors of the talks `feed_id` vouches for (those of `uids`, if given) rise to
    the feed's `vouch`."""
    params = {"feed": feed_id, "seen": vouch.seen_at, "stamp": vouch.dtstamp}
    sql = _RAISE_FLOORS
    if uids is not None:
        params["uids"] = json.dumps(sorted(uids))
        sql += " AND ft.uid IN (SELECT value FROM json_each(:uids))"
    if vouch.seen_at is not None or vouch.dtstamp is not None:
        db.execute(sql, params)


# Two processes may poll one feed at once (the daemon and a cron sync), and the poll that
# finished first may commit last. The feed's health columns describe its latest poll, the
# one with the latest finish time `:at` (isoformat strings of one offset sort in time).
_MARK_SUCCESS_SQL = """
    UPDATE feeds SET
        last_fetched_at = max(coalesce(last_fetched_at, ''), :at),
        last_success_at = max(coalesce(last_success_at, ''), :at),
        last_outcome = iif(coalesce(last_fetched_at, '') <= :at, :outcome, last_outcome),
        consecutive_failures = iif(coalesce(last_fetched_at, '') <= :at, 0, consecutive_failures),
        last_error = iif(coalesce(last_fetched_at, '') <= :at, NULL, last_error),
        etag = :etag, last_modified = :last_modified, body_fingerprint = :body,
        gone_since = NULL, last_seen_at = :seen, last_dtstamp = :stamp
    WHERE id = :feed
"""
_MARK_FAILURE_SQL = """
    UPDATE feeds SET
        last_fetched_at = max(coalesce(last_fetched_at, ''), :at),
        last_outcome = iif(coalesce(last_fetched_at, '') <= :at, 'error', last_outcome),
        consecutive_failures = consecutive_failures + (coalesce(last_fetched_at, '') <= :at),
        last_error = iif(coalesce(last_fetched_at, '') <= :at, :error, last_error)
    WHERE id = :feed
"""


def _mark_success(
    db: Database,
    feed: FeedRow,
    facts: FetchFacts,
    outcome: str,
    body_fingerprint: str | None,
    vouch: Vouch,
) -> None:
    """The feed's row after a successful poll."""
    db.execute(
        _MARK_SUCCESS_SQL,
        {
            "at": now_iso(facts.finished_at),
            "outcome": outcome,
            "etag": facts.etag or feed.etag if outcome == "not_modified" else facts.etag,
            "last_modified": facts.last_modified or feed.last_modified
            if outcome == "not_modified"
            else facts.last_modified,
            "body": body_fingerprint,
            "seen": vouch.seen_at,
            "stamp": vouch.dtstamp,
            "feed": feed.id,
        },
    )


# The feed's present talks, and those of them still active with the fingerprint the feed
# gave them: the body shortcut holds only while the two counts are equal.
_VOUCHED_SQL = (
    "SELECT count(*), count(s.uid) FROM feed_talk_state ft LEFT JOIN talk_state s"
    " ON s.uid = ft.uid AND s.status = 'active' AND s.fingerprint = ft.fingerprint"
    " AND ft.last_seen IS NULL WHERE ft.feed_id = ? AND ft.present = 1"
)


def record_unchanged_body(
    db: Database,
    feed: FeedRow,
    facts: FetchFacts,
    body_fingerprint: str,
    dtstamp: str | None,
    observed_at: datetime,
) -> tuple[dict[str, int], int] | None:
    """A poll whose body is the last one again (DTSTAMP aside): archive it without a parse.

    Inside the caller's transaction, with `feed` read in it. Returns (counts, events), or
    None (nothing written) unless the archive is still as that last poll left it: same body
    fingerprint, no removals held back, and every talk the feed carries active with the
    fingerprint the feed last gave it, vouched for by its last poll. Then the full path
    would find every talk unchanged, and this writes what it would: one `fetches` row and
    the feed's row (its poll time and DTSTAMP, the body's one value), whatever the number
    of talks.
    """
    if feed.body_fingerprint != body_fingerprint or feed.held_removals:
        return None
    last = db.execute(f"SELECT events {_LAST_SUCCESS_SQL}", [feed.id]).fetchone()
    if not last or last[0] is None:
        return None
    present, still = db.execute(_VOUCHED_SQL, [feed.id]).fetchone()
    if still != present:  # another poll changed one of them: the full path must decide
        return None
    before = _last_vouch(db, feed.id)
    # What the full path would find: every talk carries the body's one DTSTAMP.
    now = Vouch(now_iso(observed_at), dtstamp if present else before.dtstamp)
    _keep_floors_if_going_back(db, feed.id, before, now)
    counts = dict.fromkeys(("new", "changed", "removed", "restored", "stale"), 0)
    counts["unchanged"] = present
    insert_fetch(db, feed.id, facts, "unchanged", {"events": last[0]} | counts, None)
    _mark_success(db, feed, facts, "unchanged", body_fingerprint, now)
    return counts, int(last[0])


def record_failure(db: Database, feed_id: int, facts: FetchFacts, error: str) -> int:
    """A failed poll: one `fetches` row and the feed's health columns, nothing else."""
    error = redact(error)
    fetch_id = insert_fetch(db, feed_id, facts, "error", {}, error)
    db.execute(
        _MARK_FAILURE_SQL, {"at": now_iso(facts.finished_at), "error": error, "feed": feed_id}
    )
    return fetch_id


def record_gone(db: Database, feed_id: int, at: datetime, gone_after: float) -> bool:
    """Rule 5b's evidence for a 404/410 poll: True once the feed, which answered 200 before,
    has answered 404/410 on polls at least `gone_after` seconds apart with no 200 between."""
    last_success, since = db.execute(
        "SELECT last_success_at, gone_since FROM feeds WHERE id = ?", [feed_id]
    ).fetchone()
    if last_success is None:
        return False  # never answered: a feed that fails, not one that is gone
    if since is None:
        db.execute("UPDATE feeds SET gone_since = ? WHERE id = ?", [now_iso(at), feed_id])
        return False
    return (at - datetime.fromisoformat(since)).total_seconds() >= gone_after


def apply_gone(
    db: Database, feed_id: int, changes: Changes, observed_at: datetime, fetch_id: int
) -> None:
    """The removals of a feed confirmed gone, recorded against the failed poll that did it."""
    apply_changes(db, feed_id, changes, observed_at, fetch_id)
    db.execute(
        "UPDATE fetches SET overrides = json_set(coalesce(overrides, '{}'), '$.removed', ?)"
        " WHERE id = ?",
        [changes.count("removed"), fetch_id],
    )


_CARRY = """
    INSERT INTO feed_talk_state (feed_id, uid, first_seen, last_seen, present, fingerprint)
    SELECT :feed, p.value ->> 0, :at, NULL, 1, p.value ->> 1
    FROM json_each(:given) AS p WHERE true
    ON CONFLICT (feed_id, uid) DO UPDATE SET last_seen = NULL, present = 1,
        fingerprint = excluded.fingerprint
    WHERE present IS NOT 1 OR last_seen IS NOT NULL OR fingerprint IS NOT excluded.fingerprint
"""


def apply_changes(
    db: Database,
    feed_id: int,
    changes: Changes,
    observed_at: datetime,
    fetch_id: int,
    *,
    per_talk_dtstamps: bool = False,
    vouched: Mapping[str, str | None] | None = None,
    texts: PreparedTexts | None = None,
) -> None:
    """The talk and membership rows of one poll's changes: the new versions, and the rows of
    the talks whose membership or fingerprint in this feed changes. A talk that stays
    unchanged in the feed is not written (its `last_seen`/`dtstamp` come from the feed's
    row), unless `per_talk_dtstamps` (the poll's events do not share one DTSTAMP).
    `vouched` (`FeedRow.vouched`, read in this transaction) spares the membership rows that
    would stay as they are from being sent to SQLite at all."""
    at = now_iso(observed_at)
    before = _last_vouch(db, feed_id)
    # Talks this feed stops vouching for keep what its last poll said of them.
    _raise_floors(db, feed_id, before, changes.left | changes.held_removals | set(changes.stale))
    for start in range(0, len(changes.versions), WRITE_BATCH):
        _write_versions(db, changes.versions[start : start + WRITE_BATCH], at, fetch_id, texts)
    queue_notifications(db, changes.versions, observed_at)
    db.conn.executemany(
        "UPDATE talk_state SET fingerprint = ?, dtstamp = ?, last_seen = ? WHERE uid = ?",
        [(r.fingerprint, r.dtstamp, at, r.uid) for r in changes.refingerprinted],
    )
    if per_talk_dtstamps:
        db.conn.executemany(
            "UPDATE talk_state SET dtstamp = ? WHERE uid = ? AND ? > coalesce(dtstamp, '')",
            [(t.dtstamp, t.uid, t.dtstamp) for t in changes.unchanged if t.dtstamp],
        )
    present = sorted(changes.present)
    carried = {v.uid: v.record.fingerprint for v in changes.versions if v.record is not None}
    carried |= {t.uid: t.fingerprint for t in (*changes.unchanged, *changes.refingerprinted)}
    vouched = vouched or {}
    given = [
        [u, carried.get(u)] for u in present if u not in vouched or vouched[u] != carried.get(u)
    ]
    # The fingerprint this feed gave each talk (none for a stale copy), written only where
    # it or the membership changes.
    db.execute(_CARRY, {"feed": feed_id, "at": at, "given": json.dumps(given)})
    db.conn.executemany(
        "UPDATE feed_talk_state SET present = 0,"
        " last_seen = coalesce(last_seen, ?) WHERE feed_id = ? AND uid = ?",
        [(before.seen_at, feed_id, uid) for uid in sorted(changes.left)],
    )
    db.conn.executemany(  # held back: still present, but not seen by this poll
        "UPDATE feed_talk_state SET last_seen = ? WHERE feed_id = ? AND uid = ?"
        " AND present = 1 AND last_seen IS NULL",
        [(before.seen_at, feed_id, uid) for uid in sorted(changes.held_removals)],
    )
    held = json.dumps(sorted(changes.held_removals)) if changes.held_removals else None
    db.execute(
        "UPDATE feeds SET held_removals = ? WHERE id = ? AND held_removals IS NOT ?",
        [held, feed_id, held],
    )


# The current version's keys that talk_state carries for the pages (migration 0015).
STATE_KEYS = ("series_id", "counter", "series_name", "dtstart", "dtend")

WRITE_BATCH = 500  # versions turned into rows at a time: memory stays bounded on big feeds


PreparedTexts = Mapping[tuple[Any, ...], textstore.Packed]


def prepare_texts(records: Iterable[TalkRecord]) -> PreparedTexts:
    """The stored form of the records' texts, made before the poll's transaction so that
    the write lock is not held for it (the versions written find theirs by content)."""
    rows = (record.content() | {"raw": record.raw} for record in records)
    return {textstore.text_key(row): textstore.packed(row) for row in rows}


def _write_versions(
    db: Database,
    versions: list[NewVersion],
    at: str,
    fetch_id: int,
    texts: PreparedTexts | None,
) -> None:
    """The talk_versions rows of new versions (at least one) and the talk_state rows that
    point at them."""
    inserts, updates, removals, rows = [], [], [], []
    for version in versions:
        record = version.record
        status = "removed" if version.change == "removed" else "active"
        talk: dict[str, Any] = {
            "uid": version.uid,
            "version": version.version,
            "status": status,
            "changed_at": at,
        } | {key: version.content.get(key) for key in STATE_KEYS}
        if record is not None:
            talk |= {"dtstamp": record.dtstamp, "fingerprint": record.fingerprint, "last_seen": at}
        if version.change == "new":
            inserts.append(talk | {"first_seen": at})
        elif record is None:
            removals.append(talk | {"removed_at": at, "removed_reason": version.removed_reason})
        else:
            updates.append(talk | {"removed_at": None, "removed_reason": None})
        rows.append(
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
                "kinds": json.dumps(list(version.kinds)),
                "automatic": int(version.automatic_reason is not None),
                "automatic_reason": version.automatic_reason,
                "previous_seen_at": version.previous_seen_at,
            }
        )
    if inserts:
        # A new talk's version row comes before its state row (whose search-index trigger
        # reads it), so the talk_versions.uid → talk_state check waits for the COMMIT.
        db.execute("PRAGMA defer_foreign_keys = ON")
    stored = textstore.stored_columns(rows[0])  # description: generated
    db.conn.executemany(
        _insert_sql("talk_versions", stored), (textstore.stored_row(row, texts) for row in rows)
    )
    for batch, write in ((inserts, _insert_sql), (updates, _update_sql), (removals, _update_sql)):
        if batch:
            db.conn.executemany(write("talk_state", list(batch[0])), batch)
    # The state rows point at the version rows just written (search: talks_fts).
    db.execute(
        "UPDATE talk_state SET version_id = (SELECT v.id FROM talk_versions v"
        " WHERE v.uid = talk_state.uid AND v.version = talk_state.version)"
        " WHERE uid IN (SELECT value FROM json_each(?))",
        [json.dumps([version.uid for version in versions])],
    )


def _insert_sql(table: str, columns: list[str]) -> str:
    names = ", ".join(f"[{c}]" for c in columns)
    values = ", ".join(f":{c}" for c in columns)
    return f"INSERT INTO [{table}] ({names}) VALUES ({values})"  # noqa: S608 (schema names)


def _update_sql(table: str, columns: list[str]) -> str:
    assignments = ", ".join(f"[{c}] = :{c}" for c in columns if c != "uid")
    return f"UPDATE [{table}] SET {assignments} WHERE uid = :uid"  # noqa: S608 (schema names)
