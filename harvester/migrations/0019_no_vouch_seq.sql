-- 0019_no_vouch_seq: the body shortcut checks the feed's talks by the one join again.
-- 0016's counters (`feeds.state_seq`, moved by triggers on talk_state, against
-- `feeds.vouched_seq`) were a second record of what the join of feed_talk_state and
-- talk_state says, kept to save about 1.7 ms on an unchanged poll of a 1,000-talk feed
-- (docs/performance.md): the triggers and the two columns go.

DROP TRIGGER IF EXISTS "talk_state_seq_update";
DROP TRIGGER IF EXISTS "talk_state_seq_delete";
ALTER TABLE "feeds" DROP COLUMN "vouched_seq";
ALTER TABLE "feeds" DROP COLUMN "state_seq";
