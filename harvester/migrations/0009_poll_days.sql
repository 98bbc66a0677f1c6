-- 0009_poll_days: storage that grows with what changed, not with time (issue 12, item 5).
-- Unchanged polls (outcome `unchanged` / `not_modified`, nothing new, changed, removed or
-- restored) older than `[archive] keep_polls` leave `fetches` for one row per feed per UTC
-- day here: how many there were and when the first and the last started. Failed polls and
-- polls that changed something stay in `fetches` for good, as does each feed's latest poll.
-- talk_versions.fetch_id gets an index: a deleted poll is checked against it (foreign keys).

CREATE TABLE "poll_days" (
   "feed_id" INTEGER NOT NULL REFERENCES "feeds"("id"),
   "day" TEXT NOT NULL,
   "polls" INTEGER NOT NULL,
   "unchanged" INTEGER NOT NULL,
   "not_modified" INTEGER NOT NULL,
   "first_started_at" TEXT NOT NULL,
   "last_started_at" TEXT NOT NULL,
   "last_finished_at" TEXT,
   "bytes" INTEGER,
   "duration_ms" INTEGER,
   "events" INTEGER,
   PRIMARY KEY ("feed_id", "day")
) WITHOUT ROWID;

CREATE INDEX "idx_talk_versions_fetch_id"
    ON "talk_versions" ("fetch_id");

-- Every poll per feed and UTC day, whether still in `fetches` or compacted.
CREATE VIEW [poll_history] AS
SELECT feed_id, day, sum(polls) AS polls, sum(unchanged) AS unchanged,
       sum(not_modified) AS not_modified, sum(changed) AS changed, sum(errors) AS errors,
       min(first_started_at) AS first_started_at, max(last_started_at) AS last_started_at
FROM (
  SELECT feed_id, day, polls, unchanged, not_modified, 0 AS changed, 0 AS errors,
         first_started_at, last_started_at
  FROM poll_days
  UNION ALL
  SELECT feed_id, substr(started_at, 1, 10) AS day, 1, outcome = 'unchanged',
         outcome = 'not_modified', outcome = 'changed', outcome = 'error', started_at, started_at
  FROM fetches
)
GROUP BY feed_id, day;
