# ruff: noqa: F811  (the fixtures of test_discover, imported to be shared)
"""Hostile input, round 3: what an outsider controls cannot stall a run, leak a secret or
break a page. Each test goes through the real CLI or server, against local servers only;
a deadline is asserted with generous slack, never as an exact time."""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harvester.model import Speaker
from harvester.parse import parse_speakers
from tests.apisim import Api
from tests.conftest import Harvester, write_config
from tests.receiver import receiving
from tests.sitesim import Site
from tests.test_datasette import Browser
from tests.test_discover import CONFIG, api, h  # noqa: F401  (fixtures)

# --- 1. no pattern over remote text takes more than linear time ---------------------------------

# The speaker split as it was (backtracking patterns: quadratic on long runs of spaces),
# kept as the reference the linear one must agree with.
_OLD_SEPARATOR = re.compile(r",\s*and\s+|\s+and\s+|,\s*")
_OLD_NAME_AFFILIATION = re.compile(r"^(?P<name>[^()]*?)\s*\((?P<affiliation>.*)\)$", re.DOTALL)


def old_parse_speakers(summary: str) -> tuple[Speaker, ...]:
    speakers = []
    for part in _old_split(summary):
        if match := _OLD_NAME_AFFILIATION.match(part):
            speakers.append(Speaker(match["name"].strip(), match["affiliation"].strip() or None))
        else:
            speakers.append(Speaker(part))
    return tuple(speakers)


def _old_split(text: str) -> list[str]:
    parts: list[str] = []
    depth = start = position = 0
    while position < len(text):
        char = text[position]
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0 and (sep := _OLD_SEPARATOR.match(text, position)):
            parts.append(text[start:position])
            start = position = sep.end()
            continue
        position += 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


@given(st.text(alphabet=" \t\n,()andx\u00a0Ü", max_size=60))
def test_the_linear_speaker_split_reads_as_the_old_one_did(summary: str) -> None:
    assert parse_speakers(summary) == old_parse_speakers(summary)


def test_speaker_and_affiliation_split_known_forms() -> None:
    assert parse_speakers("A (X), B (Y, and Z), and C") == (
        Speaker("A", "X"),
        Speaker("B", "Y, and Z"),
        Speaker("C"),
    )
    assert parse_speakers("Ada Lovelace (Engines) and Alan Turing") == (
        Speaker("Ada Lovelace", "Engines"),
        Speaker("Alan Turing"),
    )


HUGE = 150_000  # a 150 KB feed


def test_a_feed_of_long_runs_of_spaces_syncs_at_once(workdir: Path, site: Site) -> None:
    """A speaker, a room and a title that an organiser filled with 150,000 spaces (or `<`)
    once kept a sync busy for minutes; now the feed is archived in a few seconds."""
    series = site.add_series("Spaces", "Spaces")
    start = datetime.now(UTC) + timedelta(days=2)
    series.add(1, start, [("x" + " " * HUGE + "y", None)], title="<" * HUGE)
    series.add(2, start, [("Ada", "a" + " " * HUGE + "b")], room="r" + " " * HUGE + "s")
    harvester = Harvester(write_config(workdir, [site.feed_url("Spaces")]))
    began = time.monotonic()
    result = harvester("sync")
    assert time.monotonic() - began < 20, "the sync took as long as a quadratic pattern does"
    assert result.exit_code == 0, result.output
    with sqlite3.connect(harvester.db_path) as conn:
        rows = dict(conn.execute("SELECT uid, speakers FROM talks").fetchall())
    conn.close()
    assert json.loads(rows["Spaces/1"]) == [{"name": "x" + " " * HUGE + "y", "affiliation": None}]
    assert json.loads(rows["Spaces/2"])[0]["affiliation"] == "a" + " " * HUGE + "b"


# --- 6. every date the archive can hold renders ------------------------------------------------

LAST_TALK = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:researchseminars.org\r\nBEGIN:VEVENT\r\n"
    b"SUMMARY:Ada Lovelace (Engines)\r\nDTSTART:99991231T233000Z\r\nDTSTAMP:20261201T000000Z\r\n"
    b"UID:End/1\r\nDESCRIPTION:Title: The last talk\\nby Ada Lovelace (Engines) as part of"
    b" End\\n\\n\\nAbstract\\nTime runs out.\r\nLOCATION:https://researchseminars.org/talk/End/1/"
    b"\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def test_a_talk_at_the_end_of_time_renders_everywhere(workdir: Path) -> None:
    feed = workdir / "end.ics"
    feed.write_bytes(LAST_TALK)
    harvester = Harvester(write_config(workdir, []))
    assert harvester("import", str(feed)).exit_code == 0
    exported = harvester("export", "--format", "ics")
    assert exported.exit_code == 0, exported.output
    (event,) = icalendar.Calendar.from_ical(exported.output).walk("VEVENT")
    assert event.decoded("dtstart") == datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
    assert event.decoded("dtend") > event.decoded("dtstart")
    browser = Browser(harvester.db_path)
    for page in (
        "/archive/calendar.ics",
        "/archive/talks.ics",
        "/archive/talks",
        "/archive/upcoming_talks",
        "/archive/talk_history?uid=End/1",
    ):
        answer = browser.get(page)
        assert answer.status_code == 200, (page, answer.text[:300])
    assert "Fri 31 Dec 9999, 23:30 UTC" in browser.get("/archive/talks").text


# --- 10. --db on a FIFO or a device -------------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["export"], ["sync"], ["history", "S/1"]])
def test_a_db_that_is_a_fifo_or_a_device_is_refused_at_once(
    workdir: Path, site: Site, command: list[str]
) -> None:
    fifo = workdir / "archive.fifo"
    os.mkfifo(fifo)
    config = write_config(workdir, [site.feed_url("AlgGeom")])
    for db in (fifo, Path("/dev/null")):
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "harvester", "--config", str(config), "--db", str(db), *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert time.monotonic() - began < 30
        assert done.returncode != 0
        assert f"{db}: not a regular file" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not Path("/dev/null-journal").exists() and not Path("/dev/null-wal").exists()


# --- 2. max_poll_time is a deadline for the whole poll ----------------------------------------


class Trickler:
    """A local server that never finishes an answer: `mode` "headers" sends its status line
    one byte every half second, "continue" sends `100 Continue` again and again. Each
    connection stops by itself after `LIFETIME_S`."""

    LIFETIME_S = 60.0

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/seminar/Slow/ics"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            ends = time.monotonic() + self.LIFETIME_S
            data, gap = (
                (b"HTTP/1.1 200 OK\r\nContent-Type: text/calendar\r\n", 0.5)
                if self.mode == "headers"
                else (b"HTTP/1.1 100 Continue\r\n\r\n", 0.2)
            )
            while time.monotonic() < ends and not self.stopped.is_set():
                for piece in [data[i : i + 1] for i in range(len(data))] if gap == 0.5 else [data]:
                    try:
                        conn.sendall(piece)
                    except OSError:
                        return
                    time.sleep(gap)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.mark.parametrize("mode", ["headers", "continue"])
def test_a_server_that_trickles_cannot_hold_a_poll_past_max_poll_time(
    workdir: Path, site: Site, mode: str
) -> None:
    trickler = Trickler(mode)
    try:
        config = write_config(
            workdir, [trickler.url, site.feed_url("AlgGeom")], 'max_poll_time = "5s"\nretries = 3\n'
        )
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "harvester", "--config", str(config), "sync", "--lock"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        took = time.monotonic() - began
    finally:
        trickler.close()
    assert took < 2 * 5 + 5, f"the poll took {took:.1f} s against max_poll_time = 5s"
    assert done.returncode == 1, done.stderr
    assert "gave up after 5 s (the poll's time limit)" in done.stderr
    with sqlite3.connect(workdir / "archive.db") as conn:
        assert conn.execute("SELECT count(*) FROM talks").fetchone()[0] == 3  # the other feed
    conn.close()


# --- 7. one decoded-size limit for every HTTP client, the site API's included ------------------


def double_gzip_bomb(handler: Any) -> bool:
    """6 KB on the wire that `gzip, gzip` would inflate to 50 MB of NULs."""
    body = gzip.compress(gzip.compress(b"\0" * 50_000_000, 9), 9)
    assert len(body) < 10_000
    handler._send(200, body, {"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"})
    return True


def test_an_api_answer_that_inflates_without_bound_is_refused(h: Harvester, api: Api) -> None:
    api.site.overrides["/api/0/topics"] = double_gzip_bomb
    result = h("discover", "--topics")
    assert result.exit_code == 1
    assert "Content-Encoding 'gzip, gzip'" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_a_bomb_from_the_api_during_a_sync_ends_in_its_summary(workdir: Path, api: Api) -> None:
    api.site.overrides["/api/0/search/series"] = double_gzip_bomb
    config = workdir / "harvester.toml"
    config.write_text(
        CONFIG.format(base=api.site.base_url)
        + f'[[feeds]]\nurl = "{api.site.feed_url("AlgGeom")}"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "harvester", "--config", str(config), "sync"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert "series.refresh_failed" in done.stderr and "gzip, gzip" in done.stderr
    assert re.search(r"1 feed", done.stdout + done.stderr)


# --- 3. a slow receiver holds neither the run's lock nor its exit ------------------------------


def test_a_receiver_that_drips_cannot_hold_a_sync_or_its_lock(workdir: Path, site: Site) -> None:
    with receiving() as receiver:
        receiver.drip = 2.0
        config = write_config(
            workdir,
            [site.feed_url("AlgGeom")],
            f'\n[notifications]\ntimeout = "3s"\n\n[[notify]]\nurl = "{receiver.url()}"\n'
            "upcoming_only = false\n",
        )
        command = [sys.executable, "-m", "harvester", "--config", str(config), "sync", "--lock"]
        assert subprocess.run(command, capture_output=True, timeout=60, check=False).returncode == 0
        site.series["AlgGeom"].talks[2].title = "A new title"  # a change to notify about
        began = time.monotonic()
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            while not receiver.attempts and time.monotonic() - began < 60:
                time.sleep(0.05)  # until the first run is sending
            assert receiver.attempts, "the first run never sent"
            second = subprocess.run(
                command, capture_output=True, text=True, timeout=60, check=False
            )
            _out, err = first.communicate(timeout=60)
        finally:
            first.kill()
        took = time.monotonic() - began
    assert second.returncode != 3, "the second cron run was kept out while the first one sent"
    assert first.returncode == 0, err
    assert took < 2 * 3 + 15, f"sending held the run {took:.1f} s against a 3 s timeout"
    assert "no answer within 3 s" in err
    with sqlite3.connect(workdir / "archive.db") as conn:
        pending = conn.execute("SELECT count(*) FROM notifications WHERE status = 'pending'")
        assert pending.fetchone()[0] > 0  # kept for a retry, not lost
    conn.close()


# --- 8. notifications follow the URL policy of feeds, proxies included --------------------------


def notify_config(workdir: Path, url: str, entry: str = "", http: str = "") -> Path:
    path = workdir / "harvester.toml"
    path.write_text(
        f'[archive]\npath = "archive.db"\n\n[http]\n{http}\n[[notify]]\nurl = "{url}"\n{entry}',
        encoding="utf-8",
    )
    return path


def notify_test(
    config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harvester", "--config", str(config), "notify", "--test"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_loopback_webhook_is_refused_unless_its_entry_allows_it(workdir: Path, host: str) -> None:
    with receiving(host) as receiver:
        refused = notify_test(notify_config(workdir, receiver.url()))
        assert refused.returncode == 1
        assert (
            "is a loopback address (set allow_private on the [[notify]] entry"
            in refused.stdout + refused.stderr
        )
        assert receiver.attempts == 0
        allowed = notify_test(notify_config(workdir, receiver.url(), "allow_private = true\n"))
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        assert len(receiver.messages) == 1


def test_a_notification_never_goes_through_a_proxy(workdir: Path) -> None:
    with receiving() as proxy, receiving() as receiver:
        env = {
            "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}",
            "http_proxy": f"http://127.0.0.1:{proxy.port}",
        }
        done = notify_test(notify_config(workdir, receiver.url(), "allow_private = true\n"), env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(receiver.messages) == 1 and proxy.attempts == 0
