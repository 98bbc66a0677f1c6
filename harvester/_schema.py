"""The archive schema: frozen SQL migrations in `harvester/migrations/`, applied in name order.

Each `NNNN_name.sql` file is applied once, in one transaction with its record in
`_sqlite_migrations` (the table sqlite-utils' Migrations used for the releases before
these files, with the same migration set and names, so their archives carry on without
re-running anything). Never edit a file that has shipped: add a new one.

Nothing here writes unless a migration is pending: `pending()` only reads.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files

from harvester import migrations

MIGRATION_SET = "harvester"
MIGRATIONS_TABLE = "_sqlite_migrations"

# The views behind the Datasette pages (created by 0003_browse_views.sql).
VIEWS: tuple[str, ...] = (
    "upcoming_talks",
    "talks_this_week",
    "talk_changes",
    "recent_changes",
    "rescheduled_talks",
    "cancelled_talks",
    "feed_health",
)

_CREATE_MIGRATIONS_TABLE = (
    f'CREATE TABLE "{MIGRATIONS_TABLE}" (\n'
    '   "id" INTEGER PRIMARY KEY,\n'
    '   "migration_set" TEXT,\n'
    '   "name" TEXT,\n'
    '   "applied_at" TEXT\n'
    ")",
    f'CREATE UNIQUE INDEX "idx_{MIGRATIONS_TABLE}_migration_set_name"\n'
    f'    ON "{MIGRATIONS_TABLE}" ("migration_set", "name")',
)


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    def statements(self) -> list[str]:
        return split_statements(self.sql)


@cache
def shipped() -> tuple[Migration, ...]:
    """Every migration shipped with this release, in name (= application) order."""
    folder = files("harvester").joinpath("migrations")
    found = [
        Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return tuple(sorted(found, key=lambda m: m.name))


def split_statements(script: str) -> list[str]:
    """The statements of an SQL script (triggers' inner `;` kept), comments dropped."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {current[:60]!r}")
    return statements


def _has_migrations_table(conn: sqlite3.Connection) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, [MIGRATIONS_TABLE]).fetchone() is not None


def applied(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations of our set recorded in the archive (read only)."""
    if not _has_migrations_table(conn):
        return []
    return [
        row[0]
        for row in conn.execute(
            f"SELECT name FROM [{MIGRATIONS_TABLE}] WHERE migration_set = ? ORDER BY id",  # noqa: S608
            [MIGRATION_SET],
        )
    ]


def foreign_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables of a file that is not an archive (empty for an archive or an empty file)."""
    if applied(conn):
        return []
    return [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]


def pending(conn: sqlite3.Connection, upto: str | None = None) -> list[Migration]:
    """The shipped migrations not yet applied (up to and including `upto`, if given)."""
    done = set(applied(conn))
    return [m for m in shipped() if m.name not in done and (upto is None or m.name <= upto)]


# Migrations that rebuild a table (SQLite cannot change a column into a generated one):
# the table's indexes and triggers, whichever migrations made them, are made again after.
_REBUILDS = {"0012_textstore": "talk_versions", "0018_plain_raw": "talk_versions"}


def _dependents(conn: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    """(name, sql) of the indexes and triggers of `table` that a DROP TABLE takes along."""
    return [
        (row[0], row[1])
        for row in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
            " AND type IN ('index', 'trigger') ORDER BY type = 'trigger', rowid",
            [table],
        )
    ]


def _recreate(conn: sqlite3.Connection, kept: list[tuple[str, str]]) -> None:
    for name, sql in kept:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [name]).fetchone():
            conn.execute(sql)


def apply_pending(conn: sqlite3.Connection, upto: str | None = None) -> list[str]:
    """Apply what is pending, inside the caller's write transaction; returns the names."""
    todo = pending(conn, upto)
    if not todo:
        return []
    if not _has_migrations_table(conn):
        for statement in _CREATE_MIGRATIONS_TABLE:
            conn.execute(statement)
    # The functions shipped migrations call (frozen copies of the rules of their day), on
    # the connection that migrates only: no schema object of an archive calls one.
    migrations.register(conn)
    for migration in todo:
        rebuilt = _REBUILDS.get(migration.name)
        kept = _dependents(conn, rebuilt) if rebuilt else []
        for statement in migration.statements():
            conn.execute(statement)
        _recreate(conn, kept)
        conn.execute(
            f"INSERT INTO [{MIGRATIONS_TABLE}] (migration_set, name, applied_at)"  # noqa: S608
            " VALUES (?, ?, ?)",
            [MIGRATION_SET, migration.name, str(datetime.now(UTC))],
        )
    return [m.name for m in todo]
