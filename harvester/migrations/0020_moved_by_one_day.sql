-- 0020_moved_by_one_day: rescheduled_talks says "+1 day", not "+1 days" (what a newcomer
-- met); otherwise the view of 0013 as it was.

DROP VIEW IF EXISTS [rescheduled_talks];

CREATE VIEW [rescheduled_talks] AS SELECT
  c.observed_at AS rescheduled_at, c.title, c.series_name,
  c.previous_dtstart AS old_start, c.dtstart AS new_start,
  CASE
    WHEN minutes % 1440 = 0
      THEN printf('%+d day', minutes / 1440) || iif(abs(minutes) = 1440, '', 's')
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
