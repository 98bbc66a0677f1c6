"""`harvester run`: the real daemon process against the simulated site, on short intervals.

Every test drives the installed CLI in a subprocess and waits for archive state with a
bounded polling loop (no fixed sleeps standing in for "enough time has passed").
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from harvester.cli import cli
from harvester.daemon import backoff_interval, first_poll_delays, plans_for
from harvester.lock import hold
from tests.conftest import Harvester
from tests.sitesim import Site

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def daemon_config(
    directory: Path, feeds: Sequence[tuple[str, str | None]], interval: str = "0.5s"
) -> Path:
    """A config for the simulated site: (url, per-feed interval or None) per feed."""
    text = (
        '[archive]\npath = "archive.db"\n\n[http]\ntimeout = 5\nallow_private = true\n\n'
        f'[schedule]\ninterval = "{interval}"\njitter = 0\n'
    )
    for url, every in feeds:
        text += f'\n[[feeds]]\nurl = "{url}"\n'
        if every:
            text += f'interval = "{every}"\n'
    path = directory / "harvester.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Daemon:
    """`harvester run` in a subprocess, its JSON log lines in a file beside the config."""

    def __init__(self, config: Path, *args: str) -> None:
        self.config = config
        self.db_path = config.parent / "archive.db"
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harvester",
                "--config",
                str(config),
                "--log-format",
                "json",
                "run",
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        events = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in events if name is None or e["event"] == name]

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM (or `signum`); the exit code and how long the stop took."""
        started = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()
        # Shown by pytest when the test failed.
        print(f"--- {self.log_path.name}, exit code {self.proc.returncode}")
        print(self.log_path.read_text(encoding="utf-8")[-20_000:])

    def fetches(self, feed: str, outcome: str | None = None) -> list[dict[str, Any]]:
        if not self.db_path.exists():
            return []
        with sqlite3.connect(self.db_path, timeout=10) as conn:
            conn.row_factory = sqlite3.Row
            try:
                rows = conn.execute(
                    "SELECT x.* FROM fetches x JOIN feeds f ON f.id = x.feed_id"
                    " WHERE f.name = ? ORDER BY x.id",
                    [feed],
                ).fetchall()
            except sqlite3.OperationalError:  # not migrated yet
                return []
        return [dict(r) for r in rows if outcome is None or r["outcome"] == outcome]


@pytest.fixture
def start(workdir: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def _start(config: Path, *args: str) -> Daemon:
        daemon = Daemon(config, *args)
        started.append(daemon)
        return daemon

    yield _start
    for daemon in started:
        daemon.close()


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def gaps(fetches: list[dict[str, Any]]) -> list[float]:
    """Seconds between the starts of consecutive polls."""
    starts = [seconds(f["started_at"]) for f in fetches]
    return [b - a for a, b in itertools.pairwise(starts)]


def assert_archive_consistent(db_path: Path) -> None:
    """integrity_check ok, and no half poll: every fetch's counts match what it wrote."""
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        mismatched = conn.execute(
            """SELECT x.id FROM fetches x
               WHERE coalesce(x.new, 0) + coalesce(x.changed, 0) + coalesce(x.removed, 0)
                     + coalesce(x.restored, 0)
                  != (SELECT count(*) FROM talk_versions v WHERE v.fetch_id = x.id)"""
        ).fetchall()
        assert mismatched == []
        behind = conn.execute(
            """SELECT t.uid FROM talks t
               WHERE t.version != (SELECT max(version) FROM talk_versions v WHERE v.uid = t.uid)"""
        ).fetchall()
        assert behind == []
        holes = conn.execute(
            "SELECT uid FROM talk_versions GROUP BY uid HAVING count(*) != max(version)"
        ).fetchall()
        assert holes == []
        unrecorded = conn.execute(
            """SELECT f.name FROM feeds f
               WHERE f.last_fetched_at IS NOT
                     (SELECT max(finished_at) FROM fetches x WHERE x.feed_id = f.id)"""
        ).fetchall()
        assert unrecorded == []
    finally:
        conn.close()


# --- scheduling rules ----------------------------------------------------------------------


def test_backoff_doubles_per_failure_up_to_the_cap() -> None:
    assert [backoff_interval(60, n, 600) for n in range(6)] == [60, 120, 240, 480, 600, 600]
    assert backoff_interval(3600, 3, 600) == 3600  # a cap below the interval never speeds up
    assert backoff_interval(1, 10_000, 1e9) == 1e9  # no overflow


def test_first_polls_are_spread_and_soon(tmp_path: Path) -> None:
    urls = [(f"https://researchseminars.org/seminar/S{i}/ics", None) for i in range(100)]
    plans = list(plans_for(_load(daemon_config(tmp_path, urls, interval="30m"))).values())
    delays = first_poll_delays(plans)
    assert delays[0] == 0
    assert all(0.5 <= b - a <= 1.0 for a, b in itertools.pairwise(delays))
    fast = list(plans_for(_load(daemon_config(tmp_path, urls[:4], interval="2s"))).values())
    assert max(first_poll_delays(fast)) < 1.0  # all within half the interval


def test_jitter_is_at_most_a_quarter_of_the_interval(tmp_path: Path) -> None:
    config = daemon_config(
        tmp_path, [("https://researchseminars.org/seminar/A/ics", "4s")], interval="1h"
    )
    config.write_text(config.read_text().replace("jitter = 0", 'jitter = "2m"'))
    (plan,) = plans_for(_load(config)).values()
    assert plan.interval == 4 and plan.jitter == 1


def _load(path: Path) -> Any:
    from harvester.config import load_config

    return load_config(path)


# --- the daemon process --------------------------------------------------------------------


@pytest.mark.slow
def test_polls_every_feed_on_its_own_interval(
    workdir: Path, site: Site, start: Callable[..., Daemon]
) -> None:
    config = daemon_config(
        workdir, [(site.feed_url("AlgGeom"), None), (site.feed_url("NumThy"), "1.5s")]
    )
    daemon = start(config)
    wait_for(lambda: len(daemon.fetches("AlgGeom")) >= 7, "7 polls of AlgGeom")
    alg, num = daemon.fetches("AlgGeom"), daemon.fetches("NumThy")
    alg_gaps, num_gaps = gaps(alg), gaps(num)
    # A poll may start late (a busy machine), the one after it is on time again.
    assert 0.4 <= sum(alg_gaps) / len(alg_gaps) <= 0.7 and max(alg_gaps) < 1.4, alg_gaps
    assert num_gaps and all(1.1 <= gap <= 2.5 for gap in num_gaps), num_gaps
    # The first polls came at once and one after the other, not together.
    assert 0.3 <= seconds(num[0]["started_at"]) - seconds(alg[0]["started_at"]) <= 1.5
    assert site.hits["/seminar/AlgGeom/ics"] >= len(alg)
    assert [f["outcome"] for f in alg[:2]] == ["changed", "unchanged"]

    # Running, by its heartbeat; a second daemon on the same archive is refused.
    status = Harvester(config)("status")
    assert status.output.startswith("daemon: running (pid "), status.output
    second = subprocess.run(
        [sys.executable, "-m", "harvester", "--config", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert second.returncode == 3 and "another `harvester run`" in second.stderr

    code, took = daemon.stop()
    assert code == 0 and took < 5
    assert Harvester(config)("status").output.startswith("daemon: stopped at ")
    assert_archive_consistent(daemon.db_path)


@pytest.mark.slow
def test_failing_feed_backs_off_and_recovers(
    workdir: Path, site: Site, start: Callable[..., Daemon]
) -> None:
    config = daemon_config(
        workdir, [(site.feed_url("AlgGeom"), None), (site.feed_url("Gone"), None)]
    )
    daemon = start(config, "--max-backoff", "2s")
    wait_for(lambda: len(daemon.fetches("Gone")) >= 3, "3 failed polls of Gone")
    gone = daemon.fetches("Gone")
    good = daemon.fetches("AlgGeom")
    assert {f["outcome"] for f in gone} == {"error"}
    gone_gaps = gaps(gone)  # 0.5s doubled, then capped at 2s:
    assert 0.8 <= gone_gaps[0] <= 1.6 and 1.8 <= gone_gaps[1] <= 2.8, gone_gaps
    assert len(good) >= 2 * len(gone)  # the good feed kept its interval
    backoffs = [e["next_poll_in_s"] for e in daemon.events("feed.backoff")]
    assert backoffs[:3] == [1.0, 2.0, 2.0]

    with site.lock:
        site.add_series("Gone", "Back again").add(1, site.clock(), [("Sophie Germain", None)])
    wait_for(lambda: len(daemon.fetches("Gone", "changed")) >= 1, "Gone to succeed")
    recovered = daemon.fetches("Gone", "changed")[0]
    wait_for(lambda: len(daemon.fetches("Gone", "unchanged")) >= 2, "Gone on its interval again")
    again = daemon.fetches("Gone", "unchanged")[1]
    assert seconds(again["started_at"]) - seconds(recovered["started_at"]) < 1.8
    assert [e["feed"] for e in daemon.events("feed.recovered")] == ["Gone"]
    assert daemon.stop()[0] == 0


@pytest.mark.slow
def test_sighup_adds_removes_and_refuses_a_bad_config(
    workdir: Path, site: Site, start: Callable[..., Daemon]
) -> None:
    alg, num = site.feed_url("AlgGeom"), site.feed_url("NumThy")
    config = daemon_config(workdir, [(alg, None)])
    daemon = start(config)
    wait_for(lambda: daemon.fetches("AlgGeom"), "AlgGeom polled")
    assert daemon.fetches("NumThy") == []

    daemon_config(workdir, [(alg, None), (num, None)])
    daemon.send(signal.SIGHUP)
    wait_for(lambda: daemon.fetches("NumThy"), "NumThy polled after SIGHUP")
    assert daemon.events("config.reloaded")[0]["added"] == ["NumThy"]

    daemon_config(workdir, [(num, None)])
    daemon.send(signal.SIGHUP)
    wait_for(lambda: len(daemon.events("config.reloaded")) == 2, "second reload")
    assert daemon.events("config.reloaded")[1]["removed"] == ["AlgGeom"]
    alg_polls = len(daemon.fetches("AlgGeom"))
    num_polls = len(daemon.fetches("NumThy"))
    wait_for(lambda: len(daemon.fetches("NumThy")) >= num_polls + 3, "NumThy polled on")
    assert len(daemon.fetches("AlgGeom")) <= alg_polls + 1  # at most a poll in flight

    config.write_text(config.read_text() + '\n[[feeds]]\nurl = "ftp://example.org/x.ics"\n')
    daemon.send(signal.SIGHUP)
    failed = wait_for(lambda: daemon.events("config.reload_failed"), "the bad config refused")
    assert "feeds[1].url" in failed[0]["error"] and failed[0]["kept_feeds"] == 1
    num_polls = len(daemon.fetches("NumThy"))
    wait_for(lambda: len(daemon.fetches("NumThy")) >= num_polls + 2, "the old config running")
    assert daemon.proc.poll() is None
    assert daemon.stop()[0] == 0
    assert_archive_consistent(daemon.db_path)


def _slow(site: Site, path: str, delay: float) -> threading.Event:
    """Hold every answer on `path` for `delay` seconds; the event is set once one is held."""
    entered = threading.Event()

    def override(_handler: object) -> bool:
        entered.set()
        time.sleep(delay)
        return False  # then answer as usual

    site.overrides[path] = override
    return entered


@pytest.mark.slow
def test_sigterm_lets_the_poll_in_flight_commit(
    workdir: Path, site: Site, start: Callable[..., Daemon]
) -> None:
    entered = _slow(site, "/seminar/AlgGeom/ics", 1.0)
    daemon = start(daemon_config(workdir, [(site.feed_url("AlgGeom"), "1h")]))
    wait_for(entered.is_set, "the slow poll to start")
    code, took = daemon.stop()
    assert code == 0 and took < 4
    (fetch,) = daemon.fetches("AlgGeom")  # finished and committed, whole
    assert fetch["outcome"] == "changed" and fetch["new"] == 3
    assert daemon.events("daemon.stopped")[0]["polls_abandoned"] == 0
    assert_archive_consistent(daemon.db_path)


@pytest.mark.slow
def test_sigterm_abandons_a_poll_that_outlasts_the_grace(
    workdir: Path, site: Site, start: Callable[..., Daemon]
) -> None:
    entered = _slow(site, "/seminar/AlgGeom/ics", 6.0)
    config = daemon_config(
        workdir, [(site.feed_url("NumThy"), "1h"), (site.feed_url("AlgGeom"), "1h")]
    )
    daemon = start(config, "--grace", "0.5s")
    wait_for(entered.is_set, "the slow poll to start")
    code, took = daemon.stop(signal.SIGINT)
    assert code == 0 and took < 3
    assert daemon.events("daemon.stopped")[0]["polls_abandoned"] == 1
    assert daemon.fetches("AlgGeom") == []  # abandoned before its transaction
    assert len(daemon.fetches("NumThy")) == 1
    assert_archive_consistent(daemon.db_path)


@pytest.mark.slow
def test_sigterm_abandons_a_poll_waiting_to_retry(
    workdir: Path, site: Site, start: Callable[..., Daemon]
) -> None:
    def busy(handler: Any) -> bool:
        handler._send(503, b"busy", {"Content-Type": "text/plain", "Retry-After": "30"})
        return True

    site.overrides["/seminar/AlgGeom/ics"] = busy
    daemon = start(daemon_config(workdir, [(site.feed_url("AlgGeom"), "1h")]))
    wait_for(lambda: site.hits["/seminar/AlgGeom/ics"], "the first attempt")
    time.sleep(0.2)  # into the 30s wait before the retry
    code, took = daemon.stop()
    assert code == 0 and took < 3  # the wait ended at once, no retry was sent
    assert site.hits["/seminar/AlgGeom/ics"] == 1
    assert [e["feed"] for e in daemon.events("feed.poll_abandoned")] == ["AlgGeom"]
    assert daemon.fetches("AlgGeom") == []  # abandoned before its transaction
    assert_archive_consistent(daemon.db_path)


@pytest.mark.slow
def test_daemon_and_cron_sync_record_every_change_once(
    workdir: Path, site: Site, start: Callable[..., Daemon]
) -> None:
    config = daemon_config(
        workdir, [(site.feed_url("AlgGeom"), None), (site.feed_url("NumThy"), None)], "0.2s"
    )
    daemon = start(config)
    wait_for(lambda: daemon.fetches("AlgGeom"), "the first poll")
    titles = ["Rings and ideals"]
    for i in range(4):
        with site.lock:
            site.series["AlgGeom"].talks[2].title = f"Rings, take {i}"
        titles.append(f"Rings, take {i}")
        cron = subprocess.run(
            [sys.executable, "-m", "harvester", "--config", str(config), "sync", "--lock"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert cron.returncode == 0, cron.stderr
    polls = len(daemon.fetches("AlgGeom"))
    assert daemon.stop()[0] == 0
    assert polls >= 8  # the daemon kept polling all along, between and during the syncs

    conn = sqlite3.connect(daemon.db_path)
    rows = conn.execute(
        "SELECT version, title FROM talk_versions WHERE uid = 'AlgGeom/2' ORDER BY version"
    ).fetchall()
    assert rows == list(enumerate(titles, start=1))  # each change once, in order, no gap
    others = conn.execute(
        "SELECT uid, count(*) FROM talk_versions WHERE uid != 'AlgGeom/2' GROUP BY uid"
    ).fetchall()
    assert sorted(others) == [("AlgGeom/1", 1), ("AlgGeom/3", 1), ("NumThy/1", 1)]
    assert conn.execute("SELECT version FROM talks WHERE uid = 'AlgGeom/2'").fetchone() == (5,)
    conn.close()
    assert_archive_consistent(daemon.db_path)


# --- refusals ------------------------------------------------------------------------------


def test_run_refuses_a_config_without_feeds(workdir: Path) -> None:
    config = daemon_config(workdir, [])
    result = CliRunner().invoke(cli, ["--config", str(config), "run"])
    assert result.exit_code == 2 and "no feeds to poll" in result.output


def test_sync_lock_skips_while_another_sync_holds_it(harvester: Harvester) -> None:
    with hold(harvester.db_path, "sync"):
        locked = harvester("sync", "--lock")
        assert locked.exit_code == 3
        assert "another `harvester sync --lock` is still running" in locked.stderr
        assert f"pid {os.getpid()}" in locked.stderr
        assert harvester("sync").exit_code == 0  # without --lock: safe, it just runs
    assert harvester("sync", "--lock").exit_code == 0
