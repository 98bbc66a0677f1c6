"""The "talks for me" canned query (issue 23), through Datasette as `harvester serve` builds
it: `match` and `speakers` over every archived series, as a page, a calendar and a feed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from tests.conftest import Harvester, write_config
from tests.sitesim import Site
from tests.test_datasette import ATOM, Browser

QUERY = "/archive/talks_for_me"


@pytest.fixture
def browser(workdir: Path, site: Site) -> Browser:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    site.series["NumThy"].add(
        2,
        now + timedelta(days=4),
        [("Émile Picard", "Paris")],
        title="Banach spaces",
        abstract="Towards the p-adic Langlands correspondence.",
    )
    harvester = Harvester(write_config(workdir, [site.feed_url(s) for s in site.series]))
    assert harvester("sync").exit_code == 0
    return Browser(harvester.db_path)


def uids(browser: Browser, args: str) -> list[str]:
    return sorted(browser.uids(f"{QUERY}.json?{args}"))


@pytest.mark.slow
def test_match_and_speakers_find_talks_across_series(browser: Browser) -> None:
    assert uids(browser, "match=langlands&speakers=") == ["NumThy/2"]
    assert uids(browser, "match=&speakers=NOETHER") == ["AlgGeom/2"]
    assert uids(browser, "match=&speakers=emile%20picard,%20Emmy%20Noether") == [
        "AlgGeom/2",
        "NumThy/2",
    ]
    assert uids(browser, "match=&speakers=Emile") == ["NumThy/2"]  # without its accent
    assert uids(browser, "match=langlands&speakers=Noether") == ["AlgGeom/2", "NumThy/2"]
    assert uids(browser, "match=&speakers=Lovelace") == []  # her talk is 30 days past
    assert uids(browser, "match=&speakers=") == []
    assert uids(browser, 'match=&speakers=Noe"ther') == []  # a quote cannot break out


def test_the_calendar_and_the_feed_of_the_talks_for_me(browser: Browser) -> None:
    response = browser.get(f"{QUERY}.ics?match=langlands&speakers=Noether")
    assert response.status_code == 200, response.text
    calendar = icalendar.Calendar.from_ical(response.content)
    assert {str(e["UID"]) for e in calendar.walk("VEVENT")} == {"AlgGeom/2", "NumThy/2"}
    assert "match langlands" in str(calendar["X-WR-CALNAME"])

    response = browser.get(f"{QUERY}.atom?match=langlands&speakers=")
    assert response.status_code == 200, response.text
    feed = ET.fromstring(response.content)
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == [
        "Banach spaces — Number Theory Web Seminar"
    ]
    link = entries[0].find(f"{ATOM}link")
    assert link is not None and link.get("href", "").endswith("/talk/NumThy/2/")
    assert "p-adic Langlands" in (entries[0].findtext(f"{ATOM}content") or "")
    assert "match langlands" in (feed.findtext(f"{ATOM}title") or "")


def test_the_query_page_explains_both_urls(browser: Browser) -> None:
    page = browser.get(QUERY).text
    assert "talks_for_me.ics?match=langlands&amp;speakers=Noether" in page
    assert "talks_for_me.atom?match=langlands&amp;speakers=Noether" in page
