"""A polite, robust client: retries with backoff and Retry-After, per-host limits, many feeds."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from harvester.archive import open_archive
from harvester.config import HttpSettings, parse_config
from harvester.errors import ConfigError, FetchError
from harvester.fetch import FetchPolicy, fetch, make_client, parse_retry_after
from harvester.sync import (
    FeedTarget,
    poll_feed,
    sync_feeds,
)
from tests.conftest import closed_after_test, write_config
from tests.scripted import CALENDAR, Scripted, calendar, drop, hang, reply
from tests.sitesim import Site, serve

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PATH = "/seminar/X/ics"


class FakeTime:
    """A clock that moves only when the client sleeps; the sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(**policy: Any) -> tuple[httpx.Client, list[float]]:
    """A client whose waits are recorded instead of slept (and its clock follows them),
    closed after the test."""
    fake = FakeTime()
    settings = HttpSettings(retries=3, timeout=policy.pop("timeout", 5.0), allow_private=True)
    client = make_client(
        settings,
        policy=FetchPolicy.from_settings(
            settings, sleep=fake.sleep, clock=fake.clock, wall_clock=lambda: NOW, **policy
        ),
    )
    return closed_after_test(client), fake.sleeps


# --- retries ----------------------------------------------------------------------------------


def test_503_then_200_is_fetched_after_one_backoff(site: Site) -> None:
    script = Scripted(site, PATH, reply(503, b"busy"), calendar())
    client, sleeps = client_for()
    result = fetch(client, script.url, 10_000)
    assert (result.status, result.body, result.attempts) == (200, CALENDAR, 2)
    assert script.requests == 2
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 2.0  # 1 s, plus up to 1 s of jitter


def test_backoff_grows_exponentially_then_the_poll_fails(site: Site) -> None:
    script = Scripted(site, PATH, reply(500, b"oops"))
    client, sleeps = client_for()
    with pytest.raises(FetchError, match="HTTP 500") as failure:
        fetch(client, script.url, 10_000)
    assert failure.value.status == 500
    assert script.requests == 4  # the first try and 3 retries
    assert [int(s) for s in sleeps] == [1, 2, 4]


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_no_retry_on_other_client_errors(site: Site, code: int) -> None:
    script = Scripted(site, PATH, reply(code, b"no"))
    client, sleeps = client_for()
    with pytest.raises(FetchError, match=f"HTTP {code}"):
        fetch(client, script.url, 10_000)
    assert (script.requests, sleeps) == (1, [])


def test_retry_after_in_seconds_is_honoured(site: Site) -> None:
    script = Scripted(site, PATH, reply(429, b"slow down", Retry_After="7"), calendar())
    client, sleeps = client_for()
    assert fetch(client, script.url, 10_000).body == CALENDAR
    assert sleeps == [7.0]


def test_retry_after_as_an_http_date_is_honoured(site: Site) -> None:
    when = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    script = Scripted(site, PATH, reply(503, b"busy", Retry_After=when), calendar())
    client, sleeps = client_for()
    assert fetch(client, script.url, 10_000).body == CALENDAR
    assert sleeps == [30.0]


def test_retry_after_beyond_the_poll_time_limit_gives_up_at_once(site: Site) -> None:
    script = Scripted(site, PATH, reply(503, b"busy", Retry_After="3600"), calendar())
    client, sleeps = client_for(max_poll_time=120.0)
    with pytest.raises(FetchError, match="HTTP 503"):
        fetch(client, script.url, 10_000)
    assert (script.requests, sleeps) == (1, [])


def test_backoff_stops_at_the_poll_time_limit(site: Site) -> None:
    script = Scripted(site, PATH, reply(502, b"bad gateway"))
    client, sleeps = client_for(max_poll_time=2.5, backoff_jitter=0.0)
    with pytest.raises(FetchError, match="HTTP 502"):
        fetch(client, script.url, 10_000)
    assert sleeps == [1.0]  # the next wait (2 s) would end past 2.5 s


@pytest.mark.slow
def test_dropped_connection_and_timeout_are_retried(site: Site) -> None:
    release = threading.Event()
    script = Scripted(site, PATH, drop(), hang(release), calendar())
    client, sleeps = client_for(timeout=0.3)
    try:
        assert fetch(client, script.url, 10_000).body == CALENDAR
    finally:
        release.set()
    assert script.requests == 3 and len(sleeps) == 2


def test_connection_refused_is_retried_then_fails() -> None:
    client, sleeps = client_for()
    with pytest.raises(FetchError, match="ConnectError"):
        fetch(client, "http://127.0.0.1:9/seminar/X/ics", 10_000)
    assert len(sleeps) == 3


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Mon, 02 Mar 2026 09:01:00 GMT", NOW) == 60.0
    assert parse_retry_after("Mon, 02 Mar 2026 08:00:00 GMT", NOW) == 0.0  # in the past
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_a_503_then_200_feed_archives(tmp_path: Path, site: Site) -> None:
    path = "/seminar/AlgGeom/ics"
    failures = iter([True])

    def busy_once(handler: Any) -> bool:
        if next(failures, False):
            handler._send(503, b"busy", {"Retry-After": "1"})
            return True
        return False

    site.overrides[path] = busy_once
    sleeps: list[float] = []
    settings = HttpSettings(allow_private=True)
    db = open_archive(tmp_path / "a.db")
    with make_client(
        settings, policy=FetchPolicy.from_settings(settings, sleep=sleeps.append)
    ) as c:
        result = poll_feed(db, c, FeedTarget(site.feed_url("AlgGeom"), "AlgGeom"), 1_000_000)
    assert (result.outcome, result.counts["new"]) == ("changed", 3)
    assert site.hits[path] == 2 and sleeps == [1.0]
    assert db.execute("SELECT outcome, http_status FROM fetches").fetchall() == [("changed", 200)]


# --- per-host limits ---------------------------------------------------------------------------


class Counting:
    """Serves every series of a site slowly, counting requests in flight and their starts."""

    def __init__(self, site: Site, delay: float = 0.1) -> None:
        self.site, self.delay = site, delay
        self.lock = threading.Lock()
        self.in_flight = self.most = 0
        self.starts: list[float] = []

    def __call__(self, handler: Any) -> bool:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.starts.append(time.monotonic())
        try:
            time.sleep(self.delay)
            return False  # then the site answers as usual
        finally:
            with self.lock:
                self.in_flight -= 1


def series_site(count: int, prefix: str) -> Site:
    sim = Site()
    for n in range(count):
        sim.add_series(f"{prefix}{n}", f"Series {n}").add(1, NOW, [(f"Speaker {n}", None)])
    return sim


@pytest.fixture
def two_sites() -> Iterator[tuple[Site, Site]]:
    first, second = series_site(8, "A"), series_site(8, "B")
    with serve(first), serve(second):
        yield first, second


def watch(site: Site, counter: Counting) -> list[FeedTarget]:
    for shortname in site.series:
        site.overrides[f"/seminar/{shortname}/ics"] = counter
    return [FeedTarget(site.feed_url(s), s) for s in site.series]


@pytest.mark.slow
def test_at_most_two_requests_in_flight_per_host(
    tmp_path: Path, two_sites: tuple[Site, Site]
) -> None:
    first, second = two_sites
    counters = Counting(first), Counting(second)
    targets = [
        t
        for pair in zip(
            *(watch(s, c) for s, c in zip(two_sites, counters, strict=True)), strict=True
        )
        for t in pair
    ]
    open_archive(tmp_path / "a.db").conn.close()
    settings = HttpSettings(per_host=2, concurrency=8, allow_private=True)
    done: list[str] = []
    with make_client(settings) as client:
        results = sync_feeds(
            lambda: open_archive(tmp_path / "a.db"),
            client,
            targets,
            1_000_000,
            concurrency=8,
            on_result=lambda r: done.append(r.outcome),
        )
    assert [r.outcome for r in results] == ["changed"] * 16 and len(done) == 16
    assert [c.most for c in counters] == [2, 2]  # both hosts busy at once, never more than 2
    db = open_archive(tmp_path / "a.db")
    assert db.execute(
        "SELECT count(*), count(DISTINCT fetch_id) FROM talk_versions"
    ).fetchone() == (16, 16)


@pytest.mark.slow
def test_minimum_gap_between_requests_to_one_host(
    tmp_path: Path, two_sites: tuple[Site, Site]
) -> None:
    site = two_sites[0]
    counter = Counting(site, delay=0.0)
    targets = watch(site, counter)[:4]
    open_archive(tmp_path / "a.db").conn.close()
    with make_client(HttpSettings(per_host=2, min_gap=0.3, allow_private=True)) as client:
        sync_feeds(
            lambda: open_archive(tmp_path / "a.db"), client, targets, 1_000_000, concurrency=4
        )
    starts = sorted(counter.starts)
    gaps = [b - a for a, b in pairwise(starts)]
    # seen from the server, so a busy machine may shift a start a little either way
    assert len(gaps) == 3 and min(gaps) >= 0.2 and starts[-1] - starts[0] >= 0.85


def test_one_bad_feed_does_not_stop_the_others(
    tmp_path: Path, two_sites: tuple[Site, Site]
) -> None:
    site = two_sites[0]
    targets = [FeedTarget(site.feed_url(s), s) for s in site.series]
    del site.series["A3"]
    open_archive(tmp_path / "a.db").conn.close()
    with make_client(HttpSettings(retries=0, allow_private=True)) as client:
        results = sync_feeds(lambda: open_archive(tmp_path / "a.db"), client, targets, 10**6)
    assert [r.name for r in results] == [f"A{n}" for n in range(8)]
    assert [r.outcome for r in results].count("error") == 1
    assert results[3].error == "HTTP 404 Not Found"


@pytest.mark.slow
def test_a_large_sync_polls_every_feed_once_within_each_hosts_limit(
    tmp_path: Path, two_sites: tuple[Site, Site]
) -> None:
    """`harvester sync` in a process of its own over 16 feeds of two hosts: every feed
    once, never more than `per_host` requests per host, a failed feed reported like any
    other, and feed ids in config order whichever poll ends first."""
    counters = Counting(two_sites[0]), Counting(two_sites[1])
    targets = [t for s, c in zip(two_sites, counters, strict=True) for t in watch(s, c)]
    del two_sites[1].series["B3"]  # the 12th feed: every other feed is the child's
    config = write_config(
        tmp_path, [t.url for t in targets], "per_host = 2\nconcurrency = 4\nretries = 0\n"
    )
    command = [sys.executable, "-m", "harvester", "--config", str(config)]
    done = subprocess.run(
        [*command, "--log-format", "json", "-v", "sync"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    polled = [e for e in events if e["event"] == "feed.polled"]
    assert sorted(e["feed"] for e in polled) == sorted(t.name or "" for t in targets)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "16 feeds: 15 new, 0 changed" in done.stdout
    assert "error: B3: HTTP 404 Not Found" in done.stderr
    assert [c.most for c in counters] == [2, 2]  # two at a time at each host, never more
    db = open_archive(tmp_path / "archive.db")
    assert db.execute(
        "SELECT count(*), count(DISTINCT fetch_id) FROM talk_versions"
    ).fetchone() == (15, 15)
    # feed ids follow the config, whichever process polled a feed first
    urls = [row[0] for row in db.execute("SELECT url FROM feeds ORDER BY id")]
    assert urls == [t.url for t in targets]


# --- config --------------------------------------------------------------------------------------


def test_http_politeness_keys(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    config = parse_config(
        {"http": {"per_host": 3, "min_gap": "2s", "max_poll_time": "5m", "concurrency": 6}}, path
    )
    http = config.http
    assert (http.per_host, http.min_gap, http.max_poll_time, http.concurrency) == (3, 2, 300, 6)
    for key, value in (("per_host", 0), ("concurrency", 0), ("min_gap", "soon")):
        with pytest.raises(ConfigError, match=f"h.toml: http.{key}: "):
            parse_config({"http": {key: value}}, path)


def test_limiter_never_sleeps_without_a_gap() -> None:
    from harvester._http import HostLimiter

    slept: list[float] = []
    limiter = HostLimiter(per_host=1, min_gap=0.0, sleep=slept.append)
    for _ in range(3):
        with limiter.slot("h"):
            pass
    clock = iter([0.0, 0.0, 0.1]).__next__
    gapped = HostLimiter(per_host=1, min_gap=0.5, clock=clock, sleep=slept.append)
    for _ in range(3):
        with gapped.slot("h"):
            pass
    assert slept == [0.5, 0.9]


Answer = Callable[[Any], bool]
