"""Store stage: the SQLite archive (sqlite-utils), one transaction per feed poll."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlite_utils import Database

from harvester import _schema, textstore
from harvester.diff import ArchiveState, Changes, FeedState, NewVersion, StoredTalk
from harvester.errors import ArchiveError, ArchiveWriteError, StaleKnowledgeError
from harvester.model import CONTENT_FIELDS, JSON_FIELDS, KnownTalk, TalkRecord
from harvester.notify import Target as NotifyTarget
from harvester.notify import wants
from harvester.redact import redact
from harvester.site import FeedKind, default_feed_name, feed_kind

BUSY_TIMEOUT_S = 60.0
# A new archive's page size: a version row is about 2.7 KB (its abstract, and the event
# compressed), so 8 KB pages hold two and waste a third of themselves, 16 KB pages hold
# five or six (bench_size at 75,000 talks: see docs/performance.md).
PAGE_SIZE = 65536
WAL_CHECKPOINT_BYTES = 64 << 20
CACHE_KIB = 16384  # per connection: the pages of a large feed's talks stay in memory


def open_archive(path: Path | str, *, file_mode: int = 0o600, read_only: bool = False) -> Database:
    """Open the archive at `path`.

    Read-write (the default): created if missing, and migrated when a migration is pending
    (an up-to-date archive is opened without any write). `read_only`: opened with SQLite's
    `mode=ro` (plus `immutable=1` in a folder it cannot write, where no -shm can be made)
    and `query_only`; an archive that still needs a migration is migrated first when it
    can be written, else refused. A SQLite file that is not an archive is refused before
    anything is written; a damaged one is refused by `check_when_due`.
    """
    path = Path(path)
    _refuse_special_file(path)
    if read_only:
        return _open_read_only(path, file_mode=file_mode)
    conn: sqlite3.Connection | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Created owner-only: the archive may hold what personal feeds revealed.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, file_mode))
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        _refuse_foreign(conn, path)
        db = _database(conn)
        db.execute("PRAGMA foreign_keys = ON")
        if not db.execute("PRAGMA page_count").fetchone()[0]:  # a new file: set before WAL
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.enable_wal()
        # WAL's recommended level: a commit is atomic and survives a crash of the process;
        # only a power cut may lose the last polls (never half of one). Skipping the fsync
        # of every commit is what lets a sync of hundreds of feeds run at disk speed.
        db.execute("PRAGMA synchronous = NORMAL")
        # A poll with changes writes the pages of many talks: a larger WAL lets a
        # checkpoint copy each page once for many polls instead of once per poll.
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_BYTES // page_size}")
        db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        db.execute(f"PRAGMA journal_size_limit = {WAL_CHECKPOINT_BYTES}")
        if _schema.pending(conn):  # read only: an up-to-date archive starts no transaction
            with immediate_transaction(db):
                _refuse_foreign(conn, path)
                _schema.apply_pending(conn)
    except (OSError, sqlite3.Error) as exc:
        if conn is not None:
            conn.close()
        raise ArchiveError(
            f"{path}: cannot open the archive: {exc}{_read_only_hint(path)}"
        ) from None
    except ArchiveError:
        if conn is not None:
            conn.close()
        raise
    return db


def _refuse_special_file(path: Path) -> None:
    """A FIFO would block the open forever, a device would get a journal beside it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot open the archive: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ArchiveError(f"{path}: not a regular file; give --db an archive file")


def _open_read_only(path: Path, *, file_mode: int) -> Database:
    if not path.exists():  # as before: a first read makes an empty archive
        open_archive(path, file_mode=file_mode).close()
    conn: sqlite3.Connection | None = None
    try:
        conn = _connect_read_only(path)
        _refuse_foreign(conn, path)
        if _schema.pending(conn):
            conn.close()
            conn = None
            if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
                raise ArchiveError(
                    f"{path}: the archive needs an upgrade and is read-only here: run"
                    " `harvester sync` once where it can be written"
                )
            open_archive(path, file_mode=file_mode).close()
            conn = _connect_read_only(path)
        conn.execute("PRAGMA query_only = 1")
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise ArchiveError(
            f"{path}: cannot open the archive read-only: {exc}{_read_only_hint(path)}"
        ) from None
    except ArchiveError:
        if conn is not None:
            conn.close()
        raise
    return _database(conn)


def _database(conn: sqlite3.Connection) -> Database:
    # Without sqlite-utils' plugins: no third-party hook changes the archive's connections,
    # and no start-up scans every installed package for them (about 15 ms).
    return Database(conn, execute_plugins=False)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """`mode=ro`; in a folder this process cannot write, `immutable=1` as well, unless a
    -wal file still holds commits (then SQLite must read it, through the existing -shm)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    if not os.access(path.parent, os.W_OK):
        wal = Path(f"{path}-wal")
        if not (wal.exists() and wal.stat().st_size > 0):
            uri += "&immutable=1"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _read_only_hint(path: Path) -> str:
    """SQLite says "unable to open database file" when WAL cannot create its -shm file."""
    for place in (path.parent, path):
        if place.exists() and not os.access(place, os.W_OK):
            return f" ({place} is read-only)"
    return ""


def set_query_only(conn: sqlite3.Connection) -> None:
    """Make a connection (Datasette's, say) refuse every write, and read the archive's
    own secrets (the `url_hash` salt in `archive_meta`) as NULL: with the salt, anyone
    could confirm a guessed personal-feed token against `feeds.url_hash`."""
    conn.execute("PRAGMA query_only = 1")
    conn.set_authorizer(_without_archive_secrets)


def _without_archive_secrets(
    action: int, table: str | None, column: str | None, _db: str | None, _trigger: str | None
) -> int:
    if action == sqlite3.SQLITE_READ and table == "archive_meta" and column == "value":
        return sqlite3.SQLITE_IGNORE
    return sqlite3.SQLITE_OK


def _refuse_foreign(conn: sqlite3.Connection, path: Path) -> None:
    tables = _schema.foreign_tables(conn)
    if tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise ArchiveError(
            f"{path}: not a seminar-harvester archive (a SQLite file with other tables:"
            f" {shown}); refusing to touch it: give another --db"
        )


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(20)")]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        first = " ".join(problems[0].split())
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ArchiveError(
            f"{path}: the archive is damaged: {first}{more}; restore it from a backup"
            " (or recover it with `sqlite3 ARCHIVE .recover`)"
        )


CHECKED_AT_KEY = "quick_check_at"  # archive_meta: when `check_when_due` last found it sound
# A whole-file check reads every page (about 4 ms per MB): a cron sync every 30 minutes
# pays it once a day. Damage found between checks still fails its poll, with nothing written.
CHECK_EVERY_S = 86_400.0


def check_when_due(db: Database, now: datetime, every_s: float = CHECK_EVERY_S) -> bool:
    """`PRAGMA quick_check` when the last one is `every_s` old (or there was none): raises
    ArchiveError for a damaged file. Whether it ran."""
    row = db.execute("SELECT value FROM archive_meta WHERE key = ?", [CHECKED_AT_KEY]).fetchone()
    if row is not None and (now - datetime.fromisoformat(row[0])).total_seconds() < every_s:
        return False
    _quick_check(db.conn, Path(_archive_file(db)))
    with immediate_transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO archive_meta (key, value) VALUES (?, ?)",
            [CHECKED_AT_KEY, now_iso(now)],
        )
    return True


ANALYZED_AT_KEY = "analyzed_at"  # archive_meta: when `refresh_statistics_when_due` last ran
ANALYZE_EVERY_S = 86_400.0
# Rows ANALYZE reads per index: approximate statistics, made in milliseconds whatever the
# archive's size (SQLite's advice for applications that keep their own statistics).
ANALYSIS_LIMIT = 1000


def refresh_statistics_when_due(
    db: Database, now: datetime, every_s: float = ANALYZE_EVERY_S
) -> bool:
    """The query planner's statistics (`sqlite_stat1`), made anew by a writing run when
    they are a day old or missing: without them a search page plans a join badly (see
    docs/performance.md). Not `PRAGMA optimize`: before SQLite 3.46 it analyzes only the
    tables its own connection queried, and a sync never queries what the pages do.
    Whether it ran."""
    row = db.execute("SELECT value FROM archive_meta WHERE key = ?", [ANALYZED_AT_KEY]).fetchone()
    if row is not None and (now - datetime.fromisoformat(row[0])).total_seconds() < every_s:
        return False
    db.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
    with immediate_transaction(db):
        db.execute("ANALYZE")
        db.execute(
            "INSERT OR REPLACE INTO archive_meta (key, value) VALUES (?, ?)",
            [ANALYZED_AT_KEY, now_iso(now)],
        )
    return True


@contextlib.contextmanager
def immediate_transaction(db: Database) -> Iterator[Database]:
    """BEGIN IMMEDIATE: take the write lock before reading the state a poll diffs against.

    Any SQLite failure, the COMMIT's included, rolls the whole transaction back and is
    raised as ArchiveWriteError naming the archive file.
    """
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
        db.execute("COMMIT")
    except BaseException as exc:
        if db.conn.in_transaction:
            db.conn.rollback()
        if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
            raise ArchiveWriteError(
                f"{_archive_file(db)}: cannot write the archive ({exc}); nothing of this poll"
                " was written"
            ) from exc
        raise


def _archive_file(db: Database) -> str:
    try:
        return str(db.execute("PRAGMA database_list").fetchone()[2]) or "archive"
    except sqlite3.Error:
        return "archive"


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
    body_fingerprint: str | None = None
    # uid → the fingerprint this feed last gave it, for the present talks it still vouches
    # for (feed_talk_state.last_seen NULL); read with `present`.
    vouched: Mapping[str, str | None] = field(default_factory=dict)


URL_SALT_KEY = "url_hash_salt"


def _url_salt(db: Database) -> str | None:
    row = db.execute("SELECT value FROM archive_meta WHERE key = ?", [URL_SALT_KEY]).fetchone()
    return str(row[0]) if row else None


def url_key(db: Database, url: str) -> str:
    """`feeds.url_hash` of `url` in this archive: HMAC-SHA256 keyed by the archive's salt.

    Without the salt (which lives only in the archive) a guessed personal-feed token
    cannot be checked against a leaked hash list.
    """
    salt = _url_salt(db)
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
    row = db.execute("SELECT id FROM feeds WHERE url_hash = ?", [key]).fetchone()
    if row:
        return int(row[0])
    old = legacy_url_hash(url)
    if old == key:
        return None
    row = db.execute("SELECT id FROM feeds WHERE url_hash = ?", [old]).fetchone()
    if not row:
        return None
    if rekey:
        db.execute("UPDATE feeds SET url_hash = ? WHERE id = ?", [key, row[0]])
    return int(row[0])


def feed_ids(db: Database, urls: Iterable[str]) -> dict[str, int]:
    """Full URL (from the config) → id of its archived feed, for the URLs the archive has.

    Read only: rows still under the old unsalted hash match, and are left as they are.
    """
    found = {}
    for url in urls:
        feed_id = find_feed(db, url)
        if feed_id is not None:
            found[url] = feed_id
    return found


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
    return dict(
        db.execute(
            ACTIVE_FINGERPRINTS_SQL,
            [json.dumps(uids)],
        ).fetchall()
    )


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
        talks[row["uid"]] = StoredTalk(
            uid=row["uid"],
            fingerprint=row["fingerprint"],
            dtstamp=row["dtstamp"],
            status=row["status"],
            version=row["version"],
            content={name: row[name] for name in CONTENT_FIELDS},
            last_seen=row["last_seen"],
        )
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
_READ_GENERATED = (
    (
        (
            "started_at",
            "finished_at",
            "duration_ms",
            "outcome",
            "new",
            "changed",
            "removed",
            "restored",
            "stale",
        ),
        "SELECT started_at, finished_at, duration_ms, outcome, new, changed, removed,"
        " restored, stale FROM fetches WHERE id = ?",
    ),
    (("unchanged",), "SELECT unchanged FROM fetches WHERE id = ?"),
)
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
    for names, sql in _READ_GENERATED:
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
    row = db.execute(
        "SELECT last_seen_at, last_dtstamp FROM feeds WHERE id = ?", [feed_id]
    ).fetchone()
    return Vouch(row[0], row[1])


def poll_dtstamp(changes: Changes, last: str | None) -> str | None:
    """The DTSTAMP every talk of the poll carries (the site stamps a download with one
    value), None when they do not share one, and `last` when the poll carries none."""
    stamps = {t.dtstamp for t in (*changes.unchanged, *changes.refingerprinted)}
    stamps |= {v.record.dtstamp for v in changes.versions if v.record is not None}
    if not stamps:
        return last
    return stamps.pop() if len(stamps) == 1 else None


def _goes_back(before: Vouch, now: Vouch) -> bool:
    seen_back = before.seen_at is not None and (now.seen_at or "") < before.seen_at
    stamp_back = before.dtstamp is not None and (now.dtstamp or "") < before.dtstamp
    return seen_back or stamp_back


def _keep_floors_if_going_back(db: Database, feed_id: int, before: Vouch, now: Vouch) -> None:
    """A poll older than the feed's last (an import with an earlier time), or one whose
    events do not share a DTSTAMP: the talks the feed vouches for keep its last values in
    their floors (a write per talk, for such polls only)."""
    if _goes_back(before, now):
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
    _write_versions(db, changes.versions, at, fetch_id, texts)
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


_VERSION_COLUMNS = (
    "uid",
    "version",
    "observed_at",
    "fetch_id",
    "change",
    "changed_fields",
    *CONTENT_FIELDS,
    "status",
    "dtstamp",
    "fingerprint",
    "raw",
    "kinds",
    "automatic",
    "automatic_reason",
    "previous_seen_at",
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
    texts: PreparedTexts | None = None,
) -> None:
    """The talk_versions rows of new versions and the talk_state rows that point at them."""
    for start in range(0, len(versions), WRITE_BATCH):
        _write_batch(db, versions[start : start + WRITE_BATCH], at, fetch_id, texts)


def _write_batch(
    db: Database,
    versions: list[NewVersion],
    at: str,
    fetch_id: int,
    texts: PreparedTexts | None,
) -> None:
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
    if rows:
        stored = textstore.stored_columns(_VERSION_COLUMNS)  # description: generated
        db.conn.executemany(
            _insert_sql("talk_versions", stored),
            (textstore.stored_row(row, texts) for row in rows),
        )
    for batch, write in ((inserts, _insert_sql), (updates, _update_sql), (removals, _update_sql)):
        if batch:
            db.conn.executemany(write("talk_state", list(batch[0])), batch)
    if rows:  # the state rows point at the version rows just written (search: talks_fts)
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


# ------------------------------------------------------------------------------------------
# Read-side queries behind `history`, `export` and `status` (no writes).
# ------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------
# The daemon's heartbeat row (`daemon`, id 1; see harvester.health).
# ------------------------------------------------------------------------------------------

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
    values = {name: row.get(name) for name in DAEMON_COLUMNS} | {"id": 1}
    with immediate_transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO daemon (id, pid, host, version, config, feeds, started_at,"
            " heartbeat_at, heartbeat_every, stopped_at) VALUES (:id, :pid, :host, :version,"
            " :config, :feeds, :started_at, :heartbeat_at, :heartbeat_every, :stopped_at)",
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


# ------------------------------------------------------------------------------------------
# Series metadata (`series`; see harvester.series).
# ------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------
# A read-only copy to publish (`harvester snapshot`).


@dataclass(frozen=True)
class SnapshotFacts:
    talks: int
    versions: int
    personal_talks_left_out: int


def snapshot_archive(source: Path, out: Path, *, include_personal: bool = False) -> SnapshotFacts:
    """A consistent copy of the archive at `source` in `out`, made with VACUUM INTO.

    VACUUM INTO reads in one transaction, so the copy is the archive as of one moment even
    while the daemon writes (WAL). Unless `include_personal`, the copy leaves out personal
    feeds, their polls and the talks only they carry (with those talks' versions), and the
    url_hash salt. The copy is written beside `out` and renamed into place when complete.
    """
    partial = out.with_name(out.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        _copy_into(source, partial)
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        raise ArchiveError(f"{source}: cannot copy the archive to {out}: {_reason(exc)}") from None
    try:
        facts = _publishable(partial, out, include_personal)
        partial.replace(out)
    except (OSError, sqlite3.Error) as exc:
        raise ArchiveError(f"{out}: cannot write the copy: {_reason(exc)}") from None
    finally:
        partial.unlink(missing_ok=True)
    return facts


def _copy_into(source: Path, partial: Path) -> None:
    if not partial.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"no folder {partial.parent}")
    conn = _connect_read_only(source)
    try:
        conn.execute("VACUUM INTO ?", [str(partial)])
    finally:
        conn.close()


def _publishable(partial: Path, out: Path, include_personal: bool) -> SnapshotFacts:
    """The copy at `partial`, personal feeds left out unless asked, vacuumed and checked."""
    copy = sqlite3.connect(partial, isolation_level=None)
    try:
        left_out = 0
        if not include_personal:
            left_out = _leave_out_personal(copy)
        copy.execute("PRAGMA journal_mode = DELETE")
        copy.execute("VACUUM")
        talks = copy.execute("SELECT count(*) FROM talks").fetchone()[0]
        versions = copy.execute("SELECT count(*) FROM talk_versions").fetchone()[0]
        check = copy.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise ArchiveError(f"{out}: the copy failed its integrity check: {check}")
    finally:
        copy.close()
    return SnapshotFacts(talks, versions, left_out)


def _reason(exc: BaseException) -> str:
    """One line for an OSError or a SQLite error; a damaged source says what to do."""
    text = getattr(exc, "strerror", None) or str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and "malformed" in text:
        return f"{text}; the archive is damaged: restore it from a backup"
    return text


def _leave_out_personal(copy: sqlite3.Connection) -> int:
    copy.execute("BEGIN")
    copy.execute(
        "CREATE TEMP TABLE personal_only AS SELECT uid FROM feed_talk_state GROUP BY uid"
        " HAVING min(feed_id IN (SELECT id FROM feeds WHERE kind = 'personal')) = 1"
    )
    left_out: int = copy.execute("SELECT count(*) FROM personal_only").fetchone()[0]
    # The state first: its trigger reads the current version to take it out of the index.
    for table in ("talk_state", "talk_versions", "notifications"):
        copy.execute(f"DELETE FROM {table} WHERE uid IN (SELECT uid FROM personal_only)")  # noqa: S608
    personal = "(SELECT id FROM feeds WHERE kind = 'personal')"
    for table in ("feed_talk_state", "fetches", "poll_days"):
        copy.execute(f"DELETE FROM {table} WHERE feed_id IN {personal}")  # noqa: S608
    copy.execute(f"DELETE FROM feeds WHERE id IN {personal}")  # noqa: S608
    copy.execute("DELETE FROM archive_meta WHERE key = ?", [URL_SALT_KEY])
    copy.execute("DROP TABLE personal_only")
    # The search index made anew from what stays: a deleted row's words would stay in its
    # segments (MATCH finds nothing, `strings` does) until FTS5 merged them away.
    copy.execute("INSERT INTO talks_fts (talks_fts) VALUES ('delete-all')")
    copy.execute(
        "INSERT INTO talks_fts (rowid, title, speaker, abstract, series_name)"
        " SELECT v.id, v.title, v.speaker, v.abstract, v.series_name"
        " FROM talk_state s JOIN talk_versions v ON v.uid = s.uid AND v.version = s.version"
    )
    copy.execute("COMMIT")
    return left_out


# Compaction of old unchanged polls (`poll_days`, see migrations/0009_poll_days.sql).
# ------------------------------------------------------------------------------------------

COMPACTED_BEFORE_KEY = "polls_compacted_before"  # archive_meta: the day compaction reached
# Polls per write transaction at most. A batch touches about two pages per feed whatever
# its size (each feed's index entries and its poll_days row), so batches of a few slots of
# every feed cost little more than one.
COMPACT_BATCH = 5000
# A batch is folded in chunks of this many polls (an INSERT and a DELETE each) and commits
# early once it has held the write lock for COMPACT_BUDGET_S: on a loaded machine a batch
# can take many times its usual ~100 ms, and the budget, checked between two chunks, bounds
# what a concurrent poll waits to about the budget and one chunk.
COMPACT_CHUNK = 500
COMPACT_BUDGET_S = 0.2
# The write lock is left free this long between batches: SQLite's busy handler retries
# every 100 ms at most, so a poll that waited during a batch gets in before the next one.
COMPACT_PAUSE_S = 0.12
# Exactly `outcome IN ('unchanged', 'not_modified')` with no new, changed, removed or
# restored talk; a row without overrides is decided on its stored columns alone.
_COMPACTABLE = (
    "(overrides IS NULL AND outcome_code IN (0, 1) OR overrides IS NOT NULL"
    " AND outcome IN ('unchanged', 'not_modified') AND coalesce(new, 0) = 0"
    " AND coalesce(changed, 0) = 0 AND coalesce(removed, 0) = 0"
    " AND coalesce(restored, 0) = 0)"
)
# `started_at < :bound` (an ISO time of a whole second), on the stored columns when it can.
_STARTED_BEFORE = (
    "CASE WHEN started_unix IS NOT NULL THEN started_unix < :{0}_unix ELSE started_at < :{0} END"
)


@dataclass(frozen=True)
class Compaction:
    polls: int  # fetches rows folded into poll_days
    batches: int  # write transactions taken
    before: str  # the UTC day whose start bounds what was compacted
    skipped: bool = False  # already compacted up to that day (and not forced)


def compact_polls(
    db: Database,
    now: datetime,
    keep_s: float,
    *,
    force: bool = False,
    batch: int = COMPACT_BATCH,
    chunk: int = COMPACT_CHUNK,
    budget_s: float = COMPACT_BUDGET_S,
    clock: Callable[[], float] = time.monotonic,
    should_stop: Callable[[], bool] | None = None,
    pause: Callable[[], None] = lambda: time.sleep(COMPACT_PAUSE_S),
) -> Compaction:
    """Fold the unchanged polls that started before the UTC day of `now - keep_s` into one
    `poll_days` row per feed and day; failed and changing polls, and each feed's latest
    poll, stay in `fetches`.

    Candidates are read outside any transaction; each batch of at most `batch` polls is
    then one short `BEGIN IMMEDIATE` transaction, folded `chunk` polls at a time, which
    commits early once it has held the write lock for `budget_s` (by `clock`; the rest of
    the batch goes to the next transaction). `pause` runs between two batches so that a
    concurrent poll waits for one batch at most. Without `force`, a run that an earlier
    run already covered (same day) reads only the marker. `should_stop` is asked between
    batches (the daemon stopping).
    """
    day = (now - timedelta(seconds=keep_s)).astimezone(UTC).date()
    bounds = _day_bounds("before", day) | _day_bounds("stop_at", day + timedelta(days=1))
    before = bounds["before"]
    done = db.execute(
        "SELECT value FROM archive_meta WHERE key = ?", [COMPACTED_BEFORE_KEY]
    ).fetchone()
    if not force and done and done[0] >= before:
        return Compaction(0, 0, before, skipped=True)
    protected = _latest_polls(db)
    budget = _Budget(budget_s, clock)
    after, polls, batches = 0, 0, 0
    while not (should_stop and should_stop()):
        rows = db.execute(_COMPACT_SCAN, bounds | {"after": after, "batch": batch}).fetchall()
        if not rows:
            break
        after = rows[-1][0]
        ids = [i for i, old, _later in rows if old and i not in protected]
        while ids:  # a batch whose budget ran out goes on in the next transaction
            if batches:
                pause()
            folded, ids = _fold_polls(db, ids, bounds, chunk, budget)
            polls += folded
            batches += 1
            if ids and should_stop and should_stop():
                return Compaction(polls, batches, before)
        if any(later for _i, _old, later in rows):
            break  # every later poll is newer (ids follow time, a poll lasts minutes)
    else:
        return Compaction(polls, batches, before)
    with immediate_transaction(db):
        db.execute(
            "INSERT INTO archive_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            [COMPACTED_BEFORE_KEY, before],
        )
    return Compaction(polls, batches, before)


_COMPACT_SCAN = f"""
    SELECT id, {_STARTED_BEFORE.format("before")}, NOT {_STARTED_BEFORE.format("stop_at")}
    FROM fetches WHERE id > :after AND {_COMPACTABLE} ORDER BY id LIMIT :batch
"""  # noqa: S608


def _day_bounds(name: str, day: date) -> dict[str, Any]:
    """The start of a UTC day as the query parameters `:name` (ISO) and `:name_unix`."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return {name: start.isoformat(), f"{name}_unix": int(start.timestamp())}


def _latest_polls(db: Database) -> set[int]:
    """Each feed's latest poll and latest successful poll (what the next poll reads)."""
    protected: set[int] = set()
    for (feed_id,) in db.execute("SELECT id FROM feeds").fetchall():
        for sql in (
            f"SELECT id FROM fetches WHERE feed_id = ? {LATEST_FIRST} LIMIT 1",  # noqa: S608
            f"SELECT id {_LAST_SUCCESS_SQL}",
        ):
            row = db.execute(sql, [feed_id]).fetchone()
            if row:
                protected.add(int(row[0]))
    return protected


_FOLD_WHERE = f"""
    id IN (SELECT value FROM json_each(:ids)) AND {_COMPACTABLE}
    AND {_STARTED_BEFORE.format("before")}
"""  # noqa: S608
_FOLD_INSERT = f"""
    INSERT INTO poll_days (feed_id, day, polls, unchanged, not_modified, first_started_at,
                           last_started_at, last_finished_at, bytes, duration_ms, events)
    SELECT feed_id, substr(started_at, 1, 10), count(*), sum(outcome = 'unchanged'),
           sum(outcome = 'not_modified'), min(started_at), max(started_at), max(finished_at),
           sum(bytes), sum(duration_ms), max(events)
    FROM fetches WHERE {_FOLD_WHERE} GROUP BY 1, 2
    ON CONFLICT (feed_id, day) DO UPDATE SET
        polls = polls + excluded.polls,
        unchanged = unchanged + excluded.unchanged,
        not_modified = not_modified + excluded.not_modified,
        first_started_at = min(first_started_at, excluded.first_started_at),
        last_started_at = max(last_started_at, excluded.last_started_at),
        last_finished_at = max(coalesce(last_finished_at, ''),
                               coalesce(excluded.last_finished_at, '')),
        bytes = coalesce(bytes, 0) + coalesce(excluded.bytes, 0),
        duration_ms = coalesce(duration_ms, 0) + coalesce(excluded.duration_ms, 0),
        events = max(coalesce(events, 0), coalesce(excluded.events, 0))
"""  # noqa: S608
_FOLD_DELETE = f"DELETE FROM fetches WHERE {_FOLD_WHERE}"  # noqa: S608


@dataclass(frozen=True)
class _Budget:
    """How long one compaction transaction may hold the write lock, by `clock`."""

    seconds: float
    clock: Callable[[], float]

    def deadline(self) -> float:
        return self.clock() + self.seconds

    def spent(self, deadline: float) -> bool:
        return self.clock() >= deadline


def _fold_polls(
    db: Database, ids: list[int], bounds: Mapping[str, Any], chunk: int, budget: _Budget
) -> tuple[int, list[int]]:
    """One batch, one transaction: chunk by chunk, the day rows grow by these polls and the
    polls leave `fetches`, until the budget is spent. The polls folded, and those left."""
    folded = 0
    with immediate_transaction(db):
        deadline = budget.deadline()
        for start in range(0, len(ids), chunk):
            folded += _fold_chunk(db, ids[start : start + chunk], bounds)
            if budget.spent(deadline):
                return folded, ids[start + chunk :]
    return folded, []


def _fold_chunk(db: Database, ids: list[int], bounds: Mapping[str, Any]) -> int:
    params = {
        "ids": json.dumps(ids),
        "before": bounds["before"],
        "before_unix": bounds["before_unix"],
    }
    db.execute(_FOLD_INSERT, params)
    return int(db.execute(_FOLD_DELETE, params).rowcount)


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


# The notifications outbox (`[[notify]]`): targets by key, one row per (version, target).
# ------------------------------------------------------------------------------------------


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


def _active_notify_targets(db: Database) -> list[NotifyTarget]:
    targets = []
    for key, series, kinds, upcoming_only in db.execute(
        "SELECT key, series, kinds, upcoming_only FROM notify_targets WHERE active = 1"
    ):
        targets.append(
            NotifyTarget(
                key=key,
                url="",
                series=None if series is None else frozenset(json.loads(series)),
                kinds=frozenset(json.loads(kinds)),
                upcoming_only=bool(upcoming_only),
            )
        )
    return _with_filters(db, targets)


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
    keys = sorted(set(keys))
    if not keys:
        return []
    due = "n.status IN ('pending', 'failed')" if retry else "n.status = 'pending'"
    if not retry:
        due += " AND coalesce(n.next_attempt_at, '') <= :now"
    previous = ", ".join(f"p.[{f}] AS [previous_{f}]" for f in _OUTBOX_FIELDS)
    sql = _CLAIM_SQL.format(previous=previous, due=due)
    params = {"now": now_iso(now), "keys": json.dumps(keys)}
    with immediate_transaction(db):
        rows = [dict(r) for r in db.query(sql, params)]
        db.conn.executemany(
            "UPDATE notifications SET claimed_until = ? WHERE id = ?",
            [(now_iso(lease_until), r["id"]) for r in rows],
        )
    for row in rows:
        row["kinds"] = json.loads(row["kinds"] or "[]")
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


# --- following (issue 23) ---
# Series a `[[follow]]` topic brings in (`series.followed_since`, `followed_by`, `left_at`),
# the notification filters on words and speakers (`notify_targets.match`, `speakers`), and
# the weekly digests (rows of `notifications` with uid 'digest/<week>' and a message).


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
    row = db.execute(
        "SELECT value FROM archive_meta WHERE key = ?", [FOLLOW_REFRESHED_KEY]
    ).fetchone()
    try:
        value = json.loads(row[0]) if row else None
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
        db.execute(
            "INSERT OR REPLACE INTO archive_meta (key, value) VALUES (?, ?)",
            [FOLLOW_REFRESHED_KEY, json.dumps({"at": moment, "follow": sorted(entries)})],
        )
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


def _with_filters(db: Database, targets: list[NotifyTarget]) -> list[NotifyTarget]:
    filters = {
        row[0]: (row[1], tuple(json.loads(row[2])) if row[2] else ())
        for row in db.execute(
            "SELECT key, match, speakers FROM notify_targets WHERE active = 1"
            " AND (match IS NOT NULL OR speakers IS NOT NULL)"
        )
    }
    return [
        replace(t, match=filters[t.key][0], speakers=filters[t.key][1]) if t.key in filters else t
        for t in targets
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
        "start": _utc_seconds(start),
        "end": _utc_seconds(end),
        "series": None if series is None else json.dumps(sorted(series)),
        "match": match,
    }
    try:
        return [dict(row) for row in db.query(sql, params)]
    except sqlite3.OperationalError:  # a query checked by an older release
        return []


def _utc_seconds(moment: datetime) -> str:
    """As the archive writes a talk's start: `2026-12-10T15:00:00+00:00`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


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
    keys = sorted(set(keys))
    if not keys:
        return []
    sql = (
        "SELECT id, target, attempts, uid, title, body FROM notifications"
        " WHERE version = 0 AND body IS NOT NULL"
        " AND (status = 'pending' AND (:retry OR coalesce(next_attempt_at, '') <= :now)"
        " OR :retry AND status = 'failed')"
        " AND target IN (SELECT value FROM json_each(:keys))"
        " AND coalesce(claimed_until, '') <= :now ORDER BY id"
    )
    with immediate_transaction(db):
        params = {"now": now_iso(now), "keys": json.dumps(keys), "retry": int(retry)}
        rows = [dict(r) for r in db.query(sql, params)]
        db.conn.executemany(
            "UPDATE notifications SET claimed_until = ? WHERE id = ?",
            [(now_iso(lease_until), r["id"]) for r in rows],
        )
    return rows
