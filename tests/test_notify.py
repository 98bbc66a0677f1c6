"""Notifications end to end (issue 14): real polls of the local site through the real CLI,
an outbox in the archive, and Apprise posting to a real local receiver."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from harvester.humane import human_time
from tests.conftest import Harvester, write_config
from tests.receiver import Receiver, receiving
from tests.sitesim import Site
from tests.test_daemon import Daemon, daemon_config, wait_for

PASSWORD = "s3cretPassw0rd"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def notify_config(
    workdir: Path, site: Site, urls: list[str], *, series: str = '["AlgGeom"]', extra: str = ""
) -> Harvester:
    entries = "".join(f'\n[[notify]]\nurl = "{url}"\nseries = {series}\n' for url in urls)
    text = f'\n[notifications]\nbackoff = "0s"\n{extra}\n{entries}\n'
    config = write_config(workdir, [site.feed_url("AlgGeom"), site.feed_url("NumThy")], text)
    return Harvester(config)


def ok(result: Result, code: int = 0) -> Result:
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def outbox(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT uid, version, status, attempts FROM notifications ORDER BY id"
        ).fetchall()


def edit_followed_series(site: Site) -> None:
    """A retitle and a reschedule in AlgGeom, which the target follows."""
    alg = site.series["AlgGeom"]
    alg.talks[2].title = "Rings, ideals and modules"
    alg.talks[3].start += timedelta(days=1)


@pytest.mark.slow
def test_a_retitle_and_a_reschedule_arrive_as_one_message_and_nothing_else(
    workdir: Path, site: Site, receiver: Receiver
) -> None:
    alg = site.series["AlgGeom"]
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    live = alg.add(
        4,
        now + timedelta(days=6),
        [("Grace Hopper", None)],
        title="Compilers",
        livestream="https://zoom.example/j/4",
        access_time=timedelta(hours=1),
    )
    harvester = notify_config(workdir, site, [receiver.url()])
    ok(harvester("sync"))
    assert receiver.messages == []  # new talks are not a default kind

    edit_followed_series(site)
    site.series["NumThy"].talks[1].title = "Primes, revisited"  # another series
    alg.talks[1].title = "Old results, corrected"  # a talk that is over
    live.access_time = timedelta(days=7)  # the site posts the link by itself: automatic
    result = ok(harvester("sync"))
    assert "notifications: 2 sent" in result.stdout

    with sqlite3.connect(harvester.db_path) as conn:
        versions = conn.execute(
            "SELECT uid, automatic FROM talk_versions WHERE version = 2 ORDER BY uid"
        ).fetchall()
    assert versions == [("AlgGeom/1", 0), ("AlgGeom/2", 0), ("AlgGeom/3", 0), ("AlgGeom/4", 1),
                        ("NumThy/1", 0)]  # fmt: skip
    assert len(receiver.messages) == 1
    message = receiver.messages[0]
    assert message["title"] == "2 changes on researchseminars.org"
    body = message["message"]
    assert "title: Rings and ideals → Rings, ideals and modules" in body
    old_start = alg.talks[3].start - timedelta(days=1)
    assert f"time: {human_time(old_start.isoformat())} → " in body
    assert f"→ {human_time(alg.talks[3].start.isoformat())}" in body
    assert "/talk/AlgGeom/2/" in body and "/talk/AlgGeom/3/" in body
    for absent in ("Primes", "Old results", "Compilers", "AlgGeom/1/", "AlgGeom/4/"):
        assert absent not in body
    assert [row[:3] for row in outbox(harvester.db_path)] == [
        ("AlgGeom/2", 2, "sent"),
        ("AlgGeom/3", 2, "sent"),
    ]

    ok(harvester("sync"))
    ok(harvester("notify", "--retry"))
    assert len(receiver.messages) == 1  # nothing twice
    assert "notifications: 0 pending, 0 failed, 2 sent" in ok(harvester("status")).stdout


def sync_killed_before_send(config: Path) -> None:
    """`harvester sync` in a process that SIGKILLs itself after its commit, before sending."""
    env = {**os.environ, "HARVESTER_TEST_CRASH": "before_send"}
    env.pop("HARVESTER_CONFIG", None)
    process = subprocess.run(
        [sys.executable, "-m", "harvester", "--config", str(config), "-q", "sync"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr


@pytest.mark.slow
def test_sigkill_after_the_commit_and_before_the_send_then_a_rerun_delivers_once(
    workdir: Path, site: Site, receiver: Receiver
) -> None:
    harvester = notify_config(workdir, site, [receiver.url()])
    ok(harvester("sync"))
    edit_followed_series(site)
    sync_killed_before_send(harvester.config)
    assert receiver.messages == []
    assert [row[2] for row in outbox(harvester.db_path)] == ["pending", "pending"]

    ok(harvester("sync"))
    ok(harvester("sync"))
    assert len(receiver.messages) == 1
    assert "Rings, ideals and modules" in receiver.messages[0]["message"]
    assert [row[2] for row in outbox(harvester.db_path)] == ["sent", "sent"]


@pytest.mark.slow
def test_a_receiver_down_for_three_runs_then_up_gets_every_change_once(
    workdir: Path, site: Site, receiver: Receiver
) -> None:
    harvester = notify_config(workdir, site, [receiver.url()])
    ok(harvester("sync"))
    receiver.failing = True
    alg = site.series["AlgGeom"]
    for run in range(3):
        alg.talks[2].title = f"Rings, take {run + 1}"
        result = ok(harvester("sync"))  # a failed send changes no exit code
        assert "warning: notifications:" in result.stderr
        assert "not delivered" in result.stderr
    assert receiver.messages == [] and receiver.attempts >= 3
    assert "notifications: 3 pending, 0 failed" in ok(harvester("status")).stdout
    rows = outbox(harvester.db_path)
    assert [(r[1], r[2]) for r in rows] == [(2, "pending"), (3, "pending"), (4, "pending")]
    assert [r[3] for r in rows] == [3, 2, 1]

    receiver.failing = False
    ok(harvester("sync"))
    ok(harvester("sync"))
    assert len(receiver.messages) == 1
    body = receiver.messages[0]["message"]
    for run in range(3):
        assert body.count(f"Rings, take {run + 1}") >= 1
    assert receiver.messages[0]["title"] == "3 changes on researchseminars.org"
    assert {r[2] for r in outbox(harvester.db_path)} == {"sent"}


@pytest.mark.slow
def test_failed_sends_back_off_and_give_up_then_retry_on_demand(
    workdir: Path, site: Site, receiver: Receiver
) -> None:
    harvester = notify_config(workdir, site, [receiver.url()], extra="max_attempts = 2")
    ok(harvester("sync"))
    receiver.failing = True
    edit_followed_series(site)
    ok(harvester("sync"))
    ok(harvester("notify"), 1)  # the second attempt: given up
    assert "notifications: 0 pending, 2 failed" in ok(harvester("status")).stdout
    ok(harvester("sync"))
    assert receiver.messages == []

    receiver.failing = False
    result = ok(harvester("notify", "--retry"))
    assert "sent 2 notifications in one message" in result.stdout
    assert len(receiver.messages) == 1


@pytest.mark.slow
def test_backoff_waits_before_the_next_attempt(
    workdir: Path, site: Site, receiver: Receiver
) -> None:
    harvester = notify_config(workdir, site, [receiver.url()])
    text = harvester.config.read_text().replace('backoff = "0s"', 'backoff = "1h"')
    harvester.config.write_text(text)
    ok(harvester("sync"))
    receiver.failing = True
    edit_followed_series(site)
    ok(harvester("sync"))
    attempts = receiver.attempts
    receiver.failing = False
    ok(harvester("sync"))
    assert receiver.attempts == attempts and receiver.messages == []  # still backing off
    ok(harvester("notify", "--retry"))
    assert len(receiver.messages) == 1


@pytest.mark.slow
def test_the_password_is_nowhere(workdir: Path, site: Site, receiver: Receiver) -> None:
    harvester = notify_config(workdir, site, [receiver.url(PASSWORD)])
    seen = ok(harvester("-v", "sync")).stderr
    edit_followed_series(site)
    for fmt in ("json", "console"):
        for args in (("sync",), ("notify", "--test"), ("status",)):
            result = harvester("--log-format", fmt, "-v", *args)
            seen += result.stdout + result.stderr
    edit_followed_series(site)
    receiver.failing = True
    result = ok(harvester("-v", "sync"))
    seen += result.stdout + result.stderr
    result = ok(harvester("-v", "notify", "--retry"), 1)
    seen += result.stdout + result.stderr
    assert "FAILED" in result.stderr
    result = ok(harvester("notify", "--test"), 1)
    seen += result.stdout + result.stderr
    assert "notify.sent" in seen and "notify.failed" in seen  # the logs were there
    assert PASSWORD not in seen
    assert receiver.url(PASSWORD).split("://", 1)[1] not in seen
    with sqlite3.connect(harvester.db_path) as conn:
        errors = [row[0] for row in conn.execute("SELECT last_error FROM notifications")]
    assert any(error and "503" in error for error in errors)
    archive = b"".join(
        path.read_bytes()
        for path in harvester.db_path.parent.iterdir()
        if path.name.startswith("archive.db")
    )
    assert PASSWORD.encode() not in archive
    assert b"127.0.0.1:%d" % receiver.port not in archive


@pytest.mark.slow
def test_notify_test_says_what_happened_one_line_per_target(
    workdir: Path, site: Site, receiver: Receiver
) -> None:
    with receiving() as down:
        down.failing = True
        harvester = notify_config(workdir, site, [receiver.url("upPassw0rd"), down.url()])
        result = ok(harvester("notify", "--test"), 1)
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("notify[0] json://") and lines[0].endswith(": sent")
    assert lines[1].startswith("notify[1] json://")
    assert ": FAILED: " in lines[1] and "503" in lines[1]
    assert [m["title"] for m in receiver.messages] == ["seminar-harvester: test notification"]
    assert "upPassw0rd" not in result.stdout + result.stderr


def test_a_bad_apprise_url_is_a_config_error_naming_the_key(workdir: Path, site: Site) -> None:
    harvester = notify_config(workdir, site, ["nosuchscheme://user:pw5678secret@example.org"])
    result = ok(harvester("sync"), 2)
    assert "notify[0].url" in result.stderr
    assert "pw5678secret" not in result.stderr
    twice = ["json://127.0.0.1:9/x", "json://127.0.0.1:9/x"]
    assert (
        "notify[1].url: same target as notify[0]"
        in ok(notify_config(workdir, site, twice)("sync"), 2).stderr
    )
    harvester = notify_config(workdir, site, ["json://127.0.0.1:9/x"], extra="max_attempts = 0")
    assert "notifications.max_attempts" in ok(harvester("sync"), 2).stderr


def test_no_notify_config_queues_nothing(harvester: Harvester, site: Site) -> None:
    ok(harvester("sync"))
    edit_followed_series(site)
    result = ok(harvester("sync"))
    assert "notifications" not in result.stdout + result.stderr
    assert outbox(harvester.db_path) == []
    assert "notifications" not in ok(harvester("status")).stdout


@pytest.mark.slow
def test_the_daemon_sends_after_its_polls(workdir: Path, site: Site, receiver: Receiver) -> None:
    config = daemon_config(workdir, [(site.feed_url("AlgGeom"), None)], interval="0.5s")
    with config.open("a", encoding="utf-8") as out:
        out.write(f'\n[[notify]]\nurl = "{receiver.url(PASSWORD)}"\n')
    daemon = Daemon(config)
    try:
        wait_for(lambda: len(daemon.fetches("AlgGeom")) >= 2, "2 polls")
        edit_followed_series(site)
        wait_for(lambda: receiver.messages, "a notification")
        polls = len(daemon.fetches("AlgGeom"))
        wait_for(lambda: len(daemon.fetches("AlgGeom")) >= polls + 3, "3 more polls")
        assert daemon.stop()[0] == 0
    finally:
        daemon.close()
    assert len(receiver.messages) == 1
    assert "Rings, ideals and modules" in receiver.messages[0]["message"]
    assert [e["notifications"] for e in daemon.events("notify.sent")] == [2]
    assert PASSWORD not in daemon.log_path.read_text(encoding="utf-8")
