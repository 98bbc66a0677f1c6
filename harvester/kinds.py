"""What kind of change a version is, and whether the site made it by itself (pure, no I/O).

Kinds come from the parsed fields, never from the raw DESCRIPTION: a retitle changes the
DESCRIPTION's first line too, but it is `retitled`, not a change of `description`.

The site changes a talk's entry on a clock (research note, "What changes by itself"): the
livestream lines, the URL properties and a livestream LOCATION appear when the talk's
access time comes (at most two weeks before it starts) and vanish once
`now - 60 min > end`. A version whose only kind is `livestream` and whose time window
`(previous_seen_at, observed_at]` fits that clock is `automatic`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from harvester.humane import parse_moment
from harvester.model import CHANGE_KINDS, changed_fields

STATUS_KINDS: list[str] = ["status"]  # a `removed` or `restored` version

_FIELD_KIND: dict[str, str] = {
    "dtstart": "rescheduled",
    "title": "retitled",
    "speaker": "speakers",
    "speakers": "speakers",
    "summary": "speakers",  # SUMMARY is the speakers line
    "abstract": "abstract",
    "room": "room",
    "comments": "comments",
    "livestream_url": "livestream",
    "urls": "livestream",
    "location": "livestream",
    "series_name": "series_name",
}
# DESCRIPTION lines the site posts and removes by itself, with the livestream.
LIVESTREAM_LINES = ("Interactive livestream:", "Password hint:", "View-only livestream:")

EXPIRY_DELAY = timedelta(minutes=60)  # `is_past()`: now - 60 min > end_time
LONGEST_ACCESS_TIME = timedelta(days=14)  # the longest `access_time` a series can choose
CLOCK_SLACK = timedelta(minutes=5)  # our clock against the site's

AutomaticReason = Literal["livestream_posted", "livestream_expired"]


def change_kinds(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The kinds of change from `old` to `new` (stored content dicts), in contract order."""
    fields = set(changed_fields(old, new))
    kinds = {_FIELD_KIND.get(name, "other") for name in fields - {"dtend", "description"}}
    if "dtend" in fields and "dtstart" not in fields:
        kinds.add("duration")
    if "description" in fields:
        kinds |= _description_kinds(old.get("description"), new.get("description"), kinds)
    return [kind for kind in CHANGE_KINDS if kind in kinds]  # in the contract's order


def _description_kinds(old: str | None, new: str | None, explained: set[str]) -> set[str]:
    """Kinds that a DESCRIPTION difference adds beyond what the parsed fields explain."""
    (old_links, old_rest), (new_links, new_rest) = _split_links(old), _split_links(new)
    kinds = {"livestream"} if old_links != new_links else set()
    # The rest of DESCRIPTION is made of parsed fields (title, speakers, room, abstract…):
    # a difference there with no parsed field changed is something the parser does not name.
    if old_rest != new_rest and not explained - {"livestream"}:
        kinds.add("other")
    return kinds


def _split_links(description: str | None) -> tuple[list[str], list[str]]:
    lines = (description or "").splitlines()
    links = [line for line in lines if line.startswith(LIVESTREAM_LINES)]
    return links, [line for line in lines if not line.startswith(LIVESTREAM_LINES)]


def has_livestream(content: Mapping[str, Any]) -> bool:
    """Whether a version shows livestream links (the part the site posts and removes)."""
    urls = content.get("urls")
    return bool(
        content.get("livestream_url")
        or (urls and urls not in ("[]", []))
        or _split_links(content.get("description"))[0]
    )


def automatic_reason(
    kinds: list[str],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    observed_at: datetime,
    previous_seen_at: datetime | None,
) -> AutomaticReason | None:
    """`livestream_posted`/`livestream_expired` when the site made this change by itself."""
    if kinds != ["livestream"]:
        return None
    start = parse_moment(new.get("dtstart"))
    end = parse_moment(new.get("dtend")) or start
    if start is None or end is None:
        return None
    expiry = end + EXPIRY_DELAY
    since = previous_seen_at or observed_at
    before, after = has_livestream(old), has_livestream(new)
    if after and not before and _posted_in_time(since, observed_at, start, expiry):
        return "livestream_posted"
    if (
        before
        and not after
        and observed_at + CLOCK_SLACK >= expiry
        and since < expiry + CLOCK_SLACK
    ):
        return "livestream_expired"
    return None


def _posted_in_time(
    since: datetime, observed_at: datetime, start: datetime, expiry: datetime
) -> bool:
    # The links appeared somewhere in (since, observed_at]: that window must reach back to
    # before the start (the poll that saw them may come after it) and not begin after the
    # links would already be gone, nor end before the longest access time opens.
    return (
        since < start + CLOCK_SLACK
        and since < expiry
        and observed_at + CLOCK_SLACK >= start - LONGEST_ACCESS_TIME
    )


def word_diff(old: str | None, new: str | None) -> str:
    """What changed in a long text, word by word: `[-removed-] {+added+}` with four words
    of context around each change (git's `--word-diff=plain` notation), `…` where cut."""
    marks = {"-": "[-{}-]", "+": "{{+{}+}}", " ": "{}"}
    return " ".join(marks[op].format(text) for op, text in word_changes(old, new, context=4))


def word_changes(old: str | None, new: str | None, context: int) -> list[tuple[str, str]]:
    """The word diff's pieces in order: ("-", words taken out), ("+", words put in) and
    (" ", the unchanged words around them, `context` on each side, `…` where cut)."""
    before, after = (old or "").split(), (new or "").split()
    opcodes = difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes()
    pieces: list[tuple[str, str]] = []
    for index, (op, a0, a1, b0, b1) in enumerate(opcodes):
        if op == "equal":
            words = before[a0:a1]
            head = [] if index == 0 else words[:context]
            tail = [] if index == len(opcodes) - 1 else words[-context:]
            kept = words if len(words) <= len(head) + len(tail) else [*head, "…", *tail]
            pieces.append((" ", " ".join(kept)))
            continue
        pieces.append(("-", " ".join(before[a0:a1])))
        pieces.append(("+", " ".join(after[b0:b1])))
    return [(op, text) for op, text in pieces if text]
