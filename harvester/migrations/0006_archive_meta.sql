-- 0006_archive_meta: facts about this archive itself, one row per key.
-- `url_hash_salt`: the per-archive random key of `feeds.url_hash` (an HMAC-SHA256 of the
-- full feed URL), so that a guessed personal-feed token cannot be confirmed offline from a
-- copy of the archive. Rows written before this migration keep their unsalted sha256 until
-- the harvester next meets their URL in the config (see `harvester.archive.find_feed`).

CREATE TABLE "archive_meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);

INSERT INTO "archive_meta" ("key", "value") VALUES ('url_hash_salt', lower(hex(randomblob(32))));
