"""History that means something: change kinds, automatic versions on the site's clock,
time bounds, feeds that are gone, and the migration of archives made before.

The simulated site and the archive share one clock the test moves, so days pass without
sleeping; every poll goes over HTTP through the real pipeline into a real archive file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlite_utils
from click.testing import CliRunner

from harvester.archive import open_archive
from harvester.cli import cli
from harvester.config import HttpSettings
from harvester.fetch import make_client
from harvester.humane import human_time
from harvester.sync import FeedTarget, PollResult, poll_feed
from tests import legacy_schema
from tests.conftest import ROOT, SAMPLE
from tests.rows import talk_row
from tests.sitesim import SimTalk, Site, serve

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
START = T0 + timedelta(days=3)  # the talk, an hour long
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    site: Site
    clock: Clock
    db_path: Path
    client: httpx.Client
    talk: SimTalk

    def poll_at(self, moment: datetime, path: str = "series", **target: Any) -> PollResult:
        self.clock.now = moment
        url = (
            self.site.feed_url("AlgGeom")
            if path == "series"
            else f"{self.site.base_url}/talk/AlgGeom/7/ics"
        )
        db = open_archive(self.db_path)
        try:
            return poll_feed(db, self.client, FeedTarget(url, **target), 20_000_000, self.clock)
        finally:
            db.conn.close()

    def versions(self) -> list[dict[str, Any]]:
        db = sqlite_utils.Database(self.db_path)
        rows = db.query("SELECT * FROM talk_versions WHERE uid = 'AlgGeom/7' ORDER BY version")
        return [r | {"kinds": json.loads(r["kinds"])} for r in rows]

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(cli, ["--db", str(self.db_path), *args])
        assert result.exit_code == 0, result.output
        return result.output


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    site = Site(clock=clock)
    talk = site.add_series("AlgGeom", "Algebraic Geometry").add(
        7,
        START,
        [("Ada Lovelace", "Analytical Engines Ltd")],
        title="Motives",
        abstract="We discuss the motivic Galois group of a field and its representations.",
        livestream="https://zoom.example/j/42",
        access_time=DAY,
    )
    with serve(site), make_client(HttpSettings(allow_private=True, retries=0)) as client:
        yield World(site, clock, tmp_path / "archive.db", client, talk)


LIFE = [T0, START - 2 * DAY, START - 20 * HOUR, START + 30 * timedelta(minutes=1)]
AFTER = [START + 2 * HOUR + 10 * timedelta(minutes=1), START + DAY]


def test_a_talks_life_without_an_edit_is_only_automatic(world: World) -> None:
    for moment in [*LIFE, *AFTER]:
        world.poll_at(moment)
    versions = world.versions()
    assert [(v["change"], v["automatic"], v["automatic_reason"]) for v in versions] == [
        ("new", 0, None),
        ("changed", 1, "livestream_posted"),
        ("changed", 1, "livestream_expired"),
    ]
    assert [v["kinds"] for v in versions] == [[], ["livestream"], ["livestream"]]
    history = world.cli("history", "AlgGeom/7")
    assert "2 automatic versions not shown" in history and "v2" not in history
    everything = world.cli("history", "--all", "AlgGeom/7")
    assert "automatic (livestream_posted)" in everything
    assert "automatic (livestream_expired)" in everything


def test_the_same_life_with_a_retitle_has_one_edit(world: World) -> None:
    world.poll_at(LIFE[0])
    world.poll_at(LIFE[1])
    world.talk.title = "Mixed motives"
    for moment in [*LIFE[1:], *AFTER]:
        world.poll_at(moment + timedelta(minutes=1))
    edits = [v for v in world.versions() if v["change"] == "changed" and not v["automatic"]]
    assert [v["kinds"] for v in edits] == [["retitled"]]
    assert sum(v["automatic"] for v in world.versions()) == 2


def test_a_retitle_and_a_reschedule_in_one_poll_are_one_version(world: World) -> None:
    world.poll_at(T0)
    world.talk.title = "Mixed motives"
    world.talk.start += DAY
    world.poll_at(T0 + HOUR)
    assert [v["kinds"] for v in world.versions()] == [[], ["rescheduled", "retitled"]]


def test_an_abstract_edit_shows_the_changed_words(world: World) -> None:
    world.poll_at(T0)
    world.talk.abstract = "We discuss the motivic Galois group of a number field."
    world.poll_at(T0 + HOUR)
    assert world.versions()[-1]["kinds"] == ["abstract"]
    history = world.cli("history", "AlgGeom/7")
    assert "abstract: … Galois group of a [-field and its representations.-] {+number field.+}" in (
        history
    )


def test_bounds_reach_back_over_failed_polls(world: World) -> None:
    world.poll_at(T0)
    good = world.versions()[0]["observed_at"]
    failing = {"on": True}

    def down(handler: BaseHTTPRequestHandler) -> bool:
        if failing["on"]:
            handler.send_response(503)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        return failing["on"]

    world.site.overrides["/seminar/AlgGeom/ics"] = down
    for hours in range(1, 25):
        assert world.poll_at(T0 + hours * HOUR).failed
    failing["on"] = False
    world.talk.title = "Mixed motives"
    world.poll_at(T0 + 25 * HOUR)
    last = world.versions()[-1]
    assert last["previous_seen_at"] == good
    shown = f"changed between {human_time(good)} and {human_time(last['observed_at'])}"
    assert shown in world.cli("history", "AlgGeom/7")


def test_a_talk_feed_gone_twice_across_gone_after_is_removed(world: World) -> None:
    world.poll_at(T0, path="talk")
    del world.site.series["AlgGeom"].talks[7]
    assert world.poll_at(T0 + HOUR, path="talk").failed  # one 404: evidence, not removal
    world.poll_at(T0 + 12 * HOUR, path="talk")
    assert [v["change"] for v in world.versions()] == ["new"]
    world.poll_at(T0 + 26 * HOUR, path="talk")
    assert [v["change"] for v in world.versions()] == ["new", "removed"]
    row = talk_row(sqlite_utils.Database(world.db_path), "AlgGeom/7")
    assert (row["status"], row["removed_reason"]) == ("removed", "feed_gone")


def test_a_404_then_a_200_removes_nothing(world: World) -> None:
    world.poll_at(T0, path="talk")
    talk = world.site.series["AlgGeom"].talks.pop(7)
    world.poll_at(T0 + HOUR, path="talk")
    world.site.series["AlgGeom"].talks[7] = talk
    world.poll_at(T0 + 2 * HOUR, path="talk")
    del world.site.series["AlgGeom"].talks[7]
    world.poll_at(T0 + 26 * HOUR, path="talk")  # a new run of 404s starts here
    assert [v["change"] for v in world.versions()] == ["new"]


def test_gone_after_is_configurable(world: World) -> None:
    world.poll_at(T0, path="talk")
    del world.site.series["AlgGeom"].talks[7]
    world.poll_at(T0 + HOUR, path="talk", gone_after=3600.0)
    world.poll_at(T0 + 2 * HOUR, path="talk", gone_after=3600.0)
    assert [v["change"] for v in world.versions()] == ["new", "removed"]


def test_absence_from_a_series_feed_is_reason_absent(world: World) -> None:
    world.poll_at(T0)
    del world.site.series["AlgGeom"].talks[7]
    world.poll_at(T0 + HOUR)  # an empty feed: rule 7 holds the removal back
    assert [v["change"] for v in world.versions()] == ["new"]
    world.poll_at(T0 + 2 * HOUR)
    row = talk_row(sqlite_utils.Database(world.db_path), "AlgGeom/7")
    assert (row["status"], row["removed_reason"]) == ("removed", "absent")
    assert world.versions()[-1]["kinds"] == ["status"]


def test_an_archive_of_the_previous_schema_gains_kinds_and_automatic(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    with old.conn:
        legacy_schema.migrate(old)
    content = {
        "series_id": "S",
        "counter": 1,
        "title": "Motives",
        "speaker": "Ada",
        "dtstart": "2026-12-04T09:00:00+00:00",
        "dtend": "2026-12-04T10:00:00+00:00",
        "description": "Title: Motives\nby Ada as part of S\n\nAbstract: TBA\n",
        "urls": "[]",
    }
    link = {
        "livestream_url": "https://zoom.example/j/1",
        "urls": '["https://zoom.example/j/1"]',
        "description": "Title: Motives\nby Ada as part of S\n\nInteractive livestream: "
        "https://zoom.example/j/1\nAbstract: TBA\n",
    }
    snapshots = [
        ("new", "2026-12-01T09:00:00+00:00", content),
        ("changed", "2026-12-03T12:00:00+00:00", content | link),  # posted before the start
        ("changed", "2026-12-03T13:00:00+00:00", content | link | {"title": "Mixed"}),
    ]
    with old.conn:
        old.table("feeds").insert({"id": 1, "url": "u", "url_hash": "h", "kind": "series"})
        for n, (change, at, fields) in enumerate(snapshots, 1):
            old.table("fetches").insert(
                {"id": n, "feed_id": 1, "started_at": at, "finished_at": at, "outcome": "changed"}
            )
            old.table("talk_versions").insert(
                {"uid": "S/1", "version": n, "observed_at": at, "fetch_id": n, "change": change}
                | fields
            )
        old.table("feed_talks").insert({"feed_id": 1, "uid": "S/1", "present": 1})
    old.conn.close()
    open_archive(path).conn.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT kinds, automatic, automatic_reason, previous_seen_at FROM talk_versions"
            " ORDER BY version"
        ).fetchall()
    conn.close()
    assert rows == [
        ("[]", 0, None, None),
        ('["livestream"]', 1, "livestream_posted", "2026-12-01T09:00:00+00:00"),
        ('["retitled"]', 0, None, "2026-12-03T12:00:00+00:00"),
    ]


def test_the_readme_offline_example_leaves_status_green(tmp_path: Path) -> None:
    config = tmp_path / "harvester.toml"
    config.write_text((ROOT / "config" / "harvester.toml").read_text(), encoding="utf-8")
    runner = CliRunner()
    base = ["--config", str(config), "--db", str(tmp_path / "a.db"), "--log-format", "json"]
    assert runner.invoke(cli, [*base, "import", str(SAMPLE)]).exit_code == 0
    status = runner.invoke(cli, [*base, "status", "--check"])
    assert status.exit_code == 0, status.output
    assert status.output.startswith("OK: 1 feed healthy")
    listing = runner.invoke(cli, [*base, "status"]).output
    assert "PhysicsMeetsML" in listing and "PhysicsMeetsML.ics" not in listing


def test_status_check_ignores_a_failing_feed_once_removed(tmp_path: Path) -> None:
    good = "https://researchseminars.org/seminar/PhysicsMeetsML/ics"
    config = tmp_path / "harvester.toml"
    config.write_text(
        "[http]\nretries = 0\ntimeout = 2\nallow_private = true\n\n"
        f'[[feeds]]\nurl = "{good}"\n\n[[feeds]]\nurl = "http://127.0.0.1:9/seminar/Gone/ics"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    base = ["--config", str(config), "--db", str(tmp_path / "a.db"), "--log-format", "json"]
    assert runner.invoke(cli, [*base, "import", str(SAMPLE)]).exit_code == 0
    assert runner.invoke(cli, [*base, "sync", "Gone"]).exit_code == 1
    assert runner.invoke(cli, [*base, "status", "--check"]).exit_code == 1
    assert runner.invoke(cli, [*base, "feeds", "remove", "Gone"]).exit_code == 0
    result = runner.invoke(cli, [*base, "status", "--check"])
    assert result.exit_code == 0, result.output
