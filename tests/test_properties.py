"""Property-based: arbitrary bytes and mutated real feeds never crash the parser, and a
poll of such a body is either archived whole or not at all."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.archive import FetchFacts, open_archive
from harvester.errors import ParseError
from harvester.model import TalkRecord
from harvester.parse import check_calendar_bytes, parse_fast, parse_feed, split_vevents
from harvester.sync import FeedTarget, archive_body, utc_now
from tests.benchmarks.sitegen import Series, fold
from tests.conftest import ROOT, SAMPLE
from tests.sitesim import SimTalk, calendar_bytes, refold_octets

SAMPLE_BYTES = SAMPLE.read_bytes()
LINES = SAMPLE_BYTES.split(b"\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_parse_or_raise_parse_error(body: bytes) -> None:
    try:
        parsed = parse_feed(body)
    except ParseError:
        return
    assert parsed.events >= len(parsed.talks)


@st.composite
def mutated_feeds(draw: st.DrawFn) -> bytes:
    """The real sample with lines dropped, duplicated, swapped, cut or garbled."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "swap", "cut", "garble", "fold", "crlf"]))
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "cut":
            lines[i] = lines[i][: draw(st.integers(0, max(len(lines[i]) - 1, 0)))]
        elif action == "garble":
            lines[i] = draw(st.binary(max_size=80))
        elif action == "fold":
            lines.insert(i, b" " + draw(st.binary(max_size=20)))
        else:
            lines[i] = lines[i] + b"\r"
        if not lines:
            break
    return b"\n".join(lines)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(mutated_feeds())
def test_mutated_real_feeds_never_crash_the_parser(body: bytes) -> None:
    try:
        parsed = parse_feed(body)
    except ParseError:
        return
    for talk in parsed.talks:
        assert talk.uid and talk.dtstart and len(talk.fingerprint) == 64


def table_counts(path: Path) -> tuple[int, ...]:
    with sqlite3.connect(path) as conn:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("talks", "talk_versions", "feed_talks")
        )


@pytest.mark.slow
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutated_feeds())
def test_a_poll_of_a_mutated_feed_is_archived_whole_or_not_at_all(
    tmp_path: Path, body: bytes
) -> None:
    path = tmp_path / "a.db"
    path.unlink(missing_ok=True)
    db = open_archive(path)
    now = utc_now()
    target = FeedTarget("https://researchseminars.org/seminar/PhysicsMeetsML/ics", "P")
    result = archive_body(db, target, body, FetchFacts(now, now), now)
    counts = table_counts(path)
    try:
        expected = parse_feed(body)
    except ParseError:
        assert result.outcome == "error" and counts == (0, 0, 0)
        return
    uids = {t.uid for t in expected.talks}
    assert result.outcome in ("changed", "unchanged")
    assert counts == (len(uids), len(uids), len(uids))
    db.close()


# --- the fast path's first reading of the site's events against the full parse ------------

CALENDAR_HEAD = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:researchseminars.org\r\n"
    b"CALSCALE:GREGORIAN\r\nX-WR-CALNAME:researchseminars.org\r\n"
)
SAMPLES = sorted((ROOT / "data" / "samples").glob("*.ics"))


def site_bodies() -> list[tuple[str, bytes]]:
    """The sample feeds and the synthetic site's two renderings of researchseminars.org."""
    talks = [
        SimTalk("S", n, datetime(2026, 3, n, 15, tzinfo=UTC), [("Ada", "X, Y"), ("Eve", None)])
        for n in range(1, 6)
    ]
    talks[1].room, talks[2].abstract, talks[3].comments = "MIT 2-142", "An \\ abstract; ok", "c"
    stamp = datetime(2026, 3, 1, tzinfo=UTC)
    return [(path.name, path.read_bytes()) for path in SAMPLES] + [
        ("sitegen", Series(3, 12).body),
        ("sitesim", calendar_bytes([t.event("Alg ∩ Geo, and more", stamp) for t in talks])),
        ("sitesim, livestreams", calendar_bytes([t.event("S", t.start) for t in talks])),
    ]


def compared(record: TalkRecord | None) -> dict[str, Any] | None:
    """A record field by field (a failure then names the fields that differ)."""
    return None if record is None else asdict(record)


@pytest.mark.parametrize(
    ("name", "body"), site_bodies(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_first_fast_reading_of_every_site_feed_is_the_full_parse(name: str, body: bytes) -> None:
    blocks = split_vevents(check_calendar_bytes(body))
    full = parse_feed(body)
    assert blocks and not full.warnings and len(full.talks) == len(blocks)
    fast = parse_fast(check_calendar_bytes(body), lambda uids: {})
    assert fast is not None, "the site's form takes the fast path"
    assert [compared(r) for r in fast.talks] == [compared(r) for r in full.talks]


# Values as they are written in a file: text escaped as RFC 5545 says, and hostile text.
def escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


RAW_TEXT = st.text(alphabet='aZé∂ ,;:"\\\nN<>&()\t\x01\x7f', max_size=30).map(escaped)
HOSTILE_TEXT = st.text(alphabet='aZé∂ ,;:"\\nNt<>&()\t\x01\x7f\r', max_size=30)
UTC_TIMES = st.from_regex(
    r"(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3])([0-5][0-9]){2}Z",
    fullmatch=True,
)
ODD_TIMES = st.sampled_from(
    [
        "20200506T160000",
        "20200506",
        "20200230T160000Z",
        "20200506T246000Z",
        "20200506T160060Z",
        "2020-05-06T16:00:00Z",
        "20200506T160000Z/PT1H",
        "PT1H",
        "",
        " 20200506T160000Z",
        "20200506T160000z",
        "2020_506T160000Z",
        "00010101T000000Z",
    ]
)
PARAMETERS = st.sampled_from(
    [";TZID=Europe/Paris", ";VALUE=DATE", ";VALUE=DATE-TIME", ";LANGUAGE=en", ';X-A="b:c"', ";"]
)
OTHER_NAMES = st.sampled_from(
    ["DURATION", "X-FOO", "summary", "Summary", "RRULE", "STATUS", "SEQUENCE", "SUMMARY ", " UID"]
)


@st.composite
def site_descriptions(draw: st.DrawFn) -> str:
    """DESCRIPTION as the site writes it (escaped), with hostile pieces inside."""
    text = RAW_TEXT
    title = f'Title: <a href="https://researchseminars.org/talk/S/1/">{draw(text)}</a>\\n'
    head = (title if draw(st.booleans()) else "") + f"by {draw(text)} as part of {draw(text)}"
    details = draw(
        st.lists(
            st.sampled_from(
                [
                    "Interactive livestream: https://zoom.us/j/1",
                    "View-only livestream: http://x.org/v",
                    "Password hint: 1\\, 2",
                    "Lecture held in Room 2\\;3.",
                ]
            ),
            max_size=3,
        )
    )
    tail = draw(st.sampled_from(["\\nAbstract\\n", "\\nAbstract: TBA\\n", "\\n"])) + draw(text)
    return head + "\\n\\n" + "".join(d + "\\n" for d in details) + tail


def site_properties(draw: st.DrawFn) -> list[tuple[str, str]]:
    speakers = draw(RAW_TEXT) + draw(st.sampled_from(["", " (MIT)", " (A\\, B) and C (D)"]))
    return [
        ("SUMMARY", speakers),
        ("DTSTART", draw(UTC_TIMES)),
        ("DTEND", draw(UTC_TIMES)),
        ("DTSTAMP", "20260422T225703Z"),
        ("UID", draw(st.sampled_from(["S/1", "S/-2", "S", "a\\,b/1", " S/3 "]))),
        ("DESCRIPTION", draw(site_descriptions())),
        (
            "LOCATION",
            draw(
                st.sampled_from(
                    ["https://researchseminars.org/talk/S/1/", "/talk/S/1/", "see comments", ""]
                )
            ),
        ),
    ] + [
        ("URL", url)
        for url in draw(
            st.lists(
                st.sampled_from(["https://zoom.us/j/1", "ftp://x", " http://y.org/ ", ""]),
                max_size=2,
            )
        )
    ]


@st.composite
def hostile_events(draw: st.DrawFn) -> bytes:
    """A VEVENT of the site's form, then mutated: values, parameters, duplicates, other
    properties, dropped ones, folds anywhere, LF or CRLF, blank lines."""
    properties = site_properties(draw)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        i = draw(st.integers(0, len(properties) - 1))
        name, value = properties[i]
        action = draw(st.sampled_from(["value", "time", "parameter", "twice", "other", "drop"]))
        if action == "value":
            properties[i] = (name, draw(HOSTILE_TEXT))
        elif action == "time":
            properties[i] = (
                draw(st.sampled_from(["DTSTART", "DTEND", "DTSTAMP"])),
                draw(ODD_TIMES),
            )
        elif action == "parameter":
            properties[i] = (name + draw(PARAMETERS), value)
        elif action == "twice":
            properties.insert(
                draw(st.integers(0, len(properties))),
                (name, draw(st.sampled_from([value, draw(RAW_TEXT)]))),
            )
        elif action == "other":
            properties.insert(i, (draw(OTHER_NAMES), draw(RAW_TEXT)))
        else:
            del properties[i]
    lines = [b"BEGIN:VEVENT"] + [f"{n}:{v}".encode() for n, v in properties] + [b"END:VEVENT"]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(1, len(lines) - 1)), b"")
    newline = draw(st.sampled_from([b"\r\n", b"\n"]))
    width = draw(st.integers(8, 90))
    if draw(st.booleans()):  # anywhere, even inside a UTF-8 character
        return refold_octets(b"\r\n".join(lines), width).replace(b"\r\n", newline)
    return newline.join(fold(line, width, newline) for line in lines)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(hostile_events())
def test_the_fast_path_reads_an_event_as_the_full_parse_does_or_leaves_it(event: bytes) -> None:
    body = CALENDAR_HEAD + event + b"\r\nEND:VCALENDAR\r\n"
    try:
        full = parse_feed(body)
    except ParseError:
        full = None
    text = check_calendar_bytes(body)
    fast = parse_fast(text, lambda uids: {})  # a first sync: every event is parsed
    if fast is not None:
        assert full is not None
        assert [compared(r) for r in fast.talks] == [compared(r) for r in full.talks]
        assert (fast.warnings, fast.events) == (full.warnings, full.events)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(mutated_feeds())
def test_a_first_sync_of_a_mutated_feed_reads_it_as_the_full_parse(body: bytes) -> None:
    try:
        full = parse_feed(body)
    except ParseError:
        full = None
    try:
        fast = parse_fast(check_calendar_bytes(body), lambda uids: {})
    except ParseError:
        return
    assert full is not None or fast is None  # what the full parse refuses, the fast path too
    if fast is not None and full is not None:
        assert [compared(r) for r in fast.talks] == [compared(r) for r in full.talks]
        assert (fast.warnings, fast.events) == (full.warnings, full.events)
