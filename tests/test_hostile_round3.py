# ruff: noqa: F811  (the fixtures of test_discover, imported to be shared)
"""Hostile input, round 3: what an outsider controls cannot stall a run, leak a secret or
break a page. Each test goes through the real CLI or server, against local servers only;
a deadline is asserted with generous slack, never as an exact time."""

from __future__ import annotations

import asyncio
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
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from harvester.cli import cli
from harvester.config import load_config
from harvester.export import csv_cell
from harvester.model import Speaker
from harvester.redact import redact, urls_in
from harvester.sitetext import parse_speakers
from tests.apisim import Api
from tests.conftest import Harvester, write_config
from tests.receiver import receiving
from tests.scripted import Scripted, reply
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_notification_never_goes_through_a_proxy(workdir: Path) -> None:
    with receiving() as proxy, receiving() as receiver:
        env = {
            "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}",
            "http_proxy": f"http://127.0.0.1:{proxy.port}",
        }
        done = notify_test(notify_config(workdir, receiver.url(), "allow_private = true\n"), env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(receiver.messages) == 1 and proxy.attempts == 0


# --- 4. a secret in a feed's own text is masked before it is stored ----------------------------

TOKEN = "Qz7personalTOKENinTitle42"
WORD = "zyxwvutsrqponm"  # a word only the personal feed's talk has


def every_text(path: Path) -> str:
    """Every text in the file's tables, with each zlib `raw` inflated: what a reader sees."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    found = []
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for name in names:
        for row in conn.execute(f'SELECT * FROM "{name}"'):
            for value in row:
                if isinstance(value, bytes):
                    try:
                        value = zlib.decompress(value).decode("utf-8", "replace")
                    except zlib.error:
                        value = value.decode("utf-8", "replace")
                found.append(str(value))
    conn.close()
    return "\n".join(found)


@pytest.fixture
def personal(workdir: Path, site: Site) -> Harvester:
    """A personal feed whose only talk carries the feed's own token (title, abstract) and a
    word no other talk has; a notification of its change stays pending (nobody answers)."""
    mine = site.add_series("Mine", "My own seminar")
    mine.add(
        1,
        datetime.now(UTC) + timedelta(days=4),
        [("Ada", None)],
        title=f"My feed is {site.base_url}/user/ics/{TOKEN}",
        abstract=f"Token {TOKEN} and the word {WORD}.",
    )
    site.personal[TOKEN] = ["Mine"]
    notify = '\n[[notify]]\nurl = "json://127.0.0.1:9/hook"\nkinds = ["retitled"]\n'
    h = Harvester(
        write_config(
            workdir, [site.feed_url("AlgGeom"), f"{site.base_url}/user/ics/{TOKEN}"], notify
        )
    )
    assert h("sync").exit_code == 0
    mine.talks[1].title = f"Still {TOKEN}"
    assert h("sync").exit_code == 0
    return h


def test_a_feeds_own_token_in_its_text_is_stored_masked(personal: Harvester, workdir: Path) -> None:
    stored = every_text(personal.db_path)
    assert TOKEN not in stored and f"{TOKEN[:4]}…" in stored
    assert WORD in stored and "Rings and ideals" in stored  # the rest as it was
    browser = Browser(personal.db_path)
    for page in (
        "/archive/talks.json",
        "/archive/talk_versions.json?_col=raw",
        "/archive/talk_history?uid=Mine/1",
        "/archive/calendar.ics",
        "/archive/changes_feed.atom",
        "/archive.json?sql=select+*+from+talk_versions",
    ):
        answer = browser.get(page)
        assert answer.status_code == 200 and TOKEN not in answer.text, page
    out = workdir / "copy.db"
    assert personal("snapshot", "--include-personal", str(out)).exit_code == 0
    assert TOKEN not in every_text(out)


# --- 5. a snapshot carries nothing of the talks it leaves out -----------------------------------


def test_a_snapshot_without_personal_feeds_keeps_no_trace_of_their_talks(
    personal: Harvester, workdir: Path
) -> None:
    with sqlite3.connect(personal.db_path) as conn:
        queued = conn.execute("SELECT count(*) FROM notifications WHERE uid = 'Mine/1'")
        assert queued.fetchone()[0] == 1  # the outbox row a snapshot must not carry
    conn.close()
    out = workdir / "public.db"
    assert personal("snapshot", str(out)).exit_code == 0
    data = out.read_bytes()
    assert WORD.encode() not in data and b"Mine" not in data
    with sqlite3.connect(out) as conn:
        assert conn.execute("SELECT count(*) FROM notifications").fetchone()[0] == 0
        hits = conn.execute("SELECT count(*) FROM talks_fts WHERE talks_fts MATCH 'ideals'")
        assert hits.fetchone()[0] == 1  # the search still finds what stays
    conn.close()


# --- 9. Apprise's own lines never reach the output ---------------------------------------------


@pytest.mark.slow
def test_apprise_lines_at_verbose_leak_no_header_topic_or_path(workdir: Path) -> None:
    with receiving() as receiver:
        receiver.failing = True
        url = (
            f"json://127.0.0.1:{receiver.port}/hookPathQ?+X-Api-Key=HeaderValueQ&:topic=TopicValueQ"
        )
        config = notify_config(workdir, url, "allow_private = true\n")
        done = subprocess.run(
            [sys.executable, "-m", "harvester", "-v", "--config", str(config), "notify", "--test"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    shown = done.stdout + done.stderr
    assert done.returncode == 1 and receiver.attempts >= 1
    for secret in ("hookPathQ", "HeaderValueQ", "TopicValueQ"):
        assert secret not in shown, secret


# --- weak points: each a clear line, nothing lost ---------------------------------------------


def test_a_csv_cell_with_a_byte_order_mark_before_a_formula_is_neutralised() -> None:
    assert csv_cell("\ufeff=1+1").startswith("'")
    assert csv_cell("\u200b+SUM(A1)").startswith("'")
    assert csv_cell("-5") == "-5" and csv_cell("Message passing") == "Message passing"


def test_import_reads_at_most_max_bytes(workdir: Path, sample_copy: Path) -> None:
    big = workdir / "big.ics"
    big.write_bytes(sample_copy.read_bytes() + b" " * 3_000_000)
    h = Harvester(write_config(workdir, [], "max_bytes = 1_000_000\n"))
    for source in (big, Path("/dev/zero")):
        result = h("import", str(source))
        assert result.exit_code == 1
        assert "over the limit of 1000000 bytes ([http] max_bytes)" in result.output
    assert h("import", str(sample_copy)).exit_code == 0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
        ('x = "' + "a" * 2_000_000 + '"\n', "larger than 1000000 bytes"),
    ],
)
def test_a_hostile_config_is_refused_in_one_line(workdir: Path, text: str, reason: str) -> None:
    config = workdir / "harvester.toml"
    config.write_text(text, encoding="utf-8")
    began = time.monotonic()
    result = Harvester(config)("status")
    assert time.monotonic() - began < 10
    assert result.exit_code == 2 and reason in result.output, result.output


def test_urls_are_found_in_linear_time() -> None:
    began = time.monotonic()
    assert list(urls_in("a" * 2_000_000 + " mailto://x:pw@h" + "b" * 1000)) == [
        "mailto://x:pw@h" + "b" * 1000
    ]
    assert list(urls_in("see https://x.org/a, and ftp://y")) == ["https://x.org/a,", "ftp://y"]
    assert time.monotonic() - began < 5


def test_discover_never_adds_a_shortname_the_site_could_not_have(h: Harvester, api: Api) -> None:
    def hostile(handler: Any) -> bool:
        results = [
            {"shortname": name, "name": "x"}
            for name in ("../../user/ics/abcd", "New\nLine", "Esc\x1b[2J", "Fine_Name-1")
        ]
        body = json.dumps({"code": "success", "results": results}).encode()
        handler._send(200, body, {"Content-Type": "application/json"})
        return True

    api.site.overrides["/api/0/search/series"] = hostile
    result = h("discover", "--all", "--add")
    assert result.exit_code == 0, result.output
    config = h.config.read_text(encoding="utf-8")
    assert "/seminar/Fine_Name-1/ics" in config
    assert "user/ics" not in config and "New" not in config and "\x1b" not in config


@pytest.mark.slow
def test_snapshot_to_a_missing_folder_or_of_a_damaged_archive_is_one_line(
    workdir: Path, sample_copy: Path
) -> None:
    h = Harvester(write_config(workdir, []))
    assert h("import", str(sample_copy)).exit_code == 0
    missing = h("snapshot", str(workdir / "no" / "such" / "copy.db"))
    assert missing.exit_code == 1 and "cannot copy the archive" in missing.output
    assert not list(workdir.rglob("*.partial"))
    with sqlite3.connect(h.db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    size = h.db_path.stat().st_size
    with h.db_path.open("r+b") as file:  # damage every page after the schema's
        file.seek(pages)
        file.write(b"\xff" * (size - pages))
    for command in (
        ["snapshot", str(workdir / "copy.db")],
        ["export"],
        ["history", "PhysicsMeetsML/1"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "harvester", "--config", str(h.config), *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, (command, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.startswith("error: "), done.stderr
    assert not list(workdir.rglob("*.partial"))


@pytest.mark.slow
def test_arguments_that_are_not_utf8_are_one_line(workdir: Path) -> None:
    config = write_config(workdir, [])
    for args in (
        ["history", b"G/\xff".decode("utf-8", "surrogateescape")],
        ["--db", b"a\xff.db".decode("utf-8", "surrogateescape"), "status"],
    ):
        done = subprocess.run(
            [
                os.fsencode(sys.executable),
                b"-m",
                b"harvester",
                b"--config",
                os.fsencode(config),
                *(os.fsencode(a) for a in args),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        err = done.stderr.decode("utf-8", "replace")
        assert done.returncode in (1, 2) and "Traceback" not in err, err
        assert err.startswith("error: "), err


def test_the_pages_refuse_a_post_and_render_odd_arguments(workdir: Path, sample_copy: Path) -> None:
    h = Harvester(write_config(workdir, []))
    assert h("import", str(sample_copy)).exit_code == 0
    browser = Browser(h.db_path)
    posted = asyncio.run(browser.ds.client.post("/archive/speaker_talks", data={"speaker": "x"}))
    assert posted.status_code == 405
    for page in (
        "/archive/calendar.ics?series=a%0Ab",
        "/archive/speaker_talks.ics?speaker=a%0D%0Ab",
    ):
        answer = browser.get(page)
        assert answer.status_code == 200 and "a b" in answer.text.replace("\r\n ", ""), page
    atom = browser.get(
        "/archive.atom?sql=select+1+as+atom_id,+'t'+as+atom_title,+'2026-01-01'+as+atom_updated"
    )
    assert atom.status_code == 200 and "<entry>" in atom.text
    began = time.monotonic()
    blob = browser.get("/archive.json?sql=select+length(hex(randomblob(300000000)))")
    assert blob.status_code == 400 and "too big" in blob.text
    assert time.monotonic() - began < 2


def test_a_token_a_server_puts_in_a_redirect_shows_in_no_verbose_line(
    workdir: Path, site: Site
) -> None:
    server_token = "SrvSet7Token0123456789abc"
    target = f"{site.feed_url('AlgGeom')}?token={server_token}"
    Scripted(site, "/moved/ics", reply(302, Location=target))
    h = Harvester(write_config(workdir, [f"{site.base_url}/moved/ics"]))
    result = CliRunner().invoke(cli, ["--config", str(h.config), "-v", "sync"])
    assert result.exit_code == 0, result.output
    assert "HTTP Request" in result.output and "token=…" in result.output
    assert server_token not in result.output


def test_a_timezone_icalendar_cannot_read_costs_a_warning_not_the_feed(
    workdir: Path, sample_copy: Path
) -> None:
    body = sample_copy.read_bytes()
    at = body.index(b"BEGIN:VEVENT")
    zone = (
        b"BEGIN:VTIMEZONE\r\nTZID:Bad\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
        b"TZOFFSETFROM:+0000\r\nTZOFFSETTO:+9959\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
    )
    sample_copy.write_bytes(body[:at] + zone + body[at:])
    h = Harvester(write_config(workdir, []))
    result = h("import", str(sample_copy))
    assert result.exit_code == 0, result.output
    assert "read the events without the calendar's other parts" in result.output
    with sqlite3.connect(h.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM talks").fetchone()[0] == 4
    conn.close()


# --- masking never changes text that holds no secret (what a newcomer met first) -------------


def test_a_short_password_is_masked_in_urls_only_and_a_comment_teaches_nothing(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = workdir / "harvester.toml"
    config.write_text(
        '# url = "mailtos://user:commented@example.org"\n'
        '[[notify]]\nurl = "json://user:pass@hooks.example.org/x"\n',
        encoding="utf-8",
    )
    with caplog.at_level("WARNING"):
        load_config(config)
    assert "masked inside URLs only" in caplog.text
    assert redact("Message passing, commented code") == "Message passing, commented code"
    assert "pass@" not in redact("failed: json://user:pass@hooks.example.org/x (HTTP 500)")


def one_talk(title: str, stamp: str = "20261201T000000Z") -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:researchseminars.org\r\nBEGIN:VEVENT\r\n"
        "SUMMARY:Ada Lovelace (Engines)\r\nDTSTART:20270105T160000Z\r\n"
        f'DTSTAMP:{stamp}\r\nUID:Clock/1\r\nDESCRIPTION:Title: <a href="https://'
        f'researchseminars.org/talk/Clock/1/">{title}</a>\\nby Ada Lovelace (Engines) as part'
        " of Clock\\n\\n\\nAbstract\\nTicks.\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def test_a_retitle_seen_as_stale_is_said_on_the_terminal(workdir: Path) -> None:
    """The feed's DTSTAMP never moves and this machine's clock went a day back: the new
    title is a stale copy by rule 4, and the run says so instead of a silent 'unchanged'."""
    feed = workdir / "clock.ics"
    h = Harvester(write_config(workdir, []))
    url = "https://researchseminars.org/seminar/Clock/ics"
    feed.write_bytes(one_talk("First title"))
    assert h("import", str(feed), "--feed", url, "--observed-at", "2026-12-05T00:00").exit_code == 0
    feed.write_bytes(one_talk("A real retitle"))
    behind = h("import", str(feed), "--feed", url, "--observed-at", "2026-12-04T00:00")
    assert behind.exit_code == 0
    assert "1 event(s) ignored as older than the archive's copy" in behind.output
    assert "Clock/1" in behind.output and "clock is behind" in behind.output


def test_an_exported_csv_cell_with_a_formula_behind_a_byte_order_mark_is_quoted(
    workdir: Path,
) -> None:
    feed = workdir / "bom.ics"
    feed.write_bytes(one_talk("\ufeff=1+1"))
    h = Harvester(write_config(workdir, []))
    assert h("import", str(feed)).exit_code == 0
    exported = h("export", "--format", "csv")
    assert exported.exit_code == 0
    assert "'\ufeff=1+1" in exported.output
