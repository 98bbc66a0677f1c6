"""The archive module: migrations from frozen SQL files, read-only opens, refusals, secrets."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner, Result

from harvester import _schema, migrations
from harvester import archive as store
from harvester.archive import FetchFacts, _connection, open_archive
from harvester.cli import cli
from harvester.errors import ArchiveError
from harvester.lock import hold
from harvester.sync import FeedTarget, archive_body, utc_now
from tests import legacy_schema
from tests.conftest import SAMPLE, write_config

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cretT0kenABCDEFGHIJ"
PERSONAL = f"https://researchseminars.org/user/ics/{TOKEN}"


def schema(path: Path) -> set[tuple[str, str, str, str | None]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    conn.close()
    return set(rows)


LAST_LEGACY = "0005_daemon_heartbeat"  # the last migration the previous release had


def legacy_archive(path: Path) -> None:
    """An archive as the previous release made it (its sqlite-utils migrations)."""
    db = sqlite_utils.Database(path)
    db.enable_wal()
    with db.conn:
        legacy_schema.migrate(db)
    db.close()


def facts() -> FetchFacts:
    now = utc_now()
    return FetchFacts(now, now, http_status=200)


def run(*args: str, db: Path | None = None, config: Path | None = None) -> Result:
    argv = ["--log-format", "json"]
    if config is not None:
        argv += ["--config", str(config)]
    if db is not None:
        argv += ["--db", str(db)]
    return CliRunner().invoke(cli, [*argv, *args])


# --- migrations ---------------------------------------------------------------------------


def test_the_sql_files_make_the_schema_the_previous_release_made(tmp_path: Path) -> None:
    legacy_archive(tmp_path / "old.db")
    with sqlite3.connect(tmp_path / "new.db") as conn:
        assert _schema.apply_pending(conn, upto=LAST_LEGACY)[-1] == LAST_LEGACY
    conn.close()
    assert schema(tmp_path / "new.db") == schema(tmp_path / "old.db")


def test_migrations_are_the_shipped_files_in_name_order(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    applied = [r[0] for r in db.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    files = sorted(p.stem for p in (ROOT / "harvester" / "migrations").glob("*.sql"))
    assert applied == files == [m.name for m in _schema.shipped()]
    assert applied[0] == "0001_initial" and "0006_archive_meta" in applied


def test_an_archive_of_the_previous_release_upgrades_without_rerunning(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    legacy_archive(path)
    old_url = "https://researchseminars.org/seminar/AlgGeom/ics"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO feeds (url, url_hash, name, kind) VALUES (?, ?, 'AlgGeom', 'series')",
            [old_url, hashlib.sha256(old_url.encode()).hexdigest()],
        )
        before = conn.execute("SELECT id, name FROM _sqlite_migrations ORDER BY id").fetchall()
    conn.close()
    db = open_archive(path)
    after = db.execute("SELECT id, name FROM _sqlite_migrations ORDER BY id").fetchall()
    assert after[: len(before)] == before  # nothing re-run
    assert [name for _, name in after[len(before) :]] == [
        m.name for m in _schema.shipped() if m.name > LAST_LEGACY
    ]
    # The old unsalted key still matches, and is re-keyed with the salt on that match.
    assert store.feed_ids(db, [old_url]) == {old_url: 1}
    with store.immediate_transaction(db):
        assert store.ensure_feed(db, old_url, None, datetime.now(UTC)) == 1
    key = db.execute("SELECT url_hash FROM feeds WHERE id = 1").fetchone()[0]
    assert key == store.url_key(db, old_url) != hashlib.sha256(old_url.encode()).hexdigest()
    db.close()


# The migrations that have landed on main, by the start of their sha256: an archive that
# ran one never runs it again, so an edit would never reach it. Add a file instead (and
# its line here once it has landed).
SHIPPED = {
    "0001_initial": "36c9525b440b10ef",
    "0002_fast_path": "6895fa2641222740",
    "0003_browse_views": "67d658ba410db44f",
    "0003_talks_fts": "ad040edfbf009c69",
    "0004_series_and_rescheduled_slots": "39d0eb95f85f359d",
    "0005_daemon_heartbeat": "6ff074ddf33535d6",
    "0006_archive_meta": "01baedce1ff31551",
    "0007_history": "2e282bd3b75aaaa1",
    "0008_pages": "c0aa18d04a10e6d7",
    "0009_poll_days": "08cfe8c519b1d523",
    "0010_notifications": "efa30b06c134deca",
    "0011_talk_state": "88d8f6d7c0e3dc60",
    "0012_textstore": "f9b20bc5840827f2",
    "0013_pages_at_scale": "56bffc2f363ab048",
    "0014_compact_fetches": "a1d5c5fbaeded85e",
    "0015_talk_state_keys": "a74457722bcdc5af",
    "0016_vouch_seq": "c2f62847c06025e8",
    "0017_talk_state_version_id": "39b3556d103870df",
    "0018_plain_raw": "02863105a7afa824",
    "0019_no_vouch_seq": "d4e4e086b474c5bb",
    "0020_moved_by_one_day": "db048bd590a2d983",
    "0021_feeds_in_natural_order": "3746c68d5b518de4",
    "0023_following": "f476dbe79d1aca31",
    "0024_weekly_digest": "4041ff1b025d599e",
    "0025_no_raw_key": "2eb767359627d8a4",
}


def test_shipped_migrations_are_never_edited() -> None:
    folder = ROOT / "harvester" / "migrations"
    now = {
        name: hashlib.sha256((folder / f"{name}.sql").read_bytes()).hexdigest()[:16]
        for name in SHIPPED
    }
    assert now == SHIPPED


LANDED_0015 = "0016_vouch_seq"  # 0015 as it shipped; 0017 carries what the pages added


def test_an_archive_with_0015_as_it_shipped_gains_the_talks_version_ids(tmp_path: Path) -> None:
    """Migrations are frozen once shipped: an archive that ran 0015 gets talk_state's
    `version_id` and the covering indexes from 0017, and the fresh archive's schema."""
    fresh = tmp_path / "fresh.db"
    db = open_archive(fresh)
    archive_body(
        db, FeedTarget("file:///x.ics", "x", "file"), SAMPLE.read_bytes(), facts(), utc_now()
    )
    db.close()
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    with conn:
        _schema.apply_pending(conn, upto=LANDED_0015)
    assert "version_id" not in {r[1] for r in conn.execute("PRAGMA table_info(talk_state)")}
    migrations.register(conn)  # that release's talk_versions.raw was computed by a function
    conn.execute("ATTACH ? AS fresh", [str(fresh)])
    with conn:  # the fresh archive's talks, written as a release with 0015 wrote them
        for table, left_out in (("talk_versions", set()), ("talk_state", {"version_id"})):
            stored = [  # stored columns only, in both
                {r[1] for r in conn.execute(f"PRAGMA {schema}.table_xinfo({table})") if r[6] == 0}
                for schema in ("main", "fresh")
            ]
            columns = [f'"{c}"' for c in sorted(set.intersection(*stored) - left_out)]
            names = ", ".join(columns)
            conn.execute(f"INSERT INTO main.{table} ({names}) SELECT {names} FROM fresh.{table}")
    conn.execute("DETACH fresh")
    conn.close()
    open_archive(old).close()
    with sqlite3.connect(old) as conn:
        pointed = conn.execute(
            "SELECT count(*), count(v.id) FROM talk_state s LEFT JOIN talk_versions v"
            " ON v.id = s.version_id AND v.uid = s.uid AND v.version = s.version"
        ).fetchone()
    conn.close()
    assert pointed[0] > 0 and pointed[0] == pointed[1]
    assert schema(old) == schema(fresh)


def test_opening_an_up_to_date_archive_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.db"
    db = open_archive(path)
    archive_body(
        db, FeedTarget("file:///x.ics", "x", "file"), SAMPLE.read_bytes(), facts(), utc_now()
    )
    db.close()
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    # Another connection holds the write lock: an open that wanted to write would wait.
    monkeypatch.setattr(_connection, "BUSY_TIMEOUT_S", 0.2)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        db = open_archive(path)
        assert db.conn.total_changes == 0 and not db.conn.in_transaction
        assert db.execute("SELECT count(*) FROM talks").fetchone()[0] > 0
        db.close()
        ro = open_archive(path, read_only=True)
        assert ro.conn.total_changes == 0
        ro.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime


def test_migrations_split_triggers_as_one_statement() -> None:
    fts = next(m for m in _schema.shipped() if m.name == "0003_talks_fts")
    triggers = [s for s in fts.statements() if s.upper().startswith("CREATE TRIGGER")]
    assert len(triggers) == 4 and all(s.endswith("END;") for s in triggers)


# --- refusals -----------------------------------------------------------------------------


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    data = path.read_bytes()
    config = write_config(tmp_path, ["http://127.0.0.1:9/x.ics"])
    for command in (["sync"], ["status"], ["export"]):
        result = run(*command, db=path, config=config)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "not a seminar-harvester archive" in lines[0], lines
        assert "notes" in lines[0]
    assert path.read_bytes() == data
    assert not Path(f"{path}-wal").exists()
    with pytest.raises(ArchiveError, match="not a seminar-harvester archive"):
        open_archive(path)


def test_an_empty_db_option_is_a_usage_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, [])
    for command in ("status", "sync", "export"):
        result = CliRunner().invoke(cli, ["--config", str(config), "--db", "", command])
        assert result.exit_code == 2, result.output
        assert "--db" in result.stderr


def test_sync_reports_a_damaged_archive_at_open(tmp_path: Path) -> None:
    path = archived(tmp_path, feeds=3)
    damage_talk_versions(path)
    config = write_config(tmp_path, ["http://127.0.0.1:9/x.ics"])
    result = run("sync", config=config)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "archive" in lines[0] and str(path) in lines[0], lines
    assert "damaged" in lines[0] or "malformed" in lines[0], lines


CHECK_NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def archived(tmp_path: Path, feeds: int = 1) -> Path:
    path = tmp_path / "archive.db"
    db = open_archive(path)
    for n in range(feeds):
        target = FeedTarget(f"file:///x{n}.ics", f"x{n}", "file")
        archive_body(db, target, SAMPLE.read_bytes(), facts(), utc_now())
    db.close()
    return path


def damage_talk_versions(path: Path) -> None:
    """Garbage over a page in the middle of the file: `talk_versions`' first page, which a
    failed poll never reads."""
    db = open_archive(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    query = "SELECT rootpage FROM sqlite_master WHERE name = 'talk_versions'"
    root = db.execute(query).fetchone()[0]
    db.close()
    assert not Path(f"{path}-wal").exists()
    assert 1 < root < pages
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(os.urandom(page_size))


def checked_at(db: sqlite_utils.Database) -> datetime:
    row = db.execute("SELECT value FROM archive_meta WHERE key = ?", [store.CHECKED_AT_KEY])
    return datetime.fromisoformat(row.fetchone()[0])


def test_the_whole_file_check_runs_once_a_day_and_records_when(tmp_path: Path) -> None:
    db = open_archive(archived(tmp_path))
    assert store.check_when_due(db, CHECK_NOW)
    assert checked_at(db) == CHECK_NOW
    assert not store.check_when_due(db, CHECK_NOW + timedelta(hours=23))
    assert store.check_when_due(db, CHECK_NOW + timedelta(seconds=store.CHECK_EVERY_S))
    assert not store.check_when_due(db, CHECK_NOW + timedelta(seconds=store.CHECK_EVERY_S + 60))
    db.close()


def test_damage_is_reported_by_the_next_due_check(tmp_path: Path) -> None:
    path = archived(tmp_path)
    db = open_archive(path)
    assert store.check_when_due(db, CHECK_NOW)
    db.close()
    damage_talk_versions(path)
    db = open_archive(path)
    assert not store.check_when_due(db, CHECK_NOW + timedelta(hours=1))  # not due: not read
    with pytest.raises(ArchiveError, match="damaged") as caught:
        store.check_when_due(db, CHECK_NOW + timedelta(days=1))
    assert str(path) in str(caught.value)
    assert checked_at(db) == CHECK_NOW  # a failed check is not recorded
    db.close()


@pytest.mark.slow
def test_a_sync_records_its_check(tmp_path: Path) -> None:
    path = archived(tmp_path)
    before = utc_now()
    config = write_config(tmp_path, ["http://127.0.0.1:9/x.ics"], "retries = 0\n")
    result = run("sync", config=config)
    assert result.exit_code == 1 and "127.0.0.1:9" in result.stderr, result.output  # the feed
    db = open_archive(path)
    assert checked_at(db) >= before
    db.close()


# --- the daemon's lock ----------------------------------------------------------------------


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_second_daemon_through_another_name_of_the_archive_exits_3(
    tmp_path: Path, link: str
) -> None:
    real = tmp_path / "real" / "archive.db"
    real.parent.mkdir()
    open_archive(real).close()
    other = tmp_path / "elsewhere" / "archive.db"
    other.parent.mkdir()
    if link == "symlink":
        other.symlink_to(real)
    else:
        os.link(real, other)
    config = write_config(tmp_path, ["http://127.0.0.1:9/x.ics"])
    with hold(real, "daemon"):
        result = run("run", db=other, config=config)
    assert result.exit_code == 3, result.output
    assert "another `harvester run`" in result.stderr


# --- secrets ------------------------------------------------------------------------------


def test_text_written_to_the_archive_is_redacted_and_url_hash_salted(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    at = datetime.now(UTC)
    with store.immediate_transaction(db):
        feed_id = store.ensure_feed(db, PERSONAL, None, at)
        store.record_failure(db, feed_id, facts(), f"HTTP 500 for {PERSONAL}?x=1")
    row = db.execute("SELECT url, url_hash, last_error FROM feeds").fetchone()
    stored = json.dumps(row) + json.dumps(db.execute("SELECT error FROM fetches").fetchall())
    assert TOKEN not in stored and "/user/ics/s3cr…" in row[0]
    assert row[1] != hashlib.sha256(PERSONAL.encode()).hexdigest()
    # Another archive has another salt: the same URL has another key.
    other = open_archive(tmp_path / "b.db")
    assert store.url_key(other, PERSONAL) != row[1] == store.url_key(db, PERSONAL)
    assert store.feed_ids(db, [PERSONAL]) == {PERSONAL: feed_id}


# --- two pollers of one feed -------------------------------------------------------------


def test_a_poll_that_commits_after_a_later_one_leaves_the_feeds_row_to_the_later(
    tmp_path: Path,
) -> None:
    """The daemon and a cron sync can poll one feed at once; the one that finished first
    may commit last. The feed's health columns stay the latest poll's."""
    db = open_archive(tmp_path / "a.db")
    target = FeedTarget("file:///x.ics", "x", "file")
    early, late = utc_now(), utc_now() + timedelta(seconds=1)
    archive_body(db, target, SAMPLE.read_bytes(), FetchFacts(late, late, http_status=200), late)
    with store.immediate_transaction(db):
        (feed_id,) = store.feed_ids(db, ["file:///x.ics"]).values()
        store.record_failure(db, feed_id, FetchFacts(early, early, http_status=500), "HTTP 500")
    row = db.execute(
        "SELECT last_fetched_at, last_success_at, last_outcome, consecutive_failures,"
        " last_error FROM feeds"
    ).fetchone()
    assert row == (late.isoformat(), late.isoformat(), "changed", 0, None)
    assert db.execute("SELECT count(*) FROM fetches").fetchone() == (2,)  # both recorded

    # A success that finished before a later failure leaves the failure showing.
    later = late + timedelta(seconds=1)
    with store.immediate_transaction(db):
        store.record_failure(db, feed_id, FetchFacts(later, later, http_status=500), "HTTP 500")
    archive_body(db, target, SAMPLE.read_bytes(), FetchFacts(late, late, http_status=200), late)
    row = db.execute(
        "SELECT last_fetched_at, last_success_at, last_outcome, consecutive_failures,"
        " last_error FROM feeds"
    ).fetchone()
    assert row == (later.isoformat(), late.isoformat(), "error", 1, "HTTP 500")
    db.close()


# --- one module holds the SQL -----------------------------------------------------------

SQL = re.compile(
    r"\b(SELECT\b.+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX|VIEW|TRIGGER|UNIQUE)|PRAGMA\s+\w+|DROP\s+(TABLE|VIEW|TRIGGER))",
    re.IGNORECASE | re.DOTALL,
)


def test_no_module_but_the_archive_holds_sql() -> None:
    offenders = []
    for path in sorted((ROOT / "harvester").rglob("*.py")):
        if path.parent.name == "archive" or path.name == "_schema.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and SQL.search(node.value)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:50]!r}")
    assert not offenders, offenders


# --- read-only ----------------------------------------------------------------------------

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def read_only_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="harvester-ro-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for place in (folder, *folder.rglob("*")):
        if place.is_dir():
            place.chmod(0o755)
    shutil.rmtree(folder)


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
@pytest.mark.parametrize("leftover", ["none", "checkpointed-wal"])
def test_read_commands_work_on_a_read_only_archive_in_a_read_only_folder(
    read_only_folder: Path, leftover: str
) -> None:
    folder = read_only_folder / "archive"
    folder.mkdir()
    config = write_config(folder, [])
    db = open_archive(folder / "archive.db")
    result = archive_body(
        db, FeedTarget("file:///x.ics", "x", "file"), SAMPLE.read_bytes(), facts(), utc_now()
    )
    uid = db.execute("SELECT uid FROM talks ORDER BY uid").fetchone()[0]
    talks = db.execute("SELECT count(*) FROM talks WHERE status = 'active'").fetchone()[0]
    if leftover == "checkpointed-wal":
        # A reader is left holding the -wal and -shm after a full checkpoint (-wal: 0 bytes).
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        keep = sqlite3.connect(folder / "archive.db")
        keep.execute("SELECT count(*) FROM talks").fetchone()
        shutil.copy(folder / "archive.db-shm", read_only_folder / "shm")
        keep.close()
    db.close()
    if leftover == "checkpointed-wal":
        (folder / "archive.db-wal").write_bytes(b"")
        shutil.copy(read_only_folder / "shm", folder / "archive.db-shm")
    assert result.outcome == "changed"
    for place in folder.iterdir():
        place.chmod(0o444)
    folder.chmod(0o555)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def harvester(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*NOBODY, sys.executable, "-m", "harvester", "--config", str(config), *args],
            capture_output=True,
            text=True,
            cwd=folder,
            env={"PATH": os.environ["PATH"], "HOME": str(folder)},
            timeout=60,
        )

    status = harvester("status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1].startswith("x     changed  "), status.stdout
    history = harvester("history", uid, "--json")
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)[0]["uid"] == uid
    export = harvester("export")
    assert export.returncode == 0, export.stderr
    assert len(json.loads(export.stdout)) == talks
    # And the folder is as it was.
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555


def test_a_new_archive_has_pages_that_hold_several_versions(tmp_path: Path) -> None:
    """A version row is about 2.7 KB (the event compressed beside its parsed fields): 64 KB
    pages lose a few percent to the row that does not fit, 8 KB pages a third (bench_size)."""
    db = open_archive(tmp_path / "new.db")
    assert db.execute("PRAGMA page_size").fetchone()[0] == 65536
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (64 << 20) // 65536
    db.close()
