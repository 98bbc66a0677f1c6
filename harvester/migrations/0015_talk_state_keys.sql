-- 0015_talk_state_keys: the talks pages fast at the site's scale (issue 13) on the talks
-- view of 0011. talk_state carries its current version's keys for sorting, filtering and
-- facets (series, counter, start, end), written with the state row whenever a version is,
-- so the `talks` view and the views over it order, filter and facet on talk_state's narrow
-- rows and indexes, and read a talk_versions row only for the rows a page shows.

ALTER TABLE "talk_state" ADD COLUMN "series_id" TEXT;
ALTER TABLE "talk_state" ADD COLUMN "counter" INTEGER;
ALTER TABLE "talk_state" ADD COLUMN "series_name" TEXT;
ALTER TABLE "talk_state" ADD COLUMN "dtstart" TEXT;
ALTER TABLE "talk_state" ADD COLUMN "dtend" TEXT;

UPDATE "talk_state" SET ("series_id", "counter", "series_name", "dtstart", "dtend") = (
    SELECT v.series_id, v.counter, v.series_name, v.dtstart, v.dtend FROM talk_versions v
    WHERE v.uid = talk_state.uid AND v.version = talk_state.version
);

CREATE INDEX "idx_talk_state_dtstart" ON "talk_state" ("dtstart");
CREATE INDEX "idx_talk_state_status_dtstart" ON "talk_state" ("status", "dtstart");
CREATE INDEX "idx_talk_state_series_name" ON "talk_state" ("series_name");
CREATE INDEX "idx_talk_state_series_id_dtstart" ON "talk_state" ("series_id", "dtstart");

-- 0011 made these for the talks view; its keys are talk_state's now, and (status, dtstart)
-- serves what (status) did.
DROP INDEX "idx_talk_state_status";
DROP INDEX "idx_talk_versions_dtstart";
DROP INDEX "idx_talk_versions_series_id_dtstart";

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
  s.changed_at, s.removed_at, s.removed_reason, v.id AS version_id
FROM talk_state s JOIN talk_versions v ON v.uid = s.uid AND v.version = s.version;
