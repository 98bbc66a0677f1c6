-- 0011_talk_state: rule 2, replaced (contract Revision 2): an unchanged poll writes no
-- per-talk row. `last_seen` and `dtstamp` of `talks`, and `last_seen` of `feed_talks`, are
-- derived from the feed's last successful poll instead of being rewritten on every talk.
--
--   feeds.last_seen_at, feeds.last_dtstamp: the time and the DTSTAMP of the feed's last
--     successful poll that vouched for its content (a 200 archived, or a 304; a 304 keeps
--     the DTSTAMP). NULL DTSTAMP: that poll's events did not share one value.
--   talk_state: one row per UID, what is not content (the content is the current
--     talk_versions row). Its `last_seen`/`dtstamp` are floors, written when the talk gets
--     a version or a new fingerprint, and when a feed stops vouching for it (it leaves,
--     is held back, or comes as a stale copy).
--   feed_talk_state: which feed carried which talk. `last_seen` is NULL while the feed's
--     last poll carried the talk (it is then that poll's time, feeds.last_seen_at), else
--     the time the feed last carried it (frozen when it left or was held back).
--   talks, feed_talks: views with the columns the tables had (plus talks.version_id, the
--     talk_versions row of the current version). A feed vouches for a talk when it
--     carried it at its last poll with the talk's current fingerprint.
--   talks_fts: the search index now holds the current version of each talk
--     (content talk_versions), kept by triggers on talk_state.
--
-- The old talks table is the parent of talk_versions.uid and feed_talks.uid: it is
-- dropped with the foreign keys deferred, and its narrow successor, filled with the same
-- UIDs, renamed to talk_state (which renames those references too). Views that read talks
-- are dropped first and created again, unchanged, at the end.

PRAGMA defer_foreign_keys = ON;

DROP VIEW [upcoming_talks];
DROP VIEW [talks_this_week];
DROP VIEW [cancelled_talks];
DROP VIEW [rescheduled_talks];
DROP VIEW [rescheduled_slots];
DROP TRIGGER [talks_ai];
DROP TRIGGER [talks_ad];
DROP TRIGGER [talks_au];
DROP TABLE [talks_fts];

ALTER TABLE "feeds" ADD COLUMN "last_seen_at" TEXT;

ALTER TABLE "feeds" ADD COLUMN "last_dtstamp" TEXT;

-- Every present row of a feed was written by its last poll that carried it: their latest
-- time is that poll's. DTSTAMP stays NULL (the floors below hold it) until the next poll.
UPDATE feeds SET last_seen_at = coalesce(
    (SELECT max(ft.last_seen) FROM feed_talks ft WHERE ft.feed_id = feeds.id AND ft.present = 1),
    last_success_at);

CREATE TEMP TABLE [_0011_talks] AS
SELECT uid, version, status, first_seen, changed_at, removed_at, removed_reason, fingerprint,
       last_seen, dtstamp
FROM talks;

DROP TABLE [talks];

CREATE TABLE "talks" (
   "uid" TEXT PRIMARY KEY,
   "version" INTEGER NOT NULL,
   "status" TEXT NOT NULL,
   "first_seen" TEXT,
   "changed_at" TEXT,
   "removed_at" TEXT,
   "removed_reason" TEXT,
   "fingerprint" TEXT,
   "last_seen" TEXT,
   "dtstamp" TEXT
);

INSERT INTO talks SELECT * FROM temp.[_0011_talks];

DROP TABLE temp.[_0011_talks];

ALTER TABLE [talks] RENAME TO [talk_state];

CREATE INDEX "idx_talk_state_status"
    ON "talk_state" ("status");

CREATE TABLE "feed_talk_state" (
   "feed_id" INTEGER REFERENCES "feeds"("id"),
   "uid" TEXT REFERENCES "talk_state"("uid"),
   "first_seen" TEXT,
   "last_seen" TEXT,
   "present" INTEGER,
   "fingerprint" TEXT,
   "raw_key" TEXT,
   PRIMARY KEY ("feed_id", "uid")
);

INSERT INTO feed_talk_state (feed_id, uid, first_seen, last_seen, present, fingerprint, raw_key)
SELECT ft.feed_id, ft.uid, ft.first_seen,
       CASE WHEN ft.present = 1 AND ft.last_seen IS f.last_seen_at THEN NULL
            ELSE ft.last_seen END,
       ft.present, ft.fingerprint, ft.raw_key
FROM feed_talks ft LEFT JOIN feeds f ON f.id = ft.feed_id;

DROP TABLE [feed_talks];

CREATE INDEX "idx_feed_talk_state_uid"
    ON "feed_talk_state" ("uid");

CREATE INDEX "idx_feed_talk_state_feed_id_present"
    ON "feed_talk_state" ("feed_id", "present");

CREATE VIEW [feed_talks] AS SELECT
  ft.feed_id, ft.uid, ft.first_seen,
  CASE WHEN ft.present = 1 AND ft.last_seen IS NULL THEN f.last_seen_at
       ELSE ft.last_seen END AS last_seen,
  ft.present, ft.fingerprint, ft.raw_key
FROM feed_talk_state ft LEFT JOIN feeds f ON f.id = ft.feed_id;

-- A floor, raised by the feeds that vouch for the talk now.
CREATE VIEW [talks] AS SELECT
  s.uid, v.series_id, v.counter, v.title, v.speaker, v.speakers, v.series_name, v.abstract,
  v.room, v.talk_url, v.livestream_url, v.comments, v.dtstart, v.dtend, v.summary,
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

CREATE VIRTUAL TABLE "talks_fts" USING FTS5 (
    "title", "speaker", "abstract", "series_name",
    tokenize='porter unicode61 remove_diacritics 2',
    content="talk_versions", content_rowid="id"
);

INSERT INTO talks_fts (rowid, title, speaker, abstract, series_name)
SELECT v.id, v.title, v.speaker, v.abstract, v.series_name
FROM talk_state s JOIN talk_versions v ON v.uid = s.uid AND v.version = s.version;

-- A version is written before the state row that points at it (talk_versions rows never
-- change, so what was indexed can be read back to take it out).
CREATE TRIGGER [talk_state_fts_insert] AFTER INSERT ON [talk_state] BEGIN
  INSERT INTO talks_fts (rowid, title, speaker, abstract, series_name)
    SELECT id, title, speaker, abstract, series_name FROM talk_versions
    WHERE uid = new.uid AND version = new.version;
END;

CREATE TRIGGER [talk_state_fts_update] AFTER UPDATE OF [version] ON [talk_state]
WHEN old.version IS NOT new.version BEGIN
  INSERT INTO talks_fts (talks_fts, rowid, title, speaker, abstract, series_name)
    SELECT 'delete', id, title, speaker, abstract, series_name FROM talk_versions
    WHERE uid = old.uid AND version = old.version;
  INSERT INTO talks_fts (rowid, title, speaker, abstract, series_name)
    SELECT id, title, speaker, abstract, series_name FROM talk_versions
    WHERE uid = new.uid AND version = new.version;
END;

CREATE TRIGGER [talk_state_fts_delete] AFTER DELETE ON [talk_state] BEGIN
  INSERT INTO talks_fts (talks_fts, rowid, title, speaker, abstract, series_name)
    SELECT 'delete', id, title, speaker, abstract, series_name FROM talk_versions
    WHERE uid = old.uid AND version = old.version;
END;

-- The views that read talks, as 0004 and 0008 made them.
CREATE VIEW "rescheduled_slots" AS 
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
FROM candidates WHERE matches = 1;
CREATE VIEW [upcoming_talks] AS SELECT
    t.dtstart, t.dtend, t.title, t.speaker, t.series_name, t.room, t.talk_url,
    t.livestream_url, t.uid, t.series_id, t.version, t.changed_at
FROM talks t
WHERE t.status = 'active' AND coalesce(t.counter, 0) >= 0
  AND t.dtstart >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-7 days')
  AND coalesce(t.dtend, t.dtstart) >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now');
CREATE VIEW [talks_this_week] AS SELECT
    t.dtstart, t.dtend, t.title, t.speaker, t.series_name, t.room, t.talk_url,
    t.livestream_url, t.uid, t.series_id, t.version, t.changed_at
FROM talks t
WHERE t.status = 'active' AND coalesce(t.counter, 0) >= 0
  AND t.dtstart >= strftime('%Y-%m-%dT00:00:00+00:00', 'now', 'weekday 0', '-6 days')
  AND t.dtstart < strftime('%Y-%m-%dT00:00:00+00:00', 'now', 'weekday 0', '+1 day');
CREATE VIEW [cancelled_talks] AS SELECT
    t.dtstart, t.dtend, t.title, t.speaker, t.series_name, t.room, t.talk_url,
    t.removed_at, t.removed_reason, t.uid, t.series_id, t.livestream_url, t.version
FROM talks t
WHERE t.status = 'removed'
  AND t.dtstart >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-7 days')
  AND coalesce(t.dtend, t.dtstart) >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now');
CREATE VIEW [rescheduled_talks] AS SELECT
  c.observed_at AS rescheduled_at, c.title, c.series_name,
  c.previous_dtstart AS old_start, c.dtstart AS new_start,
  CASE
    WHEN minutes % 1440 = 0 THEN printf('%+d days', minutes / 1440)
    WHEN minutes % 60 = 0 THEN printf('%+d h', minutes / 60)
    ELSE printf('%+d min', minutes) END AS moved_by,
  t.dtstart AS current_start, t.status AS current_status, c.uid, c.version, c.talk_url
FROM (
  SELECT v.observed_at, v.uid, v.title, v.series_name, v.dtstart, v.version, v.talk_url,
    p.dtstart AS previous_dtstart,
    CAST(round((julianday(v.dtstart) - julianday(p.dtstart)) * 1440) AS INTEGER) AS minutes
  FROM talk_versions v
  JOIN talk_versions p ON p.uid = v.uid AND p.version = v.version - 1
  WHERE v.change != 'new' AND v.automatic = 0 AND p.dtstart IS NOT NULL
    AND instr(v.changed_fields, '"dtstart"') > 0
) c
JOIN talks t ON t.uid = c.uid;

-- What the indexes of the talks table served (a range of start times, a series' talks).
CREATE INDEX "idx_talk_versions_dtstart"
    ON "talk_versions" ("dtstart");

CREATE INDEX "idx_talk_versions_series_id_dtstart"
    ON "talk_versions" ("series_id", "dtstart");
