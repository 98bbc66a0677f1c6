# ruff: noqa: F811  (the fixtures of test_datasette, imported to be shared)
"""The pages, calendars and feeds as a reader meets them, through Datasette's test client."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import sqlite_utils

from harvester import textstore
from tests.conftest import ROOT, Harvester
from tests.strictics import strict_events
from tests.test_datasette import ATOM, Archive, Browser, archive, browser  # noqa: F401


def test_both_calendars_are_strict_and_give_the_same_events(
    browser: Browser, archive: Archive
) -> None:
    harvester = Harvester(archive.db_path.parent / "harvester.toml")
    exported = harvester("export", "--format", "ics")
    assert exported.exit_code == 0, exported.output
    cli = {e["UID"]: e for e in strict_events(exported.stdout_bytes)}
    response = browser.get("/archive/talks.ics")
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    web = {e["UID"]: e for e in strict_events(response.content)}
    assert "AlgGeom/3" not in web and "AlgGeom/3" not in cli  # removed
    assert set(web) == set(cli) == {"AlgGeom/1", "AlgGeom/2", "NumThy/1", "NumThy/2"}
    for uid, event in web.items():
        assert {k: v for k, v in event.items()} == cli[uid], uid
    assert web["NumThy/1"]["SEQUENCE"] == "2" and web["NumThy/2"]["SEQUENCE"] == "1"
    kept = strict_events(browser.get("/archive/talks.ics?_cancelled=1").content)
    assert {e["UID"]: e.get("STATUS") for e in kept}["AlgGeom/3"] == "CANCELLED"


def test_calendars_per_series_speaker_and_feed(browser: Browser) -> None:
    one = browser.get("/archive/calendar.ics?series=NumThy").content
    assert b"X-WR-CALNAME:Number Theory Web Seminar\r\n" in one
    assert {e["UID"] for e in strict_events(one)} == {"NumThy/1", "NumThy/2"}
    speaker = browser.get("/archive/speaker_talks.ics?speaker=noether").content
    assert [e["UID"] for e in strict_events(speaker)] == ["AlgGeom/2"]
    feed = browser.get("/archive/feed_calendar.ics?feed=2").content
    assert {e["UID"] for e in strict_events(feed)} == {"NumThy/1", "NumThy/2"}
    nothing = browser.get("/archive/calendar.ics?series=Nope").content
    assert strict_events(nothing) == [] and b"BEGIN:VTIMEZONE" in nothing  # still a component


def test_atom_is_atom_titled_after_its_filter_with_authors(browser: Browser) -> None:
    response = browser.get("/archive/changes_feed.atom?series=NumThy")
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = ET.fromstring(response.content)
    assert feed.findtext(f"{ATOM}title") == (
        "Seminar archive changes: series Number Theory Web Seminar"
    )
    for entry in feed.findall(f"{ATOM}entry"):
        assert entry.findtext(f"{ATOM}author/{ATOM}name") == "Number Theory Web Seminar"
        link = entry.find(f"{ATOM}link")
        assert link is not None and link.get("href", "").startswith("https://")


def test_atom_leaves_automatic_changes_out_unless_asked(browser: Browser, archive: Archive) -> None:
    db = sqlite_utils.Database(archive.db_path)
    textstore.register(db.conn)  # writing a version computes talk_versions.raw
    db.execute("UPDATE talk_versions SET automatic = 1 WHERE uid = 'AlgGeom/2' AND version = 2")
    db.conn.commit()
    titles = [
        e.findtext(f"{ATOM}title")
        for e in ET.fromstring(browser.get("/archive/changes_feed.atom").content)
    ]
    assert "Retitled: Noetherian rings" not in titles
    with_automatic = browser.get("/archive/changes_feed.atom?automatic=1").text
    assert "Retitled: Noetherian rings" in with_automatic
    assert "AlgGeom/2" not in {r["uid"] for r in browser.rows("/archive/recent_changes.json")}
    facets = browser.get("/archive/talk_changes.json").json()["facet_results"]
    assert {v["value"]: v["count"] for v in facets["automatic"]["results"]}[1] == 1


def test_times_read_well_and_stay_iso_in_json_and_csv(browser: Browser) -> None:
    page = browser.get("/archive/upcoming_talks").text
    assert re.search(
        r"<time datetime=\"[0-9-]+T[^\"]+\"[^>]*>\w{3} \d{1,2} \w{3} \d{4}, \d\d:\d\d UTC</time>",
        page,
    )
    row = browser.rows("/archive/upcoming_talks.json")[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", row["dtstart"])
    text = browser.get("/archive/upcoming_talks.csv").text
    first = next(csv.DictReader(io.StringIO(text)))
    assert first["dtstart"] == row["dtstart"]
    # columns: what matters first
    columns = browser.get("/archive/upcoming_talks.json").json()["columns"]
    assert columns[:4] == ["dtstart", "dtend", "title", "speaker"]


def test_a_uid_links_to_its_talk_page_with_history(browser: Browser) -> None:
    page = browser.get("/archive/recent_changes").text
    assert 'href="/archive/talk_history?uid=AlgGeom%2F2"' in page
    talk = browser.get("/archive/talk_history?uid=AlgGeom%2F2")
    assert talk.status_code == 200
    assert "<h1" in talk.text and "Noetherian rings" in talk.text
    assert "Emmy Noether (Göttingen)" in talk.text
    assert "title: Rings and ideals → Noetherian rings" in talk.text
    assert "History" in talk.text and "retitled" in talk.text
    assert 'href="https://researchseminars.org/talk/AlgGeom/2/"' in talk.text
    assert browser.get("/archive/talk_history.json?uid=AlgGeom%2F2").status_code == 200


def test_speakers_render_as_names_with_affiliations(browser: Browser) -> None:
    page = browser.get("/archive/talks?_col=speakers&_col=title").text
    assert "Alan Turing (Manchester), Alonzo Church (Princeton)" in page
    assert "&#34;affiliation&#34;" not in page and '"affiliation"' not in page


def test_talk_history_without_a_uid_offers_a_box_and_a_list(browser: Browser) -> None:
    page = browser.get("/archive/talk_history").text
    assert "0 results" not in page
    assert 'name="uid"' in page and "Talks that changed last" in page
    assert "/archive/talk_history?uid=AlgGeom/2" in page


def test_the_chart_and_its_data(browser: Browser) -> None:
    page = browser.get("/archive/weekly_changes")
    assert page.status_code == 200
    assert "<svg" in page.text and "<script" not in page.text.split("<svg", 1)[1].split("</svg>")[0]
    assert "http" not in re.sub(
        r'xmlns="[^"]+"', "", page.text.split("<svg", 1)[1].split("</svg>")[0]
    )
    rows = browser.rows("/archive/weekly_changes.json")
    assert sum(r["changes"] for r in rows) == 3
    assert {r["kind"] for r in rows} == {"retitled", "rescheduled", "removed"}
    assert "retitled, week of" in page.text


def test_no_suggested_facets(browser: Browser) -> None:
    data = browser.get("/archive/talks.json?_extra=suggested_facets").json()
    assert not data.get("suggested_facets")


def test_bench_pages_runs_in_quick_mode() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "benchmarks" / "bench_pages.py"),
            "--quick",
            "--talks",
            "3000",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "machine: " in done.stdout and "worst case: " in done.stdout
    assert "/archive/recent_changes" in done.stdout
