"""Opening the archive: connections and migration, the integrity check, the planner's
statistics, and transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from harvester import _schema
from harvester.errors import ArchiveError, ArchiveWriteError

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
    try:
        with contextlib.ExitStack() as on_error:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # Created owner-only: the archive may hold what personal feeds revealed.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, file_mode))
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
            on_error.callback(conn.close)
            _refuse_foreign(conn, path)
            db = _database(conn)
            _configure(db)
            if _schema.pending(conn):  # read only: an up-to-date archive starts no transaction
                with immediate_transaction(db):
                    _refuse_foreign(conn, path)
                    _schema.apply_pending(conn)
            on_error.pop_all()
    except (OSError, sqlite3.Error) as exc:
        raise ArchiveError(
            f"{path}: cannot open the archive: {exc}{_read_only_hint(path)}"
        ) from None
    return db


def _configure(db: Database) -> None:
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
    try:
        with contextlib.ExitStack() as on_error:
            conn = _connect_read_only(path)
            on_error.callback(conn.close)
            _refuse_foreign(conn, path)
            if _schema.pending(conn):
                conn.close()
                if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
                    raise ArchiveError(
                        f"{path}: the archive needs an upgrade and is read-only here: run"
                        " `harvester sync` once where it can be written"
                    )
                open_archive(path, file_mode=file_mode).close()
                conn = _connect_read_only(path)
                on_error.callback(conn.close)
            conn.execute("PRAGMA query_only = 1")
            on_error.pop_all()
    except sqlite3.Error as exc:
        raise ArchiveError(
            f"{path}: cannot open the archive read-only: {exc}{_read_only_hint(path)}"
        ) from None
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


def check_when_due(db: Database, now: datetime) -> bool:
    """`PRAGMA quick_check` when the last one is a day old (or there was none): raises
    ArchiveError for a damaged file. Whether it ran."""
    if not _due(db, CHECKED_AT_KEY, now, CHECK_EVERY_S):
        return False
    _quick_check(db.conn, Path(_archive_file(db)))
    with immediate_transaction(db):
        set_meta(db, CHECKED_AT_KEY, now_iso(now))
    return True


ANALYZED_AT_KEY = "analyzed_at"  # archive_meta: when `refresh_statistics_when_due` last ran
ANALYZE_EVERY_S = 86_400.0
# Rows ANALYZE reads per index: approximate statistics, made in milliseconds whatever the
# archive's size (SQLite's advice for applications that keep their own statistics).
ANALYSIS_LIMIT = 1000


def refresh_statistics_when_due(db: Database, now: datetime) -> bool:
    """The query planner's statistics (`sqlite_stat1`), made anew by a writing run when
    they are a day old or missing: without them a search page plans a join badly (see
    docs/performance.md). Not `PRAGMA optimize`: before SQLite 3.46 it analyzes only the
    tables its own connection queried, and a sync never queries what the pages do.
    Whether it ran."""
    if not _due(db, ANALYZED_AT_KEY, now, ANALYZE_EVERY_S):
        return False
    db.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
    with immediate_transaction(db):
        db.execute("ANALYZE")
        set_meta(db, ANALYZED_AT_KEY, now_iso(now))
    return True


def meta(db: Database, key: str) -> str | None:
    """The `archive_meta` value of `key` (None when there is none)."""
    row = db.execute("SELECT value FROM archive_meta WHERE key = ?", [key]).fetchone()
    return None if row is None else row[0]


def set_meta(db: Database, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO archive_meta (key, value) VALUES (?, ?)", [key, value])


def _due(db: Database, key: str, now: datetime, every_s: float) -> bool:
    """Whether the step whose last run `key` records has not run for `every_s`."""
    done = meta(db, key)
    return done is None or (now - datetime.fromisoformat(done)).total_seconds() >= every_s


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
