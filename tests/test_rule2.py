"""Rule 2, replaced (contract Revision 2): unchanged work writes a bounded number of rows.

`talks.last_seen`/`talks.dtstamp` and `feed_talks.last_seen` are derived from the feeds'
last polls (migrations/0011_talk_state.sql); these tests check that they answer as the
per-talk writes did, and that an unchanged poll no longer writes per talk.
"""

from __future__ import annotations

import copy
import random
import re
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from harvester.archive import ACTIVE_FINGERPRINTS_SQL, active_fingerprints, open_archive
from harvester.sync import PollResult
from tests.test_fastpath import T0, TALK_FEED, body_of, make_talks, poll, refold

FIXTURE_0010 = Path(__file__).parent / "fixtures" / "archive_0010.sql"
HOUR = timedelta(hours=1)
# A poll's own rows: its `fetches` row and the feed's row.
POLL_ROWS = 2


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    archive = open_archive(tmp_path / "a.db")
    yield archive
    archive.conn.close()


def rows_changed(db: Database, body: bytes, moment: datetime) -> tuple[PollResult, int]:
    """The poll's result and the rows it inserted, updated or deleted."""
    before = db.execute("SELECT total_changes()").fetchone()[0]
    result = poll(db, body, moment)
    return result, db.execute("SELECT total_changes()").fetchone()[0] - before


def values(db: Database, sql: str) -> set[Any]:
    return {row[0] for row in db.execute(sql)}


def talk(db: Database, uid: str, column: str) -> Any:
    return db.execute(f"SELECT [{column}] FROM talks WHERE uid = ?", [uid]).fetchone()[0]


@pytest.mark.slow
def test_an_unchanged_poll_of_a_large_feed_writes_a_bounded_number_of_rows(db: Database) -> None:
    talks = make_talks(random.Random(5), 5000)
    assert poll(db, body_of(talks, T0), T0).counts["new"] == 5000
    # the body shortcut: the same body but for its DTSTAMP
    shortcut, written = rows_changed(db, body_of(talks, T0 + HOUR), T0 + HOUR)
    assert (shortcut.outcome, shortcut.counts["unchanged"]) == ("unchanged", 5000)
    assert written <= POLL_ROWS
    assert values(db, "SELECT last_seen FROM talks") == {(T0 + HOUR).isoformat()}
    assert values(db, "SELECT dtstamp FROM talks") == {(T0 + HOUR).isoformat()}
    assert values(db, "SELECT last_seen FROM feed_talks") == {(T0 + HOUR).isoformat()}
    # the per-event fingerprints: every event folded otherwise
    refolded, written = rows_changed(db, refold(body_of(talks, T0 + 2 * HOUR), 44), T0 + 2 * HOUR)
    assert (refolded.outcome, refolded.counts["unchanged"]) == ("unchanged", 5000)
    assert written <= POLL_ROWS
    assert values(db, "SELECT last_seen FROM talks") == {(T0 + 2 * HOUR).isoformat()}
    assert values(db, "SELECT dtstamp FROM talks") == {(T0 + 2 * HOUR).isoformat()}
    assert values(db, "SELECT last_seen FROM feed_talks") == {(T0 + 2 * HOUR).isoformat()}
    # a change writes that talk's rows, not the feed's 5,000
    talks[10].title = "A new title"
    changed, written = rows_changed(db, body_of(talks, T0 + 3 * HOUR), T0 + 3 * HOUR)
    assert changed.counts["changed"] == 1
    # its version, state and feed_talks rows, and the search index's rows (FTS5 counts its
    # own shadow-table writes): a few, whatever the size of the feed
    assert written <= POLL_ROWS + 15
    assert talk(db, "AlgGeo/11", "title") == "A new title"
    assert values(db, "SELECT last_seen FROM talks") == {(T0 + 3 * HOUR).isoformat()}


@pytest.mark.slow
def test_the_fast_paths_lookup_reads_only_the_talks_it_asks_for(db: Database) -> None:
    """A changed poll looks its blocks' UIDs up: by uid, not through every active talk
    (the planner preferred the status index once it existed, 4 ms for 3 UIDs of 15,000)."""
    talks = make_talks(random.Random(6), 2000)
    poll(db, body_of(talks, T0), T0)
    for analyzed in (False, True):
        plan = " ".join(
            r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {ACTIVE_FINGERPRINTS_SQL}", ["[]"])
        )
        assert "SCAN k" in plan and "(uid=?)" in plan and "status=?" not in plan, (analyzed, plan)
        db.execute("ANALYZE")
    asked = [talks[3].uid, talks[1999].uid, "not/archived"]
    expected = {
        t.uid: db.execute("SELECT fingerprint FROM talks WHERE uid = ?", [t.uid]).fetchone()[0]
        for t in (talks[3], talks[1999])
    }
    assert active_fingerprints(db, asked) == expected


@pytest.mark.slow
def test_the_body_shortcut_holds_until_another_feed_changes_one_of_the_talks(
    db: Database,
) -> None:
    """An unchanged body is archived without a parse while every talk the feed carries is
    still as the feed left it (one join over them); once another feed changed one of the
    talks, the same body is parsed and diffed again (here: a change back)."""
    talks = make_talks(random.Random(10), 300)
    before = copy.deepcopy(talks)
    poll(db, body_of(talks, T0), T0)
    poll(db, body_of([talks[1]], T0), T0, TALK_FEED)
    for hours in (1, 2, 3):
        shortcut = poll(db, body_of(talks, T0 + hours * HOUR), T0 + hours * HOUR)
        assert (shortcut.outcome, shortcut.counts["unchanged"]) == ("unchanged", 300)
    talks[1].title = "Retitled by the talk's own feed"
    assert (
        poll(db, body_of([talks[1]], T0 + 4 * HOUR), T0 + 4 * HOUR, TALK_FEED).counts["changed"]
        == 1
    )
    # the series feed still says what it said: not unchanged any more (a newer copy of the
    # old title: a change back)
    again = poll(db, body_of(before, T0 + 5 * HOUR), T0 + 5 * HOUR)
    assert (again.counts["unchanged"], again.counts["changed"]) == (299, 1)
    assert talk(db, "AlgGeo/2", "title") == before[1].title


def test_a_talk_carried_by_two_feeds_gets_the_latest_of_their_polls(db: Database) -> None:
    talks = make_talks(random.Random(6), 3)
    two = [talks[1]]
    poll(db, body_of(talks, T0), T0)
    poll(db, body_of(two, T0 + HOUR), T0 + HOUR, TALK_FEED)
    poll(db, body_of(talks, T0 + 2 * HOUR), T0 + 2 * HOUR)
    assert talk(db, "AlgGeo/2", "last_seen") == (T0 + 2 * HOUR).isoformat()
    poll(db, body_of(two, T0 + 3 * HOUR), T0 + 3 * HOUR, TALK_FEED)
    assert talk(db, "AlgGeo/2", "last_seen") == (T0 + 3 * HOUR).isoformat()
    assert talk(db, "AlgGeo/2", "dtstamp") == (T0 + 3 * HOUR).isoformat()
    assert talk(db, "AlgGeo/1", "last_seen") == (T0 + 2 * HOUR).isoformat()
    per_feed = db.execute(
        "SELECT feed_id, last_seen FROM feed_talks WHERE uid = 'AlgGeo/2' ORDER BY feed_id"
    ).fetchall()
    assert per_feed == [(1, (T0 + 2 * HOUR).isoformat()), (2, (T0 + 3 * HOUR).isoformat())]


def test_a_talk_that_left_a_feed_keeps_the_time_it_was_last_seen_there(db: Database) -> None:
    talks = make_talks(random.Random(7), 4)
    poll(db, body_of(talks, T0), T0)
    poll(db, body_of([talks[1]], T0 + HOUR / 2), T0 + HOUR / 2, TALK_FEED)
    poll(db, body_of(talks, T0 + HOUR), T0 + HOUR)  # unchanged: no per-talk write
    left = [t for t in talks if t.counter not in (2, 3)]  # 3 leaves its only feed, 2 stays
    poll(db, body_of(left, T0 + 2 * HOUR), T0 + 2 * HOUR)
    poll(db, body_of(left, T0 + 3 * HOUR), T0 + 3 * HOUR)
    gone = db.execute(
        "SELECT present, last_seen FROM feed_talks WHERE feed_id = 1 AND uid IN"
        " ('AlgGeo/2', 'AlgGeo/3') ORDER BY uid"
    ).fetchall()
    assert gone == [(0, (T0 + HOUR).isoformat())] * 2
    assert (talk(db, "AlgGeo/3", "status"), talk(db, "AlgGeo/3", "last_seen")) == (
        "removed",
        (T0 + HOUR).isoformat(),
    )
    assert talk(db, "AlgGeo/3", "dtstamp") == (T0 + HOUR).isoformat()
    # 2 is still carried by the talk feed, last polled before the series feed let it go
    assert talk(db, "AlgGeo/2", "last_seen") == (T0 + HOUR).isoformat()
    poll(db, body_of([talks[1]], T0 + 4 * HOUR), T0 + 4 * HOUR, TALK_FEED)
    assert talk(db, "AlgGeo/2", "last_seen") == (T0 + 4 * HOUR).isoformat()
    assert talk(db, "AlgGeo/1", "last_seen") == (T0 + 3 * HOUR).isoformat()


def test_an_older_copy_after_an_unchanged_poll_is_stale(db: Database) -> None:
    talks = make_talks(random.Random(8), 3)
    poll(db, body_of(talks, T0), T0)
    assert poll(db, body_of(talks, T0 + 2 * HOUR), T0 + 2 * HOUR).outcome == "unchanged"
    talks[0].title = "Older news"  # downloaded before that poll, archived after it
    old = poll(db, body_of(talks, T0 + HOUR), T0 + 3 * HOUR)
    assert (old.counts["stale"], old.counts["changed"]) == (1, 0)
    assert talk(db, "AlgGeo/1", "version") == 1
    # same second: the copy seen before the stored one was seen is the stale one ...
    same = T0 + 2 * HOUR
    earlier = poll(db, body_of(talks, same), same - timedelta(minutes=1))
    assert earlier.counts["stale"] == 1
    # ... and one seen after it is a change
    later = poll(db, body_of(talks, same), T0 + 4 * HOUR)
    assert later.counts["changed"] == 1 and talk(db, "AlgGeo/1", "title") == "Older news"


def test_events_without_one_shared_dtstamp_keep_their_own(db: Database) -> None:
    talks = make_talks(random.Random(9), 3)
    poll(db, body_of(talks, T0), T0)
    body = body_of(talks, T0 + 2 * HOUR)
    mixed = re.sub(  # the first event was stamped earlier (an odd, imported file)
        rb"DTSTAMP:\d{8}T\d{6}Z",
        (T0 + HOUR).strftime("DTSTAMP:%Y%m%dT%H%M%SZ").encode(),
        body,
        count=1,
    )
    assert poll(db, mixed, T0 + 2 * HOUR).counts["unchanged"] == 3
    stamps = db.execute("SELECT uid, dtstamp FROM talks ORDER BY uid").fetchall()
    assert stamps == [
        ("AlgGeo/1", (T0 + HOUR).isoformat()),
        ("AlgGeo/2", (T0 + 2 * HOUR).isoformat()),
        ("AlgGeo/3", (T0 + 2 * HOUR).isoformat()),
    ]
    assert values(db, "SELECT last_seen FROM talks") == {(T0 + 2 * HOUR).isoformat()}


def test_a_poll_earlier_than_the_last_lowers_no_talk(db: Database) -> None:
    talks = make_talks(random.Random(10), 2)
    poll(db, body_of(talks, T0), T0)
    poll(db, body_of(talks, T0 + 2 * HOUR), T0 + 2 * HOUR)
    poll(db, body_of(talks, T0 + HOUR), T0 + HOUR)  # a backfill of an older download
    assert values(db, "SELECT last_seen FROM talks") == {(T0 + 2 * HOUR).isoformat()}
    assert values(db, "SELECT dtstamp FROM talks") == {(T0 + 2 * HOUR).isoformat()}


# --- migration 0011 --------------------------------------------------------------------

OLD_TALKS = (
    "uid, series_id, counter, title, speaker, speakers, series_name, abstract, room, talk_url,"
    " livestream_url, comments, dtstart, dtend, summary, description, location, urls, dtstamp,"
    " fingerprint, version, status, first_seen, last_seen, changed_at, removed_at,"
    " removed_reason"
)
OLD_FEED_TALKS = "feed_id, uid, first_seen, last_seen, present, fingerprint"  # raw_key: 0025


def old_archive(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE_0010.read_text(encoding="utf-8"))
    conn.close()  # the next connection reads the search index's table from the schema


def read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def schema(path: Path) -> set[tuple[Any, ...]]:
    return set(read(path, "SELECT type, name, tbl_name, sql FROM sqlite_master"))


def test_the_migrated_views_answer_as_the_old_tables_did(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_archive(path)
    talks = read(path, f"SELECT {OLD_TALKS} FROM talks ORDER BY uid")
    feed_talks = read(path, f"SELECT {OLD_FEED_TALKS} FROM feed_talks ORDER BY 1, 2")
    assert {t[21] for t in talks} == {"active", "removed"} and len(talks) == 11
    assert {f[4] for f in feed_talks} == {0, 1}
    open_archive(path).close()
    assert read(path, f"SELECT {OLD_TALKS} FROM talks ORDER BY uid") == talks
    assert read(path, f"SELECT {OLD_FEED_TALKS} FROM feed_talks ORDER BY 1, 2") == feed_talks
    open_archive(tmp_path / "fresh.db").close()
    assert schema(path) == schema(tmp_path / "fresh.db")


STATE_KEYS_AGREE = """
    SELECT count(*) FROM talk_state s JOIN talk_versions v
      ON v.uid = s.uid AND v.version = s.version
    WHERE s.version_id = v.id AND s.series_id IS v.series_id AND s.counter IS v.counter
      AND s.series_name IS v.series_name AND s.dtstart IS v.dtstart AND s.dtend IS v.dtend
"""


def test_talk_state_carries_its_current_versions_keys(db: Database, tmp_path: Path) -> None:
    """The pages sort, filter and facet on talk_state's copy of the current version's
    series, counter and times (migration 0015): written with every version, and
    backfilled for an archive made before."""
    talks = make_talks(random.Random(7), 40)
    poll(db, body_of(talks, T0), T0)
    talks[3].start += timedelta(days=7)  # rescheduled
    del talks[5]  # removed
    poll(db, body_of(talks, T0 + HOUR), T0 + HOUR)
    total = db.execute("SELECT count(*) FROM talk_state").fetchone()[0]
    assert total == 40 and db.execute(STATE_KEYS_AGREE).fetchone()[0] == total
    uid = f"{talks[3].series}/{talks[3].counter}"
    starts = [
        row[0]
        for row in db.execute(
            "SELECT dtstart FROM talk_versions WHERE uid = ? ORDER BY version", [uid]
        )
    ]
    state = db.execute("SELECT dtstart FROM talk_state WHERE uid = ?", [uid]).fetchone()[0]
    assert len(starts) == 2 and starts[0] != starts[1] == state == talk(db, uid, "dtstart")
    path = tmp_path / "old.db"
    old_archive(path)
    open_archive(path).close()
    migrated = read(path, STATE_KEYS_AGREE)[0][0]
    assert migrated == read(path, "SELECT count(*) FROM talk_state")[0][0] == 11
