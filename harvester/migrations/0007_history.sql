-- 0007_history: history that means something (contract, Revision 2).
-- talk_versions.kinds: JSON list of the kinds of change against the previous version, in
--   the contract's order; [] for `new`, ["status"] for `removed` and `restored`.
-- talk_versions.automatic / automatic_reason: 1 and `livestream_posted` or
--   `livestream_expired` when the site made the change by itself, on its clock.
-- talk_versions.previous_seen_at: the last time the archive saw the previous version's
--   content; the change happened in (previous_seen_at, observed_at].
-- talks.removed_reason: `absent` (rule 5) or `feed_gone` (rule 5b); NULL while active.
-- feeds.gone_since: the first poll of the current run of 404/410 answers (rule 5b).
-- Versions archived before this migration get their kinds, automatic flag and bounds from
-- the snapshots and polls already stored (the functions are the harvester's own rules,
-- registered on the connection that migrates: see harvester._schema).

ALTER TABLE "talk_versions" ADD COLUMN "kinds" TEXT;
ALTER TABLE "talk_versions" ADD COLUMN "automatic" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "talk_versions" ADD COLUMN "automatic_reason" TEXT;
ALTER TABLE "talk_versions" ADD COLUMN "previous_seen_at" TEXT;
ALTER TABLE "talks" ADD COLUMN "removed_reason" TEXT;
ALTER TABLE "feeds" ADD COLUMN "gone_since" TEXT;
