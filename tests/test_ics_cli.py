"""Text through the real CLI against the simulated site: folds inside UTF-8 characters,
control characters and URLs that are not http(s)."""

from __future__ import annotations

import json
import re

import pytest
import sqlite_utils

from harvester import textstore
from tests.conftest import Harvester
from tests.rows import talk_row
from tests.sitesim import Site, refold_octets

TITLE = "Ünïcödé ∩ ∂-modules — 𝔽_p-points 🚀 " * 3
UID = "AlgGeom/2"


def splits_a_character(body: bytes) -> bool:
    """Whether some fold of `body` falls inside a multi-byte UTF-8 character."""
    return re.search(rb"[\x80-\xff]\r\n [\x80-\xbf]", body) is not None


@pytest.mark.slow
def test_a_fold_inside_a_utf8_character_reads_back_exactly(
    harvester: Harvester, site: Site
) -> None:
    site.series["AlgGeom"].talks[2].title = TITLE.strip()
    site.series["AlgGeom"].talks[2].abstract = "Über Ä ∮ 𝔸 " * 20
    site.rewrite = lambda body: refold_octets(body, 40)
    assert splits_a_character(site.rewrite(site.body_for("/seminar/AlgGeom/ics") or b""))
    assert harvester("sync").exit_code == 0
    (version,) = json.loads(harvester("history", UID, "--json").output)
    assert version["title"] == TITLE.strip()
    assert version["abstract"] == ("Über Ä ∮ 𝔸 " * 20).strip()
    exported = {t["uid"]: t for t in json.loads(harvester("export").output)}
    assert exported[UID]["title"] == TITLE.strip()
    assert "\ufffd" not in json.dumps(exported, ensure_ascii=False)

    # The same content folded elsewhere (other widths, other characters split) is no change.
    for width in (33, 57, 75):
        site.rewrite = lambda body, w=width: refold_octets(body, w)
        result = harvester("sync")
        assert result.exit_code == 0, result.output
        assert len(json.loads(harvester("history", UID, "--json").output)) == 1
    db = sqlite_utils.Database(harvester.db_path)
    assert db.execute("SELECT count(*) FROM talk_versions").fetchone() == (4,)
    outcomes = [r[0] for r in db.execute("SELECT outcome FROM fetches ORDER BY id")]
    assert outcomes[2:] == ["unchanged"] * 6


def test_control_characters_stay_out_of_text_fields_but_raw_keeps_them(
    harvester: Harvester, site: Site
) -> None:
    talk = site.series["AlgGeom"].talks[2]
    talk.title = "Bells\x07 and\x1b[31m escapes\x0b\x0c\x1f\tend"
    talk.speakers = [("Emmy\x01 Noether", "Gött\x02ingen")]
    talk.abstract = None  # comments are told apart only after "Abstract: TBA"
    talk.comments = "Coffee\x08 at 3."
    talk.room = "Room\x1e 5"
    assert harvester("sync").exit_code == 0
    db = sqlite_utils.Database(harvester.db_path)
    row = db.execute(
        "SELECT title, speaker, speakers, room, comments, summary, description, location, raw"
        " FROM talk_versions WHERE uid = ?",
        [UID],
    ).fetchone()
    *fields, stored = row
    raw = textstore.unpack_raw(stored)
    assert raw is not None
    assert fields[0] == "Bells and[31m escapes\tend"
    assert fields[1] == "Emmy Noether (Göttingen)"
    assert json.loads(fields[2]) == [{"name": "Emmy Noether", "affiliation": "Göttingen"}]
    assert (fields[3], fields[4]) == ("Room 5", "Coffee at 3.")
    for value in fields:
        assert not re.search(r"[\x00-\x08\x0b-\x1f]", value or ""), value
    for char in "\x07\x1b\x0b\x0c\x1f\x01\x02\x08\x1e":
        assert char in raw
    (exported,) = [t for t in json.loads(harvester("export").output) if t["uid"] == UID]
    assert exported["title"] == "Bells and[31m escapes\tend"


def test_urls_that_are_not_http_are_not_stored(harvester: Harvester, site: Site) -> None:
    talk = site.series["AlgGeom"].talks[2]
    talk.livestream = "javascript:alert(1)"
    page = b'href="https://researchseminars.org/talk/AlgGeom/2/"'

    def unsafe_page(body: bytes) -> bytes:
        unfolded = body.replace(b"\r\n ", b"")
        return refold_octets(unfolded.replace(page, b'href="data:text/html,<b>x</b>"'), 75)

    site.rewrite = unsafe_page
    assert harvester("sync").exit_code == 0
    db = sqlite_utils.Database(harvester.db_path)
    row = talk_row(db, UID)
    assert (row["talk_url"], row["livestream_url"], json.loads(row["urls"])) == (None, None, [])
    assert row["location"] == "javascript:alert(1)"  # text, not a URL: kept as the feed says

    talk.livestream = "https://zoom.example/j/1 or ftp://x"
    site.rewrite = None
    assert harvester("sync").exit_code == 0
    row = talk_row(db, UID)
    assert row["talk_url"] == "https://researchseminars.org/talk/AlgGeom/2/"
    assert row["livestream_url"] is None and json.loads(row["urls"]) == []
    talk.livestream = "https://zoom.example/j/1"
    assert harvester("sync").exit_code == 0
    row = talk_row(db, UID)
    assert row["livestream_url"] == "https://zoom.example/j/1"
    assert json.loads(row["urls"]) == ["https://zoom.example/j/1"]
