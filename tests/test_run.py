"""The steps around the polls (`harvester.run`) are the same for a sync and the daemon."""

# ruff: noqa: F811  (the fixtures of test_discover, imported to be shared)
from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlite_utils

from harvester.archive import ANALYZED_AT_KEY, CHECKED_AT_KEY, open_archive
from harvester.config import load_config
from harvester.daemon import Daemon
from tests.apisim import Api
from tests.conftest import Harvester
from tests.test_discover import api, h  # noqa: F401

UPKEEP_MARKS = {CHECKED_AT_KEY, ANALYZED_AT_KEY}


def upkeep_done(path: Path) -> tuple[set[str], dict[str, list[str]]]:
    db = sqlite_utils.Database(path)
    marks = {r["key"] for r in db.query("SELECT key FROM archive_meta")} & UPKEEP_MARKS
    series = {r["shortname"]: json.loads(r["topics"]) for r in db.query("SELECT * FROM series")}
    return marks, series


@pytest.mark.slow
def test_the_daemons_hourly_upkeep_is_a_syncs(h: Harvester, api: Api, workdir: Path) -> None:
    assert h("feeds", "add", "--no-check", "NumThy").exit_code == 0
    synced = workdir / "synced.db"
    result = h("--db", str(synced), "sync")
    assert result.exit_code == 0, result.output
    config = load_config(h.config)
    open_archive(h.db_path).close()
    assert upkeep_done(h.db_path) == (set(), {})
    daemon = Daemon(config, config_path=str(h.config), db_override=None)
    try:
        daemon._upkeep()
    finally:
        daemon.client.close()
    # the integrity check, the series metadata and the statistics, as after a sync
    assert upkeep_done(h.db_path) == upkeep_done(synced) == (UPKEEP_MARKS, {"NumThy": ["math_NT"]})
