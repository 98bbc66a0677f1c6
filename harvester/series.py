"""Series metadata: what the site's API says about each followed series, kept in `series`.

`series` is a plain table (shortname, name, institutions, topics, timezone, refreshed_at)
that joins to `talks` on `talks.series_id = series.shortname`, so Datasette can facet
talks by topic and institution. It is refreshed at most once a day per series, after a
sync (every followed series with `sync --refresh`); a failing API only logs a warning and
never fails the sync. The series `[[follow]]` brings in (harvester.follow) are followed too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlite_utils import Database

from harvester import archive as store
from harvester.config import Config, HttpSettings, SiteSettings
from harvester.errors import ApiError
from harvester.fetch import make_client
from harvester.logs import get_logger
from harvester.site import series_shortname
from harvester.site_api import SeriesInfo, SiteApi

REFRESH_EVERY = timedelta(days=1)


@contextmanager
def open_api(
    http: HttpSettings, site: SiteSettings, given: SiteApi | None = None
) -> Iterator[SiteApi]:
    """`given`, or the site's API through a client of these HTTP settings."""
    if given is not None:
        yield given
        return
    with make_client(http) as client:
        yield SiteApi(client, site.base_url, http.max_bytes, http.max_poll_time)


log = get_logger("harvester.series")


def store_series(db: Database, infos: Iterable[SeriesInfo], at: datetime) -> int:
    """Insert or update one row per series; returns how many were written."""
    rows = [
        (
            info.shortname,
            info.name,
            json.dumps(list(info.institutions), ensure_ascii=False),
            json.dumps(list(info.topics), ensure_ascii=False),
            info.timezone,
            at.isoformat(),
        )
        for info in infos
    ]
    store.upsert_series(db, rows)
    return len(rows)


def mark_checked(db: Database, shortnames: Iterable[str], at: datetime) -> None:
    """Remember that the API knew nothing of these series now (keeps what was known before)."""
    store.mark_series_checked(db, shortnames, at.isoformat())


def followed_series(db: Database, config: Config) -> set[str]:
    """Series the archive follows on the configured site.

    The enabled series feeds of the config, plus the series of every talk that a feed of
    the site (a personal or talk feed too) ever carried.
    """
    base = config.site.base_url.rstrip("/")
    followed = {
        name
        for feed in config.feeds
        if feed.enabled and (name := series_shortname(feed.url, base)) is not None
    }
    topics = {row["shortname"] for row in store.followed_series(db)}  # [[follow]] brought in
    return followed | topics | store.series_of_site_talks(db, base)


def due_for_refresh(
    db: Database, shortnames: Iterable[str], now: datetime, every: timedelta = REFRESH_EVERY
) -> list[str]:
    """The shortnames never refreshed, or last refreshed more than `every` ago."""
    wanted = sorted(set(shortnames))
    fresh = store.series_refreshed_since(db, wanted, (now - every).isoformat())
    return [name for name in wanted if name not in fresh]


def refresh_series(db: Database, api: SiteApi, shortnames: Iterable[str], now: datetime) -> int:
    """Ask the API about `shortnames` and store the answers; returns the series found."""
    wanted = sorted(set(shortnames))
    found = api.series_named(wanted)
    store_series(db, found, now)
    mark_checked(db, set(wanted) - {info.shortname for info in found}, now)
    return len(found)


def refresh_followed_series(
    db: Database,
    config: Config,
    now: datetime | None = None,
    api: SiteApi | None = None,
    *,
    force: bool = False,
) -> None:
    """After a sync: refresh the metadata of followed series not refreshed today (every
    followed series with `force`: `sync --refresh`).

    Never raises for an API problem: the sync's result does not depend on it.
    """
    now = now or datetime.now(UTC)
    every = timedelta(0) if force else REFRESH_EVERY
    due = due_for_refresh(db, followed_series(db, config), now, every)
    if not due:
        return
    try:
        with open_api(config.http, config.site, api) as site_api:
            found = refresh_series(db, site_api, due, now)
    except ApiError as exc:
        log.warning("series.refresh_failed", error=str(exc), series=len(due))
        return
    log.info("series.refreshed", asked=len(due), found=found)
