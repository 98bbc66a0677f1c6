"""The fast path of the parse stage: skip the work that a poll with no change does not need.

researchseminars.org rewrites DTSTAMP on every download and sends no validators, so every
poll brings a body whose bytes differ from the last one. Two levels find what did not
change; icalendar, the one parser, reads only what did:

1. **The body.** `ics.body_fingerprint` hashes the body with its DTSTAMP line masked
   wherever it occurs (a few ms for 2 MB; the site stamps every event of a download
   alike). Equal to the last successful poll's, and the archive still as that poll left
   it, the poll is `unchanged` with no parse at all (`store.record_unchanged_body`).
2. **The events.** Otherwise `parse_fast` splits the body into its VEVENT blocks (where
   `ics.split_vevents` cuts), fingerprints each (`ics.fingerprint_block`: DTSTAMP,
   folding, line endings and blank lines taken out) and takes its UID and DTSTAMP from
   the unfolded lines. A block whose UID and fingerprint the archive has (active) is a
   `KnownTalk`; icalendar parses only the others, a few hundred at a time, in the
   calendar around them. A body that differs from the last only in folding or line
   endings costs no event parse either.

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
from harvester.model import KnownTalk, TalkRecord
from harvester.parse import MisreadError, ParsedFeed, read_events, talk_from_event


@dataclass(frozen=True, slots=True)
class Block:
    """One VEVENT of the body as the scan sees it."""

    start: int
    end: int  # text[start:end] is the block `split_vevents` gives
    fingerprint: str
    uid: str | None  # None when only icalendar can tell (then the block is parsed)
    dtstamp: str | None


def scan(text: bytes) -> list[Block] | None:
    """The VEVENT blocks of `text` with fingerprint, UID and DTSTAMP; None when in doubt.

    Two views of the body must agree: its raw component lines (where `split_vevents`
    cuts, all of them plain) and its unfolded lines (what icalendar reads).
    """
    spans = ics.plain_vevent_spans(text)
    if spans is None:
        return None
    stamps_seen: dict[bytes, str | None] = {}
    blocks: list[Block] = []
    for start, end in spans:
        block = _scan_block(text[start:end], start, end, stamps_seen)
        if block is None:
            return None
        blocks.append(block)
    if not ics.only_calendar_components(ics.cut(text, spans)):
        return None
    return blocks


def _scan_block(
    raw: bytes, start: int, end: int, stamps_seen: dict[bytes, str | None]
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
            if line not in stamps_seen:  # one download usually stamps all alike
                stamps_seen[line] = ics.plain_dtstamp(line)
            dtstamp = stamps_seen[line]
        elif ics.property_name(line) == b"UID":
            uids += 1
            uid = _plain_uid(line)
        elif ics.is_component_line(line) and 0 < index < last:
            return None  # a nested component, or one hidden by folding
        if not ics.is_dtstamp(line):  # exactly what `ics.fingerprint_block` keeps
            kept.append(line)
    fingerprint = ics.fingerprint_of(kept)
    sure = uids == 1 and (stamps == 0 or (stamps == 1 and dtstamp is not None))
    return Block(start, end, fingerprint, uid if sure else None, dtstamp)


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


Lookup = Callable[[list[str]], Mapping[str, str]]
"""UIDs → the fingerprints the archive holds for those of them that are active."""


def parse_fast(text: bytes, lookup: Lookup) -> ParsedFeed | None:
    """`parse_feed` for a body after `check_calendar_bytes`, parsing only unknown events.

    None when the body must take the full parse instead (see the module's doc).
    """
    blocks = scan(text)
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
    )


def _parse_unknown(
    text: bytes, context: bytes, unknown: list[tuple[int, Block]]
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


def _is_in(block: Block, archived: Mapping[str, str]) -> bool:
    return block.uid is not None and archived.get(block.uid) == block.fingerprint
