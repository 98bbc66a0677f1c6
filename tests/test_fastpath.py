"""The fast path (parse.parse_fast) against the full parse: same archive, less work.

The heart of it is `test_fast_path_and_full_parse_make_the_same_archive`: two archives
take the same sequence of mutated bodies, one through the fast path and one through the
full parse, and must end up identical, row for row, after every poll.
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester import archive as store
from harvester import parse
from harvester.archive import FetchFacts, open_archive
from harvester.errors import StaleKnowledgeError
from harvester.model import KnownTalk
from harvester.parse import (
    body_fingerprint,
    check_calendar_bytes,
    fingerprint_block,
    parse_fast,
    parse_feed,
    scan,
    split_vevents,
)
from harvester.parse import calendar_events as fastpath_calendar_events
from harvester.sync import FeedTarget, PollResult, archive_body
from tests.benchmarks.sitegen import fold
from tests.sitesim import SimTalk, calendar_bytes

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SERIES = "Alg ∩ Geo"
WORDS = [
    "the",
    "of",
    "ring",
    "ideal",
    "scheme",
    "stack",
    "moduli",
    "curve",
    "prime",
    "field",
    "sheaf",
    "étale",
]


# --- bodies --------------------------------------------------------------------------------


def make_talks(rng: random.Random, count: int) -> list[SimTalk]:
    return [new_talk(rng, n) for n in range(1, count + 1)]


def new_talk(rng: random.Random, counter: int) -> SimTalk:
    return SimTalk(
        "AlgGeo",
        counter,
        T0 + timedelta(days=7 * counter),
        [(f"Speaker {counter}", rng.choice(["MIT", "Bonn, and Paris", None]))],
        title=f"On {rng.choice(WORDS)} number {counter}",
        abstract=" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120))),
        room=rng.choice([None, "Room 2-142"]),
    )


def body_of(talks: list[SimTalk], stamp: datetime) -> bytes:
    return calendar_bytes([t.event(SERIES, stamp) for t in talks])


def refold(body: bytes, width: int) -> bytes:
    """The same calendar folded at another width (never inside a UTF-8 character)."""
    crlf = b"\r\n" in body
    lines = re.sub(rb"\r?\n[ \t]", b"", body).splitlines()
    text = b"\n".join(fold(line, width, b"\n") for line in lines) + b"\n"
    return text.replace(b"\n", b"\r\n") if crlf else text


def events_of(body: bytes) -> tuple[bytes, list[bytes], bytes]:
    """The calendar's head, its VEVENT blocks and its tail (blocks end before their LF)."""
    text = check_calendar_bytes(body)
    blocks = split_vevents(text)
    assert blocks is not None
    if not blocks:
        return text, [], b""
    head = text[: text.index(blocks[0])]
    return head, blocks, text[text.rindex(blocks[-1]) + len(blocks[-1]) :]


def rebuild(head: bytes, blocks: list[bytes], tail: bytes) -> bytes:
    return head + b"\n".join(blocks) + tail


def edit_block(body: bytes, rng: random.Random, edit: Callable[[bytes], bytes]) -> bytes:
    head, blocks, tail = events_of(body)
    if not blocks:
        return body
    i = rng.randrange(len(blocks))
    blocks[i] = edit(blocks[i])
    return rebuild(head, blocks, tail)


# Edits of the talks themselves (what the site's organisers do).
def retitle(talks: list[SimTalk], rng: random.Random) -> None:
    if talks:
        rng.choice(talks).title = f"Retitled {rng.random():.6f}"


def reschedule(talks: list[SimTalk], rng: random.Random) -> None:
    if talks:
        rng.choice(talks).start += timedelta(hours=rng.choice([1, 24, -3]))


def add(talks: list[SimTalk], rng: random.Random) -> None:
    talks.append(new_talk(rng, max((t.counter for t in talks), default=0) + 1))


def remove(talks: list[SimTalk], rng: random.Random) -> None:
    for _ in range(rng.choice([1, 1, 2, len(talks)])):  # sometimes everything (held back)
        if talks:
            talks.pop(rng.randrange(len(talks)))


def reorder(talks: list[SimTalk], rng: random.Random) -> None:
    rng.shuffle(talks)


def same_content_edit(talks: list[SimTalk], rng: random.Random) -> None:
    """A change that makes no difference to any field: a new fingerprint, no version."""


TALK_EDITS = [retitle, reschedule, add, remove, reorder, same_content_edit]


# Edits of the bytes (what servers, proxies and odd calendars do), body → body.
def older_stamp(body: bytes, rng: random.Random) -> bytes:
    return edit_block(body, rng, lambda b: re.sub(rb"DTSTAMP:\d{8}T", b"DTSTAMP:20200101T", b))


def no_stamp(body: bytes, rng: random.Random) -> bytes:
    return edit_block(body, rng, lambda b: re.sub(rb"DTSTAMP:[^\r\n]*\r?\n", b"", b))


def duplicate_event(body: bytes, rng: random.Random) -> bytes:
    head, blocks, tail = events_of(body)
    if blocks:
        blocks.append(rng.choice(blocks).replace(b"Speaker", b"Spk"))
    return rebuild(head, blocks, tail)


def no_uid(body: bytes, rng: random.Random) -> bytes:
    return edit_block(body, rng, lambda b: re.sub(rb"UID:[^\r\n]*\r?\n", b"", b))


def lower_case_begin(body: bytes, rng: random.Random) -> bytes:
    return edit_block(body, rng, lambda b: b.replace(b"BEGIN:VEVENT", b"begin:vevent", 1))


def invalid_utf8(body: bytes, rng: random.Random) -> bytes:
    return edit_block(body, rng, lambda b: b.replace(b"Speaker", b"Sp\xffeaker", 1))


def timezone_component(body: bytes, rng: random.Random) -> bytes:
    vtimezone = (
        b"BEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
        b"TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
    )
    return body.replace(b"BEGIN:VEVENT", vtimezone + b"BEGIN:VEVENT", 1)


def recording(into: list[bytes], parse_events: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`parse_events`, noting each calendar it is given in `into`."""

    def record(text: bytes) -> Any:
        into.append(text)
        return parse_events(text)

    return record


def first_block(body: bytes) -> bytes:
    blocks = split_vevents(check_calendar_bytes(body))
    assert blocks is not None
    return blocks[0]


def lf_endings(body: bytes, rng: random.Random | None = None) -> bytes:
    return body.replace(b"\r\n", b"\n")


def refolded(body: bytes, rng: random.Random) -> bytes:
    return refold(body, rng.randint(30, 120))


def folded_stamp(body: bytes, rng: random.Random) -> bytes:
    return edit_block(body, rng, lambda b: re.sub(rb"(DTSTAMP:\d{4})", rb"\1\r\n ", b))


def blank_lines(body: bytes, rng: random.Random) -> bytes:
    return edit_block(body, rng, lambda b: b.replace(b"\r\nUID", b"\r\n\r\nUID", 1))


def blank_line_then_fold(body: bytes, rng: random.Random) -> bytes:
    """A blank line before a continuation line: icalendar joins across it, a splitter may not."""
    return edit_block(body, rng, lambda b: b.replace(b"\r\nLOCATION", b"\r\n\r\n LOCATION", 1))


def stray_cr(body: bytes, rng: random.Random) -> bytes:
    return edit_block(body, rng, lambda b: b.replace(b"Speaker", b"Spe\raker", 1))


BODY_EDITS = [
    older_stamp,
    no_stamp,
    duplicate_event,
    no_uid,
    lower_case_begin,
    invalid_utf8,
    timezone_component,
    lf_endings,
    refolded,
    folded_stamp,
    blank_lines,
    blank_line_then_fold,
    stray_cr,
]


# --- archives ------------------------------------------------------------------------------

SERIES_FEED = FeedTarget("https://researchseminars.org/seminar/AlgGeo/ics", "AlgGeo")
TALK_FEED = FeedTarget("https://researchseminars.org/talk/AlgGeo/2/ics", "AlgGeo/2")


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        tables = ["feeds", "talks", "talk_versions", "feed_talks", "fetches"]
        out = {}
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info([{table}])")]
            # url_hash is keyed by each archive's own random salt: equal URLs, other keys.
            kept = ", ".join(f"[{c}]" for c in columns if c != "url_hash")
            out[table] = conn.execute(f"SELECT {kept} FROM [{table}] ORDER BY 1, 2").fetchall()
        return out
    finally:
        conn.close()


def summary(result: PollResult) -> tuple[Any, ...]:
    return (result.outcome, result.counts, result.events, result.error)


@pytest.fixture
def archives(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "fast.db", tmp_path / "full.db"


@pytest.mark.slow
def test_fast_path_and_full_parse_make_the_same_archive(
    archives: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_path, full_path = archives
    fast_db, full_db = open_archive(fast_path), open_archive(full_path)
    shortcuts = parsed_events = 0
    calls = []
    original = fastpath_calendar_events

    def counting(text: bytes) -> Any:
        events = original(text)
        calls.append(len(events))
        return events

    monkeypatch.setattr(parse, "calendar_events", counting)
    try:
        for seed in range(30):
            rng = random.Random(seed)
            talks = make_talks(rng, rng.randint(0, 9))
            for step in range(7):
                moment = T0 + timedelta(days=seed, hours=step)
                if step:
                    rng.choice(TALK_EDITS)(talks, rng)
                body = body_of(talks, moment)
                if rng.random() < 0.35:
                    body = rng.choice(BODY_EDITS)(body, rng)
                single = [t for t in talks if t.counter == 2]
                bodies = [(SERIES_FEED, body), (TALK_FEED, body_of(single, moment))]
                for target, feed_body in bodies:
                    calls.clear()
                    facts = FetchFacts(moment, moment + timedelta(seconds=1), 200, len(feed_body))
                    fast = archive_body(fast_db, target, feed_body, facts, moment)
                    fast_calls = list(calls)
                    full = archive_body(full_db, target, feed_body, facts, moment, fast=False)
                    assert summary(fast) == summary(full), (seed, step, target.name)
                    assert dump(fast_path) == dump(full_path), (seed, step, target.name)
                    shortcuts += fast.outcome == "unchanged" and not fast_calls
                    parsed_events += sum(fast_calls)
                # a re-poll with nothing changed but the stamp
                later = moment + timedelta(minutes=30)
                body = body.replace(
                    moment.strftime("%Y%m%dT%H%M%SZ").encode(),
                    later.strftime("%Y%m%dT%H%M%SZ").encode(),
                )
                calls.clear()
                facts = FetchFacts(later, later, 200, len(body))
                fast = archive_body(fast_db, SERIES_FEED, body, facts, later)
                fast_calls = list(calls)
                full = archive_body(full_db, SERIES_FEED, body, facts, later, fast=False)
                assert summary(fast) == summary(full), (seed, step, "re-poll")
                assert dump(fast_path) == dump(full_path), (seed, step, "re-poll")
                shortcuts += fast.outcome == "unchanged" and not fast_calls
    finally:
        monkeypatch.setattr(parse, "calendar_events", original)
    # The comparison means something only if the fast path did its job most of the time.
    assert shortcuts > 100
    fetches = full_db.execute("SELECT sum(events) FROM fetches").fetchone()[0]
    assert parsed_events < fetches / 3


# --- the fingerprint ----------------------------------------------------------------------

_FOLD = re.compile(rb"\r?\n[ \t]")
_LINE_BREAK = re.compile(rb"\r\n|\n|\r")


def reference_fingerprint_lines(block: bytes) -> list[bytes]:
    """The fingerprint's definition, written the plain way (the first release's code)."""
    unfolded = _FOLD.sub(b"", block)
    return [
        line
        for line in _LINE_BREAK.split(unfolded)
        if line.strip() and not (line[:7].upper() == b"DTSTAMP" and line[7:8] in (b":", b";"))
    ]


PIECES = [b"\r\n", b"\n", b"\r", b" ", b"\t", b"DTSTAMP:1", b"dtstamp;X", b"UID:a", b"ab", b"\x0c"]


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_fingerprint_lines_follow_the_definition(pieces: list[bytes]) -> None:
    block = b"".join(pieces)
    assert parse.fingerprint_lines(block) == reference_fingerprint_lines(block)


def test_fingerprint_ignores_stamp_folding_and_line_endings() -> None:
    talk = make_talks(random.Random(1), 1)
    body = body_of(talk, T0)
    variants = [body_of(talk, T0 + timedelta(days=3)), lf_endings(body, None), refold(body, 50)]
    prints = {fingerprint_block(first_block(b)) for b in variants}
    assert prints == {fingerprint_block(first_block(body))}


# --- the scan -----------------------------------------------------------------------------


def test_scan_reads_uid_stamp_and_fingerprint_like_the_full_parse() -> None:
    rng = random.Random(3)
    body = body_of(make_talks(rng, 6), T0)
    blocks = scan(check_calendar_bytes(body))
    full = parse_feed(body)
    assert blocks is not None
    assert [(b.uid, b.fingerprint, b.dtstamp) for b in blocks] == [
        (r.uid, r.fingerprint, r.dtstamp) for r in full.talks
    ]
    assert [check_calendar_bytes(body)[b.start : b.end] for b in blocks] == split_vevents(
        check_calendar_bytes(body)
    )


@pytest.mark.parametrize(
    "edit",
    [timezone_component, lower_case_begin, stray_cr, blank_line_then_fold],
    ids=lambda e: e.__name__,
)
def test_scan_doubts_what_it_cannot_read_like_icalendar(edit: Any) -> None:
    body = edit(body_of(make_talks(random.Random(4), 3), T0), random.Random(0))
    assert scan(check_calendar_bytes(body)) is None


def test_folded_component_line_is_doubted() -> None:
    body = body_of(make_talks(random.Random(5), 2), T0)
    hidden = body.replace(b"\r\nEND:VEVENT", b"\r\nEND:VEV\r\n ENT", 1)
    assert scan(check_calendar_bytes(hidden)) is None
    nested = body.replace(b"\r\nEND:VEVENT", b"\r\nBEGIN:VALARM\r\nEND:VALARM\r\nEND:VEVENT", 1)
    assert scan(check_calendar_bytes(nested)) is None


def test_only_new_events_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """icalendar reads the one new event, in the calendar around it; the others are known."""
    rng = random.Random(6)
    talks = make_talks(rng, 20)
    before = parse_feed(body_of(talks, T0))
    archived = {r.uid: r.fingerprint for r in before.talks}
    talks[4].title = "A new title"
    parsed: list[bytes] = []
    monkeypatch.setattr(parse, "calendar_events", recording(parsed, fastpath_calendar_events))
    body = body_of(talks, T0 + timedelta(hours=1))
    result = parse_fast(check_calendar_bytes(body), lambda uids: archived)
    assert result is not None
    assert [r.uid for r in result.talks] == ["AlgGeo/5"]
    assert len(result.known) == 19 and result.events == 20
    assert [text.count(b"BEGIN:VEVENT") for text in parsed] == [1]
    assert b"UID:AlgGeo/5\r\n" in parsed[0]
    full = parse_feed(body)
    assert result.talks == [r for r in full.talks if r.uid == "AlgGeo/5"]


def test_duplicate_uids_take_the_full_parse() -> None:
    body = duplicate_event(body_of(make_talks(random.Random(7), 3), T0), random.Random(0))
    assert parse_fast(check_calendar_bytes(body), lambda uids: {}) is None


# --- the body level -------------------------------------------------------------------------


def test_body_fingerprint_ignores_stamps_only() -> None:
    talks = make_talks(random.Random(8), 4)
    first = body_fingerprint(check_calendar_bytes(body_of(talks, T0)))
    again = body_fingerprint(check_calendar_bytes(body_of(talks, T0 + timedelta(hours=5))))
    assert first.fingerprint == again.fingerprint
    assert again.usable and again.dtstamp == (T0 + timedelta(hours=5)).isoformat()
    talks[0].room = "Elsewhere"
    changed = body_fingerprint(check_calendar_bytes(body_of(talks, T0)))
    assert changed.fingerprint != first.fingerprint
    mixed = check_calendar_bytes(older_stamp(body_of(talks, T0), random.Random(2)))
    assert body_fingerprint(mixed).fingerprint != changed.fingerprint
    assert not parse.stamps_uniform(mixed)
    assert parse.stamps_uniform(check_calendar_bytes(body_of(talks, T0)))


def facts_at(moment: datetime, body: bytes) -> FetchFacts:
    return FetchFacts(moment, moment, 200, len(body))


def poll(db: Any, body: bytes, moment: datetime, target: FeedTarget = SERIES_FEED) -> PollResult:
    return archive_body(db, target, body, facts_at(moment, body), moment)


def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_text: bytes) -> Any:
        raise AssertionError("icalendar was asked to parse")

    monkeypatch.setattr(parse, "calendar_events", refuse)
    monkeypatch.setattr(parse, "scan", lambda _text: pytest.fail("the body was split"))


def test_unchanged_body_is_archived_without_any_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_archive(tmp_path / "a.db")
    talks = make_talks(random.Random(9), 5)
    poll(db, body_of(talks, T0), T0)
    later = T0 + timedelta(hours=2)
    no_parsing(monkeypatch)
    result = poll(db, body_of(talks, later), later)
    assert (result.outcome, result.events, result.counts["unchanged"]) == ("unchanged", 5, 5)
    rows = db.execute("SELECT outcome, events, unchanged FROM fetches ORDER BY id").fetchall()
    assert rows == [("changed", 5, 0), ("unchanged", 5, 5)]
    assert {r[0] for r in db.execute("SELECT last_seen FROM talks")} == {later.isoformat()}
    assert {r[0] for r in db.execute("SELECT dtstamp FROM talks")} == {later.isoformat()}
    assert {r[0] for r in db.execute("SELECT last_seen FROM feed_talks")} == {later.isoformat()}


def test_refolded_body_costs_no_event_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_archive(tmp_path / "a.db")
    talks = make_talks(random.Random(10), 5)
    poll(db, body_of(talks, T0), T0)
    seen: list[bytes] = []
    monkeypatch.setattr(parse, "calendar_events", recording(seen, fastpath_calendar_events))
    later = T0 + timedelta(hours=1)
    for body in (lf_endings(body_of(talks, later), None), refold(body_of(talks, later), 44)):
        result = poll(db, body, later)
        assert (result.outcome, result.counts["unchanged"]) == ("unchanged", 5)
    # icalendar read the calendar's own lines, once a poll, and no event
    assert len(seen) == 2 and not any(b"BEGIN:VEVENT" in text for text in seen)


def test_body_shortcut_stands_back_when_another_feed_changed_a_talk(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    talks = make_talks(random.Random(11), 3)
    poll(db, body_of(talks, T0), T0)
    two = [t for t in talks if t.counter == 2]
    two[0].title = "Seen first by the talk feed"
    poll(db, body_of(two, T0 + timedelta(hours=1)), T0 + timedelta(hours=1), TALK_FEED)
    two[0].title = talks[1].title = "Back to before"  # the series feed still has the old one
    old = make_talks(random.Random(11), 3)
    result = poll(db, body_of(old, T0 + timedelta(hours=2)), T0 + timedelta(hours=2))
    assert result.outcome == "changed" and result.counts["changed"] == 1
    versions = db.execute("SELECT version FROM talks WHERE uid = 'AlgGeo/2'").fetchone()
    assert versions == (3,)


def test_a_known_talk_that_changes_before_the_write_lock_takes_the_full_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path decides which talks it knows before the poll's transaction; another
    poll may change one of them before the lock is taken. The check in `load_state`
    refuses what was decided, and the full parse archives what it would have alone."""
    talks = make_talks(random.Random(14), 4)
    fast_db, full_db = open_archive(tmp_path / "fast.db"), open_archive(tmp_path / "full.db")
    two = [t for t in talks if t.counter == 2]
    later = T0 + timedelta(hours=1)
    for db in (fast_db, full_db):
        archive_body(db, SERIES_FEED, body_of(talks, T0), facts_at(T0, b""), T0, fast=False)
    talks[0].title = "Retitled in the series feed"
    series_body = body_of(talks, later)
    full_parses: list[bytes] = []
    parse_fast_alone = parse.parse_fast

    def another_poll_meanwhile(text: bytes, *args: Any) -> Any:
        decided = parse_fast_alone(text, *args)
        if text == check_calendar_bytes(series_body):  # not the talk feed's own poll
            assert decided is not None and "AlgGeo/2" in {k.uid for k in decided.known}
            two[0].title = "Changed by the talk's own feed"
            poll(fast_db, body_of(two, later), later, TALK_FEED)
        return decided

    def counted_full_parse(body: bytes) -> Any:
        full_parses.append(body)
        return parse_feed(body)

    monkeypatch.setattr(parse, "parse_fast", another_poll_meanwhile)
    monkeypatch.setattr(parse, "parse_feed", counted_full_parse)
    result = poll(fast_db, series_body, later)
    assert full_parses == [check_calendar_bytes(series_body)]  # refused, then parsed in full
    assert (result.outcome, result.counts["changed"]) == ("changed", 2)  # talk 1, talk 2 back
    monkeypatch.undo()
    for target, body in ((TALK_FEED, body_of(two, later)), (SERIES_FEED, series_body)):
        archive_body(full_db, target, body, facts_at(later, body), later, fast=False)
    assert dump(tmp_path / "fast.db") == dump(tmp_path / "full.db")


def test_known_talks_are_checked_in_the_transaction(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    poll(db, body_of(make_talks(random.Random(15), 3), T0), T0)
    stored = dict(db.execute("SELECT uid, fingerprint FROM talks").fetchall())
    feed = store.load_feed(db, 1)
    known = [KnownTalk(uid, fingerprint, None) for uid, fingerprint in sorted(stored.items())]
    assert store.load_state(db, feed, [], known).talks == {}  # all known: nothing to read
    for stale in (
        [KnownTalk(known[0].uid, "0" * 64, None), *known[1:]],  # another fingerprint
        [*known, KnownTalk("AlgGeo/99", "0" * 64, None)],  # not in the archive
        [*known, known[0]],  # known twice: not sure
    ):
        with pytest.raises(StaleKnowledgeError):
            store.load_state(db, feed, [], stale)
    db.execute("UPDATE talk_state SET status = 'removed' WHERE uid = ?", [known[1].uid])
    with pytest.raises(StaleKnowledgeError):
        store.load_state(db, feed, [], known)


def test_held_back_removals_are_confirmed_by_an_identical_body(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    talks = make_talks(random.Random(12), 8)
    poll(db, body_of(talks, T0), T0)
    poll(db, body_of(talks[:2], T0 + timedelta(hours=1)), T0 + timedelta(hours=1))
    assert db.execute("SELECT count(*) FROM talks WHERE status = 'removed'").fetchone() == (0,)
    result = poll(db, body_of(talks[:2], T0 + timedelta(hours=2)), T0 + timedelta(hours=2))
    assert result.counts["removed"] == 6
    assert db.execute("SELECT count(*) FROM talks WHERE status = 'removed'").fetchone() == (6,)


def test_body_fingerprint_is_kept_only_when_it_can_vouch(tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    talks = make_talks(random.Random(13), 3)
    poll(db, no_stamp(body_of(talks, T0), random.Random(0)), T0)
    assert db.execute("SELECT body_fingerprint FROM feeds").fetchone() == (None,)
    poll(db, body_of(talks, T0), T0)
    stored = db.execute("SELECT body_fingerprint FROM feeds").fetchone()[0]
    assert stored == body_fingerprint(check_calendar_bytes(body_of(talks, T0))).fingerprint
    feed = store.load_feed(db, 1)
    assert feed.body_fingerprint == stored
