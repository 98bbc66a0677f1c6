"""`harvester discover`, series metadata and rescheduled slots, against the simulated site + API."""

from __future__ import annotations

import difflib
import json
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlite_utils

from harvester.archive import open_archive
from harvester.config import HttpSettings, load_config
from harvester.errors import ApiError
from harvester.series import refresh_followed_series
from harvester.site_api import SiteApi
from tests.apisim import Api, api_error_override, serve_with_api
from tests.conftest import Harvester
from tests.sitesim import Site

CONFIG = """\
# Following a whole field.
[archive]
path = "archive.db"

[http]
timeout = 5
allow_private = true   # the test site is on 127.0.0.1

[site]
base_url = "{base}"    # shortnames and the API resolve here

# nothing followed yet: `harvester discover --add` fills this in
"""
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def api(workdir: Path) -> Iterator[Api]:
    site = Site()
    for shortname, name in (
        ("AlgGeom", "Algebraic Geometry"),
        ("NumThy", "Number Theory Web Seminar"),
        ("MathPhys", "Mathematical Physics"),
        ("Secret", "A private seminar"),
    ):
        site.add_series(shortname, name).add(1, NOW + timedelta(days=3), [("Someone", None)])
    with serve_with_api(site) as api:
        api.describe("AlgGeom", topics=["math_AG"], institutions=["MIT"])
        api.describe("NumThy", topics=["math_NT"], institutions=["IAS"], timezone="Europe/Paris")
        api.describe("MathPhys", topics=["math-ph", "hep-th"], institutions=["MIT", "IAS"])
        api.describe("Secret", topics=["math_NT"], visibility=0)
        yield api


@pytest.fixture
def h(workdir: Path, api: Api) -> Harvester:
    path = workdir / "harvester.toml"
    path.write_text(CONFIG.format(base=api.site.base_url), encoding="utf-8")
    return Harvester(path)


def shortnames(result_stdout: str) -> list[str]:
    return [s["shortname"] for s in json.loads(result_stdout)]


# --- listing -----------------------------------------------------------------------------


def test_topics_are_listed_as_a_graph(h: Harvester) -> None:
    result = h("discover", "--topics")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "math  Mathematics" in lines and "  math_NT  Number theory" in lines
    # mathematical physics sits under both mathematics and physics
    assert lines.count("  math-ph  Mathematical physics") == 2
    topics = json.loads(h("discover", "--topics", "--json").stdout)
    assert topics["math"]["children"] == ["math_NT", "math_AG", "math-ph"]


def test_institutions_are_listed(h: Harvester) -> None:
    result = h("discover", "--institutions")
    assert result.exit_code == 0
    assert "MIT  Massachusetts Institute of Technology (Cambridge, MA)" in result.stdout


def test_topic_search_uses_contains_and_lists_name_institutions_topics(
    h: Harvester, api: Api
) -> None:
    result = h("discover", "--topic", "math_NT")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "NumThy  Number Theory Web Seminar  @ IAS  [math_NT]",
        "1 series",  # Secret is math_NT too, but not public
    ]
    searches = [r for r in api.requests if r.path == "/api/0/search/series"]
    assert [(r.method, r.body) for r in searches] == [
        ("POST", {"query": {"topics": {"$contains": "math_NT"}}})
    ]


def test_several_topics_widen_and_an_institution_narrows(h: Harvester) -> None:
    both = h("discover", "--topic", "math_NT", "--topic", "math-ph", "--json")
    assert shortnames(both.stdout) == ["MathPhys", "NumThy"]
    at_mit = h("discover", "--institution", "MIT", "--json")
    assert shortnames(at_mit.stdout) == ["AlgGeom", "MathPhys"]
    narrowed = h("discover", "--topic", "math_NT", "--topic", "math-ph", "--institution", "MIT")
    assert narrowed.stdout.splitlines() == [
        "MathPhys  Mathematical Physics  @ MIT, IAS  [math-ph, hep-th]",
        "1 series",
    ]


def test_all_lists_every_public_series(h: Harvester, api: Api) -> None:
    result = h("discover", "--all", "--json")
    assert result.exit_code == 0
    assert shortnames(result.stdout) == ["AlgGeom", "MathPhys", "NumThy"]
    first = json.loads(result.stdout)[0]
    assert first == {
        "shortname": "AlgGeom",
        "name": "Algebraic Geometry",
        "institutions": ["MIT"],
        "topics": ["math_AG"],
        "timezone": "UTC",
    }
    assert [(r.method, r.raw_query) for r in api.requests] == [("GET", "")]


def test_unknown_ids_and_bad_combinations_are_usage_errors(h: Harvester, api: Api) -> None:
    result = h("discover", "--topic", "math_XX")
    assert result.exit_code == 2
    assert "unknown topic math_XX" in result.output and "--topics" in result.output
    assert h("discover", "--institution", "Nowhere").exit_code == 2
    assert h("discover").exit_code == 2
    assert h("discover", "--all", "--topic", "math_NT").exit_code == 2
    assert h("discover", "--topics", "--add").exit_code == 2
    assert not any(r.path == "/api/0/search/series" for r in api.requests)


# --- the API's quirks and errors ---------------------------------------------------------


def test_get_values_are_sent_as_json(api: Api) -> None:
    base = api.site.base_url
    # what the site does with an unquoted string: a 400 in its error shape
    raw = httpx.get(f"{base}/api/0/lookup/series", params={"series_id": "NumThy"})
    assert raw.status_code == 400 and raw.json()["code"] == "json_parse_error"
    with httpx.Client() as client:
        site_api = SiteApi(client, base)
        info = site_api.lookup_series("NumThy")
        assert info is not None and info.topics == ("math_NT",)
        assert site_api.lookup_series("Secret") is None
    assert api.requests[-2].raw_query == "series_id=%22NumThy%22"


def test_api_error_shape_becomes_one_clear_line(h: Harvester, api: Api) -> None:
    api.site.overrides["/api/0/search/series"] = api_error_override(
        400, "search_error", "error in executing search"
    )
    result = h("discover", "--all")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "refused the request (HTTP 400, search_error): error in executing search" in line


def test_401_says_a_login_would_be_needed(api: Api) -> None:
    api.site.overrides["/api/0/topics"] = api_error_override(
        401, "missing_authorization", "No authorization header"
    )
    with httpx.Client() as client, pytest.raises(ApiError) as caught:
        SiteApi(client, api.site.base_url).topics()
    assert caught.value.status == 401 and caught.value.code == "missing_authorization"
    assert "API login" in str(caught.value)


def test_an_html_error_page_is_reported_not_parsed(h: Harvester, api: Api) -> None:
    def html_500(handler) -> bool:  # type: ignore[no-untyped-def]
        handler._send(500, b"<html>Internal Server Error</html>", {"Content-Type": "text/html"})
        return True

    api.site.overrides["/api/0/topics"] = html_500
    result = h("discover", "--topics")
    assert result.exit_code == 1
    assert "the site's API answered HTTP 500" in result.stderr


def test_unreachable_api_is_an_error_not_a_traceback(workdir: Path) -> None:
    path = workdir / "harvester.toml"
    path.write_text(CONFIG.format(base="http://127.0.0.1:9"), encoding="utf-8")
    result = Harvester(path)("discover", "--all")
    assert result.exit_code == 1
    assert "cannot reach the site's API" in result.stderr


# --- following what was found ------------------------------------------------------------


def test_discover_add_appends_feeds_and_keeps_the_file(h: Harvester, api: Api) -> None:
    before = h.config.read_text(encoding="utf-8")
    result = h("discover", "--institution", "MIT", "--add")
    assert result.exit_code == 0, result.output
    assert "added 2 feeds" in result.output
    after = h.config.read_text(encoding="utf-8")
    diff = list(difflib.ndiff(before.splitlines(keepends=True), after.splitlines(keepends=True)))
    assert not [d for d in diff if d.startswith("- ")]  # nothing removed or changed
    assert [d[2:] for d in diff if d.startswith("+ ")] == [
        "\n",
        "[[feeds]]\n",
        f'url = "{api.site.base_url}/seminar/AlgGeom/ics"\n',
        "\n",
        "[[feeds]]\n",
        f'url = "{api.site.base_url}/seminar/MathPhys/ics"\n',
    ]
    db = sqlite_utils.Database(h.db_path)
    rows = {r["shortname"]: r for r in db.query("SELECT * FROM series")}
    assert set(rows) == {"AlgGeom", "MathPhys"}
    assert json.loads(rows["MathPhys"]["institutions"]) == ["MIT", "IAS"]

    again = h("discover", "--institution", "MIT", "--topic", "math-ph", "--add")
    assert again.exit_code == 0
    assert "nothing to add: 1 of 1 series already followed" in again.output
    assert h.config.read_text(encoding="utf-8") == after
    widened = h("discover", "--all", "--add", "--json")
    assert shortnames(widened.stdout) == ["AlgGeom", "MathPhys", "NumThy"]  # stdout: only JSON
    assert "added 1 feed to" in widened.stderr and "(2 already followed)" in widened.stderr


@pytest.mark.slow
def test_full_site_discovery_then_sync_archives_every_series(workdir: Path, api: Api) -> None:
    site = api.site
    topics = ["math_NT", "math_AG", "math-ph", "hep-th"]
    expected = {uid for s in site.series.values() for uid in (t.uid for t in s.talks.values())}
    for i in range(300):
        shortname = f"S{i:03d}"
        series = site.add_series(shortname, f"Seminar number {i}")
        for counter in range(1, 1 + i % 3 + 1):
            series.add(counter, NOW + timedelta(days=counter, hours=i), [(f"Speaker {i}", None)])
            expected.add(f"{shortname}/{counter}")
        api.describe(shortname, topics=[topics[i % 4]], institutions=["MIT"] if i % 2 else [])
    expected -= {t.uid for t in site.series["Secret"].talks.values()}
    path = workdir / "harvester.toml"
    config = CONFIG.format(base=site.base_url)
    if "min_gap" in HttpSettings.__dataclass_fields__:  # no politeness gap to a local server
        config = config.replace("[http]\n", "[http]\nmin_gap = 0\n")
    path.write_text(config, encoding="utf-8")
    h = Harvester(path)

    result = h("discover", "--all", "--add")
    assert result.exit_code == 0, result.output
    assert "added 303 feeds" in result.output
    assert len(tomllib.loads(path.read_text(encoding="utf-8"))["feeds"]) == 303

    started = time.monotonic()
    result = h("sync")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "303 feeds:" in result.output and "0 failed" in result.output
    db = sqlite_utils.Database(h.db_path)
    assert {r[0] for r in db.execute("SELECT uid FROM talks")} == expected
    faceted = dict(
        db.execute(
            "SELECT j.value, count(*) FROM talks t JOIN series s ON s.shortname = t.series_id,"
            " json_each(s.topics) j GROUP BY j.value"
        ).fetchall()
    )
    assert sum(faceted.values()) == len(expected) + 1  # MathPhys has two topics
    print(f"sync of 303 series: {elapsed:.1f} s")  # reported with -s


# --- series metadata refresh -------------------------------------------------------------


@pytest.mark.slow
def test_sync_refreshes_series_metadata_at_most_daily(h: Harvester, api: Api) -> None:
    assert h("feeds", "add", "--no-check", "NumThy", "AlgGeom").exit_code == 0
    assert h("sync").exit_code == 0
    db = sqlite_utils.Database(h.db_path)
    assert {r["shortname"] for r in db.query("SELECT shortname FROM series")} == {
        "NumThy",
        "AlgGeom",
    }
    searches = [r for r in api.requests if r.path == "/api/0/search/series"]
    assert [r.body for r in searches] == [{"query": {"shortname": {"$in": ["AlgGeom", "NumThy"]}}}]

    api.describe("NumThy", topics=["math_NT", "math_AG"])
    assert h("sync").exit_code == 0
    assert len([r for r in api.requests if r.path == "/api/0/search/series"]) == 1
    assert json.loads(db.table("series").get("NumThy")["topics"]) == ["math_NT"]

    config = load_config(h.config)
    archive = open_archive(h.db_path)
    refresh_followed_series(archive, config, now=datetime.now(UTC) + timedelta(days=1, hours=1))
    assert json.loads(db.table("series").get("NumThy")["topics"]) == ["math_NT", "math_AG"]


def test_a_failing_api_never_fails_the_sync(h: Harvester, api: Api) -> None:
    api.site.overrides["/api/0/search/series"] = api_error_override(
        400, "search_error", "error in executing search"
    )
    assert h("feeds", "add", "--no-check", "NumThy").exit_code == 0
    result = h("sync")
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output
    assert "series.refresh_failed" in result.stderr


def test_feeds_of_another_site_never_ask_the_api(workdir: Path, api: Api) -> None:
    path = workdir / "harvester.toml"
    # base_url is the real site: the local feeds are not its series, so nothing is asked
    path.write_text(
        CONFIG.format(base="https://researchseminars.org")
        + f'\n[[feeds]]\nurl = "{api.site.feed_url("NumThy")}"\n',
        encoding="utf-8",
    )
    assert Harvester(path)("sync").exit_code == 0
    assert api.requests == []


# --- rescheduled slots (part 4) ----------------------------------------------------------


def following_numthy_personally(workdir: Path, site: Site) -> Harvester:
    """A config with one personal feed (a token) that follows NumThy."""
    site.personal["tok3nABCDEF"] = ["NumThy"]
    path = workdir / "harvester.toml"
    path.write_text(
        CONFIG.format(base=site.base_url)
        + f'\n[[feeds]]\nurl = "{site.base_url}/user/ics/tok3nABCDEF"\n',
        encoding="utf-8",
    )
    return Harvester(path)


def test_old_slot_of_a_reschedule_is_linked_to_the_talk_that_moved(workdir: Path, api: Api) -> None:
    site = api.site
    series = site.series["NumThy"]
    old_time = NOW + timedelta(days=3)
    series.add(2, NOW + timedelta(days=10), [("Unrelated", None)])
    h = following_numthy_personally(workdir, site)
    assert h("sync").exit_code == 0
    # the organiser reschedules talk 1 and ticks "keep the old slot": it becomes NumThy/-1
    series.talks[1].start = NOW + timedelta(days=5)
    series.add(-1, old_time, [("Someone", None)])
    assert h("sync").exit_code == 0

    old_slot = h("history", "NumThy/-1")
    assert old_slot.exit_code == 0, old_slot.output
    assert "old slot of a reschedule: NumThy/1 moved from" in old_slot.stdout
    moved = h("history", "NumThy/1")
    assert "rescheduled: the site keeps its old slot as NumThy/-1" in moved.stdout
    as_json = json.loads(h("history", "NumThy/-1", "--json").stdout)
    assert as_json[-1]["old_slot_of"] == "NumThy/1"
    assert json.loads(h("history", "NumThy/1", "--json").stdout)[0]["old_slots"] == ["NumThy/-1"]
    db = sqlite_utils.Database(h.db_path)
    assert list(db.query("SELECT old_slot_uid, talk_uid FROM rescheduled_slots")) == [
        {"old_slot_uid": "NumThy/-1", "talk_uid": "NumThy/1"}
    ]
    assert "NumThy/-1" not in h("history", "NumThy/2").stdout


def test_an_old_slot_the_archive_cannot_place_is_said_so(workdir: Path, api: Api) -> None:
    site = api.site
    series = site.series["NumThy"]
    h = following_numthy_personally(workdir, site)
    series.add(-1, NOW + timedelta(days=1), [("Someone", None)])  # never seen at that time
    assert h("sync").exit_code == 0
    result = h("history", "NumThy/-1")
    assert "the archive cannot tell which talk moved" in result.stdout
    assert json.loads(h("history", "NumThy/-1", "--json").stdout)[0]["old_slot_of"] is None
