"""The Atom renderer: rows of `atom_*` columns → an Atom 1.0 feed (pure, feedgen, no I/O).

The columns are datasette-atom's convention (`atom_id`, `atom_title`, `atom_updated`, and
optionally `atom_content`, `atom_link`, `atom_author_name`), so a canned query written for
it needs no change. Unlike it, this renderer:
- gives every entry an author (the series' name, else "researchseminars.org");
- links only to http(s) URLs (a `javascript:` talk page becomes no link);
- drops the control characters XML cannot carry, instead of failing the whole feed;
- renders a feed with no entries (a filter that matches nothing is not an error).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from feedgen.feed import FeedGenerator

from harvester.site import http_url

CONTENT_TYPE = "application/atom+xml; charset=utf-8"
DEFAULT_AUTHOR = "researchseminars.org"
# XML 1.0 allows tab, LF and CR of the C0 controls; the rest (and DEL and C1) go.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def render_atom(
    rows: Iterable[Mapping[str, Any]],
    *,
    title: str,
    feed_id: str,
    link: str | None = None,
    now: datetime | None = None,
    self_link: str | None = None,
) -> bytes:
    """An Atom feed of `rows`, newest first as given; `link` is the page the feed is of,
    `self_link` the feed's own address (RFC 4287 asks for it)."""
    feed = FeedGenerator()
    feed.id(xml_text(feed_id))
    feed.title(xml_text(title))
    feed.author({"name": DEFAULT_AUTHOR})
    if page := http_url(link):
        feed.link(href=page, rel="alternate")
    if itself := http_url(self_link):
        feed.link(href=itself, rel="self")
    updated = [feed_entry(feed, row) for row in rows]
    feed.updated(max(updated, default=now or datetime.now(UTC)))
    xml: bytes = feed.atom_str(pretty=True)
    return xml


def feed_entry(feed: FeedGenerator, row: Mapping[str, Any]) -> datetime:
    """Add one row as an entry (appended, so the feed keeps the rows' order); its time."""
    entry = feed.add_entry(order="append")
    entry.id(xml_text(str(row["atom_id"])))
    title = xml_text(str(row.get("atom_title") or row["atom_id"]))
    entry.title(title)
    updated = _moment(row.get("atom_updated"))
    entry.updated(updated)
    entry.author({"name": xml_text(str(row.get("atom_author_name") or DEFAULT_AUTHOR))})
    page = http_url(row.get("atom_link"))
    content = row.get("atom_content")
    if content or not page:  # Atom wants one of the two: the title stands in for a content
        entry.content(xml_text(str(content)) if content else title, type="text")
    if page:
        entry.link(href=page, rel="alternate")
    return updated


def xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def _moment(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
