"""Lock files beside the archive, so runs of one kind do not pile up on one archive.

`archive.db.sync.lock` is held by `harvester sync --lock`, `archive.db.daemon.lock` by
`harvester run`. They are advisory (flock) and released by the kernel when the process
dies, so a crash never leaves a stale lock. They do not guard the archive itself: every
poll is its own SQLite transaction, which makes a daemon and a sync on one archive safe.

The lock file is named after the archive's resolved path (a symlink leads to the same
lock). The daemon also holds an flock on the archive file itself, so a second daemon
reaching the same file through a hard link (another name, the same inode) is refused
too. SQLite locks with POSIX record locks, which on Linux are independent of flock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from harvester.errors import LockBusyError


@contextlib.contextmanager
def hold(archive_path: Path | str, role: str) -> Iterator[Path]:
    """Take the `role` lock of the archive without waiting, or raise LockBusyError."""
    from filelock import FileLock, Timeout  # 15 ms of imports: only for runs that hold one

    path = Path(f"{Path(archive_path).resolve()}.{role}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockBusyError(f"{path} is held by {_holder(path)}") from None
    try:
        with _file_lock(Path(archive_path), role):
            # flock belongs to the lock's own descriptor: writing through another is safe.
            started = datetime.now(UTC).isoformat(timespec="seconds")
            path.write_text(f"pid {os.getpid()} since {started}\n", encoding="utf-8")
            yield path
    finally:
        lock.release()


@contextlib.contextmanager
def _file_lock(archive: Path, role: str) -> Iterator[None]:
    """The daemon's flock on the archive file itself: one holder per file, whatever its name."""
    if role != "daemon" or not archive.exists():
        yield
        return
    fd = os.open(archive, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusyError(
                f"{archive.resolve()} is held by another process through another name of the"
                " same file (a hard link)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "another process"
