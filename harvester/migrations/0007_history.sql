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

-- The versions archived before: their bounds from the polls stored, their kinds and
-- automatic flag from consecutive snapshots.
UPDATE "talk_versions" AS v SET "previous_seen_at" = (
    SELECT max(f."finished_at") FROM "feed_talks" AS ft
    JOIN "fetches" AS f ON f."feed_id" = ft."feed_id"
    WHERE ft."uid" = v."uid" AND f."outcome" != 'error' AND f."finished_at" < v."observed_at"
)
WHERE v."version" > 1;

UPDATE "talk_versions" AS v SET "kinds" = CASE
    WHEN v."change" = 'new' THEN '[]'
    WHEN v."change" IN ('removed', 'restored') THEN '["status"]'
    ELSE harvester_change_kinds(
      (SELECT json_object('series_id', p."series_id", 'counter', p."counter", 'title', p."title", 'speaker', p."speaker", 'speakers', p."speakers", 'series_name', p."series_name", 'abstract', p."abstract", 'room', p."room", 'talk_url', p."talk_url", 'livestream_url', p."livestream_url", 'comments', p."comments", 'dtstart', p."dtstart", 'dtend', p."dtend", 'summary', p."summary", 'description', p."description", 'location', p."location", 'urls', p."urls") FROM "talk_versions" AS p
      WHERE p."uid" = v."uid" AND p."version" = v."version" - 1),
      json_object('series_id', v."series_id", 'counter', v."counter", 'title', v."title", 'speaker', v."speaker", 'speakers', v."speakers", 'series_name', v."series_name", 'abstract', v."abstract", 'room', v."room", 'talk_url', v."talk_url", 'livestream_url', v."livestream_url", 'comments', v."comments", 'dtstart', v."dtstart", 'dtend', v."dtend", 'summary', v."summary", 'description', v."description", 'location', v."location", 'urls', v."urls"))
  END;

UPDATE "talk_versions" AS v SET "automatic_reason" = harvester_automatic_reason(
    v."kinds",
    (SELECT json_object('series_id', p."series_id", 'counter', p."counter", 'title', p."title", 'speaker', p."speaker", 'speakers', p."speakers", 'series_name', p."series_name", 'abstract', p."abstract", 'room', p."room", 'talk_url', p."talk_url", 'livestream_url', p."livestream_url", 'comments', p."comments", 'dtstart', p."dtstart", 'dtend', p."dtend", 'summary', p."summary", 'description', p."description", 'location', p."location", 'urls', p."urls") FROM "talk_versions" AS p
      WHERE p."uid" = v."uid" AND p."version" = v."version" - 1),
    json_object('series_id', v."series_id", 'counter', v."counter", 'title', v."title", 'speaker', v."speaker", 'speakers', v."speakers", 'series_name', v."series_name", 'abstract', v."abstract", 'room', v."room", 'talk_url', v."talk_url", 'livestream_url', v."livestream_url", 'comments', v."comments", 'dtstart', v."dtstart", 'dtend', v."dtend", 'summary', v."summary", 'description', v."description", 'location', v."location", 'urls', v."urls"),
    v."observed_at",
    v."previous_seen_at")
WHERE v."change" = 'changed';

UPDATE "talk_versions" SET "automatic" = ("automatic_reason" IS NOT NULL);

UPDATE "talks" SET "removed_reason" = 'absent' WHERE "status" = 'removed';
