"""Lock files beside the archive, so runs of one kind do not pile up on one archive.

`archive.db.sync.lock` is held by `harvester sync --lock`, `archive.db.daemon.lock` by
`harvester run`. They are advisory (flock) and released by the kernel when the process
dies, so a crash never leaves a stale lock. They do not guard the archive itself: every
poll is its own SQLite transaction, which makes a daemon and a sync on one archive safe.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from harvester.errors import LockBusyError


def lock_path(archive_path: Path | str, role: str) -> Path:
    return Path(f"{archive_path}.{role}.lock")


@contextlib.contextmanager
def hold(archive_path: Path | str, role: str) -> Iterator[Path]:
    """Take the `role` lock of the archive without waiting, or raise LockBusyError."""
    path = lock_path(archive_path, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockBusyError(f"{path} is held by {_holder(path)}") from None
    try:
        # flock belongs to the lock's own descriptor: writing through another is safe.
        started = datetime.now(UTC).isoformat(timespec="seconds")
        path.write_text(f"pid {os.getpid()} since {started}\n", encoding="utf-8")
        yield path
    finally:
        lock.release()


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "another process"
