-- 0014_compact_fetches: a poll row that costs what it says (issue 12, item 5).
-- `fetches` keeps its name, its ids and every column, read exactly as before; most columns
-- are now VIRTUAL generated columns over a few small stored ones, so an unchanged poll
-- stores about 40 bytes instead of 110 (plus 17 instead of 48 in the index):
--   started_unix, started_microsecond  when the poll started (UTC): started_at as ISO text
--   finished_after_us                  finished_at - started_at: finished_at, duration_ms
--   outcome_code                       0 unchanged, 1 not_modified, 2 changed, 3 error
--   overrides                          JSON: the values of generated columns that differ
--                                      from what the stored ones imply, kept verbatim
-- What the stored columns imply: times in the harvester's own format (UTC, +00:00,
-- microseconds when not 0); duration_ms = finished_after_us / 1000 rounded half up; counts
-- 0 for `unchanged`/`changed` polls and NULL for the others; unchanged = events - new -
-- changed - restored - stale (a removed talk is not among a poll's events).
-- Any other value (a changed poll's counts, a time in another format) is in `overrides`,
-- so every column reads back what was written.
-- The rebuild copies the rows aside (parsing their times once), recreates the table (with
-- foreign keys deferred: talk_versions.fetch_id refers to these ids) and checks each
-- rebuilt row against its copy, keeping in `overrides` what the stored columns miss.

PRAGMA defer_foreign_keys = ON;

CREATE TABLE "fetches_0013" (
   "id" INTEGER PRIMARY KEY,
   "feed_id" INTEGER,
   "started_at" TEXT,
   "finished_at" TEXT,
   "duration_ms" INTEGER,
   "http_status" INTEGER,
   "bytes" INTEGER,
   "outcome" TEXT,
   "events" INTEGER,
   "new" INTEGER,
   "changed" INTEGER,
   "removed" INTEGER,
   "restored" INTEGER,
   "unchanged" INTEGER,
   "stale" INTEGER,
   "error" TEXT,
   -- What the new table stores, computed once per row as it is copied here.
   "s" INTEGER GENERATED ALWAYS AS (CAST(strftime('%s', "started_at") AS INTEGER)) STORED,
   "us" INTEGER GENERATED ALWAYS AS (CASE WHEN substr("started_at", 20, 1) = '.'
      THEN CAST(substr("started_at", 21, 6) AS INTEGER) ELSE 0 END) STORED,
   "fs" INTEGER GENERATED ALWAYS AS (CAST(strftime('%s', "finished_at") AS INTEGER)) STORED,
   "fus" INTEGER GENERATED ALWAYS AS (CASE WHEN substr("finished_at", 20, 1) = '.'
      THEN CAST(substr("finished_at", 21, 6) AS INTEGER) ELSE 0 END) STORED,
   "code" INTEGER GENERATED ALWAYS AS (CASE "outcome" WHEN 'unchanged' THEN 0
      WHEN 'not_modified' THEN 1 WHEN 'changed' THEN 2 WHEN 'error' THEN 3 END) STORED,
   -- started_at reads back from s and us (the new started_at's SQL) ...
   "start_ok" INTEGER GENERATED ALWAYS AS (coalesce("s" >= 0 AND "started_at"
      = strftime('%Y-%m-%dT%H:%M:%S', "s", 'unixepoch')
        || CASE WHEN "us" THEN printf('.%06d', "us") ELSE '' END || '+00:00', 0)) STORED,
   -- ... and finished_at from them and fs, fus, when it is no earlier in the second.
   "finish_ok" INTEGER GENERATED ALWAYS AS (coalesce("start_ok" AND ("finished_at" IS NULL
      OR "fs" >= "s" AND "finished_at" = strftime('%Y-%m-%dT%H:%M:%S', "fs", 'unixepoch')
        || CASE WHEN "fus" THEN printf('.%06d', "fus") ELSE '' END || '+00:00'), 0)) STORED
);

INSERT INTO "fetches_0013" ("id", "feed_id", "started_at", "finished_at", "duration_ms",
    "http_status", "bytes", "outcome", "events", "new", "changed", "removed", "restored",
    "unchanged", "stale", "error")
SELECT "id", "feed_id", "started_at", "finished_at", "duration_ms", "http_status", "bytes",
    "outcome", "events", "new", "changed", "removed", "restored", "unchanged", "stale", "error"
FROM "fetches";

DROP TABLE "fetches";

CREATE TABLE "fetches" (
   "id" INTEGER PRIMARY KEY,
   "feed_id" INTEGER NOT NULL REFERENCES "feeds"("id"),
   "started_at" TEXT GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.started_at') IS NOT NULL
      THEN json_extract("overrides", '$.started_at')
      ELSE strftime('%Y-%m-%dT%H:%M:%S', "started_unix", 'unixepoch')
         || CASE WHEN "started_microsecond" THEN printf('.%06d', "started_microsecond")
            ELSE '' END
         || '+00:00'
   END) VIRTUAL,
   "finished_at" TEXT GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.finished_at') IS NOT NULL
      THEN json_extract("overrides", '$.finished_at')
      ELSE strftime('%Y-%m-%dT%H:%M:%S',
                    "started_unix" + ("started_microsecond" + "finished_after_us") / 1000000,
                    'unixepoch')
         || CASE WHEN ("started_microsecond" + "finished_after_us") % 1000000
            THEN printf('.%06d', ("started_microsecond" + "finished_after_us") % 1000000)
            ELSE '' END
         || '+00:00'
   END) VIRTUAL,
   "duration_ms" INTEGER GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.duration_ms') IS NOT NULL
      THEN json_extract("overrides", '$.duration_ms')
      ELSE ("finished_after_us" + 500) / 1000
   END) VIRTUAL,
   "http_status" INTEGER,
   "bytes" INTEGER,
   "outcome" TEXT NOT NULL GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.outcome') IS NOT NULL
      THEN json_extract("overrides", '$.outcome')
      ELSE CASE "outcome_code" WHEN 0 THEN 'unchanged' WHEN 1 THEN 'not_modified'
                               WHEN 2 THEN 'changed' WHEN 3 THEN 'error' END
   END) VIRTUAL,
   "events" INTEGER,
   "new" INTEGER GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.new') IS NOT NULL THEN json_extract("overrides", '$.new')
      WHEN "outcome_code" IN (0, 2) THEN 0
   END) VIRTUAL,
   "changed" INTEGER GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.changed') IS NOT NULL
      THEN json_extract("overrides", '$.changed')
      WHEN "outcome_code" IN (0, 2) THEN 0
   END) VIRTUAL,
   "removed" INTEGER GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.removed') IS NOT NULL
      THEN json_extract("overrides", '$.removed')
      WHEN "outcome_code" IN (0, 2) THEN 0
   END) VIRTUAL,
   "restored" INTEGER GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.restored') IS NOT NULL
      THEN json_extract("overrides", '$.restored')
      WHEN "outcome_code" IN (0, 2) THEN 0
   END) VIRTUAL,
   "unchanged" INTEGER GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.unchanged') IS NOT NULL
      THEN json_extract("overrides", '$.unchanged')
      WHEN "outcome_code" IN (0, 2) THEN "events" - "new" - "changed" - "restored" - "stale"
   END) VIRTUAL,
   "stale" INTEGER GENERATED ALWAYS AS (CASE
      WHEN json_type("overrides", '$.stale') IS NOT NULL
      THEN json_extract("overrides", '$.stale')
      WHEN "outcome_code" IN (0, 2) THEN 0
   END) VIRTUAL,
   "error" TEXT,
   "started_unix" INTEGER,
   "started_microsecond" INTEGER,
   "finished_after_us" INTEGER,
   "outcome_code" INTEGER,
   "overrides" TEXT
);

-- The stored columns, read off the old text. A start time not in the harvester's format
-- stays NULL in started_unix (and the row sorts as having no start); every value the
-- stored columns get wrong is kept in `overrides` below.
INSERT INTO "fetches" ("id", "feed_id", "http_status", "bytes", "events", "error",
    "started_unix", "started_microsecond", "finished_after_us", "outcome_code", "overrides")
SELECT "id", "feed_id", "http_status", "bytes", "events", "error",
    CASE WHEN "start_ok" THEN "s" END,
    CASE WHEN "start_ok" THEN "us" END,
    CASE WHEN "start_ok" THEN ("fs" - "s") * 1000000 + "fus" - "us" END,
    "code",
    CASE WHEN "code" IS NULL THEN json_object('outcome', "outcome") END
FROM "fetches_0013";

-- Every column but `unchanged` (whose implied value depends on the other counts) ...
UPDATE "fetches" AS f SET "overrides" = (
  SELECT nullif(json_group_object("k", "v"), '{}') FROM (
    SELECT "key" AS "k", "value" AS "v" FROM json_each(f."overrides")
    UNION ALL SELECT 'started_at', o."started_at" WHERE f."started_at" IS NOT o."started_at"
    UNION ALL SELECT 'finished_at', o."finished_at" WHERE f."finished_at" IS NOT o."finished_at"
    UNION ALL SELECT 'duration_ms', o."duration_ms" WHERE f."duration_ms" IS NOT o."duration_ms"
    UNION ALL SELECT 'outcome', o."outcome" WHERE f."outcome" IS NOT o."outcome"
    UNION ALL SELECT 'new', o."new" WHERE f."new" IS NOT o."new"
    UNION ALL SELECT 'changed', o."changed" WHERE f."changed" IS NOT o."changed"
    UNION ALL SELECT 'removed', o."removed" WHERE f."removed" IS NOT o."removed"
    UNION ALL SELECT 'restored', o."restored" WHERE f."restored" IS NOT o."restored"
    UNION ALL SELECT 'stale', o."stale" WHERE f."stale" IS NOT o."stale"
  )
)
FROM "fetches_0013" AS o
WHERE o."id" = f."id" AND (
  NOT o."start_ok" OR NOT o."finish_ok" OR f."duration_ms" IS NOT o."duration_ms" OR f."outcome" IS NOT o."outcome"
  OR f."new" IS NOT o."new" OR f."changed" IS NOT o."changed"
  OR f."removed" IS NOT o."removed" OR f."restored" IS NOT o."restored"
  OR f."stale" IS NOT o."stale"
);

-- ... then `unchanged`, against the counts as now read.
UPDATE "fetches" AS f
SET "overrides" = json_set(coalesce(f."overrides", '{}'), '$.unchanged', o."unchanged")
FROM "fetches_0013" AS o
WHERE o."id" = f."id" AND f."unchanged" IS NOT o."unchanged";

DROP TABLE "fetches_0013";

CREATE INDEX "idx_fetches_feed_id_started_unix"
    ON "fetches" ("feed_id", "started_unix");

-- feed_health as before; its 24-hour counts find their polls in the new index.
DROP VIEW IF EXISTS [feed_health];

CREATE VIEW [feed_health] AS SELECT
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
     AND (y.started_unix >= CAST(strftime('%s', 'now', '-1 day') AS INTEGER)
          OR y.started_unix IS NULL
             AND y.started_at >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 day')))
    AS polls_24h,
  (SELECT count(*) FROM fetches y WHERE y.feed_id = f.id AND y.outcome = 'error'
     AND (y.started_unix >= CAST(strftime('%s', 'now', '-1 day') AS INTEGER)
          OR y.started_unix IS NULL
             AND y.started_at >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 day')))
    AS failures_24h
FROM feeds f
LEFT JOIN fetches x ON x.id = (SELECT max(id) FROM fetches WHERE feed_id = f.id)
ORDER BY f.consecutive_failures DESC, f.name;
