"""End-to-end: the real CLI polling the simulated site into a real SQLite archive."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlite_utils

from tests.conftest import Harvester
from tests.rows import talk_row
from tests.sitesim import Site, calendar_bytes


def versions(h: Harvester) -> list[dict[str, object]]:
    db = sqlite_utils.Database(h.db_path)
    return list(
        db.query("SELECT uid, version, change, changed_fields FROM talk_versions ORDER BY id")
    )


def test_first_sync_archives_every_talk(harvester: Harvester, site: Site) -> None:
    result = harvester("sync")
    assert result.exit_code == 0, result.output
    assert (
        "2 feeds: 4 new, 0 changed, 0 removed, 0 restored, 0 unchanged, 0 failed" in result.output
    )
    db = sqlite_utils.Database(harvester.db_path)
    titles = {r["uid"]: r["title"] for r in db.query("SELECT uid, title FROM talks")}
    assert titles == {
        "AlgGeom/1": "Old results",
        "AlgGeom/2": "Rings and ideals",
        "AlgGeom/3": "Computability, and what it means",
        "NumThy/1": "Primes $p$ & more",
    }
    talk = talk_row(db, "AlgGeom/3")
    assert json.loads(talk["speakers"]) == [
        {"name": "Alan Turing", "affiliation": "Manchester"},
        {"name": "Alonzo Church", "affiliation": "Princeton"},
    ]
    assert talk["room"] == "MIT 2-142"
    assert talk["series_name"] == "Algebraic Geometry ∩ Friends"
    assert talk["status"] == "active" and talk["version"] == 1
    assert site.hits["/seminar/AlgGeom/ics"] == 1


def test_second_sync_with_nothing_changed_records_no_version(
    harvester: Harvester, site: Site
) -> None:
    assert harvester("sync").exit_code == 0
    before = versions(harvester)
    result = harvester("sync")
    assert result.exit_code == 0
    assert "0 new, 0 changed, 0 removed, 0 restored, 4 unchanged" in result.output
    assert versions(harvester) == before
    db = sqlite_utils.Database(harvester.db_path)
    outcomes = [r["outcome"] for r in db.query("SELECT outcome FROM fetches ORDER BY id")]
    assert outcomes == ["changed", "changed", "unchanged", "unchanged"]
    assert site.hits["/seminar/AlgGeom/ics"] == 2  # DTSTAMP differed on each download


def test_retitled_talk_is_one_changed_version(harvester: Harvester, site: Site) -> None:
    harvester("sync")
    site.series["AlgGeom"].talks[2].title = "Noetherian rings"
    result = harvester("sync")
    assert "0 new, 1 changed" in result.output
    changed = [v for v in versions(harvester) if v["change"] == "changed"]
    assert len(changed) == 1
    assert changed[0]["uid"] == "AlgGeom/2" and changed[0]["version"] == 2
    assert "title" in json.loads(str(changed[0]["changed_fields"]))
    history = json.loads(harvester("history", "AlgGeom/2", "--json").output)
    assert [v["title"] for v in history] == ["Rings and ideals", "Noetherian rings"]


def test_rescheduled_talk_names_dtstart_and_dtend(harvester: Harvester, site: Site) -> None:
    harvester("sync")
    talk = site.series["NumThy"].talks[1]
    talk.start += timedelta(days=7)
    harvester("sync")
    fields = json.loads(str(versions(harvester)[-1]["changed_fields"]))
    assert {"dtstart", "dtend"} <= set(fields)
    assert "title" not in fields
    db = sqlite_utils.Database(harvester.db_path)
    assert talk_row(db, "NumThy/1")["dtstart"] == talk.start.isoformat()


@pytest.mark.slow
def test_deleted_talk_is_removed_and_restored_when_back(harvester: Harvester, site: Site) -> None:
    harvester("sync")
    gone = site.series["AlgGeom"].talks.pop(2)
    result = harvester("sync")
    assert "1 removed" in result.output
    db = sqlite_utils.Database(harvester.db_path)
    row = talk_row(db, "AlgGeom/2")
    assert row["status"] == "removed" and row["removed_at"]
    assert versions(harvester)[-1] == {
        "uid": "AlgGeom/2",
        "version": 2,
        "change": "removed",
        "changed_fields": '["status"]',
    }
    # a third poll without it changes nothing more
    harvester("sync")
    assert len([v for v in versions(harvester) if v["uid"] == "AlgGeom/2"]) == 2

    site.series["AlgGeom"].talks[2] = gone
    result = harvester("sync")
    assert "1 restored" in result.output
    last = versions(harvester)[-1]
    assert (last["uid"], last["version"], last["change"]) == ("AlgGeom/2", 3, "restored")
    assert talk_row(db, "AlgGeom/2")["status"] == "active"
    assert talk_row(db, "AlgGeom/2")["removed_at"] is None


@pytest.mark.slow
def test_feed_suddenly_empty_removes_nothing_until_confirmed(
    harvester: Harvester, site: Site
) -> None:
    harvester("sync")
    kept = dict(site.series["AlgGeom"].talks)
    site.series["AlgGeom"].talks.clear()
    result = harvester("sync")
    assert result.exit_code == 0
    assert "0 removed" in result.output
    assert "removals held back" in result.stderr
    db = sqlite_utils.Database(harvester.db_path)
    assert {r["status"] for r in db.query("SELECT status FROM talks")} == {"active"}
    # a second empty poll confirms the removals
    result = harvester("sync")
    assert "3 removed" in result.output
    site.series["AlgGeom"].talks.update(kept)
    assert "3 restored" in harvester("sync").output


@pytest.mark.slow
def test_transient_empty_feed_is_forgiven(harvester: Harvester, site: Site) -> None:
    harvester("sync")
    kept = dict(site.series["AlgGeom"].talks)
    site.series["AlgGeom"].talks.clear()
    harvester("sync")
    site.series["AlgGeom"].talks.update(kept)
    result = harvester("sync")
    assert "0 removed, 0 restored, 4 unchanged" in result.output
    assert {v["change"] for v in versions(harvester)} == {"new"}


@pytest.mark.slow
def test_failed_poll_leaves_archive_unchanged_and_others_sync(
    harvester: Harvester, site: Site
) -> None:
    harvester("sync")
    db = sqlite_utils.Database(harvester.db_path)
    talks_before = list(db.query("SELECT * FROM talks WHERE series_id = 'AlgGeom' ORDER BY uid"))
    del site.series["AlgGeom"]  # now a 404
    site.series["NumThy"].talks[1].title = "Primes, retitled"
    result = harvester("sync")
    assert result.exit_code == 1
    assert "error: AlgGeom: HTTP 404 Not Found" in result.stderr
    assert "1 changed" in result.output and "1 failed" in result.output
    assert (
        list(db.query("SELECT * FROM talks WHERE series_id = 'AlgGeom' ORDER BY uid"))
        == talks_before
    )
    last_fetch = list(db.query("SELECT * FROM fetches ORDER BY id DESC LIMIT 2"))
    outcomes = {r["outcome"] for r in last_fetch}
    assert outcomes == {"error", "changed"}
    feed = next(db.query("SELECT * FROM feeds WHERE name = 'AlgGeom'"))
    assert feed["consecutive_failures"] == 1 and feed["last_outcome"] == "error"
    assert "404" in feed["last_error"]


def test_export_as_of_between_syncs_is_the_earlier_state(harvester: Harvester, site: Site) -> None:
    harvester("sync")
    first = harvester("export").output
    db = sqlite_utils.Database(harvester.db_path)
    between = db.execute("SELECT max(finished_at) FROM fetches").fetchone()[0]
    site.series["AlgGeom"].talks[3].room = "Online only"
    site.series["AlgGeom"].talks.pop(1)
    site.series["NumThy"].add(2, site.series["NumThy"].talks[1].start, [("New Speaker", "X")])
    harvester("sync")
    assert harvester("export").output != first
    assert harvester("export", "--as-of", between).output == first


def test_old_host_name_redirect_and_webcal(workdir, site: Site) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import write_config

    port = site.base_url.rsplit(":", 1)[1]
    config = write_config(workdir, [f"http://localhost:{port}/seminar/NumThy/ics"])
    h = Harvester(config)
    result = h("sync")
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output
    assert site.hits["/seminar/NumThy/ics"] == 2  # the 301, then the feed


def test_sync_of_an_unconfigured_url_is_recorded(harvester: Harvester, site: Site) -> None:
    site.add_series("Extra", "Extra seminar").add(
        1, site.series["NumThy"].talks[1].start, [("X", None)]
    )
    result = harvester("sync", site.feed_url("Extra"))
    assert result.exit_code == 0
    assert "1 feed: 1 new" in result.output
    db = sqlite_utils.Database(harvester.db_path)
    assert [r["name"] for r in db.query("SELECT name FROM feeds")] == ["Extra"]


@pytest.mark.slow
def test_talk_in_two_feeds_is_removed_only_when_no_feed_carries_it(
    harvester: Harvester, site: Site
) -> None:
    talk_feed = f"{site.base_url}/talk/AlgGeom/2/ics"
    assert harvester("sync", "AlgGeom", talk_feed).exit_code == 0
    series = site.series["AlgGeom"]
    without_2 = calendar_bytes(
        [t.event(series.name, site.clock()) for c, t in series.talks.items() if c != 2]
    )
    site.overrides["/seminar/AlgGeom/ics"] = serve_body(without_2)
    assert "0 removed" in harvester("sync", "AlgGeom").output
    db = sqlite_utils.Database(harvester.db_path)
    carried = dict(
        db.execute(
            "SELECT f.kind, t.present FROM feed_talks t JOIN feeds f ON f.id = t.feed_id"
            " WHERE uid = 'AlgGeom/2'"
        ).fetchall()
    )
    assert carried == {"series": 0, "talk": 1}
    assert talk_row(db, "AlgGeom/2")["status"] == "active"
    # once the talk feed drops it too (an empty but valid calendar), it is removed
    site.overrides["/talk/AlgGeom/2/ics"] = serve_body(calendar_bytes([]))
    harvester("sync", talk_feed)  # held: the feed suddenly has no events
    assert talk_row(db, "AlgGeom/2")["status"] == "active"
    assert "1 removed" in harvester("sync", talk_feed).output
    assert talk_row(db, "AlgGeom/2")["status"] == "removed"


def serve_body(body: bytes):  # type: ignore[no-untyped-def]
    def answer(handler) -> bool:  # type: ignore[no-untyped-def]
        handler._send(200, body, {"Content-Type": "text/calendar; charset=utf-8"})
        return True

    return answer
