"""`harvester feeds ...`: editing the config file in place, against the simulated site + API."""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.config import load_config
from harvester.config_edit import ConfigFile
from tests.apisim import Api, serve_with_api
from tests.conftest import Harvester
from tests.sitesim import Site

CONFIG = """\
# My harvester — hand-written, please keep my notes.
[archive]
path = "archive.db"   # next to this file

[http]
timeout = 5
allow_private = true  # the test site lives on 127.0.0.1

[site]
base_url = "{base}"

# Algebraic geometry, my favourite
[[feeds]]
url = "{base}/seminar/AlgGeom/ics"   # the series feed
name = "alg"

# A friend's seminar: ask before removing.
# [[feeds]]
# url = "https://researchseminars.org/seminar/Friends/ics"
"""


@pytest.fixture
def api(workdir: Path) -> Iterator[Api]:
    site = Site()
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    site.add_series("AlgGeom", "Algebraic Geometry").add(1, start, [("Emmy Noether", "Göttingen")])
    site.add_series("NumThy", "Number Theory Web Seminar").add(2, start, [("S. Germain", None)])
    site.add_series("Hidden", "A private series").add(1, start, [("X", None)])
    with serve_with_api(site) as api:
        api.describe("AlgGeom", topics=["math_AG"], institutions=["MIT"])
        api.describe("NumThy", topics=["math_NT"], institutions=["IAS"], timezone="Europe/Paris")
        api.describe("Hidden", visibility=0)
        yield api


@pytest.fixture
def h(workdir: Path, api: Api) -> Harvester:
    path = workdir / "harvester.toml"
    path.write_text(CONFIG.format(base=api.site.base_url), encoding="utf-8")
    return Harvester(path)


def diff_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(added lines, removed lines) between two texts."""
    diff = list(difflib.ndiff(before.splitlines(keepends=True), after.splitlines(keepends=True)))
    return [d[2:] for d in diff if d.startswith("+ ")], [d[2:] for d in diff if d.startswith("- ")]


def feed_urls(path: Path) -> list[str]:
    return [f["url"] for f in tomllib.loads(path.read_text(encoding="utf-8")).get("feeds", [])]


def test_add_shortname_appends_its_series_feed_and_keeps_everything_else(
    h: Harvester, api: Api
) -> None:
    before = h.config.read_text(encoding="utf-8")
    result = h("feeds", "add", "NumThy")
    assert result.exit_code == 0, result.output
    feed = f"{api.site.base_url}/seminar/NumThy/ics"
    assert f"added NumThy ({feed})" in result.output
    after = h.config.read_text(encoding="utf-8")
    added, removed = diff_lines(before, after)
    assert removed == []
    assert added == ["\n", "[[feeds]]\n", f'url = "{feed}"\n']
    assert after.startswith(before)  # every byte of the user's file is still there
    # the API was asked, with the JSON-quoted GET value the site requires
    lookups = [r for r in api.requests if r.path == "/api/0/lookup/series"]
    assert [r.raw_query for r in lookups] == ["series_id=%22NumThy%22"]
    # ... and what it said is in the archive already
    row = sqlite_utils.Database(h.db_path).table("series").get("NumThy")
    assert json.loads(row["topics"]) == ["math_NT"] and row["timezone"] == "Europe/Paris"


def test_adding_a_feed_twice_is_a_no_op_with_a_message(h: Harvester, api: Api) -> None:
    assert h("feeds", "add", "NumThy").exit_code == 0
    once = h.config.read_bytes()
    for same in (
        "NumThy",
        f"{api.site.base_url}/seminar/NumThy/ics",
        f"{api.site.base_url}/seminar/NumThy/ics/",
        f"{api.site.base_url}/seminar/NumThy/",  # the series page means its feed
        "alg",  # the name of a feed already followed
    ):
        result = h("feeds", "add", same)
        assert result.exit_code == 0, result.output
        assert "already following" in result.output and "nothing to do" in result.output
        assert h.config.read_bytes() == once


def test_webcal_and_old_host_names_are_normalised(h: Harvester) -> None:
    result = h("feeds", "add", "--no-check", "webcal://mathseminars.org/seminar/MITNT/ics")
    assert result.exit_code == 0, result.output
    assert feed_urls(h.config)[-1] == "https://researchseminars.org/seminar/MITNT/ics"
    again = h("feeds", "add", "--no-check", "http://www.rsem.org/seminar/MITNT")
    assert "already following MITNT" in again.output


def test_unknown_series_is_refused_and_the_file_is_untouched(h: Harvester) -> None:
    before = h.config.read_bytes()
    for missing in ("NoSuchSeries", "Hidden"):  # unknown, and private (the API hides it)
        result = h("feeds", "add", missing)
        assert result.exit_code == 1
        assert f"no public series '{missing}'" in result.stderr
        assert h.config.read_bytes() == before
    assert h("feeds", "add", "--no-check", "Hidden").exit_code == 0
    assert feed_urls(h.config)[-1].endswith("/seminar/Hidden/ics")


def test_unreachable_api_only_warns(workdir: Path) -> None:
    path = workdir / "harvester.toml"
    path.write_text(CONFIG.format(base="http://127.0.0.1:9"), encoding="utf-8")
    result = Harvester(path)("feeds", "add", "Somewhere")
    assert result.exit_code == 0, result.output
    assert "warning: could not check with the site's API" in result.stderr
    assert feed_urls(path)[-1] == "http://127.0.0.1:9/seminar/Somewhere/ics"


def test_bad_references_are_usage_errors(h: Harvester) -> None:
    before = h.config.read_bytes()
    result = h("feeds", "add", "not a feed")
    assert result.exit_code == 2
    assert "neither a series shortname" in result.output
    result = h("feeds", "add", "--no-check", "ftp://example.org/x.ics")
    assert result.exit_code == 2
    result = h("feeds", "add", "--no-check", "http://[x")  # urlsplit refuses it
    assert result.exit_code == 2 and "neither a series shortname" in result.output
    result = h("feeds", "add", "--interval", "soon", "NumThy")
    assert result.exit_code == 2 and "--interval" in result.output
    assert h.config.read_bytes() == before


def test_an_add_that_would_break_the_config_is_refused(h: Harvester, api: Api) -> None:
    before = h.config.read_bytes()
    result = h("feeds", "add", "--name", "alg", "NumThy")  # the name is taken
    assert result.exit_code == 2
    assert "already used by feeds[0]" in result.output
    assert h.config.read_bytes() == before


def test_add_with_name_and_interval(h: Harvester) -> None:
    assert h("feeds", "add", "--name", "nt", "--interval", "6h", "NumThy").exit_code == 0
    entry = tomllib.loads(h.config.read_text(encoding="utf-8"))["feeds"][-1]
    assert entry["name"] == "nt" and entry["interval"] == "6h"


@pytest.mark.slow
def test_remove_takes_out_only_the_entry_and_keeps_the_archive(h: Harvester, api: Api) -> None:
    assert h("feeds", "add", "NumThy").exit_code == 0
    assert h("sync").exit_code == 0
    db = sqlite_utils.Database(h.db_path)
    versions_before = db.execute("SELECT count(*) FROM talk_versions").fetchone()[0]
    before = h.config.read_text(encoding="utf-8")

    result = h("feeds", "remove", "alg")
    assert result.exit_code == 0, result.output
    assert "archived history is kept" in result.output
    after = h.config.read_text(encoding="utf-8")
    added, removed = diff_lines(before, after)
    assert added == []
    assert removed == [
        "[[feeds]]\n",
        f'url = "{api.site.base_url}/seminar/AlgGeom/ics"   # the series feed\n',
        'name = "alg"\n',
    ]
    assert "# A friend's seminar: ask before removing.\n" in after
    assert db.execute("SELECT count(*) FROM talk_versions").fetchone()[0] == versions_before
    assert h("history", "AlgGeom/1").exit_code == 0
    hits = api.site.hits["/seminar/AlgGeom/ics"]
    assert h("sync").exit_code == 0
    assert api.site.hits["/seminar/AlgGeom/ics"] == hits  # no longer polled


def test_remove_by_url_or_shortname(h: Harvester, api: Api) -> None:
    h("feeds", "add", "NumThy")
    assert h("feeds", "remove", f"{api.site.base_url}/seminar/NumThy/ics").exit_code == 0
    assert h("feeds", "remove", "AlgGeom").exit_code == 0  # the shortname of the "alg" feed
    assert feed_urls(h.config) == []
    assert tomllib.loads(h.config.read_text(encoding="utf-8"))["site"]["base_url"]


def test_unknown_feed_for_remove_enable_disable(h: Harvester) -> None:
    before = h.config.read_bytes()
    for command in ("remove", "enable", "disable"):
        result = h("feeds", command, "nope")
        assert result.exit_code == 1
        assert "no feed 'nope'" in result.stderr
    assert h.config.read_bytes() == before


def test_disable_skips_the_feed_and_enable_restores_the_file(h: Harvester, api: Api) -> None:
    original = h.config.read_text(encoding="utf-8")
    result = h("feeds", "disable", "alg")
    assert result.exit_code == 0 and "disabled alg" in result.output
    added, removed = diff_lines(original, h.config.read_text(encoding="utf-8"))
    assert (added, removed) == (["enabled = false\n"], [])
    assert "enabled = false\n\n# A friend's" in h.config.read_text(encoding="utf-8")
    assert "already disabled" in h("feeds", "disable", "alg").output

    h("feeds", "add", "NumThy")
    assert h("sync").exit_code == 0
    assert api.site.hits["/seminar/AlgGeom/ics"] == 0
    listing = h("feeds", "list").output
    assert "alg" in listing and "disabled" in listing

    assert h("feeds", "remove", "NumThy").exit_code == 0
    assert h("feeds", "enable", "alg").exit_code == 0
    assert h.config.read_text(encoding="utf-8") == original


def test_enable_keeps_a_comment_on_the_enabled_line(h: Harvester) -> None:
    text = h.config.read_text(encoding="utf-8").replace(
        'name = "alg"\n', 'name = "alg"\nenabled = false  # broken until May\n'
    )
    h.config.write_text(text, encoding="utf-8")
    assert h("feeds", "enable", "alg").exit_code == 0
    assert "enabled = true  # broken until May\n" in h.config.read_text(encoding="utf-8")


def test_list_shows_every_feed_with_personal_tokens_masked(h: Harvester, api: Api) -> None:
    token = "s3cr3tTOKENvalue"
    assert h("feeds", "add", f"{api.site.base_url}/user/ics/{token}").exit_code == 0
    result = h("feeds", "list", "--json")
    assert result.exit_code == 0
    assert token not in result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["alg", "user/ics/s3cr…"]
    assert rows[1]["url"].endswith("/user/ics/s3cr…") and rows[0]["enabled"] is True
    assert token not in h("feeds", "list").output


def test_list_lines_up_its_columns_as_shown_with_a_secret_masked(h: Harvester) -> None:
    secret = "Pw0rdSecret99xyz"
    pasted = f"https://me:{secret}@x.org/feed"  # a URL pasted into a name: masked
    h.config.write_text(
        h.config.read_text().replace('name = "alg"', f'name = "{pasted}"'), encoding="utf-8"
    )
    assert h("feeds", "add", "--no-check", "NumThy").exit_code == 0
    shown = h("feeds", "list").stdout
    assert secret not in shown and "https://me:…@x.org/feed  enabled" in shown
    # Measured as shown (masked), not as the config has it.
    assert [line.index("  enabled  ") for line in shown.splitlines()] == [
        len("https://me:…@x.org/feed")
    ] * 2, shown


def test_add_creates_a_missing_config(workdir: Path, api: Api) -> None:
    path = workdir / "new" / "harvester.toml"
    h = Harvester(path)
    feed = f"{api.site.base_url}/seminar/NumThy/ics"
    result = h("feeds", "add", feed)
    assert result.exit_code == 0, result.output
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# seminar-harvester configuration")
    assert feed_urls(path) == [feed]
    assert h("feeds", "list").exit_code == 0
    # no config at all: the default file, and shortnames of the default site
    result = Harvester(workdir / "config" / "harvester.toml")("feeds", "add", "--no-check", "MITNT")
    assert result.exit_code == 0, result.output
    assert feed_urls(workdir / "config" / "harvester.toml") == [
        "https://researchseminars.org/seminar/MITNT/ics"
    ]


def test_list_without_a_config_says_how_to_start(workdir: Path) -> None:
    result = Harvester(workdir / "missing.toml")("feeds", "list")
    assert result.exit_code == 2
    assert "feeds add" in result.output


def test_crlf_file_stays_crlf(h: Harvester) -> None:
    h.config.write_bytes(h.config.read_bytes().replace(b"\n", b"\r\n"))
    before = h.config.read_bytes()
    assert h("feeds", "add", "NumThy").exit_code == 0
    after = h.config.read_bytes()
    assert after.startswith(before)
    assert b"\n" not in after.replace(b"\r\n", b"")


def test_every_feeds_command_has_help(h: Harvester) -> None:
    top = h("feeds", "--help").output
    for command in ("list", "add", "remove", "enable", "disable"):
        assert command in top
        text = h("feeds", command, "--help").output
        assert "Usage:" in text and len(text.splitlines()) > 4
    assert "discover" in h("--help").output


# --- any layout: edits touch only the lines of the entry they edit -----------------------

BASE = "https://researchseminars.org"
_comment = st.sampled_from(["# note", "# see the README", "#", "# [[feeds]] (an example)"])
_gap = st.lists(st.one_of(_comment, st.just("")), max_size=3)


@st.composite
def _entry(draw: st.DrawFn, index: int) -> list[str]:
    lines = [
        "[[feeds]]",
        f'url = "{BASE}/seminar/S{index}/ics"' + draw(st.sampled_from(["", "  # c"])),
    ]
    if draw(st.booleans()):
        lines += draw(st.lists(_comment, max_size=1))
        lines.append(f'name = "feed{index}"')
    if draw(st.booleans()):
        lines.append("enabled = true")
    return lines


@st.composite
def _layout(draw: st.DrawFn) -> tuple[str, list[list[str]]]:
    sections = [
        '[archive]\npath = "a.db"',
        "[http]\ntimeout = 5  # s",
        f'[site]\nbase_url = "{BASE}"',
    ]
    before = draw(st.integers(0, len(sections)))
    entries = [draw(_entry(i)) for i in range(draw(st.integers(1, 4)))]
    lines = draw(_gap)
    for section in sections[:before]:
        lines += [*section.split("\n"), *draw(_gap)]
    for entry in entries:
        lines += [*entry, *draw(_gap)]
    for section in sections[before:]:
        lines += [*section.split("\n"), *draw(_gap)]
    return "\n".join(lines) + "\n", entries


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=_layout(), data=st.data())
def test_edits_change_only_their_own_lines_in_any_layout(
    layout: tuple[str, list[list[str]]], data: st.DataObject
) -> None:
    text, entries = layout
    path = Path("/nonexistent/harvester.toml")
    urls = [f"{BASE}/seminar/S{i}/ics" for i in range(len(entries))]

    added_file = ConfigFile(path, text, BASE)
    added_file.add(f"{BASE}/seminar/New/ics")
    added_file.validate()
    added, removed = diff_lines(text, added_file.text)
    assert removed == [] and f'url = "{BASE}/seminar/New/ics"\n' in added
    assert [f["url"] for f in tomllib.loads(added_file.text)["feeds"]] == [
        *urls,
        f"{BASE}/seminar/New/ics",
    ]

    victim = data.draw(st.integers(0, len(entries) - 1))
    removed_file = ConfigFile(path, text, BASE)
    entry = removed_file.find(urls[victim])
    assert entry is not None
    removed_file.remove(entry)
    added, removed = diff_lines(text, removed_file.text)
    assert added == []
    assert {line.rstrip("\n") for line in removed} <= {*entries[victim], ""}
    remaining = tomllib.loads(removed_file.text).get("feeds", [])
    assert [f["url"] for f in remaining] == urls[:victim] + urls[victim + 1 :]

    disabled_file = ConfigFile(path, text, BASE)
    entry = disabled_file.find(urls[victim])
    assert entry is not None and disabled_file.set_enabled(entry, False)
    added, removed = diff_lines(text, disabled_file.text)
    if "enabled = true" in entries[victim]:
        assert (added, removed) == (["enabled = false\n"], ["enabled = true\n"])
    else:
        assert (added, removed) == (["enabled = false\n"], [])
    assert tomllib.loads(disabled_file.text)["feeds"][victim]["enabled"] is False


# --- a valid config the editor cannot edit: read as sync reads it, edits say why ----------

SPLIT = """
[[notify]]
url = "json://notify.invalid/hook"  # never sent to: no test here syncs
series = ["NumThy"]

[[feeds]]
url = "{base}/seminar/NumThy/ics"
"""


@pytest.fixture
def split(h: Harvester, api: Api) -> Harvester:
    """`h` with a [[notify]] between its two [[feeds]]: valid, but tomlkit would move it."""
    text = h.config.read_text(encoding="utf-8") + SPLIT.format(base=api.site.base_url)
    h.config.write_text(text, encoding="utf-8")
    return h


def test_list_reads_a_config_whose_feeds_a_notify_splits(split: Harvester) -> None:
    loaded = load_config(split.config).feeds  # as sync and the daemon read it
    assert [f.name for f in loaded] == ["alg", "NumThy"]
    listed = split("feeds", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(r["name"], r["url"]) for r in json.loads(listed.stdout)] == [
        (f.name, f.url) for f in loaded
    ]
    lines = split("feeds", "list").stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["alg", "enabled"], ["NumThy", "enabled"]]


def test_an_edit_of_a_split_config_says_which_line_to_move(split: Harvester) -> None:
    before = split.config.read_text(encoding="utf-8")
    lines = before.splitlines(keepends=True)
    notify = lines.index("[[notify]]\n")
    second = len(lines) - 1 - lines[::-1].index("[[feeds]]\n")
    for command in (("feeds", "disable", "alg"), ("feeds", "remove", "alg")):
        result = split(*command)
        assert result.exit_code == 2
        assert (
            f"[[notify]] at line {notify + 1} splits the [[feeds]] entries" in result.stderr
            and f"move the one at line {second + 1}, and any after it, above line {notify + 1}"
            in result.stderr
        ), result.stderr
        assert split.config.read_text(encoding="utf-8") == before
    # Done as said, the edit goes through.
    moved = lines[:notify] + lines[second:] + ["\n"] + lines[notify:second]
    split.config.write_text("".join(moved), encoding="utf-8")
    assert split("feeds", "disable", "alg").exit_code == 0
    assert [f.enabled for f in load_config(split.config).feeds] == [False, True]
