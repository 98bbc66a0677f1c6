"""What `[[follow]]` brought in, as the archive holds it: its lines in `harvester status`
and the followed series' feeds.

Apart from harvester.follow, which reaches the network, so that `status` loads no HTTP
client (tests/test_startup.py).
"""

from __future__ import annotations

from sqlite_utils import Database

from harvester import archive as store
from harvester.config import Config
from harvester.humane import human_time
from harvester.site import series_feed_url, series_shortname


def status_lines(db: Database, config: Config) -> list[str]:
    """`status`'s account of the followed topics: one line per series they brought in."""
    rows = store.followed_series(db, with_left=True)
    if not rows and not config.follow:
        return []
    polled = [r for r in rows if r["left_at"] is None]
    entries = ", ".join(sorted(entry.reason for entry in config.follow)) or "nothing"
    lines = [f"following: {entries}; {len(polled)} series polled"]
    for row in rows:
        since = human_time(row["followed_since"])
        if row["left_at"] is None:
            lines.append(f"  {row['shortname']}  since {since}  ({row['followed_by']})")
        else:
            left = human_time(row["left_at"])
            lines.append(f"  {row['shortname']}  left the topic {left}, not polled (history kept)")
    return lines


def followed_feeds(db: Database, config: Config) -> dict[str, str]:
    """Shortname → feed URL of the series the topics bring in, but those the config names."""
    base = config.site.base_url
    configured = {series_shortname(feed.url, base) for feed in config.feeds}
    return {
        row["shortname"]: series_feed_url(base, row["shortname"])
        for row in store.followed_series(db)
        if row["shortname"] not in configured
    }
