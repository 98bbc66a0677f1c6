"""The Atom renderer, read back with a strict XML parser."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lxml import etree

from harvester.atom import render_atom

NS = {"a": "http://www.w3.org/2005/Atom"}


def row(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "atom_id": f"urn:seminar-harvester:S/{n}:v2",
        "atom_title": f"Retitled: Talk {n}",
        "atom_updated": f"2026-12-0{n}T10:00:00+00:00",
        "atom_content": "Title: Old → New",
        "atom_link": f"https://researchseminars.org/talk/S/{n}/",
        "atom_author_name": "Number Theory Web Seminar",
        **extra,
    }


def parsed(body: bytes) -> Any:
    return etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))


def test_every_entry_has_an_author_and_only_http_links() -> None:
    rows = [
        row(1),
        row(2, atom_author_name=None, atom_link="javascript:alert(1)"),
        row(3, atom_link="https://evil.example/\nx"),
    ]
    feed = parsed(render_atom(rows, title="Changes in NumThy", feed_id="urn:x"))
    entries = feed.findall("a:entry", NS)
    assert [e.findtext("a:author/a:name", namespaces=NS) for e in entries] == [
        "Number Theory Web Seminar",
        "researchseminars.org",
        "Number Theory Web Seminar",
    ]
    hrefs = [link.get("href") for link in feed.iterfind(".//a:link", NS)]
    assert hrefs == ["https://researchseminars.org/talk/S/1/"]
    assert feed.findtext("a:title", namespaces=NS) == "Changes in NumThy"


def test_control_characters_do_not_break_the_feed() -> None:
    feed = parsed(render_atom([row(1, atom_title="Bell\x07 \x1b[31m\x00")], title="t", feed_id="u"))
    assert feed.findtext("a:entry/a:title", namespaces=NS) == "Bell [31m"


def test_an_empty_filter_gives_a_valid_empty_feed() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    feed = parsed(render_atom([], title="Changes in Nope", feed_id="urn:x", now=now))
    assert feed.findall("a:entry", NS) == []
    assert feed.findtext("a:updated", namespaces=NS) == "2026-12-01T12:00:00+00:00"


def test_entries_keep_their_order_and_the_feed_is_as_new_as_its_newest() -> None:
    feed = parsed(render_atom([row(3), row(1), row(2)], title="t", feed_id="u"))
    ids = [e.findtext("a:id", namespaces=NS) for e in feed.findall("a:entry", NS)]
    assert ids == [row(3)["atom_id"], row(1)["atom_id"], row(2)["atom_id"]]
    assert feed.findtext("a:updated", namespaces=NS) == "2026-12-03T10:00:00+00:00"
