"""Following topics: `[[follow]]` entries bring their series in, with no config edit.

The topic refresh asks the site's API for each entry's series (`site_api.select_series`:
the topic, narrowed to the institution if one is given) and records the answer in
`series` (`archive.record_followed`): a series new to the topics joins (`followed_since`,
`followed_by`), one no longer in any of them leaves (`left_at`) and is no longer polled,
and everything archived of it stays. It runs before a sync's polls, at most once a day
(or when the `[[follow]]` entries changed), and at once with `sync --refresh`. A failing
API only logs a warning: the series followed so far are polled as before.

The followed series are polled as feeds like any other (`/seminar/<shortname>/ics` on
`[site] base_url`): the same transport with its URL policy, the same change rules, rule 7's
guard included. A series the config names (even disabled) is polled as the config says.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlite_utils import Database

from harvester import archive as store
from harvester.config import Config, FeedConfig
from harvester.errors import ApiError, ArchiveError
from harvester.follow_status import followed_feeds
from harvester.logs import get_logger
from harvester.series import open_api, store_series
from harvester.site_api import SeriesInfo, select_series
from harvester.sync import FeedTarget

REFRESH_EVERY = timedelta(days=1)
log = get_logger("harvester.follow")


def _entries(config: Config) -> list[str]:
    return sorted(entry.reason for entry in config.follow)


def refresh_due(db: Database, config: Config, now: datetime) -> bool:
    """Never searched, searched for other entries, or more than a day ago."""
    last = store.follow_refreshed(db)
    if last is None or last.get("follow") != _entries(config):
        return True
    try:
        at = datetime.fromisoformat(str(last.get("at")))
    except ValueError:
        return True
    return now - at >= REFRESH_EVERY


def refresh_when_due(db: Database, config: Config, now: datetime, *, force: bool) -> None:
    """The topic refresh if due (or `force`): ask the API for every entry's series, then
    record them all at once. A failing call is logged before anything is written: no series
    leaves because of an outage."""
    if not (force or refresh_due(db, config, now)):
        return
    found: dict[str, SeriesInfo] = {}
    why: dict[str, str] = {}
    try:
        with open_api(config.http, config.site) as api:
            for entry in config.follow:
                institutions = [entry.institution] if entry.institution else []
                for info in select_series(api, topics=[entry.topic], institutions=institutions):
                    found.setdefault(info.shortname, info)
                    why.setdefault(info.shortname, entry.reason)
    except ApiError as exc:
        log.warning("follow.refresh_failed", error=str(exc), follow=len(config.follow))
        return
    store_series(db, found.values(), now)
    joined, left = store.record_followed(db, why, _entries(config), now)
    log.info("follow.refreshed", series=len(found), joined=joined, left=left)


def followed_targets(db: Database, config: Config) -> list[FeedTarget]:
    """The feeds of the series the topics bring in, minus those the config names."""
    gone_after = config.schedule.gone_after
    return [
        FeedTarget(url, shortname, gone_after=gone_after)
        for shortname, url in followed_feeds(db, config).items()
    ]


def sync_targets(
    db: Database, config: Config, now: datetime | None = None, *, force: bool = False
) -> list[FeedTarget]:
    """Before a sync's polls: the topic refresh when due, then the followed series' feeds.
    With no `[[follow]]` left, the series the topics brought in leave (their talks stay)."""
    now = now or datetime.now(UTC)
    if not config.follow:
        if store.followed_series(db):
            store.record_followed(db, {}, [], now)
        return []
    refresh_when_due(db, config, now, force=force)
    return followed_targets(db, config)


def daemon_feeds(config: Config) -> list[FeedConfig]:
    """For the daemon's plans: the topic refresh when due, then the followed series' feeds
    at the config's interval (an archive that cannot be opened is logged: none)."""
    if not config.follow:
        return []
    try:
        db = store.open_archive(config.archive_path, file_mode=config.archive_file_mode)
        try:
            targets = sync_targets(db, config)
        finally:
            db.conn.close()
    except ArchiveError as exc:
        log.warning("follow.archive_failed", error=str(exc))
        return []
    return [FeedConfig(url=t.url, name=t.name or t.url) for t in targets]
