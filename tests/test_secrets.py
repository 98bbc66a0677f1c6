"""Secrets never show (issue 10, item 3): not on stdout or stderr, not in a log line (JSON
or console, `-v` included, tracebacks too), not in the archive's bytes, not in Datasette.

Everything runs through the real CLI against the local site. The secrets: personal-feed
tokens (also where they are not in `/user/ics/<token>` form: a redirect target, an HTTP
error's reason, a wrong config key), passwords in URLs, and secret query parameters.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
import structlog

from harvester.logs import configure_logging
from harvester.redact import redact, remember, remember_url, remember_urls_in
from tests.conftest import Harvester, write_config
from tests.scripted import Scripted, reply
from tests.sitesim import Site
from tests.test_datasette import Browser

TOKEN = "Kx9personalSECRETtoken77"
PASSWORD = "hunter2-Pa55word"
QUERY_SECRET = "QsecretQueryValue99"

PAGES = [
    "/",
    "/archive",
    "/archive/feeds",
    "/archive/fetches",
    "/archive/feeds.json?_shape=array",
    "/archive/fetches.json?_shape=array",
    "/archive/feed_health.json?_shape=array",
    "/archive/feed_talks.json?_shape=array",
    "/archive/talks.json?_shape=array",
    "/archive.json",
]


def archive_bytes(h: Harvester) -> bytes:
    return b"".join(p.read_bytes() for p in h.db_path.parent.glob(h.db_path.name + "*"))


def datasette_text(h: Harvester) -> str:
    browser = Browser(h.db_path)
    seen = ""
    for page in PAGES:
        response = browser.get(page, follow_redirects=True)
        assert response.status_code == 200, page
        seen += response.text
    return seen


def run_all_formats(h: Harvester, *args: str, code: int) -> str:
    """`args` at -v in JSON and console logs; stdout and stderr of both runs."""
    seen = ""
    for log_format in ("json", "console"):
        result = h("--log-format", log_format, "-v", *args)
        assert result.exit_code == code, (result.stdout, result.stderr)
        seen += result.stdout + result.stderr
    return seen


def assert_nowhere(secret: str, h: Harvester, output: str) -> None:
    assert secret not in output
    assert secret.encode() not in archive_bytes(h)
    assert secret not in datasette_text(h)


# --- the CLI against the local site ---------------------------------------------------------


@pytest.mark.slow
def test_datasette_never_shows_a_personal_token(workdir: Path, site: Site) -> None:
    site.personal[TOKEN] = ["AlgGeom", "NumThy"]
    h = Harvester(
        write_config(
            workdir, [f"{site.base_url}/user/ics/{TOKEN}", f"{site.base_url}/user/ics/{TOKEN}-gone"]
        )
    )
    assert h("sync").exit_code == 1  # the second token is unknown: a 404 whose URL holds it
    seen = datasette_text(h)
    assert "Kx9p…" in seen  # the feeds are shown, masked
    assert TOKEN not in seen
    assert TOKEN.encode() not in archive_bytes(h)


@pytest.mark.slow
def test_a_token_in_a_refused_redirect_target_shows_nowhere(workdir: Path, site: Site) -> None:
    port = site.base_url.rsplit(":", 1)[1]
    query_form = f"/user/ics/{TOKEN}"
    path_form = f"/user/ics/{TOKEN}2"
    Scripted(site, query_form, reply(302, Location=f"http://localhost:{port}/leak?t={TOKEN}"))
    Scripted(site, path_form, reply(301, Location=f"http://localhost:{port}/u/{TOKEN}2/cal.ics"))
    http = 'allowed_hosts = ["127.0.0.1"]\n'
    config = write_config(workdir, [site.base_url + query_form, site.base_url + path_form], http)
    h = Harvester(config)
    output = run_all_formats(h, "sync", code=1)
    assert f"redirected to http://localhost:{port}/leak?t=Kx9p…: refused: localhost" in output
    assert f"redirected to http://localhost:{port}/u/Kx9p…/cal.ics: refused" in output
    assert '"level": "debug"' in output  # the -v lines were there
    output += run_all_formats(h, "status", code=1)
    assert_nowhere(TOKEN, h, output)
    assert sum(site.hits[p] for p in ("/leak", f"/u/{TOKEN}2/cal.ics")) == 0


@pytest.mark.slow
def test_a_token_echoed_in_an_http_error_shows_nowhere(workdir: Path, site: Site) -> None:
    def echo(handler: Any) -> None:
        handler.send_response(403, f"token {TOKEN} is revoked")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    Scripted(site, f"/user/ics/{TOKEN}", echo)
    h = Harvester(write_config(workdir, [f"{site.base_url}/user/ics/{TOKEN}"]))
    output = run_all_formats(h, "sync", code=1)
    assert "HTTP 403 token Kx9p… is revoked" in output
    assert_nowhere(TOKEN, h, output)


@pytest.mark.slow
def test_a_password_and_a_secret_query_parameter_show_nowhere(workdir: Path, site: Site) -> None:
    host = site.base_url.removeprefix("http://")
    urls = [
        f"http://reader:{PASSWORD}@{host}/seminar/AlgGeom/ics",
        f"{site.feed_url('NumThy')}?api_key={QUERY_SECRET}",
        f"http://reader:{PASSWORD}@{host}/seminar/Gone/ics?token={QUERY_SECRET}",
    ]
    h = Harvester(write_config(workdir, urls))
    output = run_all_formats(h, "sync", code=1)
    output += run_all_formats(h, "status", "--json", code=1)
    assert f"http://reader:…@{host}/seminar/AlgGeom/ics" in output
    assert "api_key=Qsec…" in output
    for secret in (PASSWORD, QUERY_SECRET):
        assert_nowhere(secret, h, output)


@pytest.mark.slow
def test_an_ad_hoc_url_on_the_command_line_is_remembered(workdir: Path, site: Site) -> None:
    h = Harvester(write_config(workdir, []))
    url = f"{site.feed_url('Gone')}?key={QUERY_SECRET}"
    output = run_all_formats(h, "sync", url, code=1)
    bad_time = h("export", "--as-of", f"https://reader:{PASSWORD}@example.org/")
    assert bad_time.exit_code == 2 and "is not an ISO 8601 time" in bad_time.stderr
    output += bad_time.stdout + bad_time.stderr
    assert "reader:…@example.org" in output
    assert_nowhere(QUERY_SECRET, h, output)
    assert PASSWORD not in output


# --- config errors --------------------------------------------------------------------------


def config_error(workdir: Path, feeds: str) -> str:
    path = workdir / "harvester.toml"
    path.write_text(f'[archive]\npath = "archive.db"\n{feeds}', encoding="utf-8")
    h = Harvester(path)
    seen = ""
    for log_format in ("json", "console"):
        result = h("--log-format", log_format, "-v", "sync")
        assert result.exit_code == 2, result.output
        assert "bad config" in result.stderr
        seen += result.stdout + result.stderr
    assert not h.db_path.exists()
    return seen


def test_a_bad_key_next_to_a_personal_url(workdir: Path) -> None:
    output = config_error(
        workdir,
        f'[[feeds]]\nurl = "https://researchseminars.org/user/ics/{TOKEN}"\nenabled = "{TOKEN}"\n',
    )
    assert "feeds[0].enabled: expected bool, got 'Kx9p…'" in output
    assert TOKEN not in output


def test_a_url_with_a_password_in_the_wrong_key(workdir: Path) -> None:
    output = config_error(
        workdir,
        f'[[feeds]]\nurl = "https://researchseminars.org/seminar/X/ics"\n'
        f'interval = "https://me:{PASSWORD}@cal.example/x.ics?token={QUERY_SECRET}"\n',
    )
    assert "feeds[0].interval: expected a duration" in output and "me:…@cal.example" in output
    assert PASSWORD not in output and QUERY_SECRET not in output


def test_a_personal_url_pasted_into_name(workdir: Path) -> None:
    pasted = f"webcal://researchseminars.org/user/ics/{TOKEN}?t={TOKEN}"
    output = config_error(
        workdir,
        "".join(
            f'[[feeds]]\nurl = "https://researchseminars.org/seminar/{s}/ics"\nname = "{pasted}"\n'
            for s in ("A", "B")
        ),
    )
    assert "feeds[1].name: name 'webcal://researchseminars.org/user/ics/Kx9p…?t=Kx9p…'" in output
    assert TOKEN not in output


@pytest.mark.slow
def test_a_secret_in_a_name_is_not_archived(workdir: Path, site: Site) -> None:
    path = write_config(workdir, [])
    path.write_text(
        path.read_text()
        + f'\n[[feeds]]\nurl = "{site.feed_url("AlgGeom")}"\n'
        + f'name = "https://me:{PASSWORD}@x.org/user/ics/{TOKEN}"\n',
        encoding="utf-8",
    )
    h = Harvester(path)
    output = run_all_formats(h, "sync", code=0)
    output += run_all_formats(h, "status", code=0)
    assert "me:…@x.org/user/ics/Kx9p…" in output
    assert_nowhere(TOKEN, h, output)
    assert_nowhere(PASSWORD, h, output)


def test_an_unreadable_config_is_still_scanned(workdir: Path) -> None:
    output = config_error(workdir, f'[[feeds]\nurl = "https://me:{PASSWORD}@x.org/c.ics"\n')
    assert "not valid TOML" in output
    assert PASSWORD not in redact(f"echo {PASSWORD}")


# --- logs: tracebacks and stdlib records ---------------------------------------------------


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_traceback_with_a_token_is_masked(log_format: str) -> None:
    remember_url(f"https://researchseminars.org/user/ics/{TOKEN}")
    stream = io.StringIO()
    configure_logging(log_format, level=logging.DEBUG, stream=stream)  # type: ignore[arg-type]
    try:
        raise RuntimeError(f"cannot fetch https://mirror.example/cal?t={TOKEN}")
    except RuntimeError:
        structlog.get_logger("harvester.test").exception("poll.crashed", token_hint=TOKEN)
        logging.getLogger("httpx").exception("stdlib %s", TOKEN)
    text = stream.getvalue()
    assert text.count("Traceback") == 2 and "RuntimeError" in text
    assert "cal?t=Kx9p…" in text
    assert TOKEN not in text


# --- the rule ----------------------------------------------------------------------------------


def test_personal_tokens_keep_their_first_four_characters_in_any_text() -> None:
    text = "GET https://researchseminars.org/user/ics/s3cr3tT0ken failed; see /user/ics/s3cr3tT0ken"
    assert redact(text) == (
        "GET https://researchseminars.org/user/ics/s3cr… failed; see /user/ics/s3cr…"
    )
    assert redact(redact(text)) == redact(text)


def test_what_a_url_gives_away() -> None:
    remember_url(
        "https://u:p%40ss-w0rd@cal.example/x.ics?series=NumThy&X-Auth-Token=abcd1234"
        "&t=a1b2c3d4e5f6g7h8i9j0k&page=2"
    )
    assert redact("p@ss-w0rd p%40ss-w0rd") == "… …"
    assert redact("abcd1234 a1b2c3d4e5f6g7h8i9j0k") == "… a1b2…"
    assert redact("series NumThy, page 2, user u") == "series NumThy, page 2, user u"


def test_notification_urls_are_secret_as_a_whole() -> None:
    remember_url("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567/")
    remember_url("mailto://alerts:MailPassw0rd@gmail.com")
    text = redact(
        "sent to tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567/; "
        "bot AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw; mail MailPassw0rd at gmail.com"
    )
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in text and "MailPassw0rd" not in text
    assert "gmail.com" in text and text.startswith("sent to tgram://1234…")


def test_escaped_forms_and_short_strings() -> None:
    remember('se"cr\\et-value')
    assert redact('{"x": "se\\"cr\\\\et-value"}') == '{"x": "…"}'
    remember("abc")  # too short to mask without mangling ordinary text
    assert redact("abc") == "abc"
    remember_urls_in("see https://x.org/c.ics?password=letmein4, or not")
    assert redact("letmein4") == "…"


def test_every_line_on_stdout_is_redacted(workdir: Path) -> None:
    """`feeds list` prints the config's URLs as they are: the CLI's streams mask them."""
    urls = [
        f"https://reader:{PASSWORD}@cal.example/x.ics",
        f"https://researchseminars.org/user/ics/{TOKEN}",
        f"https://cal.example/y.ics?sig={QUERY_SECRET}",
    ]
    h = Harvester(write_config(workdir, urls))
    output = ""
    for args in (["feeds", "list"], ["feeds", "list", "--json"]):
        result = h(*args)
        assert result.exit_code == 0, result.output
        output += result.stdout + result.stderr
    assert "reader:…@cal.example" in output and "/user/ics/Kx9p…" in output
    for secret in (PASSWORD, TOKEN, QUERY_SECRET):
        assert secret not in output
