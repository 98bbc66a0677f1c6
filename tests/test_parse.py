"""The parse stage on the real sample feed and on the shapes the site produces."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvester.errors import ParseError
from harvester.model import Speaker
from harvester.parse import fingerprint_block, parse_feed, split_vevents
from harvester.sitetext import parse_speakers
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def sample_talks():  # type: ignore[no-untyped-def]
    return {t.uid: t for t in parse_feed(SAMPLE.read_bytes()).talks}


def test_sample_has_four_talks_with_titles_and_speakers(sample_talks) -> None:  # type: ignore[no-untyped-def]
    assert sorted(sample_talks) == [f"PhysicsMeetsML/{n}" for n in range(1, 5)]
    assert {uid: t.title for uid, t in sample_talks.items()} == {
        "PhysicsMeetsML/1": "Natural Graph Networks",
        "PhysicsMeetsML/2": "Building symmetries into generative flow models",
        "PhysicsMeetsML/3": "Why do neural networks generalise in the overparameterised regime?",
        "PhysicsMeetsML/4": "Deep learning and quantum gravity",
    }
    assert [t.speakers for t in sample_talks.values()] == [
        (Speaker("Taco Cohen", "Qualcomm AI Research"),),
        (Speaker("Phiala Shanahan", "MIT"),),
        (Speaker("Ard Louis", "Oxford"),),
        (Speaker("Koji Hashimoto", "Osaka University"),),
    ]


def test_sample_series_times_abstracts_and_urls(sample_talks) -> None:  # type: ignore[no-untyped-def]
    first = sample_talks["PhysicsMeetsML/1"]
    assert {t.series_name for t in sample_talks.values()} == {"Physics ∩ ML"}
    assert first.dtstart == "2020-05-06T16:00:00+00:00"
    assert first.dtend == "2020-05-06T17:30:00+00:00"
    assert first.dtstamp == "2026-04-22T22:57:03+00:00"
    assert first.talk_url == "https://researchseminars.org/talk/PhysicsMeetsML/1/"
    assert first.abstract is not None
    assert first.abstract.startswith("Message passing algorithms are the core of most neural")
    assert first.abstract.endswith("many distinct forms of equivariant neural networks.")
    assert "Conventionally, such methods" in first.abstract  # escaped comma unescaped
    assert (first.series_id, first.counter) == ("PhysicsMeetsML", 1)
    assert first.speaker == "Taco Cohen (Qualcomm AI Research)"
    assert first.room is None and first.livestream_url is None and first.comments is None
    assert sample_talks["PhysicsMeetsML/4"].dtstart == "2020-06-17T16:00:00+00:00"


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ("Ada Lovelace (Analytical Engines)", [("Ada Lovelace", "Analytical Engines")]),
        ("Emmy Noether", [("Emmy Noether", None)]),
        ("A (X) and B (Y)", [("A", "X"), ("B", "Y")]),
        ("A (X), B (Y), and C (Z)", [("A", "X"), ("B", "Y"), ("C", "Z")]),
        (
            "A (University of California, Berkeley) and B",
            [("A", "University of California, Berkeley"), ("B", None)],
        ),
        (
            "A (Physics and Astronomy), B, and C (UCL)",
            [("A", "Physics and Astronomy"), ("B", None), ("C", "UCL")],
        ),
        (
            "Jean-Pierre Serre (Collège de France (emeritus))",
            [("Jean-Pierre Serre", "Collège de France (emeritus)")],
        ),
    ],
)
def test_speakers_with_affiliations(summary: str, expected: list[tuple[str, str | None]]) -> None:
    assert parse_speakers(summary) == tuple(Speaker(n, a) for n, a in expected)


def calendar(*events: str, line_end: str = "\r\n") -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:researchseminars.org"]
    for event in events:
        lines += ["BEGIN:VEVENT", *event.strip().splitlines(), "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return (line_end.join(lines) + line_end).encode()


SITE_EVENT = r"""
SUMMARY:A (Uni\, Dept.)\, B (X)\, and C
DTSTART:20300101T150000Z
DTEND:20300101T160000Z
DTSTAMP:20260101T000000Z
UID:Series/7
DESCRIPTION:Title: <a href="https://researchseminars.org/talk/Series/7/">$p$-adic &amp; more</a>\nby A (Uni\, Dept.)\, B (X)\, and C as part of Series name\n\nInteractive livestream: https://zoom.example/j/1\nPassword hint: the usual\nLecture held in Room 5.\nAbstract: TBA\n\nCoffee at 3.\n
LOCATION:https://zoom.example/j/1
URL:https://zoom.example/j/1
"""


def test_site_event_with_livestream_room_tba_and_comments() -> None:
    (talk,) = parse_feed(calendar(SITE_EVENT)).talks
    assert talk.title == "$p$-adic & more"
    assert talk.speakers == (Speaker("A", "Uni, Dept."), Speaker("B", "X"), Speaker("C", None))
    assert talk.series_name == "Series name"
    assert talk.livestream_url == "https://zoom.example/j/1"
    assert talk.room == "Room 5"
    assert talk.abstract is None
    assert talk.comments == "Coffee at 3."
    assert talk.urls == ("https://zoom.example/j/1",)
    assert talk.talk_url == "https://researchseminars.org/talk/Series/7/"


def test_other_calendars_fall_back_to_summary_as_title() -> None:
    event = "SUMMARY:Department colloquium\nDTSTART;TZID=Europe/Paris:20300101T150000\nUID:abc@example.org\nDESCRIPTION:Cake."
    (talk,) = parse_feed(calendar(event)).talks
    assert talk.title == "Department colloquium"
    assert talk.speaker is None and talk.speakers == ()
    assert talk.dtstart == "2030-01-01T14:00:00+00:00"  # converted to UTC
    assert talk.series_id is None and talk.counter is None


def test_all_day_and_duration_events() -> None:
    event = "SUMMARY:Workshop\nDTSTART;VALUE=DATE:20300105\nUID:w1\n"
    event2 = "SUMMARY:Talk\nDTSTART:20300105T100000Z\nDURATION:PT90M\nUID:w2\n"
    talks = {t.uid: t for t in parse_feed(calendar(event, event2)).talks}
    assert talks["w1"].dtstart == "2030-01-05"
    assert talks["w2"].dtend == "2030-01-05T11:30:00+00:00"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"   \r\n", "empty body"),
        (b"<!DOCTYPE html><html><body>Error</body></html>", "HTML page"),
        (b"Service unavailable", "not a calendar"),
        (SAMPLE.read_bytes()[:1500], "not one complete VCALENDAR"),
        (SAMPLE.read_bytes() + SAMPLE.read_bytes(), "not one complete VCALENDAR"),
        (b"BEGIN:VCALENDAR\r\n\x00\x00END:VCALENDAR\r\n", "NUL bytes"),
    ],
)
def test_bodies_that_are_not_one_complete_calendar_are_errors(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_feed(body)


def test_empty_calendar_is_zero_talks_not_an_error() -> None:
    parsed = parse_feed(calendar())
    assert parsed.talks == [] and parsed.events == 0


def test_events_without_uid_or_dtstart_are_skipped_with_a_warning() -> None:
    no_uid = "SUMMARY:Nameless (Nowhere)\nDTSTART:20300101T150000Z"
    no_start = "SUMMARY:Timeless\nUID:S/2"
    bad_start = "SUMMARY:Broken\nUID:S/3\nDTSTART:2030-13-45"
    good = "SUMMARY:Fine\nUID:S/4\nDTSTART:20300101T150000Z"
    parsed = parse_feed(calendar(no_uid, no_start, bad_start, good))
    assert [t.uid for t in parsed.talks] == ["S/4"]
    assert parsed.events == 4
    assert any("event #1 ('Nameless (Nowhere)') has no UID" in w for w in parsed.warnings)
    assert any("'S/2' has no DTSTART" in w for w in parsed.warnings)
    assert any("'S/3' has an unusable date" in w for w in parsed.warnings)


def test_duplicate_uids_last_wins_with_a_warning() -> None:
    first = "SUMMARY:First\nUID:S/1\nDTSTART:20300101T150000Z"
    second = "SUMMARY:Second\nUID:S/1\nDTSTART:20300102T150000Z"
    parsed = parse_feed(calendar(first, second))
    assert [(t.uid, t.title) for t in parsed.talks] == [("S/1", "Second")]
    assert any("duplicate UID 'S/1'" in w for w in parsed.warnings)


def test_fingerprint_ignores_dtstamp_folding_and_line_endings() -> None:
    body = SAMPLE.read_bytes()
    blocks = split_vevents(body)
    assert blocks is not None and len(blocks) == 4
    base = [fingerprint_block(b) for b in blocks]
    restamped = body.replace(b"DTSTAMP:20260422T225703Z", b"DTSTAMP:20991231T235959Z")
    crlf = body.replace(b"\n", b"\r\n")
    unfolded = body.replace(b"\n ", b"")
    for variant in (restamped, crlf, unfolded):
        again = split_vevents(variant)
        assert again is not None
        assert [fingerprint_block(b) for b in again] == base
    assert [t.fingerprint for t in parse_feed(crlf).talks] == base


def test_fingerprint_sees_any_content_change() -> None:
    body = SAMPLE.read_bytes()
    edited = body.replace(b"Natural Graph Networks", b"Natural Graph Nets")
    assert parse_feed(edited).talks[0].fingerprint != parse_feed(body).talks[0].fingerprint
    assert parse_feed(edited).talks[1].fingerprint == parse_feed(body).talks[1].fingerprint


def test_raw_keeps_the_event_text(tmp_path: Path) -> None:
    talk = parse_feed(SAMPLE.read_bytes()).talks[0]
    assert talk.raw.startswith("BEGIN:VEVENT") and talk.raw.rstrip().endswith("END:VEVENT")
    assert "UID:PhysicsMeetsML/1" in talk.raw
