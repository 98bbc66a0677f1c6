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
log = get_logger("harvester.series")


@contextmanager
def open_api(http: HttpSettings, site: SiteSettings) -> Iterator[SiteApi]:
    """The site's API through a client of these HTTP settings."""
    with make_client(http) as client:
        yield SiteApi(client, site.base_url, http.max_bytes, http.max_poll_time)


def store_series(db: Database, infos: Iterable[SeriesInfo], at: datetime) -> None:
    """Insert or update one row per series."""
    rows = [
        (
            info.shortname,
            info.name,
            json.dumps(info.institutions, ensure_ascii=False),
            json.dumps(info.topics, ensure_ascii=False),
            info.timezone,
            at.isoformat(),
        )
        for info in infos
    ]
    store.upsert_series(db, rows)


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


def refresh_followed_series(
    db: Database, config: Config, now: datetime | None = None, *, force: bool = False
) -> None:
    """After a sync: refresh the metadata of followed series not refreshed today (every
    followed series with `force`: `sync --refresh`).

    Never raises for an API problem: the sync's result does not depend on it.
    """
    now = now or datetime.now(UTC)
    wanted = sorted(followed_series(db, config))
    since = now if force else now - REFRESH_EVERY
    fresh = store.series_refreshed_since(db, wanted, since.isoformat())
    due = [name for name in wanted if name not in fresh]
    if not due:
        return
    try:
        with open_api(config.http, config.site) as api:
            found = api.series_named(due)
    except ApiError as exc:
        log.warning("series.refresh_failed", error=str(exc), series=len(due))
        return
    store_series(db, found, now)
    # The API knew nothing of the others now: only their `refreshed_at` moves.
    store.mark_series_checked(db, set(due) - {info.shortname for info in found}, now.isoformat())
    log.info("series.refreshed", asked=len(due), found=len(found))
