-- 0003_talks_fts: frozen SQL of the shipped migration of the same name. Never edit: add a new file.
-- Full-text search over talks (title, speakers, abstract, series), filled on migrate.

CREATE VIRTUAL TABLE "talks_fts" USING FTS5 (
    "title", "speaker", "abstract", "series_name",
    tokenize='porter unicode61 remove_diacritics 2',
    content="talks"
);

INSERT INTO "talks_fts" (rowid, "title", "speaker", "abstract", "series_name")
    SELECT rowid, "title", "speaker", "abstract", "series_name" FROM "talks";

CREATE TRIGGER "talks_ai" AFTER INSERT ON "talks" BEGIN
  INSERT INTO "talks_fts" (rowid, "title", "speaker", "abstract", "series_name") VALUES (new.rowid, new."title", new."speaker", new."abstract", new."series_name");
END;

CREATE TRIGGER "talks_ad" AFTER DELETE ON "talks" BEGIN
  INSERT INTO "talks_fts" ("talks_fts", rowid, "title", "speaker", "abstract", "series_name") VALUES('delete', old.rowid, old."title", old."speaker", old."abstract", old."series_name");
END;

CREATE TRIGGER "talks_au" AFTER UPDATE ON "talks" BEGIN
  INSERT INTO "talks_fts" ("talks_fts", rowid, "title", "speaker", "abstract", "series_name") VALUES('delete', old.rowid, old."title", old."speaker", old."abstract", old."series_name");
  INSERT INTO "talks_fts" (rowid, "title", "speaker", "abstract", "series_name") VALUES (new.rowid, new."title", new."speaker", new."abstract", new."series_name");
END;

DROP TRIGGER [talks_au];

CREATE TRIGGER [talks_au] AFTER UPDATE OF [title], [speaker], [abstract], [series_name]
ON [talks] BEGIN
  INSERT INTO [talks_fts] ([talks_fts], rowid, [title], [speaker], [abstract], [series_name])
    VALUES ('delete', old.rowid, old.[title], old.[speaker], old.[abstract], old.[series_name]);
  INSERT INTO [talks_fts] (rowid, [title], [speaker], [abstract], [series_name])
    VALUES (new.rowid, new.[title], new.[speaker], new.[abstract], new.[series_name]);
END;
