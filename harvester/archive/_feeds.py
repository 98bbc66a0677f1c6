"""Feeds and what a poll diffs against: their rows, URL keys, the talks they carry."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlite_utils import Database

from harvester.archive._connection import meta, now_iso
from harvester.diff import ArchiveState, FeedState, StoredTalk
from harvester.errors import StaleKnowledgeError
from harvester.model import CONTENT_FIELDS, KnownTalk, TalkRecord
from harvester.redact import redact
from harvester.site import FeedKind, default_feed_name, feed_kind


@dataclass(frozen=True)
class FeedRow:
    id: int
    kind: FeedKind
    etag: str | None
    last_modified: str | None
    present: frozenset[str]
    held_removals: frozenset[str]
    body_fingerprint: str | None = None
    # uid → the fingerprint this feed last gave it, for the present talks it still vouches
    # for (feed_talk_state.last_seen NULL); read with `present`.
    vouched: Mapping[str, str | None] = field(default_factory=dict)


URL_SALT_KEY = "url_hash_salt"


def url_key(db: Database, url: str) -> str:
    """`feeds.url_hash` of `url` in this archive: HMAC-SHA256 keyed by the archive's salt.

    Without the salt (which lives only in the archive) a guessed personal-feed token
    cannot be checked against a leaked hash list.
    """
    salt = meta(db, URL_SALT_KEY)
    if salt is None:  # an archive from before 0006_archive_meta (not migrated)
        return legacy_url_hash(url)
    return hmac.new(salt.encode(), url.encode(), hashlib.sha256).hexdigest()


def legacy_url_hash(url: str) -> str:
    """The unsalted sha256 that releases before 0006_archive_meta stored as `url_hash`."""
    return hashlib.sha256(url.encode()).hexdigest()


def find_feed(db: Database, url: str, *, rekey: bool = False) -> int | None:
    """The id of the feed with this full URL, or None.

    A row still keyed by the old unsalted hash matches too; with `rekey` (inside the
    caller's write transaction) it is re-keyed with the archive's salt on that match.
    """
    key = url_key(db, url)
    row = db.execute(
        "SELECT id, url_hash FROM feeds WHERE url_hash IN (?, ?) ORDER BY url_hash != ? LIMIT 1",
        [key, legacy_url_hash(url), key],
    ).fetchone()
    if row is None:
        return None
    if rekey and row[1] != key:
        db.execute("UPDATE feeds SET url_hash = ? WHERE id = ?", [key, row[0]])
    return int(row[0])


def record_enabled(db: Database, enabled: Mapping[str, bool]) -> None:
    """`feeds.enabled` as the config says (full URL → enabled), for the feeds it names and
    the archive has; the others keep theirs."""
    ids = feed_ids(db, enabled)
    with db.conn:
        db.conn.executemany(
            "UPDATE feeds SET enabled = ? WHERE id = ? AND enabled IS NOT ?",
            [(int(on), ids[url], int(on)) for url, on in enabled.items() if url in ids],
        )


def feed_ids(db: Database, urls: Iterable[str]) -> dict[str, int]:
    """Full URL (from the config) → id of its archived feed, for the URLs the archive has.

    Read only: rows still under the old unsalted hash match, and are left as they are.
    """
    return {url: feed_id for url in urls if (feed_id := find_feed(db, url)) is not None}


def consecutive_failures(db: Database, url: str) -> int:
    """The feed's consecutive failed polls (0 for a feed the archive does not have)."""
    feed_id = find_feed(db, url)
    if feed_id is None:
        return 0
    row = db.execute("SELECT consecutive_failures FROM feeds WHERE id = ?", [feed_id]).fetchone()
    return int(row[0] or 0) if row else 0


def ensure_feed(
    db: Database, url: str, name: str | None, at: datetime, kind: FeedKind | None = None
) -> int:
    """The feed's id, adding its row on first sight (URL stored with its secrets masked).

    Inside the caller's write transaction.
    """
    feed_id = find_feed(db, url, rekey=True)
    if feed_id is not None:
        if name:
            name = redact(name)
            db.execute(
                "UPDATE feeds SET name = ? WHERE id = ? AND name IS NOT ?", [name, feed_id, name]
            )
        return feed_id
    cursor = db.execute(
        "INSERT INTO feeds (url, url_hash, name, kind, enabled, added_at, consecutive_failures)"
        " VALUES (?, ?, ?, ?, 1, ?, 0)",
        [
            redact(url),
            url_key(db, url),
            redact(name or default_feed_name(url)),
            kind or feed_kind(url),
            now_iso(at),
        ],
    )
    return int(cursor.lastrowid or 0)


def load_feed(db: Database, feed_id: int, *, with_present: bool = True) -> FeedRow:
    """The feed's row; `with_present=False` leaves `present` empty (it is not needed yet)."""
    row = db.execute(
        "SELECT kind, etag, last_modified, held_removals, body_fingerprint FROM feeds WHERE id = ?",
        [feed_id],
    ).fetchone()
    rows = []
    if with_present:
        rows = db.execute(
            "SELECT uid, fingerprint, last_seen IS NULL FROM feed_talk_state"
            " WHERE feed_id = ? AND present = 1",
            [feed_id],
        ).fetchall()
    return FeedRow(
        id=feed_id,
        kind=row[0],
        etag=row[1],
        last_modified=row[2],
        present=frozenset(r[0] for r in rows),
        held_removals=frozenset(json.loads(row[3] or "[]")),
        body_fingerprint=row[4],
        vouched={r[0]: r[1] for r in rows if r[2]},
    )


# By uid, whatever the planner's statistics: the index on status would read every active talk.
ACTIVE_FINGERPRINTS_SQL = (
    "SELECT t.uid, t.fingerprint FROM json_each(?) AS k CROSS JOIN talk_state t"
    " ON t.uid = k.value WHERE t.status = 'active'"
)


def active_fingerprints(db: Database, uids: list[str]) -> dict[str, str]:
    """UID → fingerprint of those of `uids` the archive has as active talks."""
    return dict(db.execute(ACTIVE_FINGERPRINTS_SQL, [json.dumps(uids)]).fetchall())


# What the diff compares (not `raw`: it would be decompressed for nothing).
_STORED_TALKS_SQL = (
    "SELECT uid, fingerprint, dtstamp, status, version, last_seen, "  # noqa: S608 (schema names)
    + ", ".join(f"[{name}]" for name in CONTENT_FIELDS)
    + " FROM talks WHERE uid IN (SELECT value FROM json_each(?))"
)


def load_state(
    db: Database, feed: FeedRow, incoming: list[TalkRecord], known: Iterable[KnownTalk] = ()
) -> ArchiveState:
    """Everything the diff needs, read inside the poll's transaction.

    Known talks (unparsed, see parse.py) are only checked: still active with the same
    fingerprint, else StaleKnowledgeError (the caller then takes the full parse).
    """
    known = list(known)
    expected = {k.uid: k.fingerprint for k in known}  # an object: json_each reads it fastest
    known_uids = set(expected)
    if known:
        still = db.execute(
            "SELECT count(*) FROM json_each(?) AS k CROSS JOIN talk_state t ON t.uid = k.key"
            " WHERE t.status = 'active' AND t.fingerprint = k.value",
            [json.dumps(expected)],
        ).fetchone()[0]
        if still != len(known):  # a UID known twice counts once: not sure, parse in full
            raise StaleKnowledgeError("another poll changed talks of this feed meanwhile")
    incoming_uids = {r.uid for r in incoming}
    uids = sorted((incoming_uids | feed.present) - known_uids)
    talks = {}
    for row in db.query(_STORED_TALKS_SQL, [json.dumps(uids)]):
        content = {name: row.pop(name) for name in CONTENT_FIELDS}
        talks[row["uid"]] = StoredTalk(**row, content=content)
    leaving = feed.present - incoming_uids - known_uids
    elsewhere = {
        r[0]
        for r in db.execute(
            "SELECT DISTINCT uid FROM feed_talk_state WHERE present = 1 AND feed_id != ?"
            " AND uid IN (SELECT value FROM json_each(?))",
            [feed.id, json.dumps(sorted(leaving))],
        )
    }
    return ArchiveState(
        feed=FeedState(kind=feed.kind, present=feed.present, held_removals=feed.held_removals),
        talks=talks,
        carried_elsewhere=frozenset(elsewhere),
    )
