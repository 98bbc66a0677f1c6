-- 0005_daemon_heartbeat: frozen SQL of the shipped migration of the same name. Never edit: add a new file.
-- One row (id 1): the `harvester run` daemon that last used this archive.

CREATE TABLE "daemon" (
   "id" INTEGER PRIMARY KEY,
   "pid" INTEGER,
   "host" TEXT,
   "version" TEXT,
   "config" TEXT,
   "feeds" INTEGER,
   "started_at" TEXT,
   "heartbeat_at" TEXT,
   "heartbeat_every" REAL,
   "stopped_at" TEXT
);
