-- 0021_feeds_in_natural_order: feed_health lists feeds whose names end in a number in the
-- order of that number (S2 before S10), failing feeds still first. Same columns and rows.
-- rtrim() takes the trailing digits off, so names that differ only in them sort by their
-- length, then as text.

DROP VIEW IF EXISTS [feed_health];

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
     AND (y.started_unix >= CAST(strftime('%s', 'now', '-1 day') AS INTEGER)
          OR y.started_unix IS NULL
             AND y.started_at >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 day')))
    AS polls_24h,
  (SELECT count(*) FROM fetches y WHERE y.feed_id = f.id AND y.outcome = 'error'
     AND (y.started_unix >= CAST(strftime('%s', 'now', '-1 day') AS INTEGER)
          OR y.started_unix IS NULL
             AND y.started_at >= strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 day')))
    AS failures_24h
FROM feeds f
LEFT JOIN fetches x ON x.id = (SELECT max(id) FROM fetches WHERE feed_id = f.id)
ORDER BY f.consecutive_failures DESC, rtrim(f.name, '0123456789'), length(f.name), f.name;
