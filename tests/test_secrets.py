"""A personal feed's token never shows: not in Datasette, not in any table of the archive."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Harvester, write_config
from tests.sitesim import Site
from tests.test_datasette import Browser

TOKEN = "Kx9personalSECRETtoken77"


def test_datasette_never_shows_a_personal_token(workdir: Path, site: Site) -> None:
    site.personal[TOKEN] = ["AlgGeom", "NumThy"]
    h = Harvester(
        write_config(
            workdir, [f"{site.base_url}/user/ics/{TOKEN}", f"{site.base_url}/user/ics/{TOKEN}-gone"]
        )
    )
    assert h("sync").exit_code == 1  # the second token is unknown: a 404 whose URL holds it
    browser = Browser(h.db_path)
    pages = [
        "/",
        "/archive",
        "/archive/feeds",
        "/archive/feeds.json?_shape=array",
        "/archive/fetches.json?_shape=array",
        "/archive/feed_health.json?_shape=array",
        "/archive/feed_talks.json?_shape=array",
        "/archive/talks.json?_shape=array",
        "/archive/talk_versions.json?_shape=array",
        "/archive.json",
    ]
    seen = ""
    for page in pages:
        response = browser.get(page, follow_redirects=True)
        assert response.status_code == 200, page
        seen += response.text
    assert "Kx9p…" in seen  # the feeds are shown, masked
    assert TOKEN not in seen
    everything = b"".join(p.read_bytes() for p in workdir.glob("archive.db*"))
    assert TOKEN.encode() not in everything
