-- 0024_weekly_digest: a `[[notify]]` target with `digest = "weekly"` gets one message a
-- week through the same outbox, `notifications`. Its row has `uid` = 'digest/<week>' (the
-- ISO week listed, in the target's timezone, e.g. 'digest/2026-W50'), `version` 0, and
-- the message itself in `title` and `body` (made when the row is queued, so that a retry
-- sends what was queued). UNIQUE (uid, version, target) keeps it to one row per target
-- and week, whichever process queues it. Per-version rows leave both NULL.

ALTER TABLE "notifications" ADD COLUMN "title" TEXT;
ALTER TABLE "notifications" ADD COLUMN "body" TEXT;
