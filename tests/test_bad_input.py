"""The bad-input catalogue: each bad body gets one clear line and loses nothing.

Every case first archives a good version of the feed `Bad`, then serves the bad body and
syncs `Bad` together with a good feed: the good feed still syncs, and `Bad`'s talks are
exactly as before (or, for the cases the contract keeps, the good part is archived).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import Harvester, write_config
from tests.sitesim import Site

BAD = "/seminar/Bad/ics"


def serve_bytes(body: bytes, content_type: str = "text/calendar; charset=utf-8", status: int = 200):  # type: ignore[no-untyped-def]
    def answer(h: BaseHTTPRequestHandler) -> bool:
        h._send(status, body, {"Content-Type": content_type})  # type: ignore[attr-defined]
        return True

    return answer


def calendar(*events: str) -> bytes:
    text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:researchseminars.org\r\n"
    for event in events:
        text += "BEGIN:VEVENT\r\n" + event.strip().replace("\n", "\r\n") + "\r\nEND:VEVENT\r\n"
    return (text + "END:VCALENDAR\r\n").encode()


def event(uid: str, start: str = "20300101T150000Z", extra: str = "") -> str:
    return f"SUMMARY:Someone (Somewhere)\nDTSTART:{start}\nDTSTAMP:20991231T000000Z\nUID:{uid}\n{extra}"


@pytest.fixture
def bad_site(site: Site, workdir: Path) -> tuple[Site, Harvester]:
    series = site.add_series("Bad", "Bad feed")
    now = datetime.now(UTC).replace(microsecond=0)
    for c in range(1, 4):
        series.add(c, now + timedelta(days=c), [(f"Speaker {c}", None)], title=f"Talk {c}")
    h = Harvester(write_config(workdir, [site.feed_url("Bad"), site.feed_url("NumThy")]))
    assert h("sync").exit_code == 0
    return site, h


def bad_talks(h: Harvester) -> list[tuple[object, ...]]:
    with sqlite3.connect(h.db_path) as conn:
        return conn.execute("SELECT * FROM talks WHERE series_id = 'Bad' ORDER BY uid").fetchall()


def versions_count(h: Harvester) -> int:
    with sqlite3.connect(h.db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM talk_versions").fetchone()[0])


REFUSED = {
    "empty body": (b"", "empty body"),
    "HTML page with 200": (b"<!DOCTYPE html><html><body>Oops</body></html>", "HTML page"),
    "truncated": (calendar(event("Bad/1"), event("Bad/2"))[:-40], "not one complete VCALENDAR"),
    "two calendars": (calendar(event("Bad/1")) * 2, "not one complete VCALENDAR"),
    "NUL bytes": (calendar(event("Bad/1")).replace(b"Someone", b"Some\x00one"), "NUL bytes"),
    "plain text": (b"Internal error, try later", "not a calendar"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_bodies_change_nothing(bad_site: tuple[Site, Harvester], case: str) -> None:
    site, h = bad_site
    body, reason = REFUSED[case]
    site.overrides[BAD] = serve_bytes(body)
    before, count = bad_talks(h), versions_count(h)
    site.series["NumThy"].talks[1].title = "Still syncing"
    result = h("sync")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: Bad: ") and reason in errors[0]
    assert bad_talks(h) == before
    assert versions_count(h) == count + 1  # only NumThy's retitle


def test_body_over_max_bytes_is_refused(bad_site: tuple[Site, Harvester]) -> None:
    site, h = bad_site
    description = "DESCRIPTION:" + "x" * 70 + "\n"
    site.overrides[BAD] = serve_bytes(
        calendar(event("Bad/1", extra=description * 300_000))
    )  # ~21 MB
    before = bad_talks(h)
    result = h("sync")
    assert result.exit_code == 1
    assert "over the limit of 20000000" in result.stderr
    assert bad_talks(h) == before


@pytest.mark.slow
def test_answer_then_hang_mid_body_times_out(
    bad_site: tuple[Site, Harvester], workdir: Path
) -> None:
    site, h = bad_site
    release = threading.Event()

    def hang(handler: BaseHTTPRequestHandler) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/calendar")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
        handler.wfile.flush()
        release.wait(15)
        return True

    site.overrides[BAD] = hang
    text = h.config.read_text().replace("timeout = 5", "timeout = 0.5\nretries = 0")
    h.config.write_text(text)
    before = bad_talks(h)
    try:
        result = h("sync")
    finally:
        release.set()
    assert result.exit_code == 1 and "error: Bad: timed out" in result.stderr
    assert bad_talks(h) == before


def test_redirect_loop(bad_site: tuple[Site, Harvester]) -> None:
    site, h = bad_site

    def loop(handler: BaseHTTPRequestHandler) -> bool:
        handler._send(301, b"", {"Location": BAD})  # type: ignore[attr-defined]
        return True

    site.overrides[BAD] = loop
    result = h("sync")
    assert result.exit_code == 1 and "error: Bad: more than 10 redirects" in result.stderr


def test_events_without_uid_or_start_are_skipped_and_the_rest_archived(
    bad_site: tuple[Site, Harvester],
) -> None:
    site, h = bad_site
    body = calendar(
        "SUMMARY:No uid\nDTSTART:20300101T150000Z",
        "SUMMARY:No start\nUID:Bad/8",
        "SUMMARY:Broken start\nUID:Bad/9\nDTSTART:2030-99-99",
        event("Bad/1"),
        event("Bad/2"),
        event("Bad/3"),
    )
    site.overrides[BAD] = serve_bytes(body)
    result = h("sync")
    assert result.exit_code == 0
    assert "has no UID" in result.stderr and "'Bad/8' has no DTSTART" in result.stderr
    assert "'Bad/9' has an unusable date" in result.stderr
    assert [row[0] for row in bad_talks(h)] == ["Bad/1", "Bad/2", "Bad/3"]


def test_duplicate_uids_last_wins(bad_site: tuple[Site, Harvester]) -> None:
    site, h = bad_site
    body = calendar(
        event("Bad/1", "20300101T150000Z"),
        event("Bad/1", "20300202T150000Z"),
        event("Bad/2"),
        event("Bad/3"),
    )
    site.overrides[BAD] = serve_bytes(body)
    result = h("sync")
    assert result.exit_code == 0 and "duplicate UID 'Bad/1'" in result.stderr
    with sqlite3.connect(h.db_path) as conn:
        assert (
            conn.execute("SELECT dtstart FROM talks WHERE uid = 'Bad/1'").fetchone()[0]
            == "2030-02-02T15:00:00+00:00"
        )


def test_invalid_utf8_is_replaced_with_a_warning(bad_site: tuple[Site, Harvester]) -> None:
    site, h = bad_site
    body = calendar(event("Bad/1"), event("Bad/2"), event("Bad/3")).replace(
        b"Somewhere", b"Caf\xe9 Z\xfcrich"
    )
    site.overrides[BAD] = serve_bytes(body)
    result = h("sync")
    assert result.exit_code == 0 and "invalid UTF-8" in result.stderr
    with sqlite3.connect(h.db_path) as conn:
        assert (
            conn.execute("SELECT summary FROM talks WHERE uid = 'Bad/1'").fetchone()[0]
            == "Someone (Caf\ufffd Z\ufffdrich)"
        )


@pytest.mark.slow
def test_absurd_dates_huge_description_and_deep_nesting_are_archived(
    bad_site: tuple[Site, Harvester],
) -> None:
    site, h = bad_site
    nested = "BEGIN:VALARM\n" * 2000 + "END:VALARM\n" * 2000
    body = calendar(
        event("Bad/1", "00010101T000000Z"),
        event("Bad/2", "99991231T235959Z", extra="DESCRIPTION:" + "y" * 1_000_000),
        event("Bad/3", extra=nested.strip()),
    )
    site.overrides[BAD] = serve_bytes(body)
    result = h("sync")
    assert result.exit_code == 0, result.stderr
    with sqlite3.connect(h.db_path) as conn:
        rows = dict(
            conn.execute("SELECT uid, dtstart FROM talks WHERE series_id = 'Bad'").fetchall()
        )
        length = conn.execute(
            "SELECT length(description) FROM talks WHERE uid = 'Bad/2'"
        ).fetchone()[0]
    assert rows["Bad/1"] == "0001-01-01T00:00:00+00:00"
    assert rows["Bad/2"] == "9999-12-31T23:59:59+00:00"
    assert length == 1_000_000


@pytest.mark.slow
def test_gzip_bomb_is_refused_within_the_limit(bad_site: tuple[Site, Harvester]) -> None:
    import gzip

    site, h = bad_site
    bomb = gzip.compress(b"BEGIN:VCALENDAR\r\n" + b"\0" * 100_000_000, compresslevel=9)
    assert len(bomb) < 200_000

    def answer(handler: BaseHTTPRequestHandler) -> bool:
        handler._send(200, bomb, {"Content-Type": "text/calendar", "Content-Encoding": "gzip"})  # type: ignore[attr-defined]
        return True

    site.overrides[BAD] = answer
    before = bad_talks(h)
    result = h("sync")
    assert result.exit_code == 1
    assert "error: Bad: " in result.stderr and "over the limit of 20000000" in result.stderr
    assert bad_talks(h) == before


def test_429_with_a_huge_retry_after_fails_now_instead_of_waiting(
    bad_site: tuple[Site, Harvester],
) -> None:
    site, h = bad_site

    def busy(handler: BaseHTTPRequestHandler) -> bool:
        handler._send(429, b"slow down", {"Content-Type": "text/plain", "Retry-After": "999999"})  # type: ignore[attr-defined]
        return True

    site.overrides[BAD] = busy
    before, hits = bad_talks(h), site.hits[BAD]
    result = h("sync")
    assert result.exit_code == 1 and "error: Bad: HTTP 429" in result.stderr
    assert site.hits[BAD] == hits + 1  # the 11-day wait is past the poll's time limit: no retry
    assert bad_talks(h) == before
