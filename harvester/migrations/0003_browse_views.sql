-- 0003_browse_views: frozen SQL of the shipped migration of the same name. Never edit: add a new file.
-- The views behind the Datasette pages: upcoming talks, changes, feed health, ...

CREATE VIEW [upcoming_talks] AS SELECT 
    t.uid, t.dtstart, t.dtend, t.title, t.speaker, t.series_id, t.series_name, t.room,
    t.talk_url, t.livestream_url, t.version, t.changed_at
FROM talks t
WHERE t.status = 'active' AND coalesce(t.counter, 0) >= 0 AND coalesce(t.dtend, t.dtstart) >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now');

CREATE VIEW [talks_this_week] AS SELECT 
    t.uid, t.dtstart, t.dtend, t.title, t.speaker, t.series_id, t.series_name, t.room,
    t.talk_url, t.livestream_url, t.version, t.changed_at
FROM talks t
WHERE t.status = 'active' AND coalesce(t.counter, 0) >= 0
  AND t.dtstart >= strftime('%Y-%m-%dT00:00:00+00:00', 'now', 'weekday 0', '-6 days') AND t.dtstart < strftime('%Y-%m-%dT00:00:00+00:00', 'now', 'weekday 0', '+1 day');

CREATE VIEW [talk_changes] AS SELECT
  v.observed_at, v.uid, v.version, v.change,
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
  v.title, v.speaker, v.series_id, v.series_name, v.dtstart, v.dtend, v.room, v.talk_url,
  p.title AS previous_title, p.dtstart AS previous_dtstart, p.dtend AS previous_dtend,
  v.changed_fields, v.status, v.fetch_id
FROM talk_versions v
LEFT JOIN talk_versions p ON p.uid = v.uid AND p.version = v.version - 1;

CREATE VIEW [recent_changes] AS SELECT observed_at, uid, change_kind, what_changed, title, series_name, dtstart, speaker,
       version, talk_url
FROM talk_changes
WHERE change != 'new';

CREATE VIEW [rescheduled_talks] AS SELECT
  c.observed_at AS rescheduled_at, c.uid, c.title, c.series_name,
  c.previous_dtstart AS old_start, c.dtstart AS new_start,
  CASE
    WHEN minutes % 1440 = 0 THEN printf('%+d days', minutes / 1440)
    WHEN minutes % 60 = 0 THEN printf('%+d h', minutes / 60)
    ELSE printf('%+d min', minutes) END AS moved_by,
  t.dtstart AS current_start, t.status AS current_status, c.version, c.talk_url
FROM (
  SELECT *, CAST(round((julianday(dtstart) - julianday(previous_dtstart)) * 1440) AS INTEGER)
    AS minutes
  FROM talk_changes
  WHERE change != 'new' AND previous_dtstart IS NOT NULL
    AND instr(changed_fields, '"dtstart"') > 0
) c
JOIN talks t ON t.uid = c.uid;

CREATE VIEW [cancelled_talks] AS SELECT 
    t.uid, t.dtstart, t.dtend, t.title, t.speaker, t.series_id, t.series_name, t.room,
    t.talk_url, t.livestream_url, t.removed_at, t.version
FROM talks t
WHERE t.status = 'removed' AND coalesce(t.dtend, t.dtstart) >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now');

CREATE VIEW [feed_health] AS SELECT
  f.id, f.name, f.kind, f.url,
  CASE
    WHEN NOT f.enabled THEN 'disabled'
    WHEN f.last_fetched_at IS NULL THEN 'never polled'
    WHEN f.consecutive_failures > 0 THEN 'failing'
    ELSE 'ok' END AS health,
  f.last_fetched_at AS last_poll, f.last_outcome, f.last_success_at AS last_success,
  f.consecutive_failures, f.last_error,
  (SELECT count(*) FROM feed_talks ft WHERE ft.feed_id = f.id AND ft.present = 1) AS talks,
  x.events AS last_events, x.new AS last_new, x.changed AS last_changed,
  x.removed AS last_removed, x.duration_ms AS last_duration_ms,
  (SELECT count(*) FROM fetches y WHERE y.feed_id = f.id
     AND y.started_at >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 day')) AS polls_24h,
  (SELECT count(*) FROM fetches y WHERE y.feed_id = f.id AND y.outcome = 'error'
     AND y.started_at >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 day')) AS failures_24h
FROM feeds f
LEFT JOIN fetches x ON x.id = (SELECT max(id) FROM fetches WHERE feed_id = f.id)
ORDER BY f.consecutive_failures DESC, f.name;
