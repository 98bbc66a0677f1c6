# ruff: noqa: F811  (the fixtures of test_datasette, imported to be shared)
"""The pages, calendars and feeds as a reader meets them, through Datasette's test client."""

from __future__ import annotations

import csv
import io
import itertools
import re
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import sqlite_utils

from harvester.datasette.plugin import CHART_WEEKS, week_chart, word_diff
from harvester.humane import human_time
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


@pytest.mark.slow
def test_no_suggested_facets(browser: Browser) -> None:
    data = browser.get("/archive/talks.json?_extra=suggested_facets").json()
    assert not data.get("suggested_facets")


@pytest.mark.slow
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
    assert "machine: " in done.stdout
    assert "no statistics: worst case " in done.stdout
    assert "after one writing run: worst case " in done.stdout
    assert re.search(r"harvester import: .* s, [1-9]\d* sqlite_stat1 rows", done.stdout)
    assert "/archive/recent_changes" in done.stdout


# --- the change pages at the site's scale --------------------------------------------------


@pytest.fixture
def unplanned(archive: Archive) -> Browser:
    """The pages of an archive whose planner has no statistics (before the first writing
    run of a release that keeps them): the indexes alone must give a plan that scales.
    With statistics, at the site's scale, tests/benchmarks/bench_pages.py times them."""
    with sqlite3.connect(archive.db_path) as conn:
        conn.execute("DROP TABLE IF EXISTS sqlite_stat1")
    conn.close()
    return Browser(archive.db_path)


def plan(browser: Browser, sql: str) -> list[str]:
    """SQLite's plan for `sql` on the archive, as Datasette runs it: one step a line."""
    rows = browser.rows("/archive.json?sql=" + quote("explain query plan " + sql))
    return [row["detail"] for row in rows]


def reads(steps: list[str]) -> list[str]:
    return [step for step in steps if step.startswith(("SCAN", "SEARCH"))]


def facet_sql(view: str, column: str) -> str:
    """The GROUP BY Datasette runs for a column facet of the whole view."""
    return (
        f"select {column} as value, count(*) as count from (select * from {view})"
        f" where {column} is not null group by {column} order by count desc, value limit 31"
    )


def test_every_change_counts_and_facets_without_joining_the_version_before(
    unplanned: Browser,
) -> None:
    browser = unplanned
    # The version before is looked up only for the rows shown: the count and the facets
    # of talk_changes read talk_versions once, whatever its size.
    for sql in [
        "select count(*) from talk_changes",
        *(facet_sql("talk_changes", c) for c in ("change", "automatic", "series_name")),
    ]:
        steps = reads(plan(browser, sql))
        assert len(steps) == 1 and "talk_versions" in steps[0], (sql, steps)
    retitled = browser.rows("/archive/talk_changes.json?uid=AlgGeom/2&version=2")[0]
    assert retitled["previous_title"] == "Rings and ideals"
    assert retitled["what_changed"] == "title: Rings and ideals → Noetherian rings"


def test_changes_for_people_are_read_from_their_own_indexes(unplanned: Browser) -> None:
    browser = unplanned
    # recent_changes and rescheduled_talks (no first sightings, nothing automatic) read the
    # few versions that are such changes, not every version's row, for the count and facets
    # (a count may walk a narrow index of every version instead: no row is read).
    kinds_facet = (
        "with inner as (select * from recent_changes), deduped_array_items as ("
        " select distinct j.value, inner.* from json_each([inner].[kinds]) j join inner)"
        " select value as value, count(*) as count from deduped_array_items"
        " group by value order by count(*) desc, value limit 31"
    )
    for sql in [
        "select count(*) from recent_changes",
        facet_sql("recent_changes", "series_name"),
        facet_sql("recent_changes", "change_kind"),
        kinds_facet,
        "select count(*) from rescheduled_talks",
        facet_sql("rescheduled_talks", "series_name"),
    ]:
        first = reads(plan(browser, sql))[0]
        assert "people_changes" in first or "COVERING INDEX" in first, (sql, first)


def test_change_pages_show_fifty_rows_and_leave_out_what_what_changed_says(
    browser: Browser, archive: Archive
) -> None:
    db = sqlite_utils.Database(archive.db_path)
    talk = db.execute("SELECT * FROM talk_versions WHERE uid = 'NumThy/1' AND version = 2")
    row = dict(zip([d[0] for d in talk.description], talk.fetchone(), strict=True))
    for generated in ("description",):  # computed from the stored columns
        del row[generated]
    for version in range(3, 63):  # sixty more changes of the room
        room = {"id": None, "version": version, "room": f"Room {version}"}
        db.table("talk_versions").insert({**row, **room, "changed_fields": '["room"]'})
    db.conn.commit()
    for view in ("talk_changes", "recent_changes"):
        page = browser.get(f"/archive/{view}.json").json()
        assert len(page["rows"]) == 50 and page["next"], view
    html = browser.get("/archive/talk_changes").text
    columns = re.findall(r'data-column="([^"]+)"', html)
    assert {"observed_at", "what_changed", "change", "automatic", "uid"} <= set(columns)
    hidden = {"previous_title", "previous_dtstart", "changed_fields", "fetch_id", "series_id"}
    assert not hidden & set(columns)
    assert "room: Room 61 → Room 62" in html
    assert "automatic" not in re.findall(
        r'data-column="([^"]+)"', browser.get("/archive/recent_changes").text
    )
    # the JSON keeps every column
    assert hidden <= set(browser.rows("/archive/talk_changes.json")[0])


def test_a_facet_the_metadata_declares_is_not_computed_twice(browser: Browser) -> None:
    # change_kind is a facet of recent_changes already: asking for it again computes it once.
    for args in ("", "&_facet=speaker"):
        asked = browser.get("/archive/recent_changes.json?_facet=change_kind" + args).json()
        plain = browser.get("/archive/recent_changes.json?_size=50" + args).json()
        assert set(asked["facet_results"]) == set(plain["facet_results"]), args
        counts = [
            [(r["value"], r["count"]) for r in data["facet_results"]["change_kind"]["results"]]
            for data in (asked, plain)
        ]
        assert counts[0] == counts[1] and counts[0], counts
    page = browser.get("/archive/recent_changes?_facet=change_kind&_facet=change_kind")
    assert page.status_code == 200 and "change_kind_2" not in page.text
    assert (
        "speaker"
        in browser.get("/archive/recent_changes.json?_facet=speaker").json()["facet_results"]
    )


# --- what a newcomer meets (issue 22, items 3-5) ------------------------------------------


def _sync_again(archive: Archive) -> None:
    result = Harvester(archive.db_path.parent / "harvester.toml")("sync")
    assert result.exit_code in (0, 1), result.output  # 1: the Gone feed still fails


def test_the_talk_page_says_times_as_people_read_them_and_diffs_an_abstract(
    browser: Browser, archive: Archive
) -> None:
    talk = archive.site.series["NumThy"].talks[1]
    talk.abstract = "Sieve methods and the twin prime conjecture, revisited."
    _sync_again(archive)
    page = browser.get("/archive/talk_history?uid=NumThy/1").text
    moved = f"start: {human_time(archive.old_numthy_start.isoformat())} → {human_time(talk.start.isoformat())}"
    assert moved in page
    assert "UTC →" in moved and not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    assert "<del>conjecture.</del> <ins>conjecture, revisited.</ins>" in page
    # every history cell carries the label of its own column (a phone shows it)
    table = page.split('class="rows-and-columns harvester-history"', 1)[1].split("</table>")[0]
    headers = re.findall(r'<th class="(col-\d+)" scope="col">([^<]+)</th>', table)
    labels = dict(headers)
    cells = re.findall(r'<td class="(col-\d+)[^"]*" data-label="([^"]+)"', table)
    assert len(cells) >= 6 * 3 and all(labels[column] == label for column, label in cells)


def test_word_diff_shortens_what_did_not_change() -> None:
    old = " ".join(f"w{n}" for n in range(40))
    new = old.replace("w20", "twenty")
    diff = str(word_diff(old, new, context=3))
    assert diff == "… w17 w18 w19 <del>w20</del> <ins>twenty</ins> w21 w22 w23 …"
    assert "&lt;b&gt;" in str(word_diff("a", "<b>"))


def test_a_search_of_the_talks_comes_best_match_first(browser: Browser, archive: Archive) -> None:
    # One mention in a long abstract a week ahead, one in a short one three days ahead.
    archive.site.series["NumThy"].talks[1].abstract = "Long abstract " * 40 + "and twin primes."
    archive.site.series["AlgGeom"].talks[2].abstract = "Twin primes."
    _sync_again(archive)
    by_date = [r["uid"] for r in browser.rows("/archive/talks.json?_search=twin")]
    assert by_date == ["NumThy/1", "AlgGeom/2"]  # Datasette's table: the latest start first
    assert browser.uids("/archive/search.json?q=twin") == ["AlgGeom/2", "NumThy/1"]
    for typed in ("_search=twin", "_search=twin&_sort=dtstart&_sort_by_desc=on"):
        page = browser.get(f"/archive/talks?{typed}")
        assert page.status_code == 200 and "Search talks" in page.text, typed
        assert page.text.index("AlgGeom/2") < page.text.index("NumThy/1"), typed
    # a sort of the reader's own keeps the table (and its facets)
    chosen = browser.get("/archive/talks?_search=twin&_sort=title").text
    assert "Search talks" not in chosen and 'data-column="series_name"' in chosen
    assert browser.get("/archive/search?q=%22unbalanced").status_code == 200


@pytest.mark.slow
def test_the_talks_page_shows_an_abstract_s_first_lines_and_one_speaker_column(
    browser: Browser,
) -> None:
    page = browser.get("/archive/talks").text
    columns = re.findall(r'<th [^>]*data-column="([^"]+)"', page)
    assert "speaker" in columns and "speakers" not in columns and "talk_url" not in columns
    row = next(c for c in page.split("<tr>") if "AlgGeom/3" in c and "col-abstract" in c)
    assert "Long abstract " * 40 not in row and "Long abstract Long" in row
    assert 'href="/archive/talk_history?uid=AlgGeom%2F3" class="harvester-more"' in row


def test_the_front_page_leaves_bookkeeping_tables_out_but_they_stay_queryable(
    browser: Browser,
) -> None:
    for path in ("/", "/archive"):
        page = browser.get(path).text
        listed = set(re.findall(r'href="/archive/([a-z_]+)"', page))
        assert "feeds" in listed, path
        bookkeeping = {"feed_talk_state", "fetches", "notifications", "talk_state", "daemon"}
        assert not bookkeeping & listed, (path, bookkeeping & listed)
    assert browser.get("/archive/fetches.json").status_code == 200


def test_table_and_view_pages_end_without_their_sql(browser: Browser) -> None:
    for path in ("/archive/recent_changes", "/archive/feed_health", "/archive/talks"):
        page = browser.get(path).text
        assert "CREATE VIEW" not in page and 'class="wrapped-sql"' not in page, path
    assert "CREATE TABLE" not in browser.get("/archive/feeds").text


def test_recent_changes_has_one_facet_of_kinds_and_calls_a_removal_removed(
    browser: Browser,
) -> None:
    data = browser.get("/archive/recent_changes.json").json()
    assert set(data["facet_results"]) == {"change_kind", "series_name"}
    kinds = {r["value"] for r in data["facet_results"]["change_kind"]["results"]}
    assert "removed" in kinds and "status" not in kinds
    page = browser.get("/archive/recent_changes").text
    assert "kinds" not in re.findall(r'data-column="([^"]+)"', page)
    assert ">status<" not in page


def test_the_chart_has_one_heading_even_ticks_and_a_phone_version(browser: Browser) -> None:
    page = browser.get("/archive/weekly_changes").text
    assert page.count("<h1") == 1
    charts = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(charts) == 2 and 'class="harvester-chart harvester-chart-phone"' in page


@pytest.mark.parametrize("top", [0, 1, 3, 7, 10, 13, 99, 101, 480, 2500])
def test_chart_ticks_are_even_whole_numbers_reaching_the_highest_week(top: int) -> None:
    week = date.today() - timedelta(days=date.today().weekday())
    since = (week - timedelta(weeks=CHART_WEEKS)).isoformat()
    rows: list[Mapping[str, Any]] = [{"week": week.isoformat(), "kind": "retitled", "changes": top}]
    svg = str(week_chart(rows, since))
    ticks = [int(t) for t in re.findall(r'text-anchor="end" font-size="13">(\d+)</text>', svg)]
    steps = {b - a for a, b in itertools.pairwise(ticks)}
    assert ticks[0] == 0 and ticks[-1] >= top and len(steps) == 1 and 2 <= len(ticks) <= 6
    assert str(steps.pop())[0] in "125"
    if top:
        assert f"week of {week.isoformat()}: {top}" in svg


def test_feed_health_lists_numbered_feeds_in_natural_order(
    browser: Browser, archive: Archive
) -> None:
    conn = sqlite3.connect(archive.db_path)
    with conn:
        conn.execute("UPDATE feeds SET name = 'S' || (1 + (id * 7) % 11), consecutive_failures = 0")
    conn.close()
    names = [r["name"] for r in browser.rows("/archive/feed_health.json")]
    assert len(names) == 3 and names == sorted(names, key=lambda name: int(name[1:])), names


def test_the_talk_page_offers_the_series_calendar_to_subscribe_to(browser: Browser) -> None:
    page = browser.get("/archive/talk_history?uid=NumThy/1").text
    assert re.search(r'href="webcal://[^"]+/archive/calendar\.ics\?series=NumThy"', page)
    assert re.search(r'href="/archive/talks\.ics\?uid=NumThy(/|%2F)1"', page)


def test_recent_changes_say_times_as_people_read_them_json_keeps_them(
    browser: Browser, archive: Archive
) -> None:
    old, new = archive.old_numthy_start, archive.old_numthy_start + timedelta(days=2)
    page = browser.get("/archive/recent_changes?uid=NumThy/1").text
    assert f"start: {human_time(old.isoformat())} → {human_time(new.isoformat())}" in page
    row = browser.rows("/archive/recent_changes.json?uid=NumThy/1")[0]
    assert row["what_changed"] == f"start: {old:%Y-%m-%d %H:%M} UTC → {new:%Y-%m-%d %H:%M} UTC"


def test_the_query_pages_are_titled_by_what_they_show_not_their_sql(browser: Browser) -> None:
    def title(path: str) -> str:
        found = re.search(r"<title>(.*?)</title>", browser.get(path).text, re.S)
        assert found, path
        return found[1].strip()

    assert title("/archive/search?q=rings") == "Search talks: archive"
    assert title("/archive/talk_history") == "Full history of one talk: archive"
    assert title("/archive/talk_history?uid=AlgGeom/2") == (
        "Noetherian rings: Algebraic Geometry ∩ Friends"
    )
    assert "select" in title("/archive?sql=select+1")  # a query of one's own keeps its SQL
