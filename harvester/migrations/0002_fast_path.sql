-- 0002_fast_path: frozen SQL of the shipped migration of the same name. Never edit: add a new file.
-- What the fast path compares a poll with (see harvester/fastpath.py).
--
--     `feeds.body_fingerprint`: the last successful body without its DTSTAMP values (NULL when
--     that body cannot vouch for the next one). `feed_talks.fingerprint`: the fingerprint of
--     the talk as this feed last carried it; `feed_talks.raw_key`: a hash of its raw bytes
--     (DTSTAMP aside), when the fast path read them. The index answers "is this UID active
--     with this fingerprint" without reading whole talks rows.

ALTER TABLE "feeds" ADD COLUMN "body_fingerprint" TEXT;

ALTER TABLE "feed_talks" ADD COLUMN "fingerprint" TEXT;

ALTER TABLE "feed_talks" ADD COLUMN "raw_key" TEXT;

CREATE INDEX "idx_talks_uid_state"
    ON "talks" ("uid", "status", "fingerprint");
