"""The archive schema, created and evolved by sqlite-utils migrations.

Never edit a migration that has shipped: add a new one. Other modules may register
migration sets of their own in `MIGRATION_SETS`; each set is applied in order.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from harvester.model import CONTENT_FIELDS

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
    """What the fast path compares a poll with (see harvester/parse.py).

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
    create_talks_fts(db)


@migrations(name="0003_browse_views")
def browse_views(db: Database) -> None:
    """The views behind the Datasette pages: upcoming talks, changes, feed health, ..."""
    create_views(db)


MIGRATION_SETS: list[Migrations] = [migrations]


def migrate(db: Database) -> None:
    for migration_set in MIGRATION_SETS:
        migration_set.apply(db)


# ------------------------------------------------------------------------------------------
# What the archive offers people who browse it (Datasette, the sqlite3 shell): full-text
# search over talks and the views behind the canned pages.
#
# Both are created by migrations (see below), so existing archives gain them.
# The SQL here belongs to those shipped migrations: never change it in place. To change a
# view, add a new migration that drops and re-creates it with new SQL kept beside this.
#
# Times in the archive are ISO 8601 strings in UTC with an explicit `+00:00` offset, so they
# compare correctly as text against `NOW` below (which has the same shape).
# ------------------------------------------------------------------------------------------

# --- full-text search ---------------------------------------------------------------------

# `speaker` is the feed's SUMMARY line: every speaker's name with their affiliation.
FTS_COLUMNS: tuple[str, ...] = ("title", "speaker", "abstract", "series_name")
# Porter stemming ("ring" finds "rings"); diacritics folded ("Godel" finds "Gödel").
FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"

# sqlite-utils' own update trigger fires on an UPDATE of *any* column of talks. Every poll
# updates `last_seen`/`dtstamp` of every unchanged talk, so that trigger would re-index
# thousands of rows per poll for nothing. This one fires only when an indexed column is
# written (that is, when a new version of the talk is stored).
_UPDATE_TRIGGER = """
CREATE TRIGGER [talks_au] AFTER UPDATE OF [title], [speaker], [abstract], [series_name]
ON [talks] BEGIN
  INSERT INTO [talks_fts] ([talks_fts], rowid, [title], [speaker], [abstract], [series_name])
    VALUES ('delete', old.rowid, old.[title], old.[speaker], old.[abstract], old.[series_name]);
  INSERT INTO [talks_fts] (rowid, [title], [speaker], [abstract], [series_name])
    VALUES (new.rowid, new.[title], new.[speaker], new.[abstract], new.[series_name]);
END
"""


def create_talks_fts(db: Database) -> None:
    """`talks_fts` (FTS5, external content = talks), filled now and kept in sync by triggers.

    sqlite-utils creates the index, fills it from the existing talks and adds its insert,
    delete and update triggers (`talks_ai`, `talks_ad`, `talks_au`); the update trigger is
    then replaced by one limited to the indexed columns. The names stay sqlite-utils' own,
    so its tools (`disable_fts`, `rebuild_fts`, `enable_fts(replace=True)`) still work.
    """
    talks = db.table("talks")
    talks.enable_fts(FTS_COLUMNS, create_triggers=True, tokenize=FTS_TOKENIZE)
    db.execute("DROP TRIGGER [talks_au]")
    db.execute(_UPDATE_TRIGGER)


# --- views --------------------------------------------------------------------------------

NOW = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"
# Monday 00:00 UTC of the current week, and the Monday after it.
WEEK_START = "strftime('%Y-%m-%dT00:00:00+00:00', 'now', 'weekday 0', '-6 days')"
WEEK_END = "strftime('%Y-%m-%dT00:00:00+00:00', 'now', 'weekday 0', '+1 day')"


def _has(field: str, alias: str = "v") -> str:
    """SQL: does the version's `changed_fields` (a JSON list of names) hold `field`?"""
    return f"instr({alias}.changed_fields, '\"{field}\"') > 0"


def _when(column: str) -> str:
    """SQL: an ISO time as `2026-05-01 16:00 UTC` (NULL stays NULL)."""
    return f"(replace(substr({column}, 1, 16), 'T', ' ') || ' UTC')"


def _from_to(label: str, old: str, new: str) -> str:
    return f"'{label}: ' || coalesce({old}, '–') || ' → ' || coalesce({new}, '–') || '; '"


# A talk "happens" from dtstart to dtend; one without dtend is taken as a moment.
_ENDS = "coalesce(t.dtend, t.dtstart)"
# Talks with a negative counter are the old slots researchseminars.org keeps when a talk
# is rescheduled (series feeds hide them, personal feeds show them): not talks to attend.
_REAL_SLOT = "coalesce(t.counter, 0) >= 0"

_TALK_COLUMNS = """
    t.uid, t.dtstart, t.dtend, t.title, t.speaker, t.series_id, t.series_name, t.room,
    t.talk_url, t.livestream_url"""

_CHANGE_KIND = f"""
    CASE v.change
      WHEN 'changed' THEN CASE
        WHEN {_has("dtstart")} AND {_has("title")} THEN 'rescheduled and retitled'
        WHEN {_has("dtstart")} THEN 'rescheduled'
        WHEN {_has("title")} THEN 'retitled'
        WHEN {_has("speaker")} OR {_has("speakers")} THEN 'speaker changed'
        WHEN {_has("dtend")} THEN 'end time changed'
        ELSE 'details changed' END
      ELSE v.change END"""

_OTHER_FIELDS = (
    "series_id",
    "counter",
    "series_name",
    "abstract",
    "talk_url",
    "livestream_url",
    "comments",
    "urls",
)
# The raw text fields the parsed ones come from (SUMMARY holds the speakers, DESCRIPTION
# the title, abstract, room ...): named only when no parsed field explains the change.
_RAW_FIELDS = ("summary", "description", "location")
_PARSED_FIELDS = ("title", "speaker", "speakers", "dtstart", "dtend", "room", *_OTHER_FIELDS)
_ONLY_RAW_CHANGED = "NOT (" + " OR ".join(_has(name) for name in _PARSED_FIELDS) + ")"


def _edited(name: str, condition: str = "") -> str:
    return f"CASE WHEN {_has(name)}{condition} THEN '{name.replace('_', ' ')} edited; ' ELSE '' END"


_WHAT_CHANGED = (
    f"""
    CASE v.change
      WHEN 'new' THEN 'first seen'
      WHEN 'removed' THEN 'gone from every feed that carried it'
      WHEN 'restored' THEN 'back in a feed after being removed'
      ELSE rtrim(
        CASE WHEN {_has("title")}
          THEN {_from_to("title", "p.title", "v.title")} ELSE '' END ||
        CASE WHEN {_has("dtstart")}
          THEN {_from_to("start", _when("p.dtstart"), _when("v.dtstart"))} ELSE '' END ||
        CASE WHEN {_has("dtend")} AND NOT {_has("dtstart")}
          THEN {_from_to("end", _when("p.dtend"), _when("v.dtend"))} ELSE '' END ||
        CASE WHEN {_has("speaker")}
          THEN {_from_to("speaker", "p.speaker", "v.speaker")} ELSE '' END ||
        CASE WHEN {_has("room")}
          THEN {_from_to("room", "p.room", "v.room")} ELSE '' END ||
        """
    + " ||\n        ".join(
        [_edited(name) for name in _OTHER_FIELDS]
        + [_edited(name, f" AND {_ONLY_RAW_CHANGED}") for name in _RAW_FIELDS]
    )
    + """,
        '; ')
      END"""
)

# Only the constants above are interpolated into these views.
VIEWS: dict[str, str] = {
    "upcoming_talks": f"""
SELECT {_TALK_COLUMNS}, t.version, t.changed_at
FROM talks t
WHERE t.status = 'active' AND {_REAL_SLOT} AND {_ENDS} >= {NOW}""",
    "talks_this_week": f"""
SELECT {_TALK_COLUMNS}, t.version, t.changed_at
FROM talks t
WHERE t.status = 'active' AND {_REAL_SLOT}
  AND t.dtstart >= {WEEK_START} AND t.dtstart < {WEEK_END}""",
    # Every version of every talk with what changed against the version before it.
    "talk_changes": f"""
SELECT
  v.observed_at, v.uid, v.version, v.change,
  {_CHANGE_KIND.strip()} AS change_kind,
  {_WHAT_CHANGED.strip()} AS what_changed,
  v.title, v.speaker, v.series_id, v.series_name, v.dtstart, v.dtend, v.room, v.talk_url,
  p.title AS previous_title, p.dtstart AS previous_dtstart, p.dtend AS previous_dtend,
  v.changed_fields, v.status, v.fetch_id
FROM talk_versions v
LEFT JOIN talk_versions p ON p.uid = v.uid AND p.version = v.version - 1""",
    "recent_changes": """
SELECT observed_at, uid, change_kind, what_changed, title, series_name, dtstart, speaker,
       version, talk_url
FROM talk_changes
WHERE change != 'new'""",
    "rescheduled_talks": """
SELECT
  c.observed_at AS rescheduled_at, c.uid, c.title, c.series_name,
  c.previous_dtstart AS old_start, c.dtstart AS new_start,
  CASE
    WHEN minutes % 1440 = 0 THEN printf('%+d days', minutes / 1440)
    WHEN minutes % 60 = 0 THEN printf('%+d h', minutes / 60)
    ELSE printf('%+d min', minutes) END AS moved_by,
  t.dtstart AS current_start, t.status AS current_status, c.version, c.talk_url
FROM (
  SELECT *, CAST(round((julianday(dtstart) - julianday(previous_dtstart)) * 1440) AS INTEGER)
    AS minutes
  FROM talk_changes
  WHERE change != 'new' AND previous_dtstart IS NOT NULL
    AND instr(changed_fields, '"dtstart"') > 0
) c
JOIN talks t ON t.uid = c.uid""",
    "cancelled_talks": f"""
SELECT {_TALK_COLUMNS}, t.removed_at, t.version
FROM talks t
WHERE t.status = 'removed' AND {_ENDS} >= {NOW}""",
    "feed_health": """
SELECT
  f.id, f.name, f.kind, f.url,
  CASE
    WHEN NOT f.enabled THEN 'disabled'
    WHEN f.last_fetched_at IS NULL THEN 'never polled'
    WHEN f.consecutive_failures > 0 THEN 'failing'
    ELSE 'ok' END AS health,
  f.last_fetched_at AS last_poll, f.last_outcome, f.last_success_at AS last_success,
  f.consecutive_failures, f.last_error,
  (SELECT count(*) FROM feed_talks ft WHERE ft.feed_id = f.id AND ft.present = 1) AS talks,
  x.events AS last_events, x.new AS last_new, x.changed AS last_changed,
  x.removed AS last_removed, x.duration_ms AS last_duration_ms,
  (SELECT count(*) FROM fetches y WHERE y.feed_id = f.id
     AND y.started_at >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 day')) AS polls_24h,
  (SELECT count(*) FROM fetches y WHERE y.feed_id = f.id AND y.outcome = 'error'
     AND y.started_at >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 day')) AS failures_24h
FROM feeds f
LEFT JOIN fetches x ON x.id = (SELECT max(id) FROM fetches WHERE feed_id = f.id)
ORDER BY f.consecutive_failures DESC, f.name""",
}


def create_views(db: Database) -> None:
    """Create the browsing views (in dependency order: talk_changes before its users).

    The views over talks and versions have no ORDER BY: one would make SQLite materialise
    and sort the whole view for every count and facet (4x slower on 30,000 versions).
    Datasette sorts them by the metadata's `sort`/`sort_desc`; SQL users add their own.
    """
    for name, sql in VIEWS.items():
        db.execute(f"CREATE VIEW [{name}] AS {sql.strip()}")
