"""`[[follow]]` (issue 23): a topic's series are polled with no config edit, through the real
CLI against the local site and its API (tests/apisim.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harvester.config import load_config
from harvester.humane import human_time
from tests.apisim import Api, api_error_override, serve_with_api
from tests.conftest import Harvester
from tests.sitesim import Site
from tests.test_daemon import Daemon, wait_for

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
CONFIG = """\
[archive]
path = "archive.db"

[http]
timeout = 5
allow_private = {allow_private}

[site]
base_url = "{base}"

[[follow]]
topic = "math_NT"
{extra}"""


@pytest.fixture
def api(workdir: Path) -> Iterator[Api]:
    site = Site()
    for shortname, name in (("NumThy", "Number Theory Web Seminar"), ("AlgGeom", "Algebra")):
        series = site.add_series(shortname, name)
        for n in range(1, 7):
            series.add(n, NOW + timedelta(days=n), [("Someone", None)], title=f"{shortname} {n}")
    with serve_with_api(site) as api:
        api.describe("NumThy", topics=["math_NT"], institutions=["IAS"])
        api.describe("AlgGeom", topics=["math_AG"], institutions=["MIT"])
        yield api


def config(workdir: Path, api: Api, *, allow_private: bool = True, extra: str = "") -> Harvester:
    path = workdir / "harvester.toml"
    text = CONFIG.format(
        base=api.site.base_url, allow_private=str(allow_private).lower(), extra=extra
    )
    path.write_text(text, encoding="utf-8")
    return Harvester(path)


@pytest.fixture
def h(workdir: Path, api: Api) -> Harvester:
    return config(workdir, api)


def ok(result: Any, code: int = 0) -> Any:
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def query(h: Harvester, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(h.db_path) as conn:
        return conn.execute(sql, params).fetchall()


def polled_series(h: Harvester) -> list[str]:
    return sorted({row[0] for row in query(h, "SELECT series_id FROM talks")})


def feed_hits(api: Api, shortname: str) -> int:
    return api.site.hits[f"/seminar/{shortname}/ics"]


def add_langlands(api: Api) -> None:
    series = api.site.add_series("Langlands", "p-adic Langlands")
    series.add(1, NOW + timedelta(days=2), [("Pierre Colmez", None)], title="Banach spaces")
    api.describe("Langlands", topics=["math_NT", "math_AG"], institutions=["MIT"])


@pytest.mark.slow
def test_a_topics_series_are_polled_and_a_new_one_joins_after_sync_refresh(
    h: Harvester, api: Api
) -> None:
    before = h.config.read_bytes()
    result = ok(h("sync"))
    assert "1 feed: 6 new" in result.stdout
    assert polled_series(h) == ["NumThy"]  # AlgGeom is in another topic
    searches = [r.body for r in api.requests if r.path == "/api/0/search/series"]
    assert {"query": {"topics": {"$contains": "math_NT"}}} in searches
    rows = query(h, "SELECT shortname, followed_by, followed_since IS NOT NULL FROM series")
    assert ("NumThy", "topic=math_NT", 1) in rows

    add_langlands(api)  # a new series of the topic, announced today
    ok(h("sync"))
    assert feed_hits(api, "Langlands") == 0  # the topics are searched at most once a day

    result = ok(h("sync", "--refresh"))
    assert "2 feeds: 1 new" in result.stdout
    assert polled_series(h) == ["Langlands", "NumThy"]
    assert h.config.read_bytes() == before  # no config edit
    status = ok(h("status")).stdout
    assert "following: topic=math_NT; 2 series polled" in status
    since = human_time(
        query(h, "SELECT followed_since FROM series WHERE shortname = 'Langlands'")[0][0]
    )
    assert since.endswith(" UTC") and f"  Langlands  since {since}  (topic=math_NT)" in status
    # its details came with it (the series refresh after the polls)
    assert query(h, "SELECT name, topics FROM series WHERE shortname = 'Langlands'") == [
        ("p-adic Langlands", json.dumps(["math_NT", "math_AG"]))
    ]


def test_an_institution_narrows_the_topic(workdir: Path, api: Api) -> None:
    add_langlands(api)
    h = config(workdir, api, extra='institution = "MIT"\n')
    ok(h("sync"))
    assert polled_series(h) == ["Langlands"]  # NumThy is math_NT at IAS
    assert query(h, "SELECT followed_by FROM series WHERE shortname = 'Langlands'") == [
        ("topic=math_NT institution=MIT",)
    ]


@pytest.mark.slow
def test_a_series_that_leaves_the_topic_is_no_longer_polled_and_keeps_its_history(
    h: Harvester, api: Api
) -> None:
    ok(h("sync"))
    api.site.series["NumThy"].talks[2].title = "Retitled once"
    ok(h("sync"))
    api.describe("NumThy", topics=["math_AG"])  # the organisers moved it
    hits = feed_hits(api, "NumThy")
    result = ok(h("sync", "--refresh"))
    assert "0 feeds" in result.stdout
    assert feed_hits(api, "NumThy") == hits
    assert query(h, "SELECT count(*), max(version) FROM talks WHERE status = 'active'") == [(6, 2)]
    assert "  NumThy  left the topic" in ok(h("status")).stdout

    api.describe("NumThy", topics=["math_NT"])  # and back
    ok(h("sync", "--refresh"))
    assert feed_hits(api, "NumThy") == hits + 1
    assert query(h, "SELECT left_at FROM series WHERE shortname = 'NumThy'") == [(None,)]


@pytest.mark.slow
def test_an_api_outage_keeps_the_followed_series_polled(h: Harvester, api: Api) -> None:
    ok(h("sync"))
    api.site.overrides["/api/0/search/series"] = api_error_override(500, "error", "down")
    hits = feed_hits(api, "NumThy")
    result = ok(h("sync", "--refresh"))
    assert feed_hits(api, "NumThy") == hits + 1
    assert "follow.refresh_failed" in result.stderr
    assert query(h, "SELECT left_at FROM series WHERE shortname = 'NumThy'") == [(None,)]


def test_a_series_the_config_names_is_polled_as_the_config_says(workdir: Path, api: Api) -> None:
    extra = f'\n[[feeds]]\nurl = "{api.site.feed_url("NumThy")}"\nenabled = false\n'
    h = config(workdir, api, extra=extra)
    ok(h("sync"))
    assert feed_hits(api, "NumThy") == 0  # disabled in the config: the topic does not override


@pytest.mark.slow
def test_rule_7s_guard_holds_the_removals_of_a_series_a_topic_brought_in(
    h: Harvester, api: Api
) -> None:
    ok(h("sync"))
    api.site.series["NumThy"].talks.clear()  # suddenly empty: suspect
    ok(h("sync"))
    assert query(h, "SELECT count(*) FROM talks WHERE status = 'active'") == [(6,)]
    held = query(h, "SELECT held_removals FROM feeds WHERE url LIKE '%/seminar/NumThy/ics'")
    assert held[0][0] is not None and len(json.loads(held[0][0])) == 6
    ok(h("sync"))  # a second empty poll confirms
    assert query(h, "SELECT count(*) FROM talks WHERE status = 'removed'") == [(6,)]


@pytest.mark.slow
def test_the_url_policy_applies_to_the_series_a_topic_brought_in(workdir: Path, api: Api) -> None:
    ok(config(workdir, api)("sync"))
    h = config(workdir, api, allow_private=False)  # the site is on 127.0.0.1
    hits = feed_hits(api, "NumThy")
    result = h("sync", "--refresh")
    assert result.exit_code == 1
    assert feed_hits(api, "NumThy") == hits  # refused before any request
    assert "error: NumThy:" in result.stderr and "allow_private" in result.stderr
    assert "follow.refresh_failed" in result.stderr  # the API call is refused as well


@pytest.mark.slow
def test_the_daemon_polls_the_series_a_topic_brings_in(workdir: Path, api: Api) -> None:
    h = config(workdir, api, extra='\n[schedule]\ninterval = "0.5s"\njitter = 0\n')
    daemon = Daemon(h.config)
    try:
        wait_for(lambda: len(daemon.fetches("NumThy")) >= 2, "two polls of the followed series")
        assert daemon.fetches("AlgGeom") == []
        assert daemon.stop()[0] == 0
    finally:
        daemon.close()
    assert polled_series(h) == ["NumThy"]


@pytest.mark.slow
def test_without_follow_entries_the_series_they_brought_leave(h: Harvester, api: Api) -> None:
    ok(h("sync"))
    text = h.config.read_text().replace('[[follow]]\ntopic = "math_NT"\n', "")
    h.config.write_text(text + f'\n[[feeds]]\nurl = "{api.site.feed_url("AlgGeom")}"\n')
    hits = feed_hits(api, "NumThy")
    ok(h("sync"))
    assert feed_hits(api, "NumThy") == hits
    assert "  NumThy  left the topic" in ok(h("status")).stdout
    assert query(h, "SELECT count(*) FROM talks WHERE series_id = 'NumThy'") == [(6,)]


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("[[follow]]\ninstitution = 'MIT'\n", "follow[0].topic: missing"),
        ("[[follow]]\ntopic = 'math NT'\n", "follow[0].topic: not a name the site uses"),
        ("[[follow]]\ntopic = 'x'\n[[follow]]\ntopic = 'x'\n", "follow[1]: same as follow[0]"),
        ("[[follow]]\ntopic = 'x'\ntopics = ['y']\n", "follow[0].topics: unknown key"),
        (
            "[[notify]]\nurl = 'json://h/'\ndigest = 'daily'\n",
            'notify[0].digest: expected "weekly"',
        ),
        ("[[notify]]\nurl = 'json://h/'\ntimezone = 'Mars/Olympus'\n", "unknown time zone"),
        ("[[notify]]\nurl = 'json://h/'\nmatch = '  '\n", "notify[0].match: an empty query"),
        ("[[notify]]\nurl = 'json://h/'\nspeakers = ['']\n", "notify[0].speakers: expected a list"),
    ],
)
def test_bad_follow_and_notify_entries_are_refused(workdir: Path, entry: str, error: str) -> None:
    path = workdir / "harvester.toml"
    path.write_text('[archive]\npath = "archive.db"\n\n' + entry, encoding="utf-8")
    result = Harvester(path)("status")
    assert result.exit_code == 2
    assert error in result.stderr


def test_match_or_speakers_make_new_talks_a_default_kind(workdir: Path) -> None:
    path = workdir / "harvester.toml"
    path.write_text(
        "[[notify]]\nurl = 'json://a/'\nspeakers = ['Noether']\n"
        "[[notify]]\nurl = 'json://b/'\n"
        "[[notify]]\nurl = 'json://c/'\nmatch = 'x'\nkinds = ['retitled']\n",
        encoding="utf-8",
    )
    kinds = [entry.kinds for entry in load_config(path).notify]
    assert "new" in kinds[0] and "new" not in kinds[1] and kinds[2] == {"retitled"}


@pytest.mark.slow
def test_status_check_judges_the_series_a_topic_brings_in(h: Harvester, api: Api) -> None:
    ok(h("sync"))
    assert ok(h("status", "--check")).stdout.startswith("OK: 1 feed healthy")

    def down(handler: Any) -> bool:
        handler._send(404, b"gone", {})  # a 4xx is not retried
        return True

    api.site.overrides["/seminar/NumThy/ics"] = down
    ok(h("sync"), 1)
    result = ok(h("status", "--check"), 1)
    assert result.stdout.startswith("FAILING: NumThy (")


@pytest.mark.slow
def test_the_daemon_starts_with_only_a_topic_while_the_api_is_down(workdir: Path, api: Api) -> None:
    """It waits for the topic's series (its hourly upkeep asks again), asking once at the
    start: no 'no feeds to poll' refusal."""
    api.site.overrides["/api/0/search/series"] = api_error_override(500, "error", "down")
    h = config(workdir, api)
    daemon = Daemon(h.config)
    try:
        wait_for(lambda: daemon.events("daemon.started"), "the daemon's start")
        assert len(daemon.events("follow.refresh_failed")) == 1
        assert daemon.stop()[0] == 0
    finally:
        daemon.close()
