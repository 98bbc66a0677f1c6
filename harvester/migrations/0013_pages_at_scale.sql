-- 0013_pages_at_scale: the change pages fast at the site's scale (issue 13).
-- Datasette runs, besides the page's rows, a count(*) and one GROUP BY per facet over the
-- whole filtered view. With the previous version LEFT JOINed (0008), each of them joined
-- every version to the one before; here the previous version's fields are looked up by
-- scalar subqueries instead, which SQLite evaluates only for the columns a query uses: the
-- count and the facets on plain columns read talk_versions alone (through its indexes),
-- and the lookups run for the rows shown. Same columns, same order, same rows as 0008.
-- recent_changes and rescheduled_talks read the versions that are changes for people
-- (not first sightings, not automatic) through partial indexes on just those.

DROP VIEW IF EXISTS [rescheduled_talks];
DROP VIEW IF EXISTS [recent_changes];
DROP VIEW IF EXISTS [talk_changes];

-- talk_changes once a change is chosen (change = 'changed'): its series facet from the
-- index instead of every version. (None on automatic: without ANALYZE statistics SQLite
-- takes `automatic = 0` for selective and would read the views below through it.)
CREATE INDEX "idx_talk_versions_change_series_name"
    ON "talk_versions" ("change", "series_name");

-- The changes for people (recent_changes, rescheduled_talks): their count and their
-- series facet from the index alone, a series' changes newest first.
CREATE INDEX "idx_talk_versions_people_changes_series_name"
    ON "talk_versions" ("series_name", "observed_at") WHERE "change" != 'new' AND "automatic" = 0;

-- Datasette's array facet (kinds) asks for DISTINCT over every column, uid and version
-- included; SQLite then walks a UNIQUE index on (uid, version) for it. This one holds
-- only the changes for people, so that walk reads those and not every version.
CREATE UNIQUE INDEX "idx_talk_versions_people_changes_uid_version"
    ON "talk_versions" ("uid", "version") WHERE "change" != 'new' AND "automatic" = 0;

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
          THEN 'title: ' || coalesce((SELECT p.title FROM talk_versions p WHERE p.uid = v.uid AND p.version = v.version - 1), '–') || ' → ' || coalesce(v.title, '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"dtstart"') > 0
          THEN 'start: ' || coalesce((replace(substr((SELECT p.dtstart FROM talk_versions p WHERE p.uid = v.uid AND p.version = v.version - 1), 1, 16), 'T', ' ') || ' UTC'), '–') || ' → ' || coalesce((replace(substr(v.dtstart, 1, 16), 'T', ' ') || ' UTC'), '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"dtend"') > 0 AND NOT instr(v.changed_fields, '"dtstart"') > 0
          THEN 'end: ' || coalesce((replace(substr((SELECT p.dtend FROM talk_versions p WHERE p.uid = v.uid AND p.version = v.version - 1), 1, 16), 'T', ' ') || ' UTC'), '–') || ' → ' || coalesce((replace(substr(v.dtend, 1, 16), 'T', ' ') || ' UTC'), '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"speaker"') > 0
          THEN 'speaker: ' || coalesce((SELECT p.speaker FROM talk_versions p WHERE p.uid = v.uid AND p.version = v.version - 1), '–') || ' → ' || coalesce(v.speaker, '–') || '; ' ELSE '' END ||
        CASE WHEN instr(v.changed_fields, '"room"') > 0
          THEN 'room: ' || coalesce((SELECT p.room FROM talk_versions p WHERE p.uid = v.uid AND p.version = v.version - 1), '–') || ' → ' || coalesce(v.room, '–') || '; ' ELSE '' END ||
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
  (SELECT p.title FROM talk_versions p WHERE p.uid = v.uid AND p.version = v.version - 1)
    AS previous_title,
  (SELECT p.dtstart FROM talk_versions p WHERE p.uid = v.uid AND p.version = v.version - 1)
    AS previous_dtstart,
  (SELECT p.dtend FROM talk_versions p WHERE p.uid = v.uid AND p.version = v.version - 1)
    AS previous_dtend,
  v.changed_fields, v.status, v.fetch_id
FROM talk_versions v;

-- The same expressions as talk_changes, for the changes for people only.
CREATE VIEW [recent_changes] AS SELECT
  observed_at, title, speaker, series_name, change_kind, what_changed, dtstart, kinds,
  automatic, previous_seen_at, uid, version, talk_url
FROM talk_changes
WHERE change != 'new' AND automatic = 0;

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
