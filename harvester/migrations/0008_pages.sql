-- 0008_pages: the views rebuilt for reading (issue 13) and for speed at the site's scale.
-- Columns in the order a reader wants them (time, title, speaker, series first, bookkeeping
-- last); talk_changes and recent_changes gain kinds, automatic, automatic_reason and
-- previous_seen_at (0007); recent_changes, rescheduled_talks leave automatic versions out
-- (they are in talk_changes, facet `automatic`). Indexes so that no front-page view scans
-- every version: partial indexes on the versions that are changes, and on the facet columns.

DROP VIEW IF EXISTS [rescheduled_talks];
DROP VIEW IF EXISTS [recent_changes];
DROP VIEW IF EXISTS [talk_changes];
DROP VIEW IF EXISTS [upcoming_talks];
DROP VIEW IF EXISTS [talks_this_week];
DROP VIEW IF EXISTS [cancelled_talks];

CREATE INDEX "idx_talk_versions_changes_observed_at"
    ON "talk_versions" ("observed_at") WHERE "change" != 'new';

CREATE INDEX "idx_talk_versions_change"
    ON "talk_versions" ("change", "automatic");

CREATE INDEX "idx_talk_versions_series_name"
    ON "talk_versions" ("series_name");

CREATE INDEX "idx_talks_series_name"
    ON "talks" ("series_name");

-- feed_health counts each feed's present talks: without reading the talks' rows.
CREATE INDEX "idx_feed_talks_feed_id_present"
    ON "feed_talks" ("feed_id", "present");

CREATE INDEX "idx_talks_status_dtstart"
    ON "talks" ("status", "dtstart");

-- Upcoming: a talk that started more than 7 days ago is not upcoming however long it
-- lasts, which lets the dtstart index bound the scan.
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

CREATE VIEW [talk_changes] AS SELECT
  v.observed_at, v.title, v.speaker, v.series_name,
  CASE v.change
      WHEN 'changed' THEN CASE
        WHEN instr(v.changed_fields, '"dtstart"') > 0 AND instr(v.changed_fields, '"title"') > 0 THEN 'rescheduled and retitled'
        WHEN instr(v.changed_fields, '"dtstart"') > 0 THEN 'rescheduled'
        WHEN instr(v.changed_fields, '"title"') > 0 THEN 'retitled'
        WHEN instr(v.changed_fields, '"speaker"') > 0 OR instr(v.changed_fields, '"speakers"') > 0 THEN 'speaker changed'
        WHEN instr(v.changed_fields, '"dtend"') > 0 THEN 'end time changed'
        ELSE 'details changed' END
      ELSE v.change END AS change_kind,
  CASE v.change
      WHEN 'new' THEN 'first seen'
      WHEN 'removed' THEN 'gone from every feed that carried it'
      WHEN 'restored' THEN 'back in a feed after being removed'
      ELSE rtrim(
        CASE WHEN instr(v.changed_fields, '"title"') > 0
          THEN 'title: ' || coalesce(p.title, '–') || ' → ' || coalesce(v.title, '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"dtstart"') > 0
          THEN 'start: ' || coalesce((replace(substr(p.dtstart, 1, 16), 'T', ' ') || ' UTC'), '–') || ' → ' || coalesce((replace(substr(v.dtstart, 1, 16), 'T', ' ') || ' UTC'), '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"dtend"') > 0 AND NOT instr(v.changed_fields, '"dtstart"') > 0
          THEN 'end: ' || coalesce((replace(substr(p.dtend, 1, 16), 'T', ' ') || ' UTC'), '–') || ' → ' || coalesce((replace(substr(v.dtend, 1, 16), 'T', ' ') || ' UTC'), '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"speaker"') > 0
          THEN 'speaker: ' || coalesce(p.speaker, '–') || ' → ' || coalesce(v.speaker, '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"room"') > 0
          THEN 'room: ' || coalesce(p.room, '–') || ' → ' || coalesce(v.room, '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"series_id"') > 0 THEN 'series id edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"counter"') > 0 THEN 'counter edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"series_name"') > 0 THEN 'series name edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"abstract"') > 0 THEN 'abstract edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"talk_url"') > 0 THEN 'talk url edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"livestream_url"') > 0 THEN 'livestream url edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"comments"') > 0 THEN 'comments edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"urls"') > 0 THEN 'urls edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"summary"') > 0 AND NOT (instr(v.changed_fields, '"title"') > 0 OR instr(v.changed_fields, '"speaker"') > 0 OR instr(v.changed_fields, '"speakers"') > 0 OR instr(v.changed_fields, '"dtstart"') > 0 OR instr(v.changed_fields, '"dtend"') > 0 OR instr(v.changed_fields, '"room"') > 0 OR instr(v.changed_fields, '"series_id"') > 0 OR instr(v.changed_fields, '"counter"') > 0 OR instr(v.changed_fields, '"series_name"') > 0 OR instr(v.changed_fields, '"abstract"') > 0 OR instr(v.changed_fields, '"talk_url"') > 0 OR instr(v.changed_fields, '"livestream_url"') > 0 OR instr(v.changed_fields, '"comments"') > 0 OR instr(v.changed_fields, '"urls"') > 0) THEN 'summary edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"description"') > 0 AND NOT (instr(v.changed_fields, '"title"') > 0 OR instr(v.changed_fields, '"speaker"') > 0 OR instr(v.changed_fields, '"speakers"') > 0 OR instr(v.changed_fields, '"dtstart"') > 0 OR instr(v.changed_fields, '"dtend"') > 0 OR instr(v.changed_fields, '"room"') > 0 OR instr(v.changed_fields, '"series_id"') > 0 OR instr(v.changed_fields, '"counter"') > 0 OR instr(v.changed_fields, '"series_name"') > 0 OR instr(v.changed_fields, '"abstract"') > 0 OR instr(v.changed_fields, '"talk_url"') > 0 OR instr(v.changed_fields, '"livestream_url"') > 0 OR instr(v.changed_fields, '"comments"') > 0 OR instr(v.changed_fields, '"urls"') > 0) THEN 'description edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"location"') > 0 AND NOT (instr(v.changed_fields, '"title"') > 0 OR instr(v.changed_fields, '"speaker"') > 0 OR instr(v.changed_fields, '"speakers"') > 0 OR instr(v.changed_fields, '"dtstart"') > 0 OR instr(v.changed_fields, '"dtend"') > 0 OR instr(v.changed_fields, '"room"') > 0 OR instr(v.changed_fields, '"series_id"') > 0 OR instr(v.changed_fields, '"counter"') > 0 OR instr(v.changed_fields, '"series_name"') > 0 OR instr(v.changed_fields, '"abstract"') > 0 OR instr(v.changed_fields, '"talk_url"') > 0 OR instr(v.changed_fields, '"livestream_url"') > 0 OR instr(v.changed_fields, '"comments"') > 0 OR instr(v.changed_fields, '"urls"') > 0) THEN 'location edited; ' ELSE '' END,
        '; ')
      END AS what_changed,
  v.dtstart, v.dtend, v.room, v.talk_url, v.kinds, v.automatic, v.automatic_reason,
  v.previous_seen_at, v.change, v.uid, v.version, v.series_id,
  p.title AS previous_title, p.dtstart AS previous_dtstart, p.dtend AS previous_dtend,
  v.changed_fields, v.status, v.fetch_id
FROM talk_versions v
LEFT JOIN talk_versions p ON p.uid = v.uid AND p.version = v.version - 1;

-- Read through the partial index: only the versions that are changes.
CREATE VIEW [recent_changes] AS SELECT
  v.observed_at, v.title, v.speaker, v.series_name,
  CASE v.change
      WHEN 'changed' THEN CASE
        WHEN instr(v.changed_fields, '"dtstart"') > 0 AND instr(v.changed_fields, '"title"') > 0 THEN 'rescheduled and retitled'
        WHEN instr(v.changed_fields, '"dtstart"') > 0 THEN 'rescheduled'
        WHEN instr(v.changed_fields, '"title"') > 0 THEN 'retitled'
        WHEN instr(v.changed_fields, '"speaker"') > 0 OR instr(v.changed_fields, '"speakers"') > 0 THEN 'speaker changed'
        WHEN instr(v.changed_fields, '"dtend"') > 0 THEN 'end time changed'
        ELSE 'details changed' END
      ELSE v.change END AS change_kind,
  CASE v.change
      WHEN 'new' THEN 'first seen'
      WHEN 'removed' THEN 'gone from every feed that carried it'
      WHEN 'restored' THEN 'back in a feed after being removed'
      ELSE rtrim(
        CASE WHEN instr(v.changed_fields, '"title"') > 0
          THEN 'title: ' || coalesce(p.title, '–') || ' → ' || coalesce(v.title, '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"dtstart"') > 0
          THEN 'start: ' || coalesce((replace(substr(p.dtstart, 1, 16), 'T', ' ') || ' UTC'), '–') || ' → ' || coalesce((replace(substr(v.dtstart, 1, 16), 'T', ' ') || ' UTC'), '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"dtend"') > 0 AND NOT instr(v.changed_fields, '"dtstart"') > 0
          THEN 'end: ' || coalesce((replace(substr(p.dtend, 1, 16), 'T', ' ') || ' UTC'), '–') || ' → ' || coalesce((replace(substr(v.dtend, 1, 16), 'T', ' ') || ' UTC'), '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"speaker"') > 0
          THEN 'speaker: ' || coalesce(p.speaker, '–') || ' → ' || coalesce(v.speaker, '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"room"') > 0
          THEN 'room: ' || coalesce(p.room, '–') || ' → ' || coalesce(v.room, '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"series_id"') > 0 THEN 'series id edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"counter"') > 0 THEN 'counter edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"series_name"') > 0 THEN 'series name edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"abstract"') > 0 THEN 'abstract edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"talk_url"') > 0 THEN 'talk url edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"livestream_url"') > 0 THEN 'livestream url edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"comments"') > 0 THEN 'comments edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"urls"') > 0 THEN 'urls edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"summary"') > 0 AND NOT (instr(v.changed_fields, '"title"') > 0 OR instr(v.changed_fields, '"speaker"') > 0 OR instr(v.changed_fields, '"speakers"') > 0 OR instr(v.changed_fields, '"dtstart"') > 0 OR instr(v.changed_fields, '"dtend"') > 0 OR instr(v.changed_fields, '"room"') > 0 OR instr(v.changed_fields, '"series_id"') > 0 OR instr(v.changed_fields, '"counter"') > 0 OR instr(v.changed_fields, '"series_name"') > 0 OR instr(v.changed_fields, '"abstract"') > 0 OR instr(v.changed_fields, '"talk_url"') > 0 OR instr(v.changed_fields, '"livestream_url"') > 0 OR instr(v.changed_fields, '"comments"') > 0 OR instr(v.changed_fields, '"urls"') > 0) THEN 'summary edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"description"') > 0 AND NOT (instr(v.changed_fields, '"title"') > 0 OR instr(v.changed_fields, '"speaker"') > 0 OR instr(v.changed_fields, '"speakers"') > 0 OR instr(v.changed_fields, '"dtstart"') > 0 OR instr(v.changed_fields, '"dtend"') > 0 OR instr(v.changed_fields, '"room"') > 0 OR instr(v.changed_fields, '"series_id"') > 0 OR instr(v.changed_fields, '"counter"') > 0 OR instr(v.changed_fields, '"series_name"') > 0 OR instr(v.changed_fields, '"abstract"') > 0 OR instr(v.changed_fields, '"talk_url"') > 0 OR instr(v.changed_fields, '"livestream_url"') > 0 OR instr(v.changed_fields, '"comments"') > 0 OR instr(v.changed_fields, '"urls"') > 0) THEN 'description edited; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"location"') > 0 AND NOT (instr(v.changed_fields, '"title"') > 0 OR instr(v.changed_fields, '"speaker"') > 0 OR instr(v.changed_fields, '"speakers"') > 0 OR instr(v.changed_fields, '"dtstart"') > 0 OR instr(v.changed_fields, '"dtend"') > 0 OR instr(v.changed_fields, '"room"') > 0 OR instr(v.changed_fields, '"series_id"') > 0 OR instr(v.changed_fields, '"counter"') > 0 OR instr(v.changed_fields, '"series_name"') > 0 OR instr(v.changed_fields, '"abstract"') > 0 OR instr(v.changed_fields, '"talk_url"') > 0 OR instr(v.changed_fields, '"livestream_url"') > 0 OR instr(v.changed_fields, '"comments"') > 0 OR instr(v.changed_fields, '"urls"') > 0) THEN 'location edited; ' ELSE '' END,
        '; ')
      END AS what_changed,
  v.dtstart, v.kinds, v.automatic, v.previous_seen_at, v.uid, v.version, v.talk_url
FROM talk_versions v
LEFT JOIN talk_versions p ON p.uid = v.uid AND p.version = v.version - 1
WHERE v.change != 'new' AND v.automatic = 0;

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

-- Changes per week by kind (the chart): automatic ones as their own kind, first sightings
-- left out (they would dwarf the rest).
CREATE VIEW [weekly_changes] AS SELECT
  date(v.observed_at, '-6 days', 'weekday 1') AS week,
  CASE WHEN v.automatic THEN 'automatic'
    WHEN v.change != 'changed' THEN v.change
    WHEN instr(v.changed_fields, '"dtstart"') > 0 THEN 'rescheduled'
    WHEN instr(v.changed_fields, '"title"') > 0 THEN 'retitled'
    WHEN instr(v.changed_fields, '"speaker"') > 0 OR instr(v.changed_fields, '"speakers"') > 0
      THEN 'speaker changed'
    ELSE 'details changed' END AS kind,
  count(*) AS changes
FROM talk_versions v
WHERE v.change != 'new'
GROUP BY week, kind;
