"""Browsing the archive: full-text search, the views, canned queries, the calendar and the
changes feed, through Datasette's own test client with the shipped metadata and plugins.

The archive is built by the real sync against the simulated site, with a few changes
between two syncs: one talk retitled, one rescheduled, one deleted, and a feed that fails.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import icalendar
import pytest
import sqlite_utils
import yaml

from harvester import _schema as browse
from harvester.archive import open_archive
from harvester.cli.serve import build_datasette, load_metadata
from tests.conftest import ROOT, Harvester, write_config
from tests.sitesim import Site
from tests.test_rule2 import old_archive

METADATA = ROOT / "harvester" / "datasette" / "metadata.yml"  # shipped as package data
ATOM = "{http://www.w3.org/2005/Atom}"

# Every test builds its own archive of two syncs (about half a second each).
pytestmark = pytest.mark.slow


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@dataclass
class Archive:
    db_path: Path
    site: Site
    old_numthy_start: datetime


@pytest.fixture
def archive(workdir: Path, site: Site) -> Archive:
    """Two syncs of the simulated site with changes between them, and a failing feed."""
    monday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday -= timedelta(days=monday.weekday())
    numthy = site.series["NumThy"]
    numthy.talks[1].abstract = "Sieve methods and the twin prime conjecture."
    # A talk on this week's Monday (over or still ahead, depending on today).
    numthy.add(2, monday + timedelta(hours=12), [("Srinivasa Ramanujan", "Cambridge")])
    config = write_config(
        workdir, [site.feed_url("AlgGeom"), site.feed_url("NumThy"), site.feed_url("Gone")]
    )
    harvester = Harvester(config)
    assert harvester("sync").exit_code == 1  # the Gone feed fails; the others are archived

    old_start = numthy.talks[1].start
    site.series["AlgGeom"].talks[2].title = "Noetherian rings"
    numthy.talks[1].start = old_start + timedelta(days=2)
    site.series["AlgGeom"].talks.pop(3)
    result = harvester("sync")
    assert "0 new, 2 changed, 1 removed" in result.output, result.output
    return Archive(harvester.db_path, site, old_start)


class Browser:
    """Datasette as `harvester serve` builds it, driven through its own ASGI test client."""

    def __init__(self, db_path: Path) -> None:
        self.ds = build_datasette(db_path, load_metadata(METADATA))
        asyncio.run(self.ds.invoke_startup())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = asyncio.run(self.ds.client.get(path, **kwargs))
        return response

    def rows(self, path: str) -> list[dict[str, Any]]:
        response = self.get(path + ("&" if "?" in path else "?") + "_shape=array")
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()
        return rows

    def uids(self, path: str) -> list[str]:
        return [row["uid"] for row in self.rows(path)]


@pytest.fixture
def browser(archive: Archive) -> Browser:
    return Browser(archive.db_path)


def active_talks(site: Site) -> list[Any]:
    return sorted(
        (talk for series in site.series.values() for talk in series.talks.values()),
        key=lambda t: (t.start, t.uid),
    )


# --- views ----------------------------------------------------------------------------


@pytest.mark.slow
def test_upcoming_talks_are_the_active_ones_not_yet_over(
    browser: Browser, archive: Archive
) -> None:
    now = datetime.now(UTC)
    expected = [
        t.uid for t in active_talks(archive.site) if t.start + timedelta(minutes=t.minutes) >= now
    ]
    assert "AlgGeom/2" in expected and "AlgGeom/3" not in expected
    assert browser.uids("/archive/upcoming_talks.json") == expected
    row = browser.rows("/archive/upcoming_talks.json?uid=AlgGeom/2")[0]
    assert row["title"] == "Noetherian rings"
    assert row["series_name"] == "Algebraic Geometry ∩ Friends"


def test_talks_this_week_run_from_monday_to_sunday(browser: Browser, archive: Archive) -> None:
    monday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday -= timedelta(days=monday.weekday())
    expected = [
        t.uid for t in active_talks(archive.site) if monday <= t.start < monday + timedelta(days=7)
    ]
    assert "NumThy/2" in expected  # the Monday talk, whatever day it is
    assert browser.uids("/archive/talks_this_week.json") == expected


def test_recent_changes_say_what_changed(browser: Browser, archive: Archive) -> None:
    rows = {row["uid"]: row for row in browser.rows("/archive/recent_changes.json")}
    assert set(rows) == {"AlgGeom/2", "NumThy/1", "AlgGeom/3"}  # first sightings are not listed
    assert rows["AlgGeom/2"]["change_kind"] == "retitled"
    assert rows["AlgGeom/2"]["what_changed"] == "title: Rings and ideals → Noetherian rings"
    old, new = archive.old_numthy_start, archive.old_numthy_start + timedelta(days=2)
    assert rows["NumThy/1"]["change_kind"] == "rescheduled"
    assert rows["NumThy/1"]["what_changed"] == (
        f"start: {old:%Y-%m-%d %H:%M} UTC → {new:%Y-%m-%d %H:%M} UTC"
    )
    assert rows["AlgGeom/3"]["change_kind"] == "removed"
    assert all(row["version"] == 2 for row in rows.values())
    observed = [row["observed_at"] for row in browser.rows("/archive/recent_changes.json")]
    assert observed == sorted(observed, reverse=True)  # newest first
    facets = browser.get("/archive/recent_changes.json").json()["facet_results"]
    counts = {v["value"]: v["count"] for v in facets["change_kind"]["results"]}
    assert counts == {"retitled": 1, "rescheduled": 1, "removed": 1}


def test_rescheduled_talks_show_old_and_new_start(browser: Browser, archive: Archive) -> None:
    rows = browser.rows("/archive/rescheduled_talks.json")
    new_start = archive.old_numthy_start + timedelta(days=2)
    assert [(r["uid"], r["old_start"], r["new_start"], r["moved_by"]) for r in rows] == [
        ("NumThy/1", iso(archive.old_numthy_start), iso(new_start), "+2 days")
    ]
    assert rows[0]["current_start"] == iso(new_start)
    assert rows[0]["current_status"] == "active"


def test_cancelled_talks_are_removed_upcoming_ones(browser: Browser) -> None:
    rows = browser.rows("/archive/cancelled_talks.json")
    assert [(r["uid"], r["title"]) for r in rows] == [
        ("AlgGeom/3", "Computability, and what it means")
    ]
    assert rows[0]["removed_at"]


@pytest.mark.slow
def test_feed_health_puts_failing_feeds_first(browser: Browser) -> None:
    rows = browser.rows("/archive/feed_health.json")
    assert [(r["name"], r["health"]) for r in rows] == [
        ("Gone", "failing"),
        ("AlgGeom", "ok"),
        ("NumThy", "ok"),
    ]
    gone, alg, numthy = rows
    assert gone["consecutive_failures"] == 2 and gone["failures_24h"] == 2
    assert "404" in gone["last_error"] and gone["last_success"] is None
    assert (alg["talks"], alg["last_changed"], alg["last_removed"]) == (2, 1, 1)
    assert (numthy["talks"], numthy["polls_24h"], numthy["failures_24h"]) == (2, 2, 0)
    assert alg["last_poll"] == alg["last_success"]


# --- canned queries --------------------------------------------------------------------


@pytest.mark.slow
def test_history_of_one_talk(browser: Browser) -> None:
    rows = browser.rows("/archive/talk_history.json?uid=AlgGeom/2")
    assert [(r["version"], r["change_kind"], r["title"]) for r in rows] == [
        (1, "new", "Rings and ideals"),
        (2, "retitled", "Noetherian rings"),
    ]
    assert rows[1]["what_changed"] == "title: Rings and ideals → Noetherian rings"
    assert browser.rows("/archive/talk_history.json?uid=Nope/1") == []


def test_speaker_talks_across_series(browser: Browser) -> None:
    assert browser.uids("/archive/speaker_talks.json?speaker=noether") == ["AlgGeom/2"]
    # affiliations too, and removed talks (with their status)
    rows = browser.rows("/archive/speaker_talks.json?speaker=Princeton")
    assert [(r["uid"], r["status"]) for r in rows] == [("AlgGeom/3", "removed")]
    assert browser.rows("/archive/speaker_talks.json?speaker=") == []
    # Alan Turing, Srinivasa Ramanujan, Analytical Engines: newest first, across series
    assert browser.uids("/archive/speaker_talks.json?speaker=an") == [
        "AlgGeom/3",
        "NumThy/2",
        "AlgGeom/1",
    ]


def test_calendar_is_valid_icalendar_of_upcoming_talks(browser: Browser, archive: Archive) -> None:
    response = browser.get("/archive/calendar.ics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(response.content)
    assert str(calendar["X-WR-CALNAME"]) == "Seminar calendar"
    events = {str(e["UID"]): e for e in calendar.walk("VEVENT")}
    # from 14 days ago on: not AlgGeom/1 (30 days ago), not the removed AlgGeom/3
    assert set(events) == {"AlgGeom/2", "NumThy/1", "NumThy/2"}
    assert str(events["AlgGeom/2"]["SUMMARY"]) == "Noetherian rings — Emmy Noether (Göttingen)"
    assert str(events["NumThy/1"]["SUMMARY"]).startswith("Primes $p$ & more")
    new_start = archive.old_numthy_start + timedelta(days=2)
    assert events["NumThy/1"].decoded("DTSTART") == new_start
    assert events["NumThy/1"].decoded("DTEND") == new_start + timedelta(hours=1)
    assert "twin prime" in str(events["NumThy/1"]["DESCRIPTION"])

    one = icalendar.Calendar.from_ical(browser.get("/archive/calendar.ics?series=NumThy").content)
    assert {str(e["UID"]) for e in one.walk("VEVENT")} == {"NumThy/1", "NumThy/2"}
    two = browser.get("/archive/calendar.ics?series=NumThy,%20AlgGeom").content
    assert len(icalendar.Calendar.from_ical(two).walk("VEVENT")) == 3


def test_changes_feed_is_valid_atom_with_the_changes(browser: Browser) -> None:
    response = browser.get("/archive/changes_feed.atom")
    assert response.status_code == 200, response.text
    feed = ET.fromstring(response.content)
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}title") == "Seminar archive changes"
    entries = feed.findall(f"{ATOM}entry")
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    assert "Retitled: Noetherian rings" in titles
    assert "Rescheduled: Primes $p$ & more" in titles
    assert "Removed: Computability, and what it means" in titles
    assert titles.count("New: Rings and ideals") == 1
    assert len(entries) == 5 + 3  # five talks first seen, three changes
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == len(ids) and all(ids)
    for entry in entries:
        assert entry.findtext(f"{ATOM}updated")
        link = entry.find(f"{ATOM}link")
        assert link is not None and link.get("href", "").startswith("https://")
    retitled = entries[titles.index("Retitled: Noetherian rings")]
    assert "Rings and ideals → Noetherian rings" in (retitled.findtext(f"{ATOM}content") or "")

    # one series only; and a feed with no changes is still a valid feed
    some = ET.fromstring(browser.get("/archive/changes_feed.atom?series=NumThy").content)
    assert len(some.findall(f"{ATOM}entry")) == 3
    none = browser.get("/archive/changes_feed.atom?series=Nope")
    assert none.status_code == 200
    assert none.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert ET.fromstring(none.content).findall(f"{ATOM}entry") == []


# --- search ----------------------------------------------------------------------------


def test_search_finds_a_talk_by_a_word_of_its_abstract(browser: Browser) -> None:
    assert browser.uids("/archive/talks.json?_search=sieve") == ["NumThy/1"]
    assert browser.uids("/archive/talks.json?_search=conjectures") == ["NumThy/1"]  # stemmed
    assert browser.uids("/archive/talks.json?_search=Gottingen") == ["AlgGeom/2"]  # diacritics
    assert browser.uids("/archive/talks.json?_search=Princeton") == ["AlgGeom/3"]  # affiliation
    assert browser.uids("/archive/talks.json?_search=number%20theory") == ["NumThy/1", "NumThy/2"]
    # the index follows the new title, not the old one
    assert browser.uids("/archive/talks.json?_search=noetherian") == ["AlgGeom/2"]
    assert browser.uids("/archive/talks.json?_search=ideals") == []


def fts_state(db_path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT id, block FROM talks_fts_data ORDER BY id").fetchall()
    finally:
        conn.close()


def test_an_unchanged_poll_leaves_the_search_index_alone(harvester: Harvester, site: Site) -> None:
    assert harvester("sync").exit_code == 0
    before = fts_state(harvester.db_path)
    result = harvester("sync")
    assert "4 unchanged" in result.output  # last_seen and dtstamp were rewritten ...
    assert fts_state(harvester.db_path) == before  # ... and the index was not touched
    site.series["AlgGeom"].talks[1].title = "Newer results"
    assert "1 changed" in harvester("sync").output
    assert fts_state(harvester.db_path) != before
    db = sqlite_utils.Database(harvester.db_path)
    # talks is a view (migration 0011); the index holds the current talk_versions rows
    hits = db.execute(
        "SELECT t.uid FROM talks_fts JOIN talks t ON t.version_id = talks_fts.rowid"
        " WHERE talks_fts MATCH 'newer'"
    ).fetchall()
    assert hits == [("AlgGeom/1",)]
    trigger = db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'talk_state_fts_update'"
    ).fetchone()[0]
    assert "AFTER UPDATE OF [version] ON [talk_state]" in trigger


def test_an_existing_archive_gains_search_and_views_on_migrate(tmp_path: Path) -> None:
    # An archive of the release before 0011 (tests/fixtures/archive_0010.sql), made into
    # one from before the 0003 migrations; opening it applies them, then 0011.
    path = tmp_path / "old.db"
    old_archive(path)
    db = sqlite_utils.Database(path)
    db.table("talks").disable_fts()
    for view in browse.VIEWS:
        db.execute(f"DROP VIEW IF EXISTS [{view}]")
    db.execute("DELETE FROM _sqlite_migrations WHERE name LIKE '0003_%'")
    db.conn.commit()
    assert not db["talks_fts"].exists()
    talks = db.execute("SELECT count(*) FROM talks").fetchone()[0]
    db.close()

    db = open_archive(path)
    # one document per talk (its current version; count(*) would read talk_versions)
    assert db.execute("SELECT count(*) FROM talks_fts_docsize").fetchone()[0] == talks == 11
    assert set(browse.VIEWS) <= set(db.view_names())
    hits = db.execute(
        "SELECT t.uid FROM talks_fts JOIN talks t ON t.version_id = talks_fts.rowid"
        " WHERE talks_fts MATCH 'new title'"
    ).fetchall()
    assert hits == [("AlgGeo/3",)]


# --- what is shown and hidden ----------------------------------------------------------


def test_raw_and_fingerprint_are_hidden_from_the_talk_versions_page(browser: Browser) -> None:
    page = browser.get("/archive/talk_versions")
    assert page.status_code == 200  # no redirect: the address stays as typed
    columns = re.findall(r'data-column="([^"]+)"', page.text)
    assert "observed_at" in columns and "changed_fields" in columns
    assert "raw" not in columns and "fingerprint" not in columns
    assert "BEGIN:VEVENT" not in page.text
    # other arguments are kept; choosing the columns yourself turns it off
    kept = browser.get("/archive/talk_versions?change=removed")
    assert kept.status_code == 200 and "raw" not in re.findall(r'data-column="([^"]+)"', kept.text)
    chosen = browser.get("/archive/talk_versions?_col=raw")
    assert chosen.status_code == 200 and "BEGIN:VEVENT" in chosen.text
    talks = re.findall(r'data-column="([^"]+)"', browser.get("/archive/talks").text)
    assert "title" in talks
    assert not {"fingerprint", "dtstamp", "summary", "description", "location"} & set(talks)
    # the JSON keeps every column
    assert "raw" in browser.rows("/archive/talk_versions.json")[0]
    # no view or canned query shows them
    for path in ("/archive/talk_changes.json", "/archive/talk_history.json?uid=AlgGeom/2"):
        assert not {"raw", "fingerprint"} & set(browser.rows(path)[0])


@pytest.mark.slow
def test_bookkeeping_tables_are_hidden(browser: Browser) -> None:
    tables = {t["name"]: t for t in browser.get("/archive.json").json()["tables"]}
    assert tables["_sqlite_migrations"]["hidden"]
    assert tables["talks_fts"]["hidden"] and tables["talks_fts_data"]["hidden"]
    assert not tables["talk_versions"]["hidden"]
    # talks is a view (migration 0011), searched through talks_fts by its version_id
    views = browser.get("/archive.json").json()["views"]
    assert "talks" in {v["name"] if isinstance(v, dict) else v for v in views}
    assert 'name="_search"' in browser.get("/archive/talks").text


def test_the_web_cannot_write(browser: Browser, archive: Archive) -> None:
    response = browser.get("/archive.json?sql=update+talk_state+set+status+%3D+%27x%27")
    assert response.status_code == 400
    assert "Statement must be a SELECT" in response.text
    # even Datasette's own write connection is query_only
    database = browser.ds.get_database("archive")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        asyncio.run(database.execute_write("UPDATE talk_state SET status = 'x'"))
    db = sqlite_utils.Database(archive.db_path)
    assert "x" not in {row["status"] for row in db.query("SELECT status FROM talks")}


def test_the_web_cannot_read_the_url_hash_salt(browser: Browser, archive: Archive) -> None:
    db = sqlite_utils.Database(archive.db_path)
    salt = db.execute("SELECT value FROM archive_meta WHERE key = 'url_hash_salt'").fetchone()[0]
    assert salt
    rows = browser.rows("/archive.json?sql=select+key,+value+from+archive_meta&_shape=array")
    assert {"key": "url_hash_salt", "value": None} in rows
    page = browser.get("/archive/archive_meta")
    assert salt not in page.text
    assert salt not in browser.get("/archive/archive_meta.json").text


@pytest.mark.slow
def test_front_page_links_all_work(browser: Browser) -> None:
    page = browser.get("/")
    assert page.status_code == 200
    assert "<h1>Seminar archive</h1>" in page.text
    links = re.findall(r'href="(archive/[^"]+)"', page.text)
    assert {"archive/upcoming_talks", "archive/calendar.ics", "archive/changes_feed.atom"} <= set(
        links
    )
    for link in links:
        response = browser.get("/" + link, follow_redirects=True)
        assert response.status_code == 200, link
    database_page = browser.get("/archive")
    assert database_page.status_code == 200
    for title in ("Full history of one talk", "Seminar calendar", "Seminar archive changes"):
        assert title in database_page.text


def test_every_view_and_canned_query_has_a_title_and_description(browser: Browser) -> None:
    metadata = yaml.safe_load(METADATA.read_text(encoding="utf-8"))
    database = metadata["databases"]["archive"]
    for name in browse.VIEWS:
        table = database["tables"][name]
        assert table.get("title") and table.get("description"), name
    assert set(database["queries"]) == {
        "search",
        "talk_history",
        "speaker_talks",
        "calendar",
        "feed_calendar",
        "changes_feed",
        "talks_for_me",
    }
    for name, query in database["queries"].items():
        assert query.get("title") and (query.get("description") or query.get("description_html"))
        assert not query.get("write"), name
        # and each one runs
        assert browser.get(f"/archive/{name}.json").status_code == 200, name
    for name in browse.VIEWS:
        assert browser.get(f"/archive/{name}.json").status_code == 200, name
