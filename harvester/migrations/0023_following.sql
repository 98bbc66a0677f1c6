-- 0023_following: series a `[[follow]]` topic brings in, and notification filters on words
-- and speakers (issue 23).
-- `series.followed_since`: when a `[[follow]]` entry first brought the series in (the
-- series refresh found it in the entry's topic), NULL for a series only the config names;
-- `followed_by`: which entry, as `topic=math_NT` or `topic=math_NT institution=MIT`;
-- `left_at`: when it was no longer in any followed topic (then it is no longer polled;
-- its talks and their history stay). A series that comes back gets a new followed_since.
-- `notify_targets.match`: the target's full-text query (FTS5 syntax, over talks_fts);
-- `speakers`: a JSON list of the names it follows, folded (lower case, no accents).

ALTER TABLE "series" ADD COLUMN "followed_since" TEXT;
ALTER TABLE "series" ADD COLUMN "followed_by" TEXT;
ALTER TABLE "series" ADD COLUMN "left_at" TEXT;

ALTER TABLE "notify_targets" ADD COLUMN "match" TEXT;
ALTER TABLE "notify_targets" ADD COLUMN "speakers" TEXT;
