"""The archive schema, created and evolved by sqlite-utils migrations.

Never edit a migration that has shipped: add a new one. Other modules may register
migration sets of their own in `MIGRATION_SETS`; each set is applied in order.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

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


MIGRATION_SETS: list[Migrations] = [migrations]


def migrate(db: Database) -> None:
    for migration_set in MIGRATION_SETS:
        migration_set.apply(db)
