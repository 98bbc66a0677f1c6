"""What researchseminars.org writes in an event beyond iCalendar (pure functions).

The site puts the speakers in SUMMARY (`A (X), B (Y), and C (Z)`), and everything else
in DESCRIPTION: a `Title:` line (linked to the talk page), `by … as part of <series>`, the
livestream links, the room, then the abstract or `Abstract: TBA` and comments. Its UIDs are
`<series>/<counter>`, and a talk's LOCATION may be its page. An event of another calendar
has no such DESCRIPTION: `site_fields` gives None and the parse takes the title from SUMMARY.
"""

from __future__ import annotations

import html
import re
from typing import Any

from harvester.model import Speaker, clean_text
from harvester.site import http_url


def site_fields(
    summary: str | None, description: str | None, location: str | None
) -> dict[str, Any] | None:
    """The talk record's fields that the site's SUMMARY, DESCRIPTION and LOCATION give;
    None when the DESCRIPTION is not one of the site's."""
    site = _description_fields(description) if description else None
    if site is None:
        return None
    site["talk_url"] = http_url(site["talk_url"]) or http_url(_talk_url_from_location(location))
    return {**site, "speaker": summary, "speakers": parse_speakers(summary or "")}


_UID = re.compile(r"^(?P<series>[^/\s]+)/(?P<counter>-?\d+)$")


def uid_parts(uid: str) -> tuple[str | None, int | None]:
    """The series and counter of a site's UID (`NT/12`); (None, None) for another UID."""
    match = _UID.match(uid)
    if not match:
        return None, None
    return match["series"], int(match["counter"])


_TALK_PATH = re.compile(r"^(?:https?://[^/]+)?/talk/[^/]+/-?\d+/?$")


def _talk_url_from_location(location: str | None) -> str | None:
    if location and _TALK_PATH.match(location):
        if location.startswith("/"):
            return "https://researchseminars.org" + location
        return location
    return None


# --- researchseminars.org DESCRIPTION ----------------------------------------------------


_TITLE_LINE = re.compile(
    r'^Title:\s*(?:<a href="(?P<href>[^"]*)">(?P<linked>.*)</a>|(?P<plain>.*))$'
)
_BY_LINE = re.compile(r"^by (?P<speakers>.*?)(?: as part of (?P<series>.*))?$")
_TAG = re.compile(r"<[^<>]+>")  # not `[^>]`: each `<` with no `>` after it would scan to the end


def _description_fields(description: str) -> dict[str, str | None] | None:
    """The parts of a researchseminars.org DESCRIPTION, or None if it is not one of theirs."""
    lines = description.replace("\r\n", "\n").split("\n")
    title = talk_url = None
    if lines and (match := _TITLE_LINE.match(lines[0])):
        talk_url = match["href"] or None
        title = _html_text(match["linked"] if match["linked"] is not None else match["plain"])
        lines = lines[1:]
    if not lines or not (by := _BY_LINE.match(lines[0])):
        return None
    rest = lines[1:]
    found: dict[str, str] = {}
    while rest and (not rest[0].strip() or _take_detail(rest[0], found)):
        rest = rest[1:]
    abstract, comments = _abstract_and_comments(rest)
    return {
        "title": title,
        "talk_url": talk_url,
        "series_name": _html_text(by["series"]) if by["series"] else None,
        "livestream_url": http_url(found.get("Interactive livestream"))
        or http_url(found.get("View-only livestream")),
        "room": found.get("room"),
        "abstract": abstract,
        "comments": comments,
    }


_DETAIL = re.compile(
    r"^(?P<key>Interactive livestream|View-only livestream|Password hint):\s*(?P<value>.*)$"
)
_ROOM = "Lecture held in "


def _take_detail(line: str, found: dict[str, str]) -> bool:
    if match := _DETAIL.match(line):
        found.setdefault(match["key"], match["value"].strip())
        return True
    if line.startswith(_ROOM):
        room = line[len(_ROOM) :].rstrip()
        found.setdefault("room", room.removesuffix(".").strip())
        return True
    return False


def _abstract_and_comments(lines: list[str]) -> tuple[str | None, str | None]:
    """After the header: `Abstract` + text, or `Abstract: TBA` + optional comments.

    With an abstract present, comments follow it after a blank line, but an abstract may
    have paragraphs of its own: the two cannot be told apart, so it all stays the abstract.
    """
    if not lines:
        return None, None
    head, body = lines[0].strip(), "\n".join(lines[1:]).strip()
    if head == "Abstract":
        return body or None, None
    if head.startswith("Abstract:"):
        return None, body or None
    return None, "\n".join(lines).strip() or None


def _html_text(fragment: str | None) -> str | None:
    if fragment is None:
        return None
    text = clean_text(html.unescape(_TAG.sub("", fragment))).strip()
    return text or None


# --- speakers ----------------------------------------------------------------------------


def parse_speakers(summary: str) -> tuple[Speaker, ...]:
    """`A (X)`, `A (X) and B (Y)` or `A (X), B (Y), and C (Z)` → speakers with affiliations.

    Separators count only outside parentheses, so affiliations may hold commas and "and".
    Linear in the length of `summary` (no backtracking pattern: anyone who edits a series
    writes it).
    """
    return tuple(_speaker(part) for part in _split_top_level(summary))


def _speaker(part: str) -> Speaker:
    """`Name (Affiliation)`: the name holds no parenthesis, the affiliation is all the rest."""
    opening = part.find("(")
    if opening < 0 or not part.endswith(")") or ")" in part[:opening]:
        return Speaker(part)
    return Speaker(part[:opening].strip(), part[opening + 1 : -1].strip() or None)


def _split_top_level(text: str) -> list[str]:
    """`text` cut at `, and `, ` and ` and `,` (with any whitespace) outside parentheses."""
    parts: list[str] = []
    depth = start = position = 0
    while position < len(text):
        char = text[position]
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0 and (char == "," or char.isspace()):
            end = _separator_end(text, position)
            if end is not None:
                parts.append(text[start:position])
                start = position = end
                continue
            if char.isspace():  # no separator starts anywhere in this run of whitespace
                position = _skip_space(text, position)
                continue
        position += 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _separator_end(text: str, position: int) -> int | None:
    """Where a separator that starts at `position` ends: `,` + whitespace, optionally
    followed by `and` + whitespace; or whitespace + `and` + whitespace. None if none."""
    after_comma = position + 1 if text[position] == "," else position
    spaced = _skip_space(text, after_comma)
    if text.startswith("and", spaced) and (spaced > position or after_comma > position):
        after_and = _skip_space(text, spaced + 3)
        if after_and > spaced + 3:
            return after_and
    return spaced if after_comma > position else None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position
