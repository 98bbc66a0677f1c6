"""The steps of a run around its polls, defined once for `harvester sync`, `import` and
the daemon: `prepare`, the polls, `send`, `upkeep` (docs/design.md, "The pipeline").
A sync runs them once, in that order; the daemon prepares when it starts, sends after each
poll and runs `upkeep` every hour.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime

from sqlite_utils import Database

from harvester import archive as store
from harvester import outbox
from harvester.config import Config
from harvester.errors import ArchiveError
from harvester.logs import get_logger

log = get_logger("harvester.run")


def prepare(db: Database, config: Config, now: datetime) -> str | None:
    """Before the polls: the integrity check when due, and which feeds the config disables
    (`feed_health` says so). Raises ArchiveError for a damaged archive; returns the problem
    with the notify targets, if any (logged; it never fails the run)."""
    store.check_when_due(db, now)
    store.record_enabled(db, {feed.url: feed.enabled for feed in config.feeds})
    try:
        outbox.register(db, config, now)
    except ArchiveError as exc:
        log.error("notify.register_failed", error=str(exc))
        return f"notifications: cannot record the [[notify]] targets: {exc}"
    return None


def send(db: Database, config: Config, now: datetime) -> outbox.SendReport | None:
    """The outbox after the polls; None when there are no targets."""
    return outbox.send_pending(db, config, now) if config.notify else None


def upkeep(
    config: Config,
    now: datetime,
    *,
    online: bool = True,
    refresh: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """After the polls: the integrity check (a daemon runs for months), the followed
    series' metadata (every series with `refresh`, `sync --refresh`; none unless `online`:
    an import asks no server), then compaction and statistics. Problems are only logged."""
    stopping = should_stop or (lambda: False)
    try:
        db = store.open_archive(config.archive_path, file_mode=config.archive_file_mode)
        with contextlib.closing(db):
            store.check_when_due(db, now)
            if online:
                from harvester.series import refresh_followed_series  # httpx: not for import

                refresh_followed_series(db, config, now, force=refresh)
            if stopping():
                return
            done = store.compact_polls(db, now, config.archive_keep_polls, should_stop=stopping)
            analyzed = not stopping() and store.refresh_statistics_when_due(db, now)
    except ArchiveError as exc:
        log.error("archive.upkeep_failed", error=str(exc))
        return
    if not done.skipped:
        log.info("archive.compacted", polls=done.polls, batches=done.batches, before=done.before)
    if analyzed:
        log.info("archive.analyzed")
