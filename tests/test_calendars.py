"""The one calendar renderer, strictly read, on talks as the real pipeline archives them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from harvester.archive import open_archive, talks_as_of
from harvester.calendars import render_calendar
from tests.conftest import Harvester
from tests.sitesim import Site
from tests.strictics import strict_events


def archived_talks(harvester: Harvester) -> list[dict[str, Any]]:
    assert harvester("sync").exit_code == 0
    return talks_as_of(open_archive(harvester.db_path), datetime.now(UTC))


def test_every_event_is_strict_and_complete(harvester: Harvester) -> None:
    talks = archived_talks(harvester)
    events = strict_events(render_calendar(talks))
    assert sorted(e["UID"] for e in events) == sorted(t["uid"] for t in talks)
    turing = next(e for e in events if e["UID"] == "AlgGeom/3")
    assert turing["SUMMARY"] == (
        r"Computability\, and what it means — Alan Turing (Manchester) and Alonzo Church"
        " (Princeton)"
    )
    assert (
        r"Speakers: Alan Turing (Manchester)\, Alonzo Church (Princeton)" in turing["DESCRIPTION"]
    )
    assert "Room: MIT 2-142" in turing["DESCRIPTION"] and "<a" not in turing["DESCRIPTION"]
    assert turing["URL"] == "https://researchseminars.org/talk/AlgGeom/3/"
    assert turing["SEQUENCE"] == "1"


def test_one_series_calendar_is_named_after_the_series(harvester: Harvester) -> None:
    talks = [t for t in archived_talks(harvester) if t["series_id"] == "NumThy"]
    body = render_calendar(talks).decode()
    assert "X-WR-CALNAME:Number Theory Web Seminar\r\n" in body
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n" in body


@pytest.mark.slow
def test_sequence_grows_and_a_rescheduled_talk_appears_once(
    harvester: Harvester, site: Site
) -> None:
    before = {e["UID"]: e for e in strict_events(render_calendar(archived_talks(harvester)))}
    talk = site.series["AlgGeom"].talks[2]
    talk.start = talk.start.replace(hour=(talk.start.hour + 2) % 24)
    after = strict_events(render_calendar(archived_talks(harvester)))
    moved = [e for e in after if e["UID"] == "AlgGeom/2"]
    assert len(moved) == 1
    assert int(moved[0]["SEQUENCE"]) == int(before["AlgGeom/2"]["SEQUENCE"]) + 1
    assert moved[0]["DTSTART"] == talk.start.strftime("%Y%m%dT%H%M%SZ")


def test_removed_and_old_slots_left_out_or_cancelled(harvester: Harvester) -> None:
    talks = archived_talks(harvester)
    removed = {**talks[0], "status": "removed"}
    old_slot = {**talks[1], "uid": "AlgGeom/-1", "counter": -1}
    rows = [removed, old_slot, *talks[2:]]
    assert {e["UID"] for e in strict_events(render_calendar(rows))} == {t["uid"] for t in talks[2:]}
    kept = strict_events(render_calendar(rows, keep_cancelled=True))
    assert {e["UID"]: e.get("STATUS") for e in kept}[removed["uid"]] == "CANCELLED"


def test_hostile_talks_do_not_break_the_calendar_for_the_others(
    harvester: Harvester,
) -> None:
    talks = archived_talks(harvester)
    hostile = [
        {**talks[0], "uid": "X/" + "é" * 1000, "room": "Room 1\r\nBEGIN:VEVENT"},
        {**talks[1], "title": "Bell\x07 and \x1b[31mred", "talk_url": "javascript:alert(1)"},
        {**talks[2], "dtstart": "not a time"},
    ]
    events = strict_events(render_calendar([*hostile, *talks[3:]]))
    uids = [e["UID"] for e in events]
    assert (
        uids[0] == "X/" + "é" * 1000 and "BEGIN:VEVENT" not in events[0]["LOCATION"].split(r"\n")[0]
    )
    assert "URL" not in events[1] and "\x1b" not in events[1]["SUMMARY"]
    assert talks[2]["uid"] not in uids and all(t["uid"] in uids for t in talks[3:])


def test_speakers_text_reads_the_stored_json() -> None:
    row = {
        "uid": "S/1",
        "dtstart": "2026-12-01T16:00:00+00:00",
        "speakers": json.dumps([{"name": "Sophie Germain", "affiliation": None}]),
        "title": "Primes",
        "speaker": "Sophie Germain",
    }
    (event,) = strict_events(render_calendar([row]))
    assert "Speakers: Sophie Germain" in event["DESCRIPTION"]
    assert event["DTEND"] == "20261201T170000Z"
