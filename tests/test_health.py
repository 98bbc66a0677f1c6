"""`harvester status [--check]`: failing and stale feeds, and the daemon's heartbeat."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from harvester.health import CHECK_FAILING, CHECK_OK, CHECK_STALE, human_duration
from tests.conftest import Harvester, write_config
from tests.sitesim import Site


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def set_feed(h: Harvester, name: str, **columns: object) -> None:
    db = sqlite_utils.Database(h.db_path)
    db.execute(
        "UPDATE feeds SET " + ", ".join(f"{k} = ?" for k in columns) + " WHERE name = ?",
        [*columns.values(), name],
    )
    db.conn.commit()


def set_daemon(h: Harvester, heartbeat_at: str, stopped_at: str | None = None) -> None:
    db = sqlite_utils.Database(h.db_path)
    db.table("daemon").upsert(
        {
            "id": 1,
            "pid": 4242,
            "host": "box",
            "started_at": ago(days=1),
            "heartbeat_at": heartbeat_at,
            "heartbeat_every": 30.0,
            "stopped_at": stopped_at,
        },
        pk="id",
    )
    db.conn.commit()


def test_check_is_ok_for_healthy_feeds(harvester: Harvester) -> None:
    assert harvester("sync").exit_code == 0
    result = harvester("status", "--check")
    assert result.exit_code == CHECK_OK == 0
    assert result.output == "OK: 2 feeds healthy\n"


def test_check_exits_1_for_a_failing_feed(harvester: Harvester, site: Site) -> None:
    harvester("sync")
    del site.series["NumThy"]
    harvester("sync")
    result = harvester("status", "--check")
    assert result.exit_code == CHECK_FAILING == 1
    assert result.output.startswith("FAILING: NumThy (HTTP 404 Not Found)")


def test_check_exits_4_for_a_stale_feed(harvester: Harvester) -> None:
    harvester("sync")
    # The default interval is 30m: a success 2h ago is more than 3 intervals old.
    set_feed(harvester, "AlgGeom", last_success_at=ago(hours=2))
    result = harvester("status", "--check")
    assert result.exit_code == CHECK_STALE == 4
    assert result.output.startswith("STALE: AlgGeom (last success ")
    plain = harvester("status")
    assert plain.exit_code == 0  # without --check, only failing feeds fail
    (line,) = [line for line in plain.output.splitlines() if line.startswith("AlgGeom")]
    assert "STALE: no success for 2h" in line and line.endswith("(interval 30m)")
    feeds = {f["name"]: f for f in json.loads(harvester("status", "--json").output)}
    assert feeds["AlgGeom"]["stale"] is True and feeds["AlgGeom"]["interval_s"] == 1800
    assert feeds["NumThy"]["stale"] is False

    # Failing beats stale.
    set_feed(harvester, "NumThy", last_outcome="error", last_error="HTTP 500")
    assert harvester("status", "--check").exit_code == CHECK_FAILING


def test_staleness_uses_the_feed_interval_and_only_configured_feeds(
    workdir: Path, site: Site
) -> None:
    config = write_config(
        workdir,
        [site.feed_url("AlgGeom"), site.feed_url("NumThy")],
        extra='\n[schedule]\ninterval = "10m"\n',
    )
    h = Harvester(config)
    h("sync")
    config.write_text(config.read_text() + 'interval = "6h"\n')  # the last feed: NumThy
    set_feed(h, "NumThy", last_success_at=ago(hours=2))  # < 3 × 6h
    assert h("status", "--check").exit_code == CHECK_OK
    set_feed(h, "AlgGeom", last_success_at=ago(minutes=31))  # > 3 × 10m
    assert h("status", "--check").output.startswith("STALE: AlgGeom")
    # A feed that never succeeded is judged from when it was added.
    set_feed(h, "AlgGeom", last_success_at=None, added_at=ago(minutes=20))
    assert h("status", "--check").exit_code == CHECK_OK
    # A feed no longer in the config is not scheduled, so it cannot be late.
    config.write_text(config.read_text().replace(site.feed_url("AlgGeom"), site.feed_url("X")))
    set_feed(h, "AlgGeom", last_success_at=ago(days=30))
    assert h("status", "--check").exit_code == CHECK_OK


def test_dead_daemon_is_visible(harvester: Harvester) -> None:
    harvester("sync")
    set_daemon(harvester, heartbeat_at=ago(seconds=5))
    status = harvester("status")
    assert status.output.startswith("daemon: running (pid 4242 on box since ")
    assert harvester("status", "--check").output.startswith("OK: 2 feeds healthy; daemon: running")

    set_daemon(harvester, heartbeat_at=ago(minutes=10))  # > 3 heartbeats, no clean stop
    assert harvester("status").output.startswith("daemon: NOT RUNNING: last heartbeat 10m")
    result = harvester("status", "--check")
    assert result.exit_code == CHECK_STALE
    assert result.output.startswith("DAEMON NOT RUNNING")

    set_daemon(harvester, heartbeat_at=ago(minutes=10), stopped_at=ago(minutes=10))
    assert harvester("status").output.startswith("daemon: stopped at ")
    assert harvester("status", "--check").exit_code == CHECK_OK  # a clean stop is no fault


HUMAN_TIME = r"\w{3} \d{1,2} \w{3} \d{4}, \d\d:\d\d UTC"


def test_status_says_times_as_people_read_them(harvester: Harvester) -> None:
    harvester("sync")
    set_daemon(harvester, heartbeat_at=ago(seconds=5))
    running = harvester("status").output.splitlines()[0]
    assert re.fullmatch(
        rf"daemon: running \(pid 4242 on box since {HUMAN_TIME}, heartbeat \ds ago\)", running
    ), running
    set_daemon(harvester, heartbeat_at=ago(minutes=10))
    dead = harvester("status").output.splitlines()[0]
    assert re.fullmatch(
        rf"daemon: NOT RUNNING: last heartbeat 10m ago \({HUMAN_TIME}, pid 4242 on box\)"
        " and no clean stop",
        dead,
    ), dead
    set_daemon(harvester, heartbeat_at=ago(minutes=10), stopped_at="2026-12-07T15:33:00+00:00")
    stopped = harvester("status").output.splitlines()[0]
    assert stopped == "daemon: stopped at Mon 7 Dec 2026, 15:33 UTC (pid 4242 on box)"
    set_feed(harvester, "AlgGeom", last_success_at=ago(hours=2))
    check = harvester("status", "--check").output
    assert re.match(rf"STALE: AlgGeom \(last success {HUMAN_TIME}\)", check), check
    set_feed(harvester, "AlgGeom", last_success_at=None, added_at=ago(hours=2))
    assert harvester("status", "--check").output.startswith("STALE: AlgGeom (last success never)")
    everything = harvester("status").output + check
    assert "+00:00" not in everything and not re.search(r"\d\dT\d\d", everything)


def test_status_without_a_daemon_says_nothing_of_one(harvester: Harvester) -> None:
    harvester("sync")
    assert not harvester("status").output.startswith("daemon")


def test_human_duration() -> None:
    assert [human_duration(s) for s in (0, 45, 90, 3600, 3 * 86400 + 7200 + 5)] == [
        "0s",
        "45s",
        "1m 30s",
        "1h",
        "3d 2h",
    ]


def test_feed_health_says_disabled_for_a_feed_the_config_disables(
    workdir: Path, site: Site
) -> None:
    config = write_config(workdir, [site.feed_url("AlgGeom"), site.feed_url("NumThy")])
    h = Harvester(config)
    assert h("sync").exit_code == 0
    text = config.read_text()

    def health() -> dict[str, str]:
        with sqlite3.connect(h.db_path) as conn:
            return dict(conn.execute("SELECT name, health FROM feed_health").fetchall())

    config.write_text(text + "enabled = false\n")  # the last feed: NumThy
    assert h("sync").exit_code == 0
    assert health() == {"AlgGeom": "ok", "NumThy": "disabled"}
    config.write_text(text)
    assert h("sync").exit_code == 0
    assert health() == {"AlgGeom": "ok", "NumThy": "ok"}
