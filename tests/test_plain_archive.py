"""The archive reads with any SQLite tool, nothing of ours loaded (contract, Revision 3).

Two archives, both made by the real CLI: a fresh one (a sync of the local site and an
import of the real sample), and one migrated from the last release whose `raw` was
computed by a function (tests/fixtures/archive_0017.sql, made by make_archive_0017.py).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harvester import migrations
from tests.conftest import ROOT, SAMPLE, Harvester, write_config
from tests.sitesim import Site
from tests.test_serve import METADATA, free_port, serving

FIXTURES = ROOT / "tests" / "fixtures"
DUMP_0017 = FIXTURES / "archive_0017.sql"
RAW_0017 = FIXTURES / "archive_0017_raw.json"  # version id → [sha256, length] of its raw


def load_dump(path: Path) -> None:
    """An archive as the release before 0018 left it (loading it needs that release's
    function: its `raw` was a generated column calling harvester_raw)."""
    conn = sqlite3.connect(path)
    migrations.register(conn)
    conn.executescript(DUMP_0017.read_text(encoding="utf-8"))
    conn.close()


@pytest.fixture(params=["fresh", "migrated"])
def archive(
    request: pytest.FixtureRequest, workdir: Path, site: Site, harvester: Harvester
) -> Path:
    if request.param == "migrated":
        load_dump(harvester.db_path)
    assert harvester("sync").exit_code == 0
    assert harvester("import", str(SAMPLE)).exit_code == 0
    return harvester.db_path


def bare(path: Path) -> sqlite3.Connection:
    """A connection as any SQLite user has it: read-only, no function of ours."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def tables_and_views(conn: sqlite3.Connection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
        )
    ]


def test_plain_sqlite_reads_every_table_and_view_and_checks_the_file(archive: Path) -> None:
    conn = bare(archive)
    names = tables_and_views(conn)
    assert {"talk_versions", "talks", "feeds", "fetches", "talks_fts"} <= set(names)
    for name in names:
        conn.execute(f'SELECT * FROM "{name}"').fetchall()
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    raws = [row[0] for row in conn.execute("SELECT raw FROM talk_versions WHERE raw IS NOT NULL")]
    assert raws and all(zlib.decompress(raw).startswith(b"BEGIN:VEVENT") for raw in raws)


# Words before "(" in a schema's SQL that are not functions.
_NOT_FUNCTIONS = {
    "as", "in", "exists", "values", "on", "using", "fts5", "key", "references", "check",
    "table", "index", "over", "filter", "and", "or", "not", "when", "then", "select",
    "from", "where", "begin", "default", "unique", "primary", "join", "else", "view", "cast",
}  # fmt: skip


def test_no_schema_object_calls_a_function_plain_sqlite_lacks(archive: Path) -> None:
    """A trigger or a CHECK would fail only when a write reaches it: read the schema."""
    conn = bare(archive)
    known = {row[0].lower() for row in conn.execute("SELECT name FROM pragma_function_list")}
    names = {n.lower() for n in tables_and_views(conn)}
    called: set[str] = set()
    for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"):
        without_strings = re.sub(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]", "''", sql)
        called |= {w.lower() for w in re.findall(r"\b([A-Za-z_]\w*)\s*\(", without_strings)}
    unknown = called - known - _NOT_FUNCTIONS - names - {f"{n}_new" for n in names}
    assert not unknown, f"the schema calls functions plain SQLite lacks: {sorted(unknown)}"
    assert {"replace", "coalesce"} <= called  # the check reads what it should


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 shell on this machine")
def test_the_sqlite3_shell_reads_and_checks_it(archive: Path) -> None:
    names = tables_and_views(bare(archive))
    script = "PRAGMA integrity_check;\nPRAGMA quick_check;\n" + "".join(
        f'SELECT count(*) FROM (SELECT * FROM "{name}");\n' for name in names
    )
    shell = subprocess.run(
        ["sqlite3", "-readonly", "-bail", str(archive)],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shell.returncode == 0, shell.stderr
    lines = shell.stdout.split()
    assert lines[:2] == ["ok", "ok"] and len(lines) == 2 + len(names)


def test_migration_keeps_each_raw_exactly_as_the_function_returned_it(
    workdir: Path, site: Site
) -> None:
    """Row by row: the release before 0018 computed `raw` with harvester_raw; each
    version's plain `raw` is now exactly that text (its hash and length, kept when the
    dump was made), and every other column is as it was."""
    db = workdir / "archive.db"
    load_dump(db)
    with sqlite3.connect(db) as conn:
        migrations.register(conn)
        columns = [r[1] for r in conn.execute("PRAGMA table_xinfo(talk_versions)")]
        kept = [c for c in columns if c not in ("raw", "raw_z")]
        names = ", ".join(f'"{c}"' for c in kept)
        before = conn.execute(f"SELECT {names} FROM talk_versions ORDER BY id").fetchall()
    conn.close()
    harvester = Harvester(write_config(workdir, [site.feed_url("AlgGeom")]))
    assert harvester("sync").exit_code == 0  # the real CLI opens it and migrates
    conn = bare(db)
    assert (
        conn.execute(
            f"SELECT {names} FROM talk_versions WHERE id <= ? ORDER BY id",
            [max(r[0] for r in before)],
        ).fetchall()
        == before
    )
    expected = json.loads(RAW_0017.read_text(encoding="utf-8"))
    found = {}
    for id_, raw in conn.execute("SELECT id, raw FROM talk_versions WHERE id <= ?", [len(before)]):
        assert isinstance(raw, bytes)
        text = zlib.decompress(raw)
        found[str(id_)] = [hashlib.sha256(text).hexdigest(), len(text.decode("utf-8"))]
    assert found == expected
    assert "raw_z" not in [r[1] for r in conn.execute("PRAGMA table_xinfo(talk_versions)")]


# --- Datasette with nothing of ours ---------------------------------------------------------

# `datasette`, with this project's plugin (installed with it, an entry point) unregistered.
_PLAIN_DATASETTE = (
    "import sys\n"
    "from datasette.plugins import pm\n"
    "pm.unregister(name='seminar_harvester')\n"
    "from datasette.cli import cli\n"
    "sys.argv[0] = 'datasette'\n"
    "cli()\n"
)


@pytest.fixture
def plain_datasette(archive: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HARVESTER_DB", "HARVESTER_CONFIG")}
    command = [sys.executable, "-c", _PLAIN_DATASETTE, "serve", str(archive), "-m", str(METADATA)]
    with serving(command, free_port(), cwd=archive.parent, env=env) as (base, _process):
        plugins = httpx.get(f"{base}/-/plugins.json", timeout=10).json()
        assert not [p for p in plugins if "harvester" in p["name"]], plugins
        yield base


@pytest.mark.slow
def test_a_plain_datasette_serves_every_table_view_and_canned_query(
    plain_datasette: str, archive: Path
) -> None:
    metadata = httpx.get(f"{plain_datasette}/-/metadata.json", timeout=10).json()
    queries = list(metadata["databases"]["archive"]["queries"])
    assert "changes_feed" in queries
    pages = [*tables_and_views(bare(archive)), *queries]
    with httpx.Client(base_url=plain_datasette, timeout=30) as client:
        for page in pages:
            for suffix in ("", ".json"):
                answer = client.get(f"/archive/{page}{suffix}")
                assert answer.status_code == 200, (page, suffix, answer.text[:300])
        rows = client.get("/archive/talk_versions.json?_shape=array&_size=max").json()
    assert rows and all(row["raw"] is not None for row in rows if row["change"] != "removed")


def harvester_imports(path: Path) -> set[str]:
    """The harvester modules a file imports (`from harvester import x` counts as x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "harvester":
            found |= {f"harvester.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name.startswith("harvester")}


def test_migrations_carry_their_own_helpers_and_import_no_live_code() -> None:
    """An old archive migrates with the rules of the migration's day, whatever today's
    code says: the frozen helpers, and the runner, import nothing else of the harvester."""
    files = [*(ROOT / "harvester" / "migrations").glob("*.py"), ROOT / "harvester" / "_schema.py"]
    for path in files:
        live = {n for n in harvester_imports(path) if not n.startswith("harvester.migrations")}
        assert not live, f"{path.name} imports live code: {sorted(live)}"
