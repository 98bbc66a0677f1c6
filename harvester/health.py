"""Health: stale feeds and the daemon's heartbeat, for `harvester status [--check]`.

A feed is *stale* when its last success (or, if it never succeeded, the time it was
added) is older than `STALE_AFTER` × its interval. Only feeds the config schedules are
judged, its own and those of the series its `[[follow]]` topics bring in: an ad hoc
`sync URL`, an imported file or a feed since dropped from the config has no interval to be
late for.

The daemon keeps one row in the archive's `daemon` table: written when it starts, its
`heartbeat_at` refreshed every `HEARTBEAT_EVERY_S`, `stopped_at` set on a clean stop. A
heartbeat older than `STALE_AFTER` beats without a clean stop means the daemon died.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlite_utils import Database

from harvester import __version__
from harvester import archive as store
from harvester.archive import now_iso
from harvester.config import Config
from harvester.follow_status import followed_feeds
from harvester.humane import counted, human_time

STALE_AFTER = 3  # intervals (feeds) or heartbeats (the daemon)
HEARTBEAT_EVERY_S = 30.0

# `status --check` exit codes (1 and 2 are the CLI's usual "failed" and "usage").
CHECK_OK, CHECK_FAILING, CHECK_STALE = 0, 1, 4


def _age(since: str | None, now: datetime) -> float | None:
    if not since:
        return None
    return (now - datetime.fromisoformat(since)).total_seconds()


def annotate_feeds(
    db: Database, feeds: list[dict[str, Any]], config: Config, now: datetime
) -> None:
    """Add `interval_s` (None when the config does not schedule the feed), `configured`
    (an enabled feed of the config, or of a series its `[[follow]]` topics bring in: the
    only ones health judges) and `stale`.

    Config entries are matched to archived feeds by the archive (`feed_ids`). Feeds polled
    ad hoc, imported files, and feeds removed from or disabled in the config are listed but
    never make the archive FAILING or STALE.
    """
    every = config.schedule.interval
    scheduled = {f.url: f.interval_or(every) for f in config.feeds if f.enabled}
    for url in followed_feeds(db, config).values():  # polled at the config's interval
        scheduled.setdefault(url, every)
    ids = store.feed_ids(db, list(scheduled))
    intervals = {ids[url]: interval for url, interval in scheduled.items() if url in ids}
    for feed in feeds:
        interval = intervals.get(feed["id"])
        age = _age(feed["last_success_at"] or feed["added_at"], now)
        feed["interval_s"] = interval
        feed["configured"] = feed["id"] in intervals
        feed["stale"] = bool(interval and age is not None and age > STALE_AFTER * interval)


def human_duration(seconds: float) -> str:
    """`45s`, `12m`, `3h 5m`, `2d 4h`: the two largest units."""
    seconds = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


# --- the daemon's heartbeat --------------------------------------------------------------


def start_heartbeat(db: Database, at: datetime, feeds: int, config: str | None) -> None:
    """The daemon's row as it starts (replacing the row of any earlier daemon)."""
    store.write_daemon_start(
        db,
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "version": __version__,
            "config": config,
            "feeds": feeds,
            "started_at": now_iso(at),
            "heartbeat_at": now_iso(at),
            "heartbeat_every": HEARTBEAT_EVERY_S,
            "stopped_at": None,
        },
    )


def beat(db: Database, at: datetime, feeds: int) -> None:
    store.write_daemon_beat(db, os.getpid(), now_iso(at), feeds)


def stop_heartbeat(db: Database, at: datetime) -> None:
    store.write_daemon_stop(db, os.getpid(), now_iso(at))


DaemonState = Literal["running", "stopped", "dead"]


@dataclass(frozen=True)
class DaemonStatus:
    state: DaemonState
    text: str


def _alive(pid: object) -> bool:
    """Whether process `pid` exists on this host (one of another user counts)."""
    if not isinstance(pid, int) or pid <= 0:
        return True  # nothing to judge by: the heartbeat decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def daemon_status(db: Database, now: datetime) -> DaemonStatus | None:
    """What the heartbeat says of the daemon; None when no daemon ever used this archive."""
    row = store.daemon_row(db)
    if row is None:
        return None
    pid, host, heartbeat_at = row["pid"], row["host"], row["heartbeat_at"]
    age = _age(heartbeat_at, now) or 0.0
    if row["stopped_at"]:
        stopped = human_time(row["stopped_at"])
        return DaemonStatus("stopped", f"daemon: stopped at {stopped} (pid {pid} on {host})")
    if age > STALE_AFTER * (row["heartbeat_every"] or HEARTBEAT_EVERY_S):
        return DaemonStatus(
            "dead",
            f"daemon: NOT RUNNING: last heartbeat {human_duration(age)} ago"
            f" ({human_time(heartbeat_at)}, pid {pid} on {host}) and no clean stop",
        )
    if host == socket.gethostname() and not _alive(pid):  # killed: no need to wait for a beat
        return DaemonStatus(
            "dead", f"daemon: NOT RUNNING: pid {pid} on this host is gone, with no clean stop"
        )
    return DaemonStatus(
        "running",
        f"daemon: running (pid {pid} on {host} since {human_time(row['started_at'])},"
        f" heartbeat {human_duration(age)} ago)",
    )


def failing_feeds(feeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The configured, enabled feeds whose last poll failed (see `annotate_feeds`)."""
    return [f for f in feeds if f["configured"] and f["last_outcome"] == "error"]


def check(feeds: list[dict[str, Any]], daemon: DaemonStatus | None) -> tuple[int, str]:
    """The exit code and one summary line of `status --check` (failing beats stale)."""
    failing = failing_feeds(feeds)
    stale = [
        f"{f['name']} (last success {human_time(f['last_success_at'], missing='never')})"
        for f in feeds
        if f["stale"]
    ]
    problems = []
    if failing:
        problems.append(
            "FAILING: " + ", ".join(f"{f['name']} ({f['last_error']})" for f in failing)
        )
    if stale:
        problems.append("STALE: " + ", ".join(stale))
    if daemon is not None and daemon.state == "dead":
        problems.append("DAEMON " + daemon.text.removeprefix("daemon: "))
    if not problems:
        judged = sum(1 for f in feeds if f["configured"])
        summary = f"OK: {counted(judged, 'feed')} healthy"
        return CHECK_OK, summary + (f"; {daemon.text}" if daemon else "")
    return (CHECK_FAILING if failing else CHECK_STALE), "; ".join(problems)
