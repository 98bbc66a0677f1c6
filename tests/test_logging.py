"""One `feed.polled` event per poll, JSON off a terminal, and no personal token anywhere."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import structlog
from structlog.testing import capture_logs

from harvester.archive import open_archive
from harvester.config import HttpSettings
from harvester.fetch import make_client
from harvester.logs import configure_logging
from harvester.sync import FeedTarget, poll_feed
from tests.conftest import Harvester, write_config
from tests.sitesim import Site

TOKEN = "Zq7secretTOKENvalue42"


def test_one_feed_polled_event_per_poll_with_counts(site: Site, tmp_path: Path) -> None:
    db = open_archive(tmp_path / "a.db")
    with make_client(HttpSettings(allow_private=True)) as client, capture_logs() as logs:
        poll_feed(db, client, FeedTarget(site.feed_url("AlgGeom"), "AlgGeom"), 10**6)
        poll_feed(db, client, FeedTarget(site.feed_url("Gone"), "Gone"), 10**6)
    polled = [e for e in logs if e["event"] == "feed.polled"]
    assert len(polled) == 2
    ok, failed = polled
    assert ok["outcome"] == "changed" and ok["new"] == 3 and ok["events"] == 3
    assert ok["url"] == site.feed_url("AlgGeom") and ok["log_level"] == "info"
    assert isinstance(ok["duration_ms"], int)
    assert failed["outcome"] == "error" and failed["log_level"] == "error"
    assert failed["error"] == "HTTP 404 Not Found"


def test_json_lines_off_a_terminal_and_stdlib_logs_routed() -> None:
    stream = io.StringIO()
    configure_logging(None, stream=stream)
    structlog.get_logger("harvester.test").info(
        "feed.polled", url=f"https://x.org/user/ics/{TOKEN}"
    )
    import logging

    logging.getLogger("httpx").warning("request to https://x.org/user/ics/%s failed", TOKEN)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "feed.polled" and lines[0]["url"] == "https://x.org/user/ics/Zq7s…"
    assert lines[1]["logger"] == "httpx" and "Zq7s…" in lines[1]["event"]
    assert TOKEN not in stream.getvalue()


def test_personal_token_never_leaves_the_config(workdir: Path, site: Site) -> None:
    site.personal[TOKEN] = ["AlgGeom", "NumThy"]
    url = f"{site.base_url}/user/ics/{TOKEN}"
    bad = f"{site.base_url}/user/ics/{TOKEN}X"  # unknown token: a 404 with the token in the URL
    h = Harvester(write_config(workdir, [url, bad]))
    outputs = []
    for args, code in (
        (["sync"], 1),
        (["sync"], 1),
        (["status"], 1),
        (["status", "--json"], 1),
        (["export"], 0),
        (["history", "AlgGeom/2"], 0),
    ):
        result = h(*args)
        assert result.exit_code == code, (args, result.output, result.stderr)
        outputs.append(result.output + result.stderr)
    everything = "\n".join(outputs)
    assert "Zq7s…" in everything  # the feeds are there, masked
    assert TOKEN not in everything
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(h.db_path) + suffix)
        if path.exists():
            assert TOKEN.encode() not in path.read_bytes()
    db = open_archive(h.db_path)
    feeds = {r["name"]: r["kind"] for r in db.query("SELECT name, kind FROM feeds")}
    assert feeds == {"user/ics/Zq7s…": "personal", "user/ics/Zq7s…-2": "personal"}


def test_verbose_httpx_logs_are_masked_too(workdir: Path, site: Site, capfd) -> None:  # type: ignore[no-untyped-def]
    site.personal[TOKEN] = ["NumThy"]
    config = write_config(workdir, [f"{site.base_url}/user/ics/{TOKEN}"])
    stream = io.StringIO()
    configure_logging("json", level=10, stream=stream)
    db = open_archive(workdir / "v.db")
    with httpx.Client() as client:
        poll_feed(db, client, FeedTarget(f"{site.base_url}/user/ics/{TOKEN}"), 10**6)
    assert config.exists()
    assert "HTTP Request" in stream.getvalue()  # httpx's own debug/info line came through
    assert TOKEN not in stream.getvalue()
