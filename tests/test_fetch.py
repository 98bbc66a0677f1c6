"""The fetch stage against the simulated site over real HTTP on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from harvester.config import HttpSettings
from harvester.errors import FetchError
from harvester.fetch import fetch, make_client
from harvester.redact import redact
from harvester.site import default_feed_name, feed_kind, normalize_url, series_shortname
from tests.sitesim import Site


def answer(
    status: int,
    body: bytes,
    content_type: str = "text/calendar",
    extra: dict[str, str] | None = None,
) -> Callable[[BaseHTTPRequestHandler], bool]:
    def handler(h: BaseHTTPRequestHandler) -> bool:
        h._send(status, body, {"Content-Type": content_type, **(extra or {})})  # type: ignore[attr-defined]
        return True

    return handler


@pytest.fixture
def client() -> Iterator:  # type: ignore[type-arg]
    with make_client(HttpSettings(timeout=2, retries=0, allow_private=True)) as c:
        yield c


def test_fetches_a_series_feed_with_our_user_agent(site: Site, client) -> None:  # type: ignore[no-untyped-def]
    seen: dict[str, str] = {}

    def spy(h: BaseHTTPRequestHandler) -> bool:
        seen["ua"] = h.headers["User-Agent"]
        return False  # let the site answer

    site.overrides["/seminar/NumThy/ics"] = spy
    result = fetch(client, site.feed_url("NumThy"), 1_000_000)
    assert result.status == 200 and result.body is not None
    assert result.body.startswith(b"BEGIN:VCALENDAR\r\n")
    assert result.etag is None and result.last_modified is None
    assert seen["ua"].startswith("seminar-harvester/") and "+https://" in seen["ua"]


def test_follows_a_301_from_an_old_host_name(site: Site, client) -> None:  # type: ignore[no-untyped-def]
    url = site.feed_url("NumThy").replace("127.0.0.1", "localhost")
    result = fetch(client, url, 1_000_000)
    assert result.status == 200 and result.final_url == site.feed_url("NumThy")


def test_404_is_a_clear_error(site: Site, client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FetchError) as caught:
        fetch(client, site.feed_url("NoSuchSeries"), 1_000_000)
    assert caught.value.status == 404
    assert str(caught.value) == f"{site.feed_url('NoSuchSeries')}: HTTP 404 Not Found"


def test_html_page_with_status_200_is_an_error(site: Site, client) -> None:  # type: ignore[no-untyped-def]
    site.overrides["/maintenance"] = answer(
        200, b"<html>Down for maintenance</html>", "text/html; charset=utf-8"
    )
    with pytest.raises(FetchError, match="got an HTML page"):
        fetch(client, site.base_url + "/maintenance", 1_000_000)


@pytest.mark.parametrize("declared", [True, False])
def test_body_over_the_limit_is_refused(site: Site, client, declared: bool) -> None:  # type: ignore[no-untyped-def]
    big = b"BEGIN:VCALENDAR\r\n" + b"X-PAD:" + b"a" * 5000 + b"\r\n"

    def chunked(h: BaseHTTPRequestHandler) -> bool:
        h.send_response(200)
        h.send_header("Content-Type", "text/calendar")
        if declared:
            h.send_header("Content-Length", str(len(big)))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(big)
        return True

    site.overrides["/big"] = chunked
    with pytest.raises(FetchError, match="over the limit of 1000"):
        fetch(client, site.base_url + "/big", 1000)


@pytest.mark.slow
def test_a_server_that_hangs_times_out(site: Site) -> None:
    release = threading.Event()

    def hang(h: BaseHTTPRequestHandler) -> bool:
        release.wait(10)
        return True

    site.overrides["/hang"] = hang
    try:
        with (
            make_client(HttpSettings(timeout=0.3, retries=0, allow_private=True)) as quick,
            pytest.raises(FetchError, match="timed out"),
        ):
            fetch(quick, site.base_url + "/hang", 1000)
    finally:
        release.set()


def test_redirect_loop_is_a_clear_error(site: Site, client) -> None:  # type: ignore[no-untyped-def]
    site.overrides["/loop"] = answer(302, b"", extra={"Location": "/loop"})
    with pytest.raises(FetchError, match="more than 10 redirects"):
        fetch(client, site.base_url + "/loop", 1000)


def test_connection_refused_is_a_clear_error(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FetchError, match="ConnectError"):
        fetch(client, "http://127.0.0.1:9/seminar/X/ics", 1000)


@pytest.mark.parametrize(
    ("given", "normal", "kind", "name"),
    [
        (
            "webcal://researchseminars.org/seminar/NT/ics",
            "https://researchseminars.org/seminar/NT/ics",
            "series",
            "NT",
        ),
        (
            "http://mathseminars.org/seminar/NT/ics",
            "https://researchseminars.org/seminar/NT/ics",
            "series",
            "NT",
        ),
        (
            "https://www.researchseminars.org/talk/NT/-3/ics",
            "https://researchseminars.org/talk/NT/-3/ics",
            "talk",
            "NT/-3",
        ),
        (
            "https://rsem.org/user/ics/abcdefgh",
            "https://researchseminars.org/user/ics/abcdefgh",
            "personal",
            "user/ics/abcd…",
        ),
        (
            "https://example.org/cal.ics",
            "https://example.org/cal.ics",
            "other",
            "example.org/cal.ics",
        ),
    ],
)
def test_url_normalisation_kinds_and_names(given: str, normal: str, kind: str, name: str) -> None:
    assert normalize_url(given) == normal
    assert feed_kind(normal) == kind
    assert default_feed_name(normal) == name


@pytest.mark.parametrize(
    ("url", "shortname"),
    [
        ("https://researchseminars.org/seminar/NT/ics", "NT"),
        ("https://reader:s3cret-pass@researchseminars.org/seminar/NT/ics", "NT"),
        ("https://RESEARCHSEMINARS.org:443/seminar/NT/ics", "NT"),
        ("https://researchseminars.org:8443/seminar/NT/ics", None),
        ("https://researchseminars.org:99999/seminar/NT/ics", None),
        ("http://[::1/seminar/NT/ics", None),
        ("https://example.org/seminar/NT/ics", None),
        ("http://researchseminars.org/seminar/NT/ics", None),
        ("https://researchseminars.org/talk/NT/3/ics", None),
    ],
)
def test_a_series_feed_is_known_by_its_site_and_path(url: str, shortname: str | None) -> None:
    assert series_shortname(url, "https://researchseminars.org") == shortname


def test_tokens_are_masked_inside_any_text() -> None:
    text = "GET https://researchseminars.org/user/ics/s3cr3tT0ken failed; see /user/ics/s3cr3tT0ken"
    assert redact(text) == (
        "GET https://researchseminars.org/user/ics/s3cr… failed; see /user/ics/s3cr…"
    )
