"""Several `harvester sync` processes and a daemon on one archive while the site changes:
every change is recorded exactly once, versions numbered without gaps or duplicates."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.sitesim import Site
from tests.test_daemon import Daemon, assert_archive_consistent, daemon_config, start, wait_for

__all__ = ["start"]  # the fixture, re-used from the daemon tests
ROUNDS, SYNCS = 4, 3
pytestmark = pytest.mark.slow


def test_parallel_syncs_and_a_daemon_record_each_change_once(
    workdir: Path, site: Site, start: Callable[..., Daemon]
) -> None:
    config = daemon_config(
        workdir, [(site.feed_url("AlgGeom"), None), (site.feed_url("NumThy"), None)], "0.1s"
    )
    daemon = start(config)
    wait_for(lambda: daemon.fetches("AlgGeom") and daemon.fetches("NumThy"), "the first polls")
    titles = ["Rings and ideals"]
    for round_ in range(ROUNDS):
        with site.lock:
            site.series["AlgGeom"].talks[2].title = f"Rings, take {round_}"
            site.series["NumThy"].talks[1].room = f"Room {round_}"
        titles.append(f"Rings, take {round_}")
        syncs = [
            subprocess.Popen(
                [sys.executable, "-m", "harvester", "--config", str(config), "-q", "sync"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(SYNCS)
        ]
        for proc in syncs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    assert daemon.stop()[0] == 0

    with sqlite3.connect(daemon.db_path) as conn:
        retitles = conn.execute(
            "SELECT version, title FROM talk_versions WHERE uid = 'AlgGeom/2' ORDER BY version"
        ).fetchall()
        rooms = conn.execute(
            "SELECT version, room FROM talk_versions WHERE uid = 'NumThy/1' ORDER BY version"
        ).fetchall()
    assert retitles == list(enumerate(titles, start=1))
    assert rooms == list(enumerate([None] + [f"Room {r}" for r in range(ROUNDS)], start=1))
    assert_archive_consistent(daemon.db_path)
