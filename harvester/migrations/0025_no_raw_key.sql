-- The fast path no longer keeps a hash of each event's raw bytes (feed_talk_state.raw_key):
-- every block is fingerprinted, and icalendar reads every event that is parsed.
-- legacy_alter_table: the column may go while the view feed_talks still names it (the
-- view is re-created right after; feed_health, which reads feed_talks, stays as it is).
PRAGMA legacy_alter_table = ON;

ALTER TABLE feed_talk_state DROP COLUMN raw_key;

DROP VIEW [feed_talks];

CREATE VIEW [feed_talks] AS SELECT
  ft.feed_id, ft.uid, ft.first_seen,
  CASE WHEN ft.present = 1 AND ft.last_seen IS NULL THEN f.last_seen_at
       ELSE ft.last_seen END AS last_seen,
  ft.present, ft.fingerprint
FROM feed_talk_state ft LEFT JOIN feeds f ON f.id = ft.feed_id;

PRAGMA legacy_alter_table = OFF;
