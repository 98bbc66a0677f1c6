"""Property-based: arbitrary bytes and mutated real feeds never crash the parser, and a
poll of such a body is either archived whole or not at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.archive import FetchFacts, open_archive
from harvester.errors import ParseError
from harvester.parse import parse_feed
from harvester.sync import FeedTarget, archive_body, utc_now
from tests.conftest import SAMPLE

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
