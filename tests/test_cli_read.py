"""`import`, `history`, `export` and `status` through the real CLI."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
import sqlite_utils

from tests.conftest import SAMPLE, Harvester, write_config
from tests.rows import talk_row
from tests.sitesim import Site, serve


def sample_harvester(workdir: Path) -> Harvester:
    return Harvester(write_config(workdir, []))


def test_import_then_export_shows_the_four_sample_talks(workdir: Path) -> None:
    h = sample_harvester(workdir)
    result = h("import", str(SAMPLE))
    assert result.exit_code == 0, result.output
    assert "1 feed: 4 new" in result.output
    talks = json.loads(h("export").output)
    assert [t["uid"] for t in talks] == [f"PhysicsMeetsML/{n}" for n in range(1, 5)]
    assert talks[0]["title"] == "Natural Graph Networks"
    assert talks[0]["speakers"] == [{"name": "Taco Cohen", "affiliation": "Qualcomm AI Research"}]
    assert "raw" not in talks[0] and "fingerprint" not in talks[0]
    db = sqlite_utils.Database(h.db_path)
    assert next(db.query("SELECT kind, url FROM feeds"))["kind"] == "file"


def test_import_as_a_configured_feed_at_a_given_time(workdir: Path, sample_copy: Path) -> None:
    url = "https://researchseminars.org/seminar/PhysicsMeetsML/ics"
    h = Harvester(write_config(workdir, [url]))
    assert (
        h(
            "import",
            str(sample_copy),
            "--feed",
            "PhysicsMeetsML",
            "--observed-at",
            "2026-04-23T00:00:00",
        ).exit_code
        == 0
    )
    edited = sample_copy.read_bytes().replace(
        b"DTSTAMP:20260422T225703Z", b"DTSTAMP:20260501T000000Z"
    )
    edited = edited.replace(b"Deep learning and quantum gravity", b"Deep learning and gravity")
    sample_copy.write_bytes(edited)
    assert (
        h(
            "import", str(sample_copy), "--feed", url, "--observed-at", "2026-05-01T00:00:00Z"
        ).exit_code
        == 0
    )
    history = json.loads(h("history", "PhysicsMeetsML/4", "--json").output)
    assert [(v["version"], v["change"], v["observed_at"]) for v in history] == [
        (1, "new", "2026-04-23T00:00:00+00:00"),
        (2, "changed", "2026-05-01T00:00:00+00:00"),
    ]
    assert history[1]["changed_fields"] == ["title", "description"]
    before = json.loads(h("export", "--as-of", "2026-04-30").output)
    assert before[3]["title"] == "Deep learning and quantum gravity"
    assert json.loads(h("export", "--as-of", "2026-04-01").output) == []
    db = sqlite_utils.Database(h.db_path)
    assert [r["name"] for r in db.query("SELECT name FROM feeds")] == ["PhysicsMeetsML"]


def test_import_of_a_broken_file_fails_cleanly(workdir: Path, sample_copy: Path) -> None:
    h = sample_harvester(workdir)
    broken = workdir / "broken.ics"
    broken.write_bytes(SAMPLE.read_bytes()[:2000])
    result = h("import", str(broken), str(sample_copy))
    assert result.exit_code == 1
    assert "error: broken.ics: not one complete VCALENDAR" in result.stderr
    assert "4 new" in result.output  # the good file was still archived


def test_import_stale_copy_is_ignored(workdir: Path, sample_copy: Path) -> None:
    h = sample_harvester(workdir)
    newer = sample_copy.read_bytes().replace(
        b"DTSTAMP:20260422T225703Z", b"DTSTAMP:20260601T000000Z"
    )
    newer_file = workdir / "newer.ics"
    newer_file.write_bytes(newer.replace(b"Natural Graph Networks", b"NGN"))
    h(
        "import",
        str(newer_file),
        "--feed",
        "https://researchseminars.org/seminar/PhysicsMeetsML/ics",
    )
    h(
        "import",
        str(sample_copy),
        "--feed",
        "https://researchseminars.org/seminar/PhysicsMeetsML/ics",
    )
    db = sqlite_utils.Database(h.db_path)
    assert talk_row(db, "PhysicsMeetsML/1")["title"] == "NGN"
    assert db.execute("SELECT stale FROM fetches ORDER BY id DESC").fetchone()[0] == 1


def test_history_text_shows_what_changed(harvester: Harvester, site: Site) -> None:
    harvester("sync")
    site.series["AlgGeom"].talks[2].title = "Noetherian rings"
    harvester("sync")
    result = harvester("history", "AlgGeom/2")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "AlgGeom/2: Noetherian rings"
    assert lines[1].startswith("  v1  ") and lines[1].endswith("  new")
    assert lines[2].startswith("  v2  ") and lines[2].endswith("  changed")
    assert "      title: 'Rings and ideals' → 'Noetherian rings'" in lines


def test_history_of_unknown_uid_exits_1(harvester: Harvester) -> None:
    result = harvester("history", "Nope/1")
    assert result.exit_code == 1 and "no talk with UID 'Nope/1'" in result.stderr


def test_export_csv_and_ics(harvester: Harvester, workdir: Path) -> None:
    harvester("sync")
    rows = list(csv.DictReader(io.StringIO(harvester("export", "--format", "csv").output)))
    assert [r["uid"] for r in rows] == ["AlgGeom/1", "AlgGeom/2", "AlgGeom/3", "NumThy/1"]
    assert json.loads(rows[2]["speakers"])[1] == {
        "name": "Alonzo Church",
        "affiliation": "Princeton",
    }
    out = workdir / "talks.ics"
    assert harvester("export", "--format", "ics", "-o", str(out)).exit_code == 0
    calendar = icalendar.Calendar.from_ical(out.read_bytes())
    events = {str(e["UID"]): e for e in calendar.walk("VEVENT")}
    assert sorted(events) == [r["uid"] for r in rows]
    assert str(events["AlgGeom/2"]["SUMMARY"]) == "Rings and ideals — Emmy Noether (Göttingen)"
    start: Any = events["AlgGeom/2"]["DTSTART"]
    assert start.dt.isoformat() == rows[1]["dtstart"]


def test_status_lines_and_exit_code(harvester: Harvester, site: Site) -> None:
    harvester("sync")
    result = harvester("status")
    assert result.exit_code == 0
    header, *rows = result.output.splitlines()
    # No feed has a problem: no PROBLEMS column.
    assert header.split() == [
        "FEED",
        "OUTCOME",
        "LAST",
        "POLL",
        "LAST",
        "SUCCESS",
        "TALKS",
        "CHANGES",
    ]
    assert rows[0].startswith("AlgGeom  changed  ") and rows[0].endswith("      3  3 new")
    del site.series["NumThy"]
    harvester("sync")
    result = harvester("status", "--json")
    assert result.exit_code == 1
    feeds = {f["name"]: f for f in json.loads(result.output)}
    assert (
        feeds["NumThy"]["last_outcome"] == "error" and feeds["NumThy"]["consecutive_failures"] == 1
    )
    assert feeds["AlgGeom"]["last_outcome"] == "unchanged" and feeds["AlgGeom"]["unchanged"] == 3


HUMAN_TIME = r"\w{3} \d{1,2} \w{3} \d{4}, \d\d:\d\d UTC"


def on_screen(line: str) -> str:
    """`line` as a terminal lays it out: a wide (CJK) character takes two columns."""
    return "".join(c + "\0" * (unicodedata.east_asian_width(c) in "WF") for c in line)


@pytest.mark.slow
def test_status_is_a_table_whose_columns_line_up(workdir: Path) -> None:
    sim = Site()
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    sim.add_series("A", "One talk").add(1, start, [("Ada", None)])
    many = sim.add_series("ALongerSeriesName", "A thousand talks")
    for counter in range(1, 1001):
        many.add(counter, start + timedelta(hours=counter), [("Bob", None)])
    sim.add_series("W", "Wide").add(1, start, [("Chen", None)])
    with serve(sim):
        config = write_config(workdir, [sim.feed_url("A"), sim.feed_url("ALongerSeriesName")])
        with config.open("a", encoding="utf-8") as file:
            file.write(f'\n[[feeds]]\nname = "代数幾何"\nurl = "{sim.feed_url("W")}"\n')
            file.write(f'\n[[feeds]]\nname = "Gone"\nurl = "{sim.base_url}/seminar/Gone/ics"\n')
        h = Harvester(config)
        h("sync")
        result = h("status")
    assert result.exit_code == 1  # Gone fails
    header, *rows = [on_screen(line) for line in result.stdout.splitlines()]
    assert len(rows) == 4
    starts = {name: header.index(name) for name in re.findall(r"[A-Z]+(?: [A-Z]+)?", header)}
    columns = "FEED, OUTCOME, LAST POLL, LAST SUCCESS, TALKS, CHANGES, PROBLEMS"
    assert list(starts) == columns.split(", ")
    talks_end = starts["TALKS"] + len("TALKS")
    for row in rows:
        for name, column in starts.items():
            if name == "TALKS":  # numbers: right-aligned under the header's end
                assert row[talks_end - 1].isdigit() and row[talks_end] == " ", (row, header)
            elif column < len(row) and row[column] != " ":
                assert column == 0 or row[column - 1] == " ", (name, row, header)
    cells = {row.split("  ")[0].replace("\0", ""): row.replace("\0", "") for row in rows}
    assert re.search(rf"^A  +changed  {HUMAN_TIME}  {HUMAN_TIME}  +1  1 new$", cells["A"])
    assert re.search(r"  1000  1000 new$", cells["ALongerSeriesName"])
    assert re.search(
        rf"^Gone  +error  +{HUMAN_TIME}  never  +0  +1 failure: HTTP 404", cells["Gone"]
    )
    assert "+00:00" not in result.stdout
    feeds = {f["name"]: f for f in json.loads(h("status", "--json").stdout)}
    assert feeds["ALongerSeriesName"]["talks"] == 1000 and feeds["A"]["talks"] == 1
    assert datetime.fromisoformat(feeds["A"]["last_fetched_at"]).tzinfo is not None
    assert feeds["Gone"]["last_success_at"] is None and feeds["Gone"]["consecutive_failures"] == 1


@pytest.mark.slow
def test_console_script_runs_and_reports_exit_codes(workdir: Path) -> None:
    exe = Path(sys.executable).with_name("harvester")
    config = write_config(workdir, [])
    ok = subprocess.run(
        [str(exe), "--config", str(config), "import", str(SAMPLE)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert '"event": "feed.polled"' in ok.stderr  # JSON logs when not on a terminal
    usage = subprocess.run(
        [str(exe), "--config", str(config), "export", "--format", "xml"], capture_output=True
    )
    assert usage.returncode == 2
    for command in ("sync", "import", "history", "export", "status"):
        helped = subprocess.run([str(exe), command, "--help"], capture_output=True, text=True)
        assert helped.returncode == 0 and "Usage: harvester " + command in helped.stdout
