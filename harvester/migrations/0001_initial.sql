-- 0001_initial: frozen SQL of the shipped migration of the same name. Never edit: add a new file.

CREATE TABLE "feeds" (
   "id" INTEGER PRIMARY KEY,
   "url" TEXT NOT NULL,
   "url_hash" TEXT NOT NULL,
   "name" TEXT,
   "kind" TEXT NOT NULL,
   "enabled" INTEGER DEFAULT 1,
   "added_at" TEXT,
   "etag" TEXT,
   "last_modified" TEXT,
   "last_fetched_at" TEXT,
   "last_success_at" TEXT,
   "last_outcome" TEXT,
   "consecutive_failures" INTEGER DEFAULT 0,
   "last_error" TEXT,
   "held_removals" TEXT
);

CREATE UNIQUE INDEX "idx_feeds_url_hash"
    ON "feeds" ("url_hash");

CREATE TABLE "talks" (
   "uid" TEXT PRIMARY KEY,
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
   "description" TEXT,
   "location" TEXT,
   "urls" TEXT,
   "dtstamp" TEXT,
   "fingerprint" TEXT,
   "version" INTEGER NOT NULL,
   "status" TEXT NOT NULL,
   "first_seen" TEXT,
   "last_seen" TEXT,
   "changed_at" TEXT,
   "removed_at" TEXT
);

CREATE TABLE "fetches" (
   "id" INTEGER PRIMARY KEY,
   "feed_id" INTEGER NOT NULL REFERENCES "feeds"("id"),
   "started_at" TEXT,
   "finished_at" TEXT,
   "duration_ms" INTEGER,
   "http_status" INTEGER,
   "bytes" INTEGER,
   "outcome" TEXT NOT NULL,
   "events" INTEGER,
   "new" INTEGER,
   "changed" INTEGER,
   "removed" INTEGER,
   "restored" INTEGER,
   "unchanged" INTEGER,
   "stale" INTEGER,
   "error" TEXT
);

CREATE TABLE "talk_versions" (
   "id" INTEGER PRIMARY KEY,
   "uid" TEXT NOT NULL REFERENCES "talks"("uid"),
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
   "description" TEXT,
   "location" TEXT,
   "urls" TEXT,
   "status" TEXT,
   "dtstamp" TEXT,
   "fingerprint" TEXT,
   "raw" TEXT
);

CREATE UNIQUE INDEX "idx_talk_versions_uid_version"
    ON "talk_versions" ("uid", "version");

CREATE TABLE "feed_talks" (
   "feed_id" INTEGER REFERENCES "feeds"("id"),
   "uid" TEXT REFERENCES "talks"("uid"),
   "first_seen" TEXT,
   "last_seen" TEXT,
   "present" INTEGER,
   PRIMARY KEY ("feed_id", "uid")
);

CREATE INDEX "idx_talks_dtstart"
    ON "talks" ("dtstart");

CREATE INDEX "idx_talks_series_id_dtstart"
    ON "talks" ("series_id", "dtstart");

CREATE INDEX "idx_talks_status"
    ON "talks" ("status");

CREATE INDEX "idx_talk_versions_observed_at"
    ON "talk_versions" ("observed_at");

CREATE INDEX "idx_fetches_feed_id_started_at"
    ON "fetches" ("feed_id", "started_at");

CREATE INDEX "idx_feed_talks_uid"
    ON "feed_talks" ("uid");
