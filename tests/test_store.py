"""The archive file: schema by migrations, WAL, foreign keys, permissions, concurrency."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlite_utils

from harvester.archive import FetchFacts, open_archive
from harvester.sync import FeedTarget, archive_body, utc_now
from tests.conftest import SAMPLE

TABLES = {"feeds", "talks", "talk_versions", "feed_talks", "fetches"}


def test_new_archive_has_the_five_tables_wal_and_foreign_keys(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    # talks and feed_talks are views over talk_state and feed_talk_state (migration 0011)
    assert set(db.table_names()) | set(db.view_names()) >= TABLES
    assert {"talk_state", "feed_talk_state"} <= set(db.table_names())
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    applied = [r["name"] for r in db.query("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert applied[0] == "0001_initial"
    assert ("uid", "version") in {tuple(i.columns) for i in db.table("talk_versions").indexes}
    # the pages sort and filter the current talks on talk_state's keys (migration 0015)
    indexed = {tuple(i.columns) for i in db.table("talk_state").indexes}
    assert {("dtstart",), ("series_id", "dtstart")} <= indexed
    assert ("status", "dtstart", "dtend", "counter", "series_name", "uid", "version") in indexed
    with sqlite3.connect(tmp_path / "a.db") as raw:
        raw.execute("PRAGMA foreign_keys = ON")
        try:
            raw.execute(
                "INSERT INTO talk_versions (uid, version, change) VALUES ('nope', 1, 'new')"
            )
        except sqlite3.IntegrityError:
            pass
        else:
            raise AssertionError("a version of an unknown talk was accepted")


def test_reopening_applies_no_migration_twice(tmp_path: Path) -> None:
    open_archive(tmp_path / "a.db").close()
    db = open_archive(tmp_path / "a.db")
    names = [r["name"] for r in db.query("SELECT name FROM _sqlite_migrations")]
    assert len(names) == len(set(names))


def test_archive_file_is_owner_only(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    archive_body(
        db, FeedTarget("file:///x.ics", "x", "file"), SAMPLE.read_bytes(), facts(), utc_now()
    )
    for name in ("a.db", "a.db-wal", "a.db-shm"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))


def facts() -> FetchFacts:
    now = utc_now()
    return FetchFacts(now, now)


def _import_many(path: str, start: int, count: int) -> None:
    db = open_archive(path)
    body = SAMPLE.read_bytes()
    for i in range(start, start + count):
        edited = body.replace(b"Natural Graph Networks", f"Natural Graph Networks {i}".encode())
        archive_body(
            db, FeedTarget(f"file:///feed{i % 3}.ics", None, "file"), edited, facts(), utc_now()
        )


@pytest.mark.slow
def test_concurrent_processes_never_lose_an_update_or_double_a_version(tmp_path: Path) -> None:
    path = str(tmp_path / "a.db")
    open_archive(path).close()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_import_many, args=(path, n * 10, 10)) for n in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    db = sqlite_utils.Database(path)
    # 30 polls, each retitling talk 1 to a title not seen before, all with the sample's
    # DTSTAMP: each is either a new version or, when a poll that observed its copy later
    # committed first, a stale copy (rule 4's same-second tie-break). Never both, never lost.
    rows = list(
        db.query(
            "SELECT version, change, title FROM talk_versions WHERE uid = 'PhysicsMeetsML/1'"
            " ORDER BY version"
        )
    )
    versions = len(rows)
    stale = db.execute("SELECT sum(stale) FROM fetches").fetchone()[0]
    assert [r["version"] for r in rows] == list(range(1, versions + 1))
    assert versions + stale == 30 and versions >= 3
    assert len({r["title"] for r in rows}) == versions  # no title recorded twice
    assert [r["change"] for r in rows].count("new") == 1
    assert (
        db.execute("SELECT version FROM talks WHERE uid = 'PhysicsMeetsML/1'").fetchone()[0]
        == versions
    )
    assert db.execute("SELECT count(*) FROM fetches").fetchone()[0] == 30
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_configured_file_mode_is_used_and_world_writable_refused(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harvester.cli import cli

    config = tmp_path / "h.toml"
    config.write_text('[archive]\npath = "shared.db"\nfile_mode = "0640"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "import", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    for name in ("shared.db", "shared.db-wal", "shared.db-shm"):
        if (tmp_path / name).exists():
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    config.write_text('[archive]\nfile_mode = "0666"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert (
        result.exit_code == 2 and "archive.file_mode: expected octal permissions" in result.stderr
    )
