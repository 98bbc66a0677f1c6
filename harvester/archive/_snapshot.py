"""A read-only copy to publish (`harvester snapshot`)."""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from harvester.archive._connection import _connect_read_only
from harvester.archive._feeds import URL_SALT_KEY
from harvester.errors import ArchiveError


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
