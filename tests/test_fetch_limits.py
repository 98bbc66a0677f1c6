"""Fetch limits: bodies too large (also after decoding), endless streams, 304, the URL hook."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from harvester.archive import open_archive
from harvester.config import HttpSettings
from harvester.errors import FetchError
from harvester.fetch import FetchPolicy, fetch, make_client
from harvester.sync import FeedTarget, poll_feed
from tests.conftest import closed_after_test
from tests.scripted import CALENDAR, Scripted, calendar, reply, stream
from tests.sitesim import Site

LIMIT = 1_000_000
PATH = "/seminar/X/ics"


def client_for(**policy: object) -> httpx.Client:
    settings = HttpSettings(max_bytes=LIMIT, retries=0, timeout=5, allow_private=True)
    return closed_after_test(
        make_client(settings, policy=FetchPolicy.from_settings(settings, **policy))
    )


def test_gzip_and_deflate_bodies_are_decoded(site: Site) -> None:
    for encoding, data in (
        ("gzip", gzip.compress(CALENDAR)),
        ("deflate", zlib.compress(CALENDAR)),
        ("deflate", zlib.compress(CALENDAR, wbits=-15)),  # raw deflate, as some servers send
        ("identity", CALENDAR),
    ):
        script = Scripted(site, PATH, calendar(data, Content_Encoding=encoding))
        assert fetch(client_for(), script.url, LIMIT).body == CALENDAR, encoding


def test_requests_ask_only_for_encodings_that_can_be_bounded(site: Site) -> None:
    seen: list[str] = []

    def record(handler: Any) -> None:
        seen.append(handler.headers["Accept-Encoding"])
        calendar()(handler)

    fetch(client_for(), Scripted(site, PATH, record).url, LIMIT)
    assert seen == ["gzip, deflate"]
    brotli = Scripted(site, "/br.ics", calendar(b"xx", Content_Encoding="br"))
    with pytest.raises(FetchError, match="unsupported Content-Encoding 'br'"):
        fetch(client_for(), brotli.url, LIMIT)


@pytest.mark.slow
def test_gzip_bomb_is_refused_within_the_limit_without_inflating_it(site: Site) -> None:
    bomb = gzip.compress(b"\0" * 200_000_000, compresslevel=9)  # ~200 KB → 200 MB
    assert len(bomb) < LIMIT
    script = Scripted(site, PATH, calendar(bomb, Content_Encoding="gzip"))
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match="over the limit of 1000000 bytes"):
            fetch(client_for(), script.url, LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * LIMIT  # the body kept up to the limit, never the inflated 200 MB


def endless_gzip() -> Iterator[bytes]:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    yield packer.compress(CALENDAR[:20])
    while True:
        yield packer.compress(b"X" * 65536) + packer.flush(zlib.Z_SYNC_FLUSH)


def endless_plain() -> Iterator[bytes]:
    while True:
        yield b"X" * 65536


@pytest.mark.parametrize(
    ("chunks", "encoding"), [(endless_plain, "identity"), (endless_gzip, "gzip")]
)
def test_endless_body_is_refused_at_the_limit(
    site: Site, chunks: Callable[[], Iterator[bytes]], encoding: str
) -> None:
    script = Scripted(site, PATH, stream(chunks, Content_Encoding=encoding))
    with pytest.raises(FetchError, match="over the limit"):
        fetch(client_for(), script.url, LIMIT)


def test_declared_length_over_the_limit_is_refused_before_reading(site: Site) -> None:
    def announce(handler: Any) -> None:
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "text/calendar")
        handler.send_header("Content-Length", str(LIMIT + 1))
        handler.end_headers()
        handler.wfile.write(b"BEGIN:VCALENDAR\r\n")  # and no more

    script = Scripted(site, PATH, announce)
    with pytest.raises(FetchError, match=f"body of {LIMIT + 1} bytes is over the limit"):
        fetch(client_for(), script.url, LIMIT)


def test_slow_body_is_cut_off_by_the_poll_time_limit(site: Site) -> None:
    ticks = iter(range(0, 10_000, 7))  # every look at the clock: 7 s later

    def drip() -> Iterator[bytes]:
        while True:
            time.sleep(0.01)
            yield b"x"

    script = Scripted(site, PATH, stream(drip))
    with pytest.raises(FetchError, match="gave up after 180 s"):
        fetch(client_for(clock=lambda: float(next(ticks))), script.url, LIMIT)


def test_url_check_sees_every_hop_and_can_refuse_one(site: Site) -> None:
    Scripted(site, "/old", reply(301, Location="/new"))
    Scripted(site, "/new", reply(302, Location="http://10.0.0.1/cal.ics"))
    checked: list[str] = []

    def check(url: str) -> None:
        checked.append(url)
        if "10.0.0.1" in url:
            raise FetchError(url, "refused: a private address")

    with pytest.raises(FetchError, match="refused: a private address"):
        fetch(client_for(check_url=check), site.base_url + "/old", LIMIT)
    assert checked == [site.base_url + "/old", site.base_url + "/new", "http://10.0.0.1/cal.ics"]


# --- conditional requests ------------------------------------------------------------------


def test_validators_are_sent_back_and_304_is_not_modified(tmp_path: Path, site: Site) -> None:
    requests: list[dict[str, str | None]] = []
    body = site.body_for("/seminar/AlgGeom/ics")
    assert body is not None

    def with_validators(handler) -> bool:  # type: ignore[no-untyped-def]
        sent = {
            "if-none-match": handler.headers.get("If-None-Match"),
            "if-modified-since": handler.headers.get("If-Modified-Since"),
        }
        requests.append(sent)
        headers = {"ETag": '"v1"', "Last-Modified": "Mon, 02 Mar 2026 09:00:00 GMT"}
        if sent["if-none-match"] == '"v1"':
            handler._send(304, b"", headers)
        else:
            handler._send(200, body, {"Content-Type": "text/calendar", **headers})
        return True

    site.overrides["/seminar/AlgGeom/ics"] = with_validators
    db = open_archive(tmp_path / "a.db")
    target = FeedTarget(site.feed_url("AlgGeom"), "AlgGeom")
    settings = HttpSettings(allow_private=True)
    with make_client(settings) as client:
        first = poll_feed(db, client, target, LIMIT)
        second = poll_feed(db, client, target, LIMIT)
        third = poll_feed(db, client, target, LIMIT)
    assert (first.outcome, second.outcome, third.outcome) == (
        "changed",
        "not_modified",
        "not_modified",
    )
    assert requests[0] == {"if-none-match": None, "if-modified-since": None}
    assert requests[1] == {
        "if-none-match": '"v1"',
        "if-modified-since": "Mon, 02 Mar 2026 09:00:00 GMT",
    }
    feed = db.execute("SELECT etag, last_modified, last_outcome FROM feeds").fetchone()
    assert feed == ('"v1"', "Mon, 02 Mar 2026 09:00:00 GMT", "not_modified")
    rows = db.execute("SELECT outcome, http_status FROM fetches ORDER BY id").fetchall()
    assert rows == [("changed", 200), ("not_modified", 304), ("not_modified", 304)]
    assert db.execute("SELECT count(*) FROM talk_versions").fetchone() == (3,)
    now = datetime.now(UTC)
    assert db.execute("SELECT max(last_success_at) FROM feeds").fetchone()[0] <= now.isoformat()
