"""The archive schema, created and evolved by sqlite-utils migrations.

Never edit a migration that has shipped: add a new one. Other modules may register
migration sets of their own in `MIGRATION_SETS`; each set is applied in order.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from harvester import browse
from harvester.talk import CONTENT_FIELDS

migrations = Migrations("harvester")

_CONTENT_TYPES: dict[str, type] = {name: str for name in CONTENT_FIELDS} | {"counter": int}


@migrations(name="0001_initial")
def initial(db: Database) -> None:
    db.table("feeds").create(
        {
            "id": int,
            "url": str,
            "url_hash": str,
            "name": str,
            "kind": str,
            "enabled": int,
            "added_at": str,
            "etag": str,
            "last_modified": str,
            "last_fetched_at": str,
            "last_success_at": str,
            "last_outcome": str,
            "consecutive_failures": int,
            "last_error": str,
            "held_removals": str,
        },
        pk="id",
        not_null={"url", "url_hash", "kind"},
        defaults={"enabled": 1, "consecutive_failures": 0},
    )
    db.table("feeds").create_index(["url_hash"], unique=True)
    db.table("talks").create(
        {"uid": str}
        | _CONTENT_TYPES
        | {
            "dtstamp": str,
            "fingerprint": str,
            "version": int,
            "status": str,
            "first_seen": str,
            "last_seen": str,
            "changed_at": str,
            "removed_at": str,
        },
        pk="uid",
        not_null={"version", "status"},
    )
    db.table("fetches").create(
        {
            "id": int,
            "feed_id": int,
            "started_at": str,
            "finished_at": str,
            "duration_ms": int,
            "http_status": int,
            "bytes": int,
            "outcome": str,
            "events": int,
            "new": int,
            "changed": int,
            "removed": int,
            "restored": int,
            "unchanged": int,
            "stale": int,
            "error": str,
        },
        pk="id",
        foreign_keys=[("feed_id", "feeds", "id")],
        not_null={"feed_id", "outcome"},
    )
    db.table("talk_versions").create(
        {
            "id": int,
            "uid": str,
            "version": int,
            "observed_at": str,
            "fetch_id": int,
            "change": str,
            "changed_fields": str,
        }
        | _CONTENT_TYPES
        | {"status": str, "dtstamp": str, "fingerprint": str, "raw": str},
        pk="id",
        foreign_keys=[("uid", "talks", "uid"), ("fetch_id", "fetches", "id")],
        not_null={"uid", "version", "change"},
    )
    db.table("talk_versions").create_index(["uid", "version"], unique=True)
    db.table("feed_talks").create(
        {"feed_id": int, "uid": str, "first_seen": str, "last_seen": str, "present": int},
        pk=("feed_id", "uid"),
        foreign_keys=[("feed_id", "feeds", "id"), ("uid", "talks", "uid")],
    )
    db.table("talks").create_index(["dtstart"])
    db.table("talks").create_index(["series_id", "dtstart"])
    db.table("talks").create_index(["status"])
    db.table("talk_versions").create_index(["observed_at"])
    db.table("fetches").create_index(["feed_id", "started_at"])
    db.table("feed_talks").create_index(["uid"])


@migrations(name="0002_fast_path")
def fast_path(db: Database) -> None:
    """What the fast path compares a poll with (see harvester/fastpath.py).

    `feeds.body_fingerprint`: the last successful body without its DTSTAMP values (NULL when
    that body cannot vouch for the next one). `feed_talks.fingerprint`: the fingerprint of
    the talk as this feed last carried it; `feed_talks.raw_key`: a hash of its raw bytes
    (DTSTAMP aside), when the fast path read them. The index answers "is this UID active
    with this fingerprint" without reading whole talks rows.
    """
    db.table("feeds").add_column("body_fingerprint", str)
    db.table("feed_talks").add_column("fingerprint", str)
    db.table("feed_talks").add_column("raw_key", str)
    db.table("talks").create_index(["uid", "status", "fingerprint"], "idx_talks_uid_state")


@migrations(name="0005_daemon_heartbeat")
def daemon_heartbeat(db: Database) -> None:
    """One row (id 1): the `harvester run` daemon that last used this archive."""
    db.table("daemon").create(
        {
            "id": int,
            "pid": int,
            "host": str,
            "version": str,
            "config": str,
            "feeds": int,
            "started_at": str,
            "heartbeat_at": str,
            "heartbeat_every": float,
            "stopped_at": str,
        },
        pk="id",
    )


# The old slot of a reschedule (`<series>/-N`) and the talk that moved away from it: same
# series, a positive counter, a past version at the slot's time and a different time now.
# Only slots with exactly one such talk are listed: elsewhere the archive cannot tell.
RESCHEDULED_SLOTS_SQL = """
WITH candidates AS (
    SELECT slot.uid AS old_slot_uid, moved.uid AS talk_uid, slot.series_id AS series_id,
           slot.dtstart AS old_dtstart, moved.dtstart AS new_dtstart,
           count(*) OVER (PARTITION BY slot.uid) AS matches
    FROM talks AS slot
    JOIN talks AS moved
      ON moved.series_id = slot.series_id AND moved.counter > 0
     AND moved.dtstart IS NOT slot.dtstart
    WHERE slot.counter < 0
      AND EXISTS (SELECT 1 FROM talk_versions v
                  WHERE v.uid = moved.uid AND v.dtstart = slot.dtstart)
)
SELECT old_slot_uid, talk_uid, series_id, old_dtstart, new_dtstart
FROM candidates WHERE matches = 1
"""


@migrations(name="0004_series_and_rescheduled_slots")
def series_and_rescheduled_slots(db: Database) -> None:
    """`series`: the API's metadata per series, joined to talks by `talks.series_id`."""
    db.table("series").create(
        {
            "shortname": str,
            "name": str,
            "institutions": str,  # JSON list of institution shortnames
            "topics": str,  # JSON list of topic ids
            "timezone": str,
            "refreshed_at": str,
        },
        pk="shortname",
    )
    db.create_view("rescheduled_slots", RESCHEDULED_SLOTS_SQL)


@migrations(name="0003_talks_fts")
def talks_fts(db: Database) -> None:
    """Full-text search over talks (title, speakers, abstract, series), filled on migrate."""
    browse.create_talks_fts(db)


@migrations(name="0003_browse_views")
def browse_views(db: Database) -> None:
    """The views behind the Datasette pages: upcoming talks, changes, feed health, ..."""
    browse.create_views(db)


MIGRATION_SETS: list[Migrations] = [migrations]


def migrate(db: Database) -> None:
    for migration_set in MIGRATION_SETS:
        migration_set.apply(db)
