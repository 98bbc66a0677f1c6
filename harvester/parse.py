"""Parse stage: an iCalendar body → talk records (pure, no I/O). icalendar is the one parser.

researchseminars.org puts the speakers in SUMMARY and everything else (title, talk page,
series name, livestream, room, abstract, comments) in DESCRIPTION; other calendars still
archive, with the title taken from SUMMARY.

**The fast path** (`parse_body`). researchseminars.org rewrites DTSTAMP on every download
and sends no validators, so every poll brings a body whose bytes differ from the last one.
Two levels find what did not change, and icalendar reads only what did:

1. **The body.** `ics.body_fingerprint` hashes the body with its DTSTAMP line masked
   wherever it occurs (a few ms for 2 MB; the site stamps every event of a download
   alike). Equal to the last successful poll's, and the archive still as that poll left
   it, the poll is `unchanged` with no parse at all (the sync asks the archive first).
2. **The events.** Otherwise `parse_fast` splits the body into its VEVENT blocks
   (`ics.scan`: where `ics.split_vevents` cuts, each block fingerprinted without its
   DTSTAMP, folding, line endings and blank lines, and its UID and DTSTAMP read from its
   unfolded lines). A block whose UID and fingerprint the archive has (active) is a
   `KnownTalk`; icalendar parses only the others, a few hundred at a time, in the
   calendar around them. A body that differs from the last only in folding or line
   endings costs no event parse either.

The result is exactly what `parse_feed` and the diff would make of the body. Whenever that
is not certain, the body takes the full parse (`parse_feed`) instead: any component other
than VCALENDAR and VEVENT, a BEGIN/END line that is not plain (lower case, trailing blanks,
folded or hidden by folding), invalid UTF-8, stray CRs, a UID seen twice, or an icalendar
result that does not line up with the blocks.
"""

from __future__ import annotations

import html
import itertools
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from harvester import ics
from harvester.errors import ParseError
from harvester.model import KnownTalk, Speaker, TalkRecord
from harvester.site import http_url

if TYPE_CHECKING:  # icalendar is imported when a body needs it: most polls need none
    import icalendar

T = TypeVar("T")


@dataclass(frozen=True)
class ParsedFeed:
    talks: list[TalkRecord]
    warnings: list[str] = field(default_factory=list)
    events: int = 0  # VEVENTs in the body, including skipped ones
    # The fast path's events that the archive already has, unparsed (`parse_fast`).
    known: list[KnownTalk] = field(default_factory=list)
    skimmed: bool = False  # by the fast path: `talks` are only the events the archive lacks


# --- the whole body ----------------------------------------------------------------------

CHUNK = 500  # events icalendar parses at once: its tree of a whole large feed is huge


def check_calendar_bytes(body: bytes) -> bytes:
    """Refuse bodies that cannot be a calendar, with a reason a person understands."""
    text = body.removeprefix(b"\xef\xbb\xbf").strip()
    if not text:
        raise ParseError("empty body, not a calendar")
    if b"\x00" in text:
        raise ParseError("body contains NUL bytes, not a calendar")
    if not text[:15].upper().startswith(b"BEGIN:VCALENDAR"):
        start = text[:40].decode("utf-8", "replace").splitlines()[0]
        kind = "an HTML page" if start.lstrip().startswith("<") else "not a calendar"
        raise ParseError(f"{kind}: body starts with {start!r}")
    return text


def parse_feed(body: bytes) -> ParsedFeed:
    """Every VEVENT of a complete VCALENDAR as a talk record; raise ParseError otherwise."""
    text = check_calendar_bytes(body)
    warnings: list[str] = []
    bad_at = None if ics.unfolds_to_utf8(text) else ics.decode(ics.unfold(text)).bad_at
    if bad_at is not None:
        warnings.append(f"invalid UTF-8 at byte {bad_at}; replaced")
        text = text.decode("utf-8", "replace").encode("utf-8")
    head = list(warnings)
    counted = _Counted()
    try:
        talks = records_in_order(_events_in_chunks(text, counted), warnings)
    except MisreadError:  # the reference way, with a tree of the whole calendar
        warnings = list(head)
        talks = records_in_order(_events_at_once(text, counted, warnings), warnings)
    return ParsedFeed(talks=talks, warnings=warnings, events=counted.events)


Event = tuple["icalendar.cal.Component", bytes, int]  # (event, its raw block, its position)


@dataclass
class _Counted:
    events: int = 0


class MisreadError(Exception):
    """icalendar does not see exactly the VEVENT blocks the lexer cut."""


def _events_at_once(text: bytes, counted: _Counted, warnings: list[str]) -> Iterator[Event]:
    """The events of `text`, parsed by icalendar in one go (the reference, for odd bodies)."""
    try:
        events = calendar_events(text)
    except ParseError as exc:
        events = _events_alone(text, exc, warnings)
    counted.events = len(events)
    blocks = ics.split_vevents(text)
    if blocks is None or len(blocks) != len(events):
        blocks = [event.to_ical() for event in events]
    for position, (event, block) in enumerate(zip(events, blocks, strict=True), start=1):
        yield event, block, position


# The calendar the events are read in when the feed's own other parts cannot be read.
_BARE_CALENDAR = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-\r\nEND:VCALENDAR"  # as `calendar_of` wants it
)


def _events_alone(
    text: bytes, error: ParseError, warnings: list[str]
) -> list[icalendar.cal.Component]:
    """The VEVENTs of `text` read in a calendar of their own, when what surrounds them (a
    VTIMEZONE with an offset of 99 hours, say) is what icalendar cannot read: a warning,
    not a failed feed. `error` again when the events themselves are the trouble."""
    blocks = ics.split_vevents(text)
    if not blocks or ics.calendar_count(text) != 1:
        raise error
    try:
        events = calendar_events(calendar_of(_BARE_CALENDAR, blocks))
    except ParseError:
        raise error from None
    if len(events) != len(blocks):
        raise error
    reason = str(error).removeprefix("not one complete VCALENDAR: ")
    warnings.append(f"read the events without the calendar's other parts, unreadable ({reason})")
    return events


def _events_in_chunks(text: bytes, counted: _Counted) -> Iterator[Event]:
    """The events of `text`, parsed `CHUNK` at a time; MisreadError when that is not sure."""
    spans = ics.plain_vevent_spans(text)
    context = ics.cut(text, spans) if spans else b""
    if not spans or ics.unfolded_lines(context) is None:
        raise MisreadError  # no events, or lines the lexer and icalendar may read apart
    counted.events = len(spans)
    yield from read_events(context, ((n, text[s:e]) for n, (s, e) in enumerate(spans, start=1)))


def read_events(context: bytes, blocks: Iterable[tuple[int, bytes]]) -> Iterator[Event]:
    """icalendar's event of each block (position, raw VEVENT), read `CHUNK` at a time in
    the calendar `context` (a body with its VEVENT blocks cut out); MisreadError when
    icalendar does not see exactly those blocks. With no blocks, it still reads `context`.
    """
    chunks = _batched(blocks, CHUNK)
    for chunk in itertools.chain([next(chunks, ())], chunks):
        try:
            events = calendar_events(calendar_of(context, [raw for _, raw in chunk]))
        except ParseError:
            raise MisreadError from None
        if len(events) != len(chunk):
            raise MisreadError
        for event, (position, raw) in zip(events, chunk, strict=True):
            yield event, raw, position


def _batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch


def calendar_of(context: bytes, blocks: Sequence[bytes]) -> bytes:
    """The calendar `context` (a body with its VEVENT blocks cut out) with `blocks` put back
    before its END:VCALENDAR line.
    """
    if not blocks:
        return context
    at = len(context) - len(ics.CALENDAR_END) + 1
    return context[:at] + b"\n".join(blocks) + b"\n" + context[at:]


def calendar_events(text: bytes) -> list[icalendar.cal.Component]:
    """The VEVENTs directly inside the one VCALENDAR of `text` (icalendar's parse).

    The text is unfolded before it is decoded: a fold may split a UTF-8 character.
    """
    import icalendar

    decoded = ics.decode(ics.unfold(text)).text
    try:
        calendar = icalendar.Calendar.from_ical(decoded)
    except (ValueError, IndexError, KeyError) as exc:
        raise ParseError(f"not one complete VCALENDAR: {_first_line(exc)}") from None
    return [c for c in calendar.subcomponents if c.name == "VEVENT"]


def records_in_order(events: Iterable[Event], warnings: list[str]) -> list[TalkRecord]:
    """Talk records in body order; a later event with the same UID replaces an earlier one."""
    by_uid: dict[str, TalkRecord] = {}
    for event, block, position in events:
        record = talk_from_event(event, block, position, warnings)
        if record is None:
            continue
        if record.uid in by_uid:
            warnings.append(f"event #{position}: duplicate UID {record.uid!r}; the last one wins")
            del by_uid[record.uid]
        by_uid[record.uid] = record
    return list(by_uid.values())


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


# --- the fast path ----------------------------------------------------------------------

Lookup = Callable[[list[str]], Mapping[str, str]]
"""UIDs → the fingerprints the archive holds for those of them that are active."""


def parse_fast(text: bytes, lookup: Lookup) -> ParsedFeed | None:
    """`parse_feed` for a body after `check_calendar_bytes`, parsing only unknown events.

    None when the body must take the full parse instead (see the module's doc).
    """
    blocks = ics.scan(text)
    if blocks is None:
        return None
    uids = [b.uid for b in blocks if b.uid is not None]
    if len(set(uids)) != len(uids):
        return None  # duplicate UIDs: the full parse decides which one wins
    archived = lookup(uids)
    known = [b for b in blocks if _is_in(b, archived)]
    unknown = [(i, b) for i, b in enumerate(blocks, start=1) if not _is_in(b, archived)]
    # Known blocks are valid UTF-8 once unfolded: their fingerprints came from parsed
    # text. Anything else takes the full parse, which replaces it with a warning.
    spans = [(b.start, b.end) for b in blocks]
    if not ics.unfolds_to_utf8(ics.cut(text, [(b.start, b.end) for b in known])):
        return None
    parsed = _parse_unknown(text, ics.cut(text, spans), unknown)
    if parsed is None:
        return None
    records, warnings = parsed
    present = [r.uid for r in records] + [b.uid for b in known if b.uid is not None]
    if len(set(present)) != len(present):
        return None  # a parsed event repeats a UID: the full parse decides which one wins
    return ParsedFeed(
        talks=records,
        warnings=warnings,
        events=len(blocks),
        known=[KnownTalk(b.uid, b.fingerprint, b.dtstamp) for b in known if b.uid],
        skimmed=True,
    )


def _parse_unknown(
    text: bytes, context: bytes, unknown: list[tuple[int, ics.Block]]
) -> tuple[list[TalkRecord], list[str]] | None:
    """icalendar's records of the unknown blocks in body order, read in the calendar
    `context` around them; None when icalendar does not see exactly those blocks.

    With no unknown block, icalendar still reads the calendar's own lines.
    """
    fingerprints = {position: block.fingerprint for position, block in unknown}
    items = ((position, text[block.start : block.end]) for position, block in unknown)
    warnings: list[str] = []
    records = []
    try:
        for event, raw, position in read_events(context, items):
            record = talk_from_event(event, raw, position, warnings, fingerprints[position])
            if record is not None:
                records.append(record)
    except MisreadError:
        return None
    return records, warnings


def _is_in(block: ics.Block, archived: Mapping[str, str]) -> bool:
    return block.uid is not None and archived.get(block.uid) == block.fingerprint


def parse_body(text: bytes, lookup: Lookup) -> ParsedFeed:
    """The fast path's reading of a body after `check_calendar_bytes`, or the full parse
    when the fast path is not certain of it."""
    return parse_fast(text, lookup) or parse_feed(text)


# --- one event ---------------------------------------------------------------------------


def talk_from_event(
    event: icalendar.cal.Component,
    block: bytes,
    position: int,
    warnings: list[str],
    fingerprint: str | None = None,
) -> TalkRecord | None:
    """One talk record, or None (with a warning naming the event) when it cannot be archived.

    `fingerprint` is `ics.fingerprint_block(block)` when the caller has it already. Text
    fields hold no C0 control characters (`raw` keeps the block as received); URLs are
    kept only when they are http(s) URLs (`site.http_url`).
    """
    summary = _text(event.get("SUMMARY"))
    label = f"event #{position}" + (f" ({summary[:60]!r})" if summary else "")
    uid = _text(event.get("UID"))
    if not uid:
        warnings.append(f"{label} has no UID; skipped")
        return None
    label = f"event {uid!r}"
    try:
        dtstart = _time(event, "DTSTART")
        dtend = _time(event, "DTEND") or _end_from_duration(event)
        dtstamp = _time(event, "DTSTAMP")
    except (ValueError, OverflowError, TypeError) as exc:
        warnings.append(f"{label} has an unusable date ({_first_line(exc)}); skipped")
        return None
    if dtstart is None:
        warnings.append(f"{label} has no DTSTART; skipped")
        return None
    return _talk(
        uid=uid,
        dtstart=dtstart,
        dtend=dtend,
        dtstamp=dtstamp,
        summary=summary,
        description=_text(event.get("DESCRIPTION")),
        location=_text(event.get("LOCATION")),
        urls=_texts(event.get("URL")),
        block=block,
        fingerprint=fingerprint,
    )


def _talk(
    *,
    uid: str,
    dtstart: str,
    dtend: str | None,
    dtstamp: str | None,
    summary: str | None,
    description: str | None,
    location: str | None,
    urls: list[str],
    block: bytes,
    fingerprint: str | None,
) -> TalkRecord:
    """The record of an event's values, as icalendar read them."""
    site = parse_site_description(description) if description else None
    series_id, counter = _split_uid(uid)
    common: dict[str, Any] = {
        "uid": uid,
        "dtstart": dtstart,
        "dtend": dtend,
        "dtstamp": _shared(dtstamp),  # one download stamps every event alike
        "fingerprint": fingerprint or ics.fingerprint_block(block),
        "raw": block.decode("utf-8", "replace"),
        "summary": summary,
        "description": description,
        "location": location,
        "urls": tuple(url for url in map(http_url, urls) if url),
        "series_id": _shared(series_id),
        "counter": counter,
    }
    if site is None:
        return TalkRecord(**common, title=summary)
    return TalkRecord(
        **common,
        title=site.title,
        speaker=summary,
        speakers=parse_speakers(summary or ""),
        series_name=site.series_name,
        abstract=site.abstract,
        room=site.room,
        talk_url=http_url(site.talk_url) or http_url(_talk_url_from_location(location)),
        livestream_url=site.livestream_url,
        comments=site.comments,
    )


def _shared(text: str | None) -> str | None:
    """One string object for a value many records repeat (memory, for large feeds)."""
    return sys.intern(text) if text is not None else None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):  # a property given twice: keep the first
        value = value[0] if value else None
        return _text(value)
    return _clean(str(value))


def _clean(text: str) -> str | None:
    """A TEXT value as stored: no C0 controls but tab and newline, no blanks around."""
    return ics.clean_text(text).strip() or None


def _texts(value: object) -> list[str]:
    values = value if isinstance(value, list) else [value] if value is not None else []
    return [str(v).strip() for v in values if str(v).strip()]


# An absolute http(s) URL with a host, and no whitespace or control character anywhere.
def _first(event: icalendar.cal.Component, name: str) -> Any:
    """The property's first occurrence (icalendar gives a list when it occurs twice)."""
    prop = event.get(name)
    return prop[0] if isinstance(prop, list) else prop


def _time(event: icalendar.cal.Component, name: str) -> str | None:
    prop = _first(event, name)
    return None if prop is None else iso_utc(prop.dt)


def iso_utc(value: object) -> str:
    """ISO 8601 in UTC with an explicit offset; a floating time is taken as UTC."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise ValueError(f"expected a date or date-time, got {type(value).__name__}")


def _end_from_duration(event: icalendar.cal.Component) -> str | None:
    duration, start = _first(event, "DURATION"), _first(event, "DTSTART")
    if duration is None or start is None:
        return None
    return iso_utc(start.dt + duration.dt)


_UID = re.compile(r"^(?P<series>[^/\s]+)/(?P<counter>-?\d+)$")


def _split_uid(uid: str) -> tuple[str | None, int | None]:
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


@dataclass(frozen=True)
class SiteDescription:
    title: str | None = None
    talk_url: str | None = None
    series_name: str | None = None
    livestream_url: str | None = None
    room: str | None = None
    abstract: str | None = None
    comments: str | None = None


_TITLE_LINE = re.compile(
    r'^Title:\s*(?:<a href="(?P<href>[^"]*)">(?P<linked>.*)</a>|(?P<plain>.*))$'
)
_BY_LINE = re.compile(r"^by (?P<speakers>.*?)(?: as part of (?P<series>.*))?$")
_TAG = re.compile(r"<[^<>]+>")  # not `[^>]`: each `<` with no `>` after it would scan to the end


def parse_site_description(description: str) -> SiteDescription | None:
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
    return SiteDescription(
        title=title,
        talk_url=talk_url,
        series_name=_html_text(by["series"]) if by["series"] else None,
        livestream_url=http_url(found.get("Interactive livestream"))
        or http_url(found.get("View-only livestream")),
        room=found.get("room"),
        abstract=abstract,
        comments=comments,
    )


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
    text = ics.clean_text(html.unescape(_TAG.sub("", fragment))).strip()
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
