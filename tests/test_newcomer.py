"""What a newcomer meets (issue "What a newcomer meets"): the parts fixed so far."""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import icalendar
import pytest
from click.testing import CliRunner

from harvester.cli import cli
from harvester.health import CHECK_STALE
from tests.conftest import Harvester, write_config
from tests.sitesim import Site
from tests.test_datasette import ATOM, Browser


def test_a_calendar_asks_for_a_refresh_with_a_duration_and_atom_names_itself(
    workdir: Path, sample_copy: Path
) -> None:
    h = Harvester(write_config(workdir, []))
    assert h("import", str(sample_copy)).exit_code == 0
    browser = Browser(h.db_path)
    calendar = browser.get("/archive/calendar.ics").text
    assert "X-PUBLISHED-TTL:PT1H" in calendar
    parsed = icalendar.Calendar.from_ical(calendar)
    ttl = icalendar.vDuration.from_ical(str(parsed["X-PUBLISHED-TTL"]))  # type: ignore[no-untyped-call]
    assert ttl == timedelta(hours=1)
    feed = ET.fromstring(browser.get("/archive/changes_feed.atom").content)
    selves = [link.get("href") for link in feed.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert len(selves) == 1 and (selves[0] or "").endswith("/archive/changes_feed.atom")


def test_one_feed_is_one_feed(workdir: Path, sample_copy: Path) -> None:
    h = Harvester(write_config(workdir, []))
    result = h("import", str(sample_copy))
    assert "1 feed: 4 new" in result.output and "1 feeds" not in result.output


@pytest.mark.slow
def test_a_killed_daemon_is_not_running_at_once(workdir: Path, site: Site) -> None:
    config = write_config(workdir, [site.feed_url("AlgGeom")])
    daemon = subprocess.Popen(
        [sys.executable, "-m", "harvester", "--config", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        h = Harvester(config)
        deadline = time.monotonic() + 30
        while not h("status").output.startswith("daemon: running"):
            assert time.monotonic() < deadline, "the daemon never said it runs"
            time.sleep(0.1)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        status = h("status")
        assert status.output.startswith(f"daemon: NOT RUNNING: pid {daemon.pid} on this host")
        assert h("status", "--check").exit_code == CHECK_STALE
    finally:
        daemon.kill()
        daemon.wait(10)


def test_a_sync_that_reaches_no_server_points_to_the_offline_path(workdir: Path) -> None:
    config = write_config(workdir, ["http://127.0.0.1:9/seminar/A/ics"], "retries = 0\n")
    result = Harvester(config)("sync")
    assert result.exit_code == 1
    hints = [line for line in result.output.splitlines() if line.startswith("hint: ")]
    assert hints == [
        "hint: no feed's server could be reached (offline?); `harvester import"
        " data/samples/PhysicsMeetsML.ics` archives the sample feed that ships here"
    ]


NOWHERE = "researchseminars.invalid"  # RFC 2606: never resolves


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name the test looks up; none resolves, and no lookup leaves this machine (an
    IP address is no lookup: the socket layer parses it)."""
    looked_up: list[str] = []
    parse_address = socket.getaddrinfo

    def no_such_name(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            looked_up.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return parse_address(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    return looked_up


def test_a_name_that_does_not_resolve_fails_at_once_in_one_line_per_feed(
    workdir: Path, lookups: list[str]
) -> None:
    timeout = 3.0
    config = workdir / "harvester.toml"
    config.write_text(
        f'[archive]\npath = "archive.db"\n\n[http]\ntimeout = {timeout}\n\n'
        f'[[feeds]]\nname = "Algebraic geometry"\nurl = "https://{NOWHERE}/seminar/AlgGeom/ics"\n',
        encoding="utf-8",
    )
    started = time.monotonic()
    result = Harvester(config)("sync")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert elapsed < timeout, f"{elapsed:.1f} s: the lookup was retried"
    assert lookups == [NOWHERE]
    said = [line for line in result.output.splitlines() if not line.startswith("{")]
    assert said[0] == (
        f"error: Algebraic geometry: cannot resolve {NOWHERE}: Name or service not known"
    )
    assert said[1].startswith("1 feed: ") and said[2].startswith("hint: no feed's server")
    assert len(said) == 3 and "fetch.retry" not in result.output


def test_a_redirect_to_a_name_that_does_not_resolve_is_not_retried(
    workdir: Path, site: Site, lookups: list[str]
) -> None:
    feed = site.feed_url("AlgGeom")
    path = feed.removeprefix(site.base_url)

    def elsewhere(handler: BaseHTTPRequestHandler) -> bool:
        handler.send_response(302)
        handler.send_header("Location", f"https://{NOWHERE}{path}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    site.overrides[path] = elsewhere
    result = Harvester(write_config(workdir, [feed]))("sync")
    assert result.exit_code == 1
    assert site.hits[path] == 1 and lookups == [NOWHERE]
    assert f"error: AlgGeom: redirected to https://{NOWHERE}{path}: cannot resolve" in (
        result.output
    )


def test_a_talk_moved_by_a_day_is_moved_by_one_day(workdir: Path, site: Site) -> None:
    h = Harvester(write_config(workdir, [site.feed_url("AlgGeom")]))
    assert h("sync").exit_code == 0
    talks = site.series["AlgGeom"].talks
    talks[2].start += timedelta(days=1)
    talks[3].start -= timedelta(days=1)
    assert h("sync").exit_code == 0
    with sqlite3.connect(h.db_path) as conn:
        moved = dict(conn.execute("SELECT uid, moved_by FROM rescheduled_talks").fetchall())
    conn.close()
    assert moved == {"AlgGeom/2": "+1 day", "AlgGeom/3": "-1 day"}


def test_history_prints_times_as_people_read_them_and_json_keeps_iso(
    workdir: Path, site: Site
) -> None:
    h = Harvester(write_config(workdir, [site.feed_url("AlgGeom")]))
    assert h("sync").exit_code == 0
    site.series["AlgGeom"].talks[2].start += timedelta(days=1)
    assert h("sync").exit_code == 0
    shown = h("history", "AlgGeom/2").output
    assert re.search(r"  v1  \w{3} \d{1,2} \w{3} \d{4}, \d\d:\d\d UTC  new", shown), shown
    assert re.search(r"dtstart: \w{3} .* UTC → \w{3} .* UTC", shown), shown
    assert "+00:00" not in shown
    versions = json.loads(h("history", "AlgGeom/2", "--json").output)
    assert versions[0]["observed_at"].endswith("+00:00")


def test_compact_counts_one_poll_as_one_poll_and_says_the_day_as_people_read_it(
    workdir: Path, site: Site
) -> None:
    h = Harvester(write_config(workdir, [site.feed_url("AlgGeom")]))
    for _ in range(3):  # changed, unchanged, unchanged: the latest poll always stays
        assert h("sync").exit_code == 0
    with sqlite3.connect(h.db_path) as conn:  # every poll 60 days ago: past keep_polls (30d)
        conn.execute("UPDATE fetches SET started_unix = started_unix - ?", [60 * 86400])
    conn.close()
    said = h("compact").output.splitlines()[-1]
    assert re.fullmatch(
        r"1 unchanged poll before \w{3} \d{1,2} \w{3} \d{4}, 00:00 UTC compacted", said
    )


@pytest.mark.parametrize(("log_format", "lines"), [("console", 1), ("json", 2)])
def test_a_failed_poll_is_said_once_where_people_read_the_log(
    workdir: Path, site: Site, log_format: str, lines: int
) -> None:
    """In console logs (a terminal's) the poll's own line says what failed and where; in
    JSON logs, for machines, the `error:` line says it for people too."""
    config = write_config(workdir, [site.feed_url("Missing")])
    result = CliRunner().invoke(cli, ["--config", str(config), "--log-format", log_format, "sync"])
    assert result.exit_code == 1
    said = [
        line
        for line in result.stderr.splitlines()
        if "/seminar/Missing/ics" in line or "error: Missing" in line
    ]
    assert len(said) == lines, result.stderr
