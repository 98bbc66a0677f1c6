-- 0018_plain_raw: an archive any SQLite tool reads (contract, Revision 3).
-- talk_versions.raw becomes a plain BLOB column: the VEVENT exactly as received, as a
--   standard zlib stream (`zlib.decompress(raw).decode()` in Python, no dictionary). It
--   was computed by the function harvester_raw from `raw_z`, which goes: no schema object
--   calls an application function any more.
-- `description` stays a generated column in plain SQL (the template of 0012).
-- The table is rebuilt with the same ids, columns (in the same order, `raw_z` gone) and
-- content; its indexes and triggers are made again as they were by the migration runner
-- (harvester._schema), and views keep their text (legacy_alter_table). The old `raw` is
-- read through the frozen decoder of 0012 (harvester/migrations/textstore_1.py).

PRAGMA defer_foreign_keys = ON;

CREATE TABLE "talk_versions_new" (
   "id" INTEGER PRIMARY KEY,
   "uid" TEXT NOT NULL REFERENCES "talk_state"("uid"),
   "version" INTEGER NOT NULL,
   "observed_at" TEXT,
   "fetch_id" INTEGER REFERENCES "fetches"("id"),
   "change" TEXT NOT NULL,
   "changed_fields" TEXT,
   "series_id" TEXT,
   "counter" INTEGER,
   "title" TEXT,
   "speaker" TEXT,
   "speakers" TEXT,
   "series_name" TEXT,
   "abstract" TEXT,
   "room" TEXT,
   "talk_url" TEXT,
   "livestream_url" TEXT,
   "comments" TEXT,
   "dtstart" TEXT,
   "dtend" TEXT,
   "summary" TEXT,
   "description" TEXT GENERATED ALWAYS AS (CASE WHEN "description_form" IS NULL
       THEN "description_frame"
       ELSE replace(replace(replace(replace(replace("description_frame",
         char(4), coalesce("series_name", '')), char(3), coalesce("speaker", '')),
         char(2), coalesce("title", '')), char(1), coalesce("talk_url", '')),
         char(5), coalesce("abstract", '')) END) VIRTUAL,
   "location" TEXT,
   "urls" TEXT,
   "status" TEXT,
   "dtstamp" TEXT,
   "fingerprint" TEXT,
   "raw" BLOB,
   "kinds" TEXT,
   "automatic" INTEGER NOT NULL DEFAULT 0,
   "automatic_reason" TEXT,
   "previous_seen_at" TEXT,
   "description_frame" TEXT,
   "description_form" INTEGER
);

INSERT INTO "talk_versions_new" ("id", "uid", "version", "observed_at", "fetch_id", "change",
    "changed_fields", "series_id", "counter", "title", "speaker", "speakers", "series_name",
    "abstract", "room", "talk_url", "livestream_url", "comments", "dtstart", "dtend",
    "summary", "location", "urls", "status", "dtstamp", "fingerprint", "raw", "kinds",
    "automatic", "automatic_reason", "previous_seen_at", "description_frame",
    "description_form")
SELECT "id", "uid", "version", "observed_at", "fetch_id", "change",
    "changed_fields", "series_id", "counter", "title", "speaker", "speakers", "series_name",
    "abstract", "room", "talk_url", "livestream_url", "comments", "dtstart", "dtend",
    "summary", "location", "urls", "status", "dtstamp", "fingerprint",
    harvester_raw_zlib("raw_z", "description"), "kinds", "automatic", "automatic_reason",
    "previous_seen_at", "description_frame", "description_form"
FROM "talk_versions"
ORDER BY "id";

DROP TABLE "talk_versions";

PRAGMA legacy_alter_table = ON;

ALTER TABLE "talk_versions_new" RENAME TO "talk_versions";

PRAGMA legacy_alter_table = OFF;
