"""Output that cannot be turned against its reader: CSV formulas, Atom links and control
characters, calendars with one malformed talk, terminal escapes, out-of-range times.

Hostile talks come in through the real pipeline (`harvester import` of a crafted .ics)
where it keeps them; what the parser would clean is written into the SQLite file directly.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import icalendar
import pytest

from harvester.cli.serve import build_datasette, load_metadata
from tests.conftest import ROOT, Harvester, write_config

METADATA = ROOT / "harvester" / "datasette" / "metadata.yml"
ATOM = "{http://www.w3.org/2005/Atom}"
LONG_UID = "Long/" + "u" * 1995  # 2,000 characters
START = datetime.now(UTC).replace(microsecond=0, second=0, minute=0) + timedelta(days=3)


def crafted_feed(path: Path) -> Path:
    cal = icalendar.Calendar()
    cal.add("version", "2.0")
    cal.add("prodid", "researchseminars.org")
    for n, (uid, summary, location) in enumerate(
        [
            ("Good/1", "Emmy Noether", "https://researchseminars.org/talk/Good/1/"),
            ("Good/2", '=HYPERLINK("http://evil.example","x")', "Room 1\nInjected: yes"),
            (LONG_UID, "Long UID", "https://researchseminars.org/talk/Long/1/"),
            ("Good/3", "+1-555 @home", "Room 2\r\nBEGIN:VEVENT"),
        ]
    ):
        event = icalendar.Event()
        event.add("uid", uid)
        event.add("summary", summary)
        event.add("dtstart", START + timedelta(hours=n))
        event.add("dtend", START + timedelta(hours=n + 1))
        event.add("dtstamp", START - timedelta(days=7))
        event.add("description", f"Title: Talk {n}\nby {summary} as part of Good\n")
        event.add("location", location)
        cal.add_component(event)
    path.write_bytes(cal.to_ical())
    return path


@pytest.fixture
def hostile(workdir: Path) -> Harvester:
    h = Harvester(write_config(workdir, []))
    result = h("import", str(crafted_feed(workdir / "crafted.ics")))
    assert result.exit_code == 0, result.output
    # what the parser would not keep: control characters, a javascript: link, formulas
    conn = sqlite3.connect(h.db_path)
    for table in ("talk_versions",):  # talks (a view since 0011) reads its content there
        conn.execute(
            f"UPDATE {table} SET title = 'Bell\x07 and \x1b[2J escape\x0b', talk_url ="
            " 'javascript:alert(1)' WHERE uid = 'Good/1'"
        )
        conn.execute(f"UPDATE {table} SET room = '\tcmd', abstract = '\rcmd' WHERE uid = 'Good/3'")
        conn.execute(
            f"UPDATE {table} SET comments = '-2+3', room = '@SUM(A1)' WHERE uid = 'Good/2'"
        )
    conn.commit()
    conn.close()
    return h


DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def assert_no_formula_cells(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    for row in rows:
        for cell in row:
            assert not cell.startswith(DANGEROUS), (cell, row[:3])
    return rows


def test_csv_export_neutralises_formula_cells(hostile: Harvester) -> None:
    result = hostile("export", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = assert_no_formula_cells(result.output)
    header, *talks = rows
    by_uid = {row[header.index("uid")]: dict(zip(header, row, strict=True)) for row in talks}
    assert len(by_uid) == 4
    assert by_uid["Good/3"]["room"] == "'\tcmd"
    assert by_uid["Good/2"]["speaker"].startswith("'=HYPERLINK")


class Browser:
    def __init__(self, db_path: Path) -> None:
        self.ds = build_datasette(db_path, load_metadata(METADATA))
        asyncio.run(self.ds.invoke_startup())

    def get(self, path: str) -> httpx.Response:
        response: httpx.Response = asyncio.run(self.ds.client.get(path))
        return response


def test_datasette_csv_neutralises_formula_cells(hostile: Harvester) -> None:
    browser = Browser(hostile.db_path)
    for path in (
        "/archive/talks.csv",
        "/archive/talks.csv?_stream=on",
        "/archive/upcoming_talks.csv",
    ):
        response = browser.get(path)
        assert response.status_code == 200, response.text
        rows = assert_no_formula_cells(response.text)
        assert len(rows) == 5  # the header and every talk
    query = browser.get("/archive.csv?sql=select+'=1%2B1'+as+x,+'-5'+as+y")
    assert query.text.splitlines()[1:] == ["'=1+1,-5"]


def test_atom_links_only_http_and_survives_control_characters(hostile: Harvester) -> None:
    response = Browser(hostile.db_path).get("/archive/changes_feed.atom")
    assert response.status_code == 200, response.text
    feed = ET.fromstring(response.content)
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 4
    for entry in entries:
        for link in entry.findall(f"{ATOM}link"):
            assert link.get("href", "").startswith(("https://", "http://")), link.get("href")
    titles = [e.findtext(f"{ATOM}title") or "" for e in entries]
    assert "New: Bell and [2J escape" in titles
    assert "javascript" not in response.text


def test_calendars_survive_one_malformed_talk(hostile: Harvester) -> None:
    result = hostile("export", "--format", "ics")
    assert result.exit_code == 0, result.output
    exported = icalendar.Calendar.from_ical(result.output)
    events = {str(e["UID"]): e for e in exported.walk("VEVENT")}
    assert set(events) == {"Good/1", "Good/2", "Good/3", LONG_UID}
    assert str(events["Good/2"]["LOCATION"]) == "@SUM(A1)"  # the room (LOCATION's raw text aside)
    assert "\x07" not in result.output and "\x1b" not in result.output
    assert len(exported.walk("VEVENT")) == 4  # no event smuggled in through LOCATION

    response = Browser(hostile.db_path).get("/archive/calendar.ics")
    assert response.status_code == 200, response.text
    calendar = icalendar.Calendar.from_ical(response.content)
    uids = {str(e["UID"]) for e in calendar.walk("VEVENT")}
    assert {"Good/1", "Good/2", "Good/3"} <= uids and len(uids) == 4
    assert LONG_UID in uids  # the one renderer keeps a long UID whole (folded)
    assert "\x07" not in response.text and "\x1b" not in response.text


def test_history_and_status_escape_control_characters(hostile: Harvester) -> None:
    conn = sqlite3.connect(hostile.db_path)
    conn.execute("UPDATE feeds SET name = 'feed\x1b]0;pwned\x07\r', last_error = 'x\x1b[31m'")
    conn.commit()
    conn.close()
    history = hostile("history", "Good/1")
    assert history.exit_code == 0, history.output
    assert "\x1b" not in history.output and "\x07" not in history.output
    assert "Bell\\x07 and \\x1b[2J escape\\x0b" in history.output
    status = hostile("status")
    assert "\x1b" not in status.output and "\r" not in status.output
    assert "feed\\x1b]0;pwned\\x07\\r" in status.output
    # JSON output unchanged: the real values, JSON-escaped
    assert json.loads(hostile("history", "Good/1", "--json").output)[0]["title"].startswith(
        "Bell\x07"
    )
    assert json.loads(hostile("status", "--json").output)[0]["name"] == "feed\x1b]0;pwned\x07\r"


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_out_of_range_as_of_is_a_usage_error(hostile: Harvester, moment: str) -> None:
    result = hostile("export", "--as-of", moment)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "out of range" in errors[0]
    assert "Traceback" not in result.output
