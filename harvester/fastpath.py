"""The fast path of the parse stage: skip the work that a poll with no change does not need.

researchseminars.org rewrites DTSTAMP on every download and sends no validators, so every
poll brings a body whose bytes differ from the last one. Two levels find what did not
change, without icalendar:

1. **The body.** `ics.body_fingerprint` hashes the body with its DTSTAMP line masked
   wherever it occurs (a few ms for 2 MB; the site stamps every event of a download
   alike). Equal to the last successful poll's, and the archive still as that poll left
   it, the poll is `unchanged` with no parse at all (`store.record_unchanged_body`).
2. **The events.** Otherwise `parse_fast` splits the body into its VEVENT blocks (the
   blocks `ics.split_vevents` gives), fingerprints each (`ics.fingerprint_block`:
   DTSTAMP, folding, line endings and blank lines taken out) and reads its UID and DTSTAMP
   from the unfolded lines. A block whose UID and fingerprint the archive has (active) is a
   `KnownTalk`; only the others are read. One in the site's regular form (its own
   properties, no parameters, UTC times, RFC 5545 escapes) is read by the lexer
   (`parse.talk_from_block`): a first sync of the site's feeds needs no icalendar at all.
   The rest go to icalendar, a few hundred at a time, in the calendar around them. A body
   that differs from the last only in folding or line endings costs no parse either. A
   block that is, byte for byte but for its DTSTAMP line, one the feed carried at its last
   poll (`feed_talks.raw_key`) is that block again and is not even unfolded.

The result is exactly what `parse.parse_feed` and the diff would make of the body. Whenever
that is not certain, the body takes the full parse instead: any component other than
VCALENDAR and VEVENT, a BEGIN/END line that is not plain (lower case, trailing blanks,
folded or hidden by folding), invalid UTF-8, stray CRs, a UID seen twice, or an icalendar
result that does not line up with the blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from harvester import ics
from harvester.errors import ParseError
from harvester.model import KnownTalk, TalkRecord
from harvester.parse import (
    CHUNK,
    ParsedFeed,
    calendar_events,
    calendar_of,
    plain_calendar,
    talk_from_block,
    talk_from_event,
)

# --- level 2: the events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """One VEVENT of the body as the scan sees it."""

    start: int
    end: int  # text[start:end] is the block `split_vevents` gives
    fingerprint: str
    uid: str | None  # None when only icalendar can tell (then the block is parsed)
    dtstamp: str | None
    raw_key: str  # its raw bytes without the DTSTAMP line: equal means same block again


Carried = Mapping[str, tuple[str, str]]
"""raw_key → (uid, fingerprint) of the blocks the feed carried at its last poll that the
scan read with certainty (`feed_talks.raw_key`)."""


def scan(text: bytes, carried: Carried | None = None) -> list[Block] | None:
    """The VEVENT blocks of `text` with fingerprint, UID and DTSTAMP; None when in doubt.

    Two views of the body must agree: its raw component lines (where `split_vevents`
    cuts, all of them plain) and its unfolded lines (what icalendar reads). A block whose
    raw bytes (DTSTAMP aside) are a block the feed carried last time is that block again:
    it is not unfolded and read again.
    """
    spans = ics.plain_vevent_spans(text)
    if spans is None:
        return None
    carried = carried or {}
    stamps_seen: dict[bytes, str | None] = {}
    blocks: list[Block] = []
    view = memoryview(text)
    for start, end in spans:
        raw_key, stamp = ics.raw_key(text, view, start, end)
        again = carried.get(raw_key)
        if again is not None and stamp is not False:
            dtstamp = _seen_dtstamp(stamp, stamps_seen) if isinstance(stamp, bytes) else None
            if stamp is None or dtstamp is not None:
                blocks.append(Block(start, end, again[1], again[0], dtstamp, raw_key))
                continue
        block = _scan_block(text[start:end], start, end, raw_key, stamps_seen)
        if block is None:
            return None
        blocks.append(block)
    if not ics.only_calendar_components(ics.cut(text, _spans(blocks))):
        return None
    return blocks


def _seen_dtstamp(line: bytes, seen: dict[bytes, str | None]) -> str | None:
    """`ics.plain_dtstamp`, once per distinct line: one download usually stamps all alike."""
    if line not in seen:
        seen[line] = ics.plain_dtstamp(line)
    return seen[line]


def _scan_block(
    raw: bytes, start: int, end: int, raw_key: str, stamps_seen: dict[bytes, str | None]
) -> Block | None:
    lines = ics.unfolded_lines(raw)
    if lines is None:
        return None
    kept = []
    uid: str | None = None
    uids = stamps = 0
    dtstamp = None
    last = len(lines) - 1
    for index, line in enumerate(lines):
        if line.startswith(_PLAIN_NAMES):
            kept.append(line)
            continue
        if not line.strip():
            continue
        if ics.is_dtstamp_name(line):
            stamps += 1
            dtstamp = _seen_dtstamp(line, stamps_seen)
        elif ics.property_name(line) == b"UID":
            uids += 1
            uid = _plain_uid(line)
        elif ics.is_component_line(line) and 0 < index < last:
            return None  # a nested component, or one hidden by folding
        if not ics.is_dtstamp(line):  # exactly what `ics.fingerprint_block` keeps
            kept.append(line)
    fingerprint = ics.fingerprint_of(kept)
    sure = uids == 1 and (stamps == 0 or (stamps == 1 and dtstamp is not None))
    return Block(start, end, fingerprint, uid if sure else None, dtstamp, raw_key)


# Lines whose property name is surely none of UID, DTSTAMP, BEGIN, END: kept as they are.
_PLAIN_NAMES = (b"SUMMARY", b"DTSTART", b"DTEND", b"DESCRIPTION", b"LOCATION", b"URL", b"X-")


def _plain_uid(line: bytes) -> str | None:
    """The UID as the parse gives it, for a line without parameters or escapes."""
    colon = line.find(b":")
    if colon != 3 or b"\\" in line:
        return None
    try:
        uid = ics.clean_text(line[4:].decode("utf-8")).strip()
    except UnicodeDecodeError:
        return None
    return uid or None


def _spans(blocks: list[Block]) -> list[tuple[int, int]]:
    return [(b.start, b.end) for b in blocks]


# --- putting it together ------------------------------------------------------------------

Lookup = Callable[[list[str]], Mapping[str, str]]
"""UIDs → the fingerprints the archive holds for those of them that are active."""


def parse_fast(text: bytes, lookup: Lookup, carried: Carried | None = None) -> ParsedFeed | None:
    """`parse_feed` for a body after `check_calendar_bytes`, parsing only unknown events.

    None when the body must take the full parse instead (see the module's doc).
    """
    blocks = scan(text, carried)
    if blocks is None:
        return None
    uids = [b.uid for b in blocks if b.uid is not None]
    if len(set(uids)) != len(uids):
        return None  # duplicate UIDs: the full parse decides which one wins
    # A block the feed carried before is taken as known (the archive had it then; the
    # poll's transaction checks it still does). The others are looked up.
    archived: dict[str, str] = {
        b.uid: b.fingerprint for b in blocks if b.uid is not None and b.raw_key in (carried or {})
    }
    if len(archived) < len(uids):
        archived.update(lookup([u for u in uids if u not in archived]))
    known = [b for b in blocks if _is_in(b, archived)]
    unknown = [(i, b) for i, b in enumerate(blocks, start=1) if not _is_in(b, archived)]
    # Known blocks are valid UTF-8 once unfolded: their fingerprints came from parsed
    # text. Anything else takes the full parse, which replaces it with a warning.
    if not ics.unfolds_to_utf8(ics.cut(text, _spans(known))):
        return None
    parsed = _parse_unknown(text, ics.cut(text, _spans(blocks)), unknown)
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
        raw_keys={b.uid: b.raw_key for b in blocks if b.uid is not None},
    )


Parsed = tuple[list[TalkRecord], list[str]]
Item = tuple[int, bytes, str]  # (position in the body, raw block, its fingerprint)
Placed = tuple[list[tuple[int, TalkRecord]], list[str]]  # records with their positions


def _parse_unknown(text: bytes, context: bytes, unknown: list[tuple[int, Block]]) -> Parsed | None:
    """Records of the unknown blocks of `text`, in body order; None if icalendar disagrees.

    A block in the site's regular form is read by the lexer (`parse.talk_from_block`);
    the others are parsed by icalendar in the calendar around them (`parse_events`).
    """
    read: list[tuple[int, TalkRecord]] = []
    rest: list[Item] = []
    for position, block in unknown:
        raw = text[block.start : block.end]  # one at a time: a first sync has them all
        record = talk_from_block(raw, block.fingerprint)
        if record is None:
            rest.append((position, raw, block.fingerprint))
        else:
            read.append((position, record))
    parsed = _parse_with_icalendar(context, rest)
    if parsed is None:
        return None
    placed, warnings = parsed
    if read:  # two runs in body order: one merge
        placed = sorted(read + placed, key=_position)
    return [record for _, record in placed], warnings


def _position(placed: tuple[int, TalkRecord]) -> int:
    return placed[0]


def _parse_with_icalendar(context: bytes, items: list[Item]) -> Placed | None:
    """`parse_events`; with no items, a calendar of the site's plain form needs no
    icalendar at all."""
    if not items and plain_calendar(context):
        return [], []
    return parse_events(context, items)


def parse_events(context: bytes, items: list[Item]) -> Placed | None:
    """Talk records of the VEVENT blocks `items` (position, raw block, fingerprint) with
    their positions, parsed by icalendar `CHUNK` at a time in the calendar `context` (the
    body without its VEVENT blocks); None when icalendar does not see exactly those events.

    With no items, icalendar still checks the calendar's own lines.
    """
    warnings: list[str] = []
    records = []
    for start in range(0, max(len(items), 1), CHUNK):
        chunk = items[start : start + CHUNK]
        try:
            events = calendar_events(calendar_of(context, [raw for _, raw, _ in chunk]))
        except ParseError:
            return None
        if len(events) != len(chunk):
            return None
        for event, (position, raw, fingerprint) in zip(events, chunk, strict=True):
            record = talk_from_event(event, raw, position, warnings, fingerprint)
            if record is not None:
                records.append((position, record))
    return records, warnings


def _is_in(block: Block, archived: Mapping[str, str]) -> bool:
    return block.uid is not None and archived.get(block.uid) == block.fingerprint
