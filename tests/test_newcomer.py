"""What a newcomer meets (issue "What a newcomer meets"): the parts fixed so far."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import icalendar

from tests.conftest import Harvester, write_config
from tests.test_datasette import ATOM, Browser


def test_a_calendar_asks_for_a_refresh_with_a_duration_and_atom_names_itself(
    workdir: Path, sample_copy: Path
) -> None:
    h = Harvester(write_config(workdir, []))
    assert h("import", str(sample_copy)).exit_code == 0
    browser = Browser(h.db_path)
    calendar = browser.get("/archive/calendar.ics").text
    assert "X-PUBLISHED-TTL:PT1H" in calendar
    parsed = icalendar.Calendar.from_ical(calendar)
    ttl = icalendar.vDuration.from_ical(str(parsed["X-PUBLISHED-TTL"]))  # type: ignore[no-untyped-call]
    assert ttl == timedelta(hours=1)
    feed = ET.fromstring(browser.get("/archive/changes_feed.atom").content)
    selves = [link.get("href") for link in feed.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert len(selves) == 1 and (selves[0] or "").endswith("/archive/changes_feed.atom")


def test_one_feed_is_one_feed(workdir: Path, sample_copy: Path) -> None:
    h = Harvester(write_config(workdir, []))
    result = h("import", str(sample_copy))
    assert "1 feed: 4 new" in result.output and "1 feeds" not in result.output
