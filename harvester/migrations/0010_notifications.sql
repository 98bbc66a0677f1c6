-- 0010_notifications: the outbox of `[[notify]]` targets.
-- `notify_targets`: one row per target the config named, keyed by an HMAC-SHA256 of its
-- Apprise URL with the archive's salt (the URL itself, a secret, is never stored), with
-- its filters, so that a poll's own transaction can decide what to queue.
-- `notifications`: one row per (version, target) to tell; written in the poll's
-- transaction, delivered after it. `status`: pending (not delivered yet, maybe retrying),
-- sent, or failed (gave up after the configured number of attempts).

CREATE TABLE "notify_targets" (
   "key" TEXT PRIMARY KEY,
   "series" TEXT,
   "kinds" TEXT NOT NULL,
   "upcoming_only" INTEGER NOT NULL DEFAULT 1,
   "active" INTEGER NOT NULL DEFAULT 1,
   "updated_at" TEXT
);

CREATE TABLE "notifications" (
   "id" INTEGER PRIMARY KEY,
   "uid" TEXT NOT NULL,
   "version" INTEGER NOT NULL,
   "target" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "status" TEXT NOT NULL DEFAULT 'pending',
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "next_attempt_at" TEXT,
   "claimed_until" TEXT,
   "last_error" TEXT,
   "sent_at" TEXT,
   UNIQUE ("uid", "version", "target")
);

CREATE INDEX "idx_notifications_status" ON "notifications" ("status", "next_attempt_at");
