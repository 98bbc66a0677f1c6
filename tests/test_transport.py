"""The URL policy's one choke point (issue 10, part 2): the transport of every client.

- every request and redirect hop goes through `GuardedTransport`, whoever sends it;
- a client without a policy refuses every request;
- the connection goes to the address that was checked, from one lookup (DNS rebinding);
- a URL httpx cannot parse is that feed's failed poll, never a traceback.

Real local servers throughout. Two sites on one port at 127.0.0.2 and 127.0.0.1 play "the
public server" and "the local network": the `classify` seam counts 127.0.0.2 as public,
127.0.0.1 is judged by the real rules.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import sqlite_utils

from harvester._http import IPAddress, UrlPolicy, UrlRefusedError, address_problem
from harvester.archive import open_archive
from harvester.config import HttpSettings
from harvester.errors import ApiError, FetchError
from harvester.fetch import FeedClient, FetchPolicy, fetch, make_client
from harvester.site_api import SiteApi
from harvester.sync import FeedTarget, poll_feed
from tests.conftest import Harvester
from tests.conftest import write_config as write_local_config
from tests.scripted import Scripted, reply
from tests.sitesim import Site, serve, serve_at, serve_tls

HINT = "(set [http] allow_private = true to allow)"
LIMIT = 1_000_000
FEED = "/seminar/AlgGeom/ics"
NAME = "feeds.example"


def public_127_0_0_2(address: IPAddress) -> str | None:
    if address == ipaddress.ip_address("127.0.0.2"):
        return None
    return address_problem(address)


class Flipping:
    """A resolver whose answer changes: the first `public_calls` answers, then another."""

    def __init__(self, first: list[str], then: list[str], public_calls: int = 1) -> None:
        self.first, self.then, self.public_calls = first, then, public_calls
        self.calls: list[str] = []

    def __call__(self, host: str) -> list[str]:
        if host != NAME:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        self.calls.append(host)
        return self.first if len(self.calls) <= self.public_calls else self.then


def client_with(policy: UrlPolicy, **settings: object) -> FeedClient:
    http = HttpSettings(retries=0, timeout=5, **settings)  # type: ignore[arg-type]
    return make_client(http, policy=FetchPolicy.from_settings(http, check_url=policy))


@pytest.fixture
def two_sites() -> Iterator[tuple[Site, Site, int]]:
    """The same port on 127.0.0.2 ("public") and on 127.0.0.1 (loopback)."""
    for _ in range(20):
        public, private = Site(), Site()
        public.add_series("AlgGeom", "Public")
        private.add_series("AlgGeom", "Private")
        with ExitStack() as stack:
            stack.enter_context(serve(public, "127.0.0.2"))
            port = int(public.base_url.rsplit(":", 1)[1])
            try:
                stack.enter_context(serve_at(private, "127.0.0.1", port))
            except OSError:  # the port is taken on 127.0.0.1: try another
                continue
            yield public, private, port
            return
    pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")


# --- DNS rebinding ------------------------------------------------------------------------


def test_a_rebinding_name_cannot_reach_loopback(two_sites: tuple[Site, Site, int]) -> None:
    """The name answers public first, then 127.0.0.1: the check's lookup is the connect's."""
    public, private, port = two_sites
    url = f"http://{NAME}:{port}{FEED}"
    resolver = Flipping(["127.0.0.2"], ["127.0.0.1"])
    with client_with(UrlPolicy(resolve=resolver, classify=public_127_0_0_2)) as client:
        assert fetch(client, url, LIMIT).status == 200
    assert resolver.calls == [NAME]  # one lookup: the one the connection used
    assert public.hits[FEED] == 1
    # A check before the request (the old way: check, then let httpx connect) spends the
    # public answer; the connection's own lookup answers 127.0.0.1 and is refused.
    resolver = Flipping(["127.0.0.2"], ["127.0.0.1"])
    policy = UrlPolicy(resolve=resolver, classify=public_127_0_0_2)
    policy(url)
    with client_with(policy) as client, pytest.raises(FetchError) as caught:
        fetch(client, url, LIMIT)
    assert resolver.calls == [NAME, NAME]
    assert caught.value.reason == (
        f"refused: {NAME} resolves to 127.0.0.1, a loopback address {HINT}"
    )
    assert public.hits[FEED] == 1
    assert sum(private.hits.values()) == 0


def test_the_host_header_stays_the_name_not_the_address(
    two_sites: tuple[Site, Site, int],
) -> None:
    public, _, port = two_sites
    seen: list[str] = []

    def record(handler) -> None:  # type: ignore[no-untyped-def]
        seen.append(handler.headers["Host"])
        reply(200, b"ok")(handler)

    Scripted(public, "/host", record)
    policy = UrlPolicy(resolve=Flipping(["127.0.0.2"], ["127.0.0.2"]), classify=public_127_0_0_2)
    with client_with(policy) as client:
        assert client.get(f"http://{NAME}:{port}/host").text == "ok"
    assert seen == [f"{NAME}:{port}"]


def test_every_address_is_vetted_and_the_next_one_tried(
    two_sites: tuple[Site, Site, int],
) -> None:
    """Nothing listens on 127.0.0.3: the connection falls back to the next vetted address;
    a name with one private address among public ones is refused before any connection."""
    public, private, port = two_sites
    both_public = lambda a: None if str(a) in ("127.0.0.2", "127.0.0.3") else address_problem(a)  # noqa: E731
    policy = UrlPolicy(resolve=Flipping(["127.0.0.3", "127.0.0.2"], []), classify=both_public)
    with client_with(policy) as client:
        assert fetch(client, f"http://{NAME}:{port}{FEED}", LIMIT).status == 200
    mixed = UrlPolicy(resolve=Flipping(["127.0.0.2", "127.0.0.1"], []), classify=public_127_0_0_2)
    with client_with(mixed) as client, pytest.raises(FetchError, match=r"127\.0\.0\.1, a loopback"):
        fetch(client, f"http://{NAME}:{port}{FEED}", LIMIT)
    assert public.hits[FEED] == 1 and sum(private.hits.values()) == 0


def test_allow_private_still_connects_to_the_one_looked_up_address(site: Site) -> None:
    port = int(site.base_url.rsplit(":", 1)[1])
    resolver = Flipping(["127.0.0.1"], ["192.0.2.1"])  # a second lookup would go nowhere
    with client_with(UrlPolicy(allow_private=True, resolve=resolver)) as client:
        assert fetch(client, f"http://{NAME}:{port}{FEED}", LIMIT).status == 200
    assert resolver.calls == [NAME] and site.hits[FEED] == 1


# --- every request, every hop, every client ---------------------------------------------


def test_a_client_without_a_policy_refuses(site: Site) -> None:
    settings = HttpSettings(retries=0, allow_private=True)
    clients = [FeedClient(), make_client(settings, policy=FetchPolicy(check_url=None))]
    for client in clients:
        with client:
            with pytest.raises(UrlRefusedError, match="no URL policy"):
                client.get(site.feed_url("AlgGeom"))
            with pytest.raises(FetchError, match="refused: this client has no URL policy"):
                fetch(client, site.feed_url("AlgGeom"), LIMIT)
            with pytest.raises(ApiError, match="no URL policy"):
                SiteApi(client, site.base_url).topics()
    assert sum(site.hits.values()) == 0


def test_a_client_cannot_be_given_a_way_around_its_transport() -> None:
    with pytest.raises(TypeError, match="no mounts"):
        FeedClient(mounts={"all://": httpx.HTTPTransport()})
    with pytest.raises(TypeError, match="no proxy"):
        FeedClient(proxy="http://127.0.0.1:3128")


def test_a_given_transport_is_wrapped_not_trusted() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, text="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")

    resolve = Flipping(["10.0.0.1"], ["10.0.0.1"])
    settings = HttpSettings(retries=0)
    policy = FetchPolicy.from_settings(settings, check_url=UrlPolicy(resolve=resolve))
    with make_client(settings, httpx.MockTransport(answer), policy=policy) as client:
        with pytest.raises(FetchError, match=r"resolves to 10\.0\.0\.1, a private address"):
            fetch(client, f"https://{NAME}/x", LIMIT)
        with pytest.raises(FetchError, match=r"127\.0\.0\.1 is a loopback address"):
            fetch(client, "https://127.0.0.1/x", LIMIT)
    assert sent == []


@pytest.mark.parametrize("sender", ["fetch", "api", "plain get"])
def test_a_redirect_into_loopback_is_refused_whoever_sends(
    two_sites: tuple[Site, Site, int], sender: str
) -> None:
    public, private, port = two_sites
    inner = f"http://127.0.0.1:{port}{FEED}"
    Scripted(public, "/api/0/topics", reply(302, Location=inner))
    Scripted(public, "/moved/ics", reply(301, Location=inner))
    policy = UrlPolicy(resolve=Flipping(["127.0.0.2"], ["127.0.0.2"], 9), classify=public_127_0_0_2)
    base = f"http://{NAME}:{port}"
    refused = f"refused: 127.0.0.1 is a loopback address {HINT}"
    with client_with(policy) as client:
        if sender == "fetch":
            with pytest.raises(FetchError) as caught:
                fetch(client, base + "/moved/ics", LIMIT)
            assert caught.value.reason == f"redirected to {inner}: {refused}"
        elif sender == "api":
            with pytest.raises(ApiError) as api_caught:
                SiteApi(client, base).topics()
            assert str(api_caught.value) == f"{base}/api/0/topics: redirected to {inner}: {refused}"
        else:
            with pytest.raises(UrlRefusedError) as plain:
                client.get(base + "/moved/ics", follow_redirects=True)
            assert plain.value.url == inner and plain.value.error.reason == refused
    assert sum(private.hits.values()) == 0


# --- URLs httpx cannot parse: a failed poll ------------------------------------------------

BAD_URLS = [
    "http://0177.0.0.1/seminar/X/ics",  # octal IPv4
    "http://exa\x01mple.org/seminar/X/ics",  # a control character
    "http://xn--/seminar/X/ics",  # a malformed IDNA label
    "http://[::1/seminar/X/ics",  # the bracket missing
    "http://[::1]:99999/x",  # port out of range (a socket would take it modulo 65536)
    "http://example.org:0/x",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_an_unparseable_url_is_a_failed_poll(tmp_path: Path, url: str) -> None:
    db = open_archive(tmp_path / "a.db")
    with make_client(HttpSettings(retries=3)) as client:
        with pytest.raises(FetchError) as caught:
            fetch(client, url, LIMIT)
        result = poll_feed(db, client, FeedTarget(url, "bad", "other"), LIMIT)
    assert "refused: not a valid URL (" in caught.value.reason and not caught.value.retryable
    assert result.failed and result.error == caught.value.reason
    assert "\x01" not in result.error and "\n" not in result.error
    rows = list(db.query("SELECT outcome, error FROM fetches"))
    assert rows == [{"outcome": "error", "error": result.error}]
    [feed] = db.query("SELECT consecutive_failures, last_outcome FROM feeds")
    assert feed == {"consecutive_failures": 1, "last_outcome": "error"}  # the daemon backs off


@pytest.mark.parametrize(
    ("toml_url", "name"),
    [
        ("http://0177.0.0.1/seminar/X/ics", "X"),
        ("http://exa\\u0001mple.org/seminar/Y/ics", "Y"),
        ("http://0177.0.0.1/user/ics/Zq7sSecretToken", "user/ics/Zq7s…"),
        ("http://[::1/seminar/Z/ics", "http://[::1/seminar/Z/ics"),  # urlsplit cannot read it
    ],
)
def test_cli_an_unparseable_url_between_two_good_feeds(
    workdir: Path, site: Site, toml_url: str, name: str
) -> None:
    config = write_local_config(workdir, [site.feed_url("AlgGeom"), "BAD", site.feed_url("NumThy")])
    config.write_text(config.read_text().replace("BAD", toml_url), encoding="utf-8")
    h = Harvester(config)
    result = h("sync")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, no traceback
    assert "Traceback" not in result.output and "Secret" not in result.output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {name}: refused: not a valid URL (")
    db = sqlite_utils.Database(h.db_path)
    assert db.execute("SELECT count(*) FROM talks").fetchone() == (4,)  # both good feeds
    rows = db.query(
        "SELECT feeds.name, outcome FROM fetches JOIN feeds ON feeds.id = fetches.feed_id"
        " ORDER BY feeds.name"
    )
    assert sorted((r["name"], r["outcome"]) for r in rows) == sorted(
        [("AlgGeom", "changed"), ("NumThy", "changed"), (name, "error")]
    )
    assert "Secret" not in str(list(db.query("SELECT * FROM fetches JOIN feeds")))


# --- TLS: the name, not the address, is what the certificate is checked against ----------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={NAME}"),
            *("-addext", f"subjectAltName=DNS:{NAME}"),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def test_tls_checks_the_certificate_against_the_host_name(certificate: tuple[str, str]) -> None:
    """Connected to the vetted address, the TLS handshake still sends the name (SNI) and
    verifies the certificate for it: a certificate for the name passes, another name fails."""
    cert, key = certificate
    site = Site()
    site.add_series("AlgGeom", "Over TLS")
    with serve_tls(site, "127.0.0.2", cert, key):
        port = int(site.base_url.rsplit(":", 1)[1])
        names = {NAME: ["127.0.0.2"], "other.example": ["127.0.0.2"]}
        policy = UrlPolicy(resolve=lambda host: names[host], classify=public_127_0_0_2)
        settings = HttpSettings(retries=0, timeout=5)
        with FeedClient(
            policy=FetchPolicy.from_settings(settings, check_url=policy),
            ssl_context=ssl.create_default_context(cafile=cert),
        ) as client:
            assert fetch(client, f"https://{NAME}:{port}{FEED}", LIMIT).status == 200
            with pytest.raises(FetchError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
                fetch(client, f"https://other.example:{port}{FEED}", LIMIT)
    assert site.hits[FEED] == 1
