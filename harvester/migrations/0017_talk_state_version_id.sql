-- 0017_talk_state_version_id: what the talks pages gained after 0015 had shipped (issue 13;
-- 0015 stays as it shipped). talk_state carries its current version's row id, so a search
-- (talks_fts, by version id) reaches the state row's keys without reading a version row,
-- and the index the pages count and facet on covers what they read.

ALTER TABLE "talk_state" ADD COLUMN "version_id" INTEGER;

UPDATE "talk_state" SET "version_id" = (
    SELECT v.id FROM talk_versions v
    WHERE v.uid = talk_state.uid AND v.version = talk_state.version
);

-- Covering for what the pages count and facet (every talk, upcoming, this week, cancelled):
-- a facet reads this index and the unique (uid, version) one, never a row. No index on
-- series_name alone: the planner would walk it, row by row, to save a sort.
DROP INDEX "idx_talk_state_status_dtstart";
DROP INDEX "idx_talk_state_series_name";
CREATE INDEX "idx_talk_state_status_dtstart" ON "talk_state"
    ("status", "dtstart", "dtend", "counter", "series_name", "uid", "version");
-- A search finds current versions by id (talks_fts): from here to the state row's keys
-- without reading a version row.
CREATE INDEX "idx_talk_state_version_id" ON "talk_state"
    ("version_id", "uid", "version", "status", "series_name", "dtstart");

DROP VIEW [talks];

-- A floor, raised by the feeds that vouch for the talk now.
CREATE VIEW [talks] AS SELECT
  s.uid, s.series_id, s.counter, v.title, v.speaker, v.speakers, s.series_name, v.abstract,
  v.room, v.talk_url, v.livestream_url, v.comments, s.dtstart, s.dtend, v.summary,
  v.description, v.location, v.urls,
  coalesce((SELECT max(f.last_dtstamp) FROM feed_talk_state ft JOIN feeds f ON f.id = ft.feed_id
            WHERE ft.uid = s.uid AND ft.present = 1 AND ft.last_seen IS NULL
              AND ft.fingerprint = s.fingerprint AND f.last_dtstamp > coalesce(s.dtstamp, '')),
           s.dtstamp) AS dtstamp,
  s.fingerprint, s.version, s.status, s.first_seen,
  coalesce((SELECT max(f.last_seen_at) FROM feed_talk_state ft JOIN feeds f ON f.id = ft.feed_id
            WHERE ft.uid = s.uid AND ft.present = 1 AND ft.last_seen IS NULL
              AND ft.fingerprint = s.fingerprint AND f.last_seen_at > coalesce(s.last_seen, '')),
           s.last_seen) AS last_seen,
  s.changed_at, s.removed_at, s.removed_reason, s.version_id
FROM talk_state s JOIN talk_versions v ON v.uid = s.uid AND v.version = s.version;
