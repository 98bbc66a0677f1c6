-- 0016_vouch_seq: an unchanged poll confirms its feed's talks without reading them (issue
-- 12). The body shortcut may archive a poll without a parse only while every talk the feed
-- carries is still active with the fingerprint the feed gave it; that took a join over
-- all of the feed's talks, every poll. Now each feed counts the changes to its talks'
-- state (`state_seq`, moved by triggers on talk_state for every feed that has or had the
-- talk), and a poll that checked them by the join records the count it saw
-- (`vouched_seq`). While the two are equal nothing of the feed's talks changed, and the
-- check is one row. A poll that changes the feed's memberships clears `vouched_seq`.

ALTER TABLE "feeds" ADD COLUMN "state_seq" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "feeds" ADD COLUMN "vouched_seq" INTEGER;

CREATE TRIGGER "talk_state_seq_update" AFTER UPDATE OF "fingerprint", "status" ON "talk_state"
WHEN old."fingerprint" IS NOT new."fingerprint" OR old."status" IS NOT new."status" BEGIN
  UPDATE "feeds" SET "state_seq" = "state_seq" + 1
  WHERE "id" IN (SELECT "feed_id" FROM "feed_talk_state" WHERE "uid" = new."uid");
END;

CREATE TRIGGER "talk_state_seq_delete" AFTER DELETE ON "talk_state" BEGIN
  UPDATE "feeds" SET "state_seq" = "state_seq" + 1
  WHERE "id" IN (SELECT "feed_id" FROM "feed_talk_state" WHERE "uid" = old."uid");
END;
