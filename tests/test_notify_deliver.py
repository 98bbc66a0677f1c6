"""Deciding, formatting and delivering notifications (Apprise to a real local receiver)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harvester.humane import human_time
from harvester.notify import Target, check_url, deliver, digest, wants
from tests.receiver import receiving

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def change(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uid": "AlgGeom/3",
        "change": "changed",
        "kinds": ["rescheduled", "retitled"],
        "automatic": 0,
        "series_id": "AlgGeom",
        "series_name": "Algebraic Geometry",
        "title": "Mixed motives",
        "previous_title": "Motives",
        "dtstart": "2026-12-04T16:00:00+00:00",
        "previous_dtstart": "2026-12-03T16:00:00+00:00",
        "dtend": "2026-12-04T17:00:00+00:00",
        "talk_url": "https://researchseminars.org/talk/AlgGeom/3/",
    }
    return {**base, **fields}


def test_filters_series_kinds_automatic_and_past_talks() -> None:
    target = Target("k", "json://x", series=frozenset({"AlgGeom"}))
    assert wants(target, change(), NOW)
    assert not wants(target, change(series_id="NumThy"), NOW)
    assert not wants(target, change(automatic=1, kinds=["livestream"]), NOW)
    assert not wants(target, change(kinds=["abstract"]), NOW)
    past = change(dtstart="2026-11-01T16:00:00+00:00", dtend="2026-11-01T17:00:00+00:00")
    assert not wants(target, past, NOW)
    assert wants(Target("k", "json://x", upcoming_only=False), past, NOW)
    assert wants(target, change(change="removed", kinds=["status"]), NOW)


def test_digest_has_old_and_new_times_and_titles_and_the_link() -> None:
    title, body = digest([change(), change(uid="AlgGeom/4", change="removed", kinds=["status"])])
    assert title == "2 changes on researchseminars.org"
    assert "time: Thu 3 Dec 2026, 16:00 UTC → Fri 4 Dec 2026, 16:00 UTC" in body
    assert "title: Motives → Mixed motives" in body
    assert "https://researchseminars.org/talk/AlgGeom/3/" in body
    assert "(removed)" in body


def test_human_time() -> None:
    assert human_time("2026-12-01T16:00:00+00:00") == "Tue 1 Dec 2026, 16:00 UTC"
    assert human_time(None) == "?"


@pytest.mark.slow
def test_deliver_reaches_a_real_receiver_and_reports_a_failure() -> None:
    with receiving() as receiver:
        assert deliver(receiver.url(), "Title", "Body") is None
        assert [(m["title"], m["message"]) for m in receiver.messages] == [("Title", "Body")]
        receiver.failing = True
        error = deliver(receiver.url(), "Title", "Body")
        assert error is not None and "503" in error
        assert len(receiver.messages) == 1 and receiver.attempts >= 2


def test_check_url() -> None:
    assert check_url("json://127.0.0.1:9/x") is None
    assert check_url("nope://what") is not None


def test_timing_is_not_a_sleep() -> None:
    # `wants` takes `now`: a talk ending one second from now is still upcoming.
    soon = change(dtend=(NOW + timedelta(seconds=1)).isoformat())
    assert wants(Target("k", "json://x"), soon, NOW)
