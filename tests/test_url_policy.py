"""What URLs may be fetched (issue 6, part 4): schemes, private addresses, allowed_hosts.

Everything goes through real local servers. The site runs on 127.0.0.1, so to test "a
public feed redirects into the local network" one check is told that exactly 127.0.0.1
counts as public (the `classify` seam), and the redirect leads to a second server on
127.0.0.2, which is still judged by the real rules.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from harvester._http import IPAddress, Resolver, UrlPolicy, address_problem
from harvester.archive import open_archive
from harvester.config import HttpSettings, load_config
from harvester.daemon import Daemon
from harvester.errors import ApiError, FetchError
from harvester.fetch import FeedClient, FetchPolicy, fetch, make_client
from harvester.site_api import SiteApi
from harvester.sync import FeedTarget, poll_feed
from tests.apisim import Api, ApiRequest, serve_with_api
from tests.conftest import Harvester
from tests.scripted import Scripted, reply
from tests.sitesim import Site, serve

HINT = "(set [http] allow_private = true to allow)"
LIMIT = 1_000_000
FEED = "/seminar/AlgGeom/ics"


def write_config(directory: Path, urls: list[str], http: str = "", site: str = "") -> Path:
    """A config without the test suite's usual `allow_private = true` (unless in `http`)."""
    feeds = "".join(f'\n[[feeds]]\nurl = "{url}"\n' for url in urls)
    site_table = f'\n[site]\nbase_url = "{site}"\n' if site else ""
    path = directory / "harvester.toml"
    path.write_text(
        f'[archive]\npath = "archive.db"\n\n[http]\ntimeout = 5\nretries = 0\n{http}'
        + site_table
        + feeds,
        encoding="utf-8",
    )
    return path


def archived_talks(h: Harvester) -> int:
    if not h.db_path.exists():
        return 0
    return int(sqlite_utils.Database(h.db_path).execute("SELECT count(*) FROM talks").fetchone()[0])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def inner() -> Iterator[Site]:
    """A second site, on 127.0.0.2: the "local network" a public feed must not reach."""
    sim = Site()
    sim.add_series("AlgGeom", "Inner")
    with serve(sim, "127.0.0.2"):
        yield sim


def only_127_0_0_1_is_public(address: IPAddress) -> str | None:
    """The seam: the outer test site counts as public; everything else by the real rules."""
    if address == ipaddress.ip_address("127.0.0.1"):
        return None
    return address_problem(address)


def seam_client() -> FeedClient:
    settings = HttpSettings(retries=0, timeout=5)
    check = UrlPolicy(classify=only_127_0_0_1_is_public)
    return make_client(settings, policy=FetchPolicy.from_settings(settings, check_url=check))


# --- private addresses, end to end through `harvester sync` --------------------------------


def test_feed_on_a_loopback_address_is_refused_and_never_requested(
    workdir: Path, site: Site
) -> None:
    h = Harvester(write_config(workdir, [site.feed_url("AlgGeom")]))
    result = h("sync")
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [
        f"error: AlgGeom: refused: 127.0.0.1 is a loopback address {HINT}"
    ]
    assert sum(site.hits.values()) == 0
    assert archived_talks(h) == 0
    db = sqlite_utils.Database(h.db_path)
    assert [r["outcome"] for r in db.query("SELECT outcome FROM fetches")] == ["error"]


def test_a_host_name_that_resolves_to_loopback_is_refused(workdir: Path, site: Site) -> None:
    port = site.base_url.rsplit(":", 1)[1]
    h = Harvester(write_config(workdir, [f"http://localhost:{port}{FEED}"]))
    result = h("sync")
    assert result.exit_code == 1
    [line] = error_lines(result.stderr)
    assert "refused: localhost resolves to " in line and f"a loopback address {HINT}" in line
    assert sum(site.hits.values()) == 0


def test_allow_private_lets_local_feeds_through(workdir: Path, site: Site) -> None:
    urls = [site.feed_url("AlgGeom"), site.feed_url("AlgGeom").replace("127.0.0.1", "localhost")]
    h = Harvester(write_config(workdir, urls, http="allow_private = true\n"))
    result = h("sync")
    assert result.exit_code == 0, result.output
    assert archived_talks(h) == 3
    assert site.hits[FEED] == 3  # 127.0.0.1, localhost, and localhost's 301 to 127.0.0.1


def test_an_ad_hoc_url_on_the_command_line_is_checked_too(workdir: Path, site: Site) -> None:
    h = Harvester(write_config(workdir, []))
    result = h("sync", site.feed_url("NumThy"))
    assert result.exit_code == 1
    assert f"refused: 127.0.0.1 is a loopback address {HINT}" in result.stderr
    assert sum(site.hits.values()) == 0


def test_the_daemon_client_enforces_the_policy(workdir: Path, site: Site) -> None:
    config = load_config(write_config(workdir, [site.feed_url("AlgGeom")]))
    daemon = Daemon(config, config_path=None, db_override=None)
    db = open_archive(workdir / "archive.db")
    try:
        result = poll_feed(db, daemon.client, FeedTarget(site.feed_url("AlgGeom")), LIMIT)
    finally:
        daemon.client.close()
        db.conn.close()
    assert result.failed and result.error == f"refused: 127.0.0.1 is a loopback address {HINT}"
    assert sum(site.hits.values()) == 0


# --- redirects ------------------------------------------------------------------------------


def test_a_public_feed_cannot_redirect_into_the_local_network(
    tmp_path: Path, site: Site, inner: Site
) -> None:
    inner_url = inner.feed_url("AlgGeom")
    public = Scripted(site, "/moved/ics", reply(301, Location=inner_url))
    db = open_archive(tmp_path / "archive.db")
    with seam_client() as client:
        result = poll_feed(db, client, FeedTarget(public.url, "moved"), LIMIT)
        with pytest.raises(FetchError) as caught:
            fetch(client, public.url, LIMIT)
    expected = f"redirected to {inner_url}: refused: 127.0.0.2 is a loopback address {HINT}"
    assert result.failed and result.error == expected
    assert str(caught.value) == f"{public.url}: {expected}"
    assert public.requests == 2  # the public feed was asked (once per poll) ...
    assert sum(inner.hits.values()) == 0  # ... the address it pointed to never
    assert db.execute("SELECT count(*) FROM talks").fetchone() == (0,)


def test_the_seam_lets_a_redirect_within_the_public_site_through(
    tmp_path: Path, site: Site
) -> None:
    """The control for the test above: only the redirect's target made the difference."""
    Scripted(site, "/moved/ics", reply(301, Location=FEED))
    db = open_archive(tmp_path / "archive.db")
    with seam_client() as client:
        result = poll_feed(db, client, FeedTarget(site.base_url + "/moved/ics", "moved"), LIMIT)
    assert not result.failed and result.counts["new"] == 3
    assert site.hits[FEED] == 1


def test_the_api_cannot_be_redirected_into_the_local_network(site: Site, inner: Site) -> None:
    topics = Scripted(site, "/api/0/topics", reply(302, Location=inner.base_url + "/api/0/x"))
    with seam_client() as client:
        api = SiteApi(client, site.base_url)
        with pytest.raises(ApiError) as caught:
            api.topics()
    message = str(caught.value)
    assert "refused: 127.0.0.2 is a loopback address" in message and "\n" not in message
    assert topics.requests == 1
    assert sum(inner.hits.values()) == 0


# --- allowed_hosts --------------------------------------------------------------------------


def test_allowed_hosts_narrows_polling_to_the_named_hosts(workdir: Path, site: Site) -> None:
    port = site.base_url.rsplit(":", 1)[1]
    listed, unlisted = site.feed_url("AlgGeom"), f"http://localhost:{port}/seminar/NumThy/ics"
    http = 'allow_private = true\nallowed_hosts = ["127.0.0.1"]\n'
    h = Harvester(write_config(workdir, [listed, unlisted], http=http))
    result = h("sync")
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [
        "error: NumThy: refused: localhost is not in [http] allowed_hosts"
    ]
    assert archived_talks(h) == 3  # the listed host's feed was archived
    assert site.hits == {FEED: 1}


def test_allowed_hosts_holds_after_a_redirect_and_ignores_case(workdir: Path, site: Site) -> None:
    """localhost is listed (in capitals); its 301 to 127.0.0.1 leaves the list."""
    port = site.base_url.rsplit(":", 1)[1]
    url = f"http://localhost:{port}{FEED}"
    http = 'allow_private = true\nallowed_hosts = ["LOCALHOST"]\n'
    h = Harvester(write_config(workdir, [url], http=http))
    result = h("sync")
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [
        f"error: AlgGeom: redirected to http://127.0.0.1:{port}{FEED}: "
        "refused: 127.0.0.1 is not in [http] allowed_hosts"
    ]
    assert site.hits == {FEED: 1}  # the 301 from "localhost", nothing after it


def test_a_listed_host_is_still_refused_on_a_private_address(workdir: Path, site: Site) -> None:
    h = Harvester(
        write_config(workdir, [site.feed_url("AlgGeom")], 'allowed_hosts = ["127.0.0.1"]\n')
    )
    result = h("sync")
    assert result.exit_code == 1
    assert f"refused: 127.0.0.1 is a loopback address {HINT}" in result.stderr
    assert sum(site.hits.values()) == 0


# --- schemes in the config -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.org/x.ics", "gopher://example.org/1", "data:,hello"],
)
def test_other_schemes_are_refused_in_the_config(workdir: Path, url: str) -> None:
    scheme = url.split(":", 1)[0]
    h = Harvester(write_config(workdir, ["https://researchseminars.org/seminar/NT/ics", url]))
    result = h("sync")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: bad config: {h.config}: feeds[1].url: "
        f"only http(s) and webcal feed URLs can be polled, not {scheme}:"
    ]
    assert not h.db_path.exists()  # nothing ran


def test_another_scheme_as_the_site_is_refused_in_the_config(workdir: Path) -> None:
    h = Harvester(write_config(workdir, [], site="file:///srv/site"))
    result = h("discover", "--topics")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: bad config: {h.config}: site.base_url: "
        "only http(s) and webcal feed URLs can be polled, not file:"
    ]


# --- the site's API (`harvester discover`) ----------------------------------------------------


def test_discover_honours_the_policy(workdir: Path) -> None:
    site = Site()
    site.add_series("AlgGeom", "Algebraic Geometry")
    with serve_with_api(site) as api:
        api_requests = _discover_topics(workdir, api, http="")
        assert api_requests == []
        allowed = _discover_topics(workdir, api, http="allow_private = true\n")
        assert [r.path for r in allowed] == ["/api/0/topics"]


def _discover_topics(workdir: Path, api: Api, http: str) -> list[ApiRequest]:
    h = Harvester(write_config(workdir, [], http=http, site=api.site.base_url))
    before = len(api.requests)
    result = h("discover", "--topics")
    if http:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: {api.site.base_url}/api/0/topics: ")
        assert f"refused: 127.0.0.1 is a loopback address {HINT}" in line
    return list(api.requests[before:])


# --- the address rules, without the network -------------------------------------------------


def resolver_for(addresses: dict[str, list[str]]) -> Resolver:
    def resolve(host: str) -> list[str]:
        if host not in addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return addresses[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("::1", "a loopback address"),
        ("fe80::1", "a link-local address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("2002:7f00:1::1", "a loopback address"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", "a private address"),  # NAT64 around 10.0.0.1
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("100.64.0.1", "not a globally reachable address"),
        ("ff02::1", "a multicast address"),
    ],
)
def test_non_global_addresses_are_refused(address: str, problem: str) -> None:
    check = UrlPolicy(resolve=resolver_for({"feeds.example": [address]}))
    with pytest.raises(FetchError) as by_name:
        check(f"https://feeds.example{FEED}")
    assert str(by_name.value) == (
        f"https://feeds.example{FEED}: refused: feeds.example resolves to {address}, "
        f"{problem} {HINT}"
    )
    assert by_name.value.status is None and not by_name.value.retryable
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(FetchError, match=f"refused: {address} is {problem}"):
        check(f"https://{literal}{FEED}")


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700::1", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_global_addresses_are_allowed(address: str) -> None:
    check = UrlPolicy(resolve=resolver_for({"feeds.example": [address]}))
    check(f"https://feeds.example{FEED}")
    check(f"http://[{address}]/x" if ":" in address else f"http://{address}/x")


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    check = UrlPolicy(
        resolve=resolver_for({"feeds.example": ["8.8.8.8", "2606:4700::1", "10.0.0.7"]})
    )
    with pytest.raises(
        FetchError, match=r"feeds\.example resolves to 10\.0\.0\.7, a private address"
    ):
        check("https://feeds.example/x")


def test_allow_private_skips_the_address_rules_but_not_the_scheme() -> None:
    check = UrlPolicy(allow_private=True, resolve=resolver_for({}))
    check("http://127.0.0.1:8000/x")
    check("http://nowhere.example/x")  # not even resolved
    with pytest.raises(FetchError, match=r"refused: only http\(s\) URLs are fetched, not ftp:"):
        check("ftp://127.0.0.1/x")


def test_an_unknown_host_is_a_fetch_error_worth_a_retry() -> None:
    check = UrlPolicy(resolve=resolver_for({}))
    with pytest.raises(FetchError) as caught:
        check("https://nowhere.example/x")
    assert str(caught.value) == (
        "https://nowhere.example/x: cannot resolve nowhere.example: Name or service not known"
    )
    assert caught.value.retryable


def test_allowed_hosts_match_exactly_without_subdomains() -> None:
    resolve = resolver_for(
        {h: ["8.8.8.8"] for h in ("rs.example", "rs.example.", "www.rs.example", "rs.example.evil")}
    )
    check = UrlPolicy(allowed_hosts=frozenset({"rs.example"}), resolve=resolve)
    check("https://RS.Example/x")
    check("https://rs.example./x")
    for other in ("www.rs.example", "rs.example.evil"):
        with pytest.raises(
            FetchError, match=f"refused: {other} is not in \\[http\\] allowed_hosts"
        ):
            check(f"https://{other}/x")


def test_the_settings_build_the_check_every_client_uses() -> None:
    settings = HttpSettings(allowed_hosts=("researchseminars.org",))
    check = FetchPolicy.from_settings(settings).check_url
    assert check == UrlPolicy(allowed_hosts=frozenset({"researchseminars.org"}))
    assert make_client(settings).policy.check_url == check
    assert FetchPolicy.from_settings(settings, check_url=None).check_url is None
