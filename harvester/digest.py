"""Weekly digests: one message a week per `[[notify]]` target with `digest = "weekly"`.

At the first run of a week (Monday 00:00 in the target's `timezone` onwards) the target's
digest is made: the talks that match its filters and start between then and the end of
Sunday, with their times in its timezone and their links. It is queued in the outbox
(`notifications`, one row per target and week: `archive.queue_digest`) in its own
transaction and sent after, like every notification: a process killed between the two
leaves it pending for the next run, which sends it once. A week with no matching talk
queues nothing.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any

from sqlite_utils import Database

from harvester import archive as store
from harvester.logs import get_logger
from harvester.notify import Target, speaks, weekly_digest

log = get_logger("harvester.notify")


def week_of(now: datetime, timezone: str) -> tuple[str, datetime, datetime]:
    """The ISO week `now` is in, in `timezone`: its name (`2026-W50`), its Monday 00:00
    and the next Monday 00:00 (aware datetimes)."""
    zone = zoneinfo.ZoneInfo(timezone)
    local = now.astimezone(zone)
    year, week, weekday = local.isocalendar()
    monday = local.date() - timedelta(days=weekday - 1)
    start = datetime.combine(monday, time(), tzinfo=zone)
    end = datetime.combine(monday + timedelta(days=7), time(), tzinfo=zone)
    return f"{year}-W{week:02d}", start, end


def talks_for(db: Database, target: Target, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The talks starting in [start, end) that `target` follows: of its series, and, when it
    has `match` or `speakers`, those the query finds or one of the speakers gives."""
    talks = store.talks_between(db, start, end, target.series, None)
    if not target.filtered:
        return talks
    matched: set[str] = set()
    if target.match is not None:
        matched = {
            t["uid"] for t in store.talks_between(db, start, end, target.series, target.match)
        }
    return [t for t in talks if t["uid"] in matched or speaks(target.speakers, t)]


def queue_due(db: Database, targets: Iterable[Target], now: datetime) -> None:
    """Queue this week's digest of each weekly target that has none yet."""
    for target in targets:
        if target.digest != "weekly":
            continue
        week, start, end = week_of(now, target.timezone)
        if store.digest_queued(db, target.key, week):
            continue
        talks = talks_for(db, target, max(start, now), end)
        if not talks:
            continue
        title, body = weekly_digest(talks, week, target.timezone)
        if store.queue_digest(db, target.key, week, title, body, now):
            log.info("notify.digest_queued", week=week, talks=len(talks))
