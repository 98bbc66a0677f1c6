"""`harvester snapshot`: a consistent, checked copy made while a sync writes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harvester.cli.serve import load_metadata, shipped_metadata
from tests.conftest import Harvester, write_config
from tests.sitesim import Site


@pytest.mark.slow
def test_snapshot_while_a_sync_writes(workdir: Path, site: Site) -> None:
    site.personal["tok3nSECRET1234"] = ["NumThy"]
    personal = f"{site.base_url}/user/ics/tok3nSECRET1234"
    config = write_config(workdir, [site.feed_url("AlgGeom"), personal])
    harvester = Harvester(config)
    assert harvester("sync").exit_code == 0
    stop = threading.Event()

    def keep_syncing() -> None:  # another process, as the daemon would be
        n = 0
        while not stop.is_set():
            n += 1
            site.series["AlgGeom"].talks[2].title = f"Rings, take {n}"
            subprocess.run(
                [sys.executable, "-m", "harvester", "--config", str(config), "-q", "sync"],
                capture_output=True,
                check=False,
                timeout=60,
            )

    writer = threading.Thread(target=keep_syncing)
    writer.start()
    try:
        copies = []
        for n in range(3):
            out = workdir / f"copy{n}.db"
            result = harvester("snapshot", str(out))
            assert result.exit_code == 0, result.output
            assert "1 personal left out" in result.output
            copies.append(out)
    finally:
        stop.set()
        writer.join()
    for out in copies:
        conn = sqlite3.connect(out)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        uids = {row[0] for row in conn.execute("SELECT uid FROM talks")}
        assert uids == {"AlgGeom/1", "AlgGeom/2", "AlgGeom/3"}  # NumThy came by the personal feed
        assert conn.execute("SELECT count(*) FROM feeds WHERE kind = 'personal'").fetchone() == (0,)
        assert b"tok3n" not in out.read_bytes()
        conn.close()
    # with --include-personal, they stay; an existing copy is not overwritten unasked
    assert harvester("snapshot", str(copies[0])).exit_code == 1
    assert harvester("snapshot", "--force", "--include-personal", str(copies[0])).exit_code == 0
    conn = sqlite3.connect(copies[0])
    assert conn.execute("SELECT count(*) FROM talks").fetchone()[0] == 4
    conn.close()


@pytest.mark.slow
def test_datasette_serves_the_copy_immutable(harvester: Harvester) -> None:
    from datasette.app import Datasette

    assert harvester("sync").exit_code == 0
    out = harvester.db_path.parent / "public.db"
    assert harvester("snapshot", str(out)).exit_code == 0
    metadata = load_metadata(shipped_metadata())
    metadata["databases"]["public"] = metadata["databases"].pop("archive")
    ds = Datasette(immutables=[str(out)], metadata=metadata)
    response = asyncio.run(ds.client.get("/public/upcoming_talks.json?_shape=array"))
    assert response.status_code == 200
    assert {row["uid"] for row in response.json()} == {"AlgGeom/2", "AlgGeom/3", "NumThy/1"}
    assert asyncio.run(ds.client.get("/public/talk_history?uid=AlgGeom%2F2")).status_code == 200
    assert not Path(f"{out}-wal").exists()
