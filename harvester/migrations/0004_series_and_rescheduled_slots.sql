-- 0004_series_and_rescheduled_slots: frozen SQL of the shipped migration of the same name. Never edit: add a new file.
-- `series`: the API's metadata per series, joined to talks by `talks.series_id`.

CREATE TABLE "series" (
   "shortname" TEXT PRIMARY KEY,
   "name" TEXT,
   "institutions" TEXT,
   "topics" TEXT,
   "timezone" TEXT,
   "refreshed_at" TEXT
);

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
