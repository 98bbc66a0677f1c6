"""Disk trouble: a full or read-only archive disk gives one clear error, exit 1, and
nothing half-written; once there is room again, a sync completes the archive.

The archive lives on a small tmpfs mounted for the test (CI runs as root). Where mounting
is not allowed, the disk-full case falls back to a file-size limit (RLIMIT_FSIZE), which
makes SQLite's writes fail the same way.
"""

from __future__ import annotations

import hashlib
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.sitesim import Site, serve
from tests.test_daemon import assert_archive_consistent

pytestmark = pytest.mark.slow


def mount(path: Path, options: str) -> bool:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def small_disk() -> Iterator[tuple[Path, bool]]:
    """A folder on an 8 MB tmpfs (True), or a plain temp folder (False) if mounting fails.

    A new archive of 64 KB pages takes about 3 MB before its first talk, and its first
    sync about as much again in the WAL."""
    folder = Path(tempfile.mkdtemp(prefix="harvester-disk-"))
    mounted = mount(folder, "size=8m,mode=0755")
    yield folder, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def grow_site(site: Site, feeds: int, talks: int, words: int) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    for f in range(feeds):
        series = site.series.get(f"D{f}") or site.add_series(f"D{f}", f"Disk {f}")
        for c in range(1, talks + 1):
            series.add(
                c, start + timedelta(hours=c), [(f"Speaker {c}", None)], abstract="lorem " * words
            )


def sync(config: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes or 0, limit_bytes or 0))

    preexec: Callable[[], None] | None = limit if limit_bytes else None
    return subprocess.run(
        [sys.executable, "-m", "harvester", "--config", str(config), "-q", "sync"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
    )


def test_disk_full_is_a_clear_error_and_nothing_half_written(small_disk: tuple[Path, bool]) -> None:
    folder, mounted = small_disk
    site = Site()
    grow_site(site, feeds=2, talks=3, words=10)
    with serve(site):
        config = write_config(folder, [site.feed_url(f"D{f}") for f in range(4)])
        first = sync(config)
        assert first.returncode == 1  # D2 and D3 do not exist yet (404), D0 and D1 archived
        grow_site(site, feeds=4, talks=40, words=2000)  # ~10 MB of abstracts: more than the disk
        full = sync(config, limit_bytes=None if mounted else 6_000_000)
        assert full.returncode == 1
        errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, full.stderr
        assert "archive.db: cannot write the archive" in errors[0]
        assert (
            "disk is full" in errors[0]
            or "disk I/O error" in errors[0]
            or "file too large" in errors[0]
        )
        assert_archive_consistent(folder / "archive.db")

        if mounted:
            assert subprocess.run(["mount", "-o", "remount,size=50m", str(folder)]).returncode == 0
        again = sync(config)
        assert again.returncode == 0, again.stderr
        assert_archive_consistent(folder / "archive.db")
        import sqlite3

        with sqlite3.connect(folder / "archive.db") as conn:
            assert conn.execute("SELECT count(*) FROM talks").fetchone()[0] == 4 * 40


def test_read_only_archive_is_a_clear_error_and_untouched(small_disk: tuple[Path, bool]) -> None:
    folder, mounted = small_disk
    if not mounted:
        pytest.skip("mounting a tmpfs is not allowed here; the read-only case needs it")
    site = Site()
    grow_site(site, feeds=1, talks=3, words=10)
    with serve(site):
        config = write_config(folder, [site.feed_url("D0")])
        first = sync(config)
        assert first.returncode == 0, first.stderr
        site.series["D0"].talks[1].title = "Changed while read-only"
        digest = hashlib.sha256((folder / "archive.db").read_bytes()).hexdigest()
        assert subprocess.run(["mount", "-o", "remount,ro", str(folder)]).returncode == 0
        result = sync(config)
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "archive.db" in lines[0] and "read" in lines[0].lower(), (
            result.stderr
        )
        assert "Traceback" not in result.stderr
        assert hashlib.sha256((folder / "archive.db").read_bytes()).hexdigest() == digest
