"""SIGKILL during a large sync: the archive stays consistent and a re-run converges.

Each kill point copies an archive at state A, starts `harvester sync` against a site that
has moved on to state B, and kills it when the site has answered the k-th request (plus a
small, varied delay, so that kills land inside transactions too). Afterwards every series
must be exactly as in A or exactly as in B, and one more sync must reach B.
Set HARVESTER_THOROUGH=1 for more kill points.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from harvester.cli import cli
from tests.conftest import write_config
from tests.sitesim import Site, serve

FEEDS, TALKS = 8, 15
THOROUGH = os.environ.get("HARVESTER_THOROUGH") == "1"
KILL_POINTS = 96 if THOROUGH else 24
pytestmark = pytest.mark.slow


def build_site(site: Site) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    for f in range(FEEDS):
        series = site.add_series(f"S{f:02d}", f"Series {f}")
        for c in range(1, TALKS + 1):
            series.add(
                c,
                start + timedelta(hours=c),
                [(f"Speaker {f}-{c}", "Uni")],
                abstract="Words " * 200,
            )


def move_site_to_state_b(site: Site) -> None:
    for f, series in enumerate(site.series.values()):
        for c in range(1, 9):
            series.talks[c].title = f"Retitled {f}-{c}"
        series.talks[10].start += timedelta(days=2)
        del series.talks[TALKS]
        series.add(TALKS + 1, series.talks[1].start, [("Newcomer", None)])


def run_sync(config: Path, db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "harvester", "--config", str(config), "--db", str(db), "-q", "sync"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def snapshot(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Per series: every talk's version, status and title, plus its version rows."""
    with sqlite3.connect(db) as conn:
        talks = conn.execute(
            "SELECT series_id, uid, version, status, title, dtstart FROM talks ORDER BY uid"
        ).fetchall()
        versions = conn.execute(
            "SELECT uid, version, change FROM talk_versions ORDER BY uid, version"
        ).fetchall()
    per_series: dict[str, list[tuple[object, ...]]] = {}
    for row in talks:
        per_series.setdefault(str(row[0]), []).append(row[1:])
    for uid, version, change in versions:
        per_series.setdefault(uid.split("/")[0], []).append((uid, version, change))
    return per_series


def in_process(config: Path, db: Path, *args: str) -> str:
    """The CLI in this process: the re-runs need no fresh interpreter, only the kills do."""
    result = CliRunner().invoke(cli, ["--config", str(config), "--db", str(db), "-q", *args])
    assert result.exit_code == 0, result.output
    return result.output


def export_without_times(config: Path, db: Path) -> list[dict[str, object]]:
    talks: list[dict[str, object]] = json.loads(in_process(config, db, "export"))
    for talk in talks:
        del talk["first_seen"], talk["changed_at"]
    return talks


def test_sigkill_at_many_points_loses_nothing_and_converges(tmp_path: Path) -> None:
    site = Site()
    build_site(site)
    with serve(site):
        config = write_config(tmp_path, [site.feed_url(s) for s in site.series])
        state_a = tmp_path / "state_a.db"
        assert run_sync(config, state_a).wait(60) == 0
        with sqlite3.connect(state_a) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        snap_a = snapshot(state_a)
        move_site_to_state_b(site)
        reference = tmp_path / "reference.db"
        shutil.copy(state_a, reference)
        assert run_sync(config, reference).wait(60) == 0
        snap_b = snapshot(reference)
        expected_export = export_without_times(config, reference)
        assert snap_a != snap_b and len(snap_b) == FEEDS

        outcomes = {"killed": 0, "finished": 0}
        for point in range(KILL_POINTS):
            db = tmp_path / f"kill{point}.db"
            shutil.copy(state_a, db)
            process = run_sync(config, db)
            after_request = 1 + point * FEEDS // KILL_POINTS
            delay = (point % 4) * 0.004
            seen = {"n": 0}
            lock = threading.Lock()

            def maybe_kill(
                _path: str,
                process: subprocess.Popen[bytes] = process,
                after_request: int = after_request,
                delay: float = delay,
                seen: dict[str, int] = seen,
                lock: threading.Lock = lock,
            ) -> None:
                with lock:
                    seen["n"] += 1
                    if seen["n"] == after_request:
                        threading.Timer(delay, lambda: _kill(process)).start()

            site.on_request = maybe_kill
            code = process.wait(60)
            site.on_request = None
            outcomes["killed" if code == -signal.SIGKILL else "finished"] += 1

            with sqlite3.connect(db) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            snap = snapshot(db)
            for series in snap_b:
                assert snap.get(series) in (snap_a.get(series), snap_b[series]), (point, series)
            in_process(config, db, "sync")
            assert snapshot(db) == snap_b, point
            assert export_without_times(config, db) == expected_export
        assert outcomes["killed"] >= KILL_POINTS // 2, outcomes


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGKILL)
