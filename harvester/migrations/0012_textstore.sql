-- 0012_textstore: each version's text stored once (issue 12, item 5; harvester/textstore.py).
-- talk_versions.description becomes a VIRTUAL generated column in plain SQL: the stored
--   `description_frame` is a template where the abstract, talk_url, title, speaker and
--   series_name stand as char(5), char(1) ... char(4), expanded from the row's columns
--   (`description_form` 1), or the whole description (`description_form` NULL).
-- talk_versions.raw becomes a VIRTUAL generated column, harvester_raw(raw_z, description):
--   `raw_z` is the VEVENT deflated without its DESCRIPTION value (or whole, when it would
--   not come back exactly). harvester_raw is registered on every connection the harvester
--   and its Datasette plugin open; any other SQLite reads every column but `raw`.
-- SQLite cannot turn a column into a generated one: the table is rebuilt with the same
-- ids, columns (in the same order; the stored ones last) and content. Its indexes and
-- triggers are made again as they were by the migration runner (harvester._schema), and
-- views keep their text (legacy_alter_table: the rename does not re-check them).

-- Versions copied as they are, even one whose talk or poll is missing (an older release's
-- data): the copy's foreign keys are checked at COMMIT, once the old rows are gone.
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
   "raw" TEXT GENERATED ALWAYS AS (harvester_raw("raw_z", "description")) VIRTUAL,
   "kinds" TEXT,
   "automatic" INTEGER NOT NULL DEFAULT 0,
   "automatic_reason" TEXT,
   "previous_seen_at" TEXT,
   "description_frame" TEXT,
   "description_form" INTEGER,
   "raw_z" BLOB
);

INSERT INTO "talk_versions_new" ("id", "uid", "version", "observed_at", "fetch_id", "change",
    "changed_fields", "series_id", "counter", "title", "speaker", "speakers", "series_name",
    "abstract", "room", "talk_url", "livestream_url", "comments", "dtstart", "dtend",
    "summary", "location", "urls", "status", "dtstamp", "fingerprint", "kinds", "automatic",
    "automatic_reason", "previous_seen_at", "description_frame", "description_form", "raw_z")
SELECT "id", "uid", "version", "observed_at", "fetch_id", "change",
    "changed_fields", "series_id", "counter", "title", "speaker", "speakers", "series_name",
    "abstract", "room", "talk_url", "livestream_url", "comments", "dtstart", "dtend",
    "summary", "location", "urls", "status", "dtstamp", "fingerprint", "kinds", "automatic",
    "automatic_reason", "previous_seen_at", "frame" ->> 0, "frame" ->> 1,
    harvester_raw_z("raw", "description")
FROM (SELECT *, harvester_frame("description", "abstract", "talk_url", "title", "speaker",
    "series_name") AS "frame" FROM "talk_versions")
ORDER BY "id";

DROP TABLE "talk_versions";

PRAGMA legacy_alter_table = ON;

ALTER TABLE "talk_versions_new" RENAME TO "talk_versions";

PRAGMA legacy_alter_table = OFF;
