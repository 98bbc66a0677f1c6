"""Frozen: how migration 0007_history derived the kinds and the automatic flag of the
versions archived before it, as the rules stood when it shipped (harvester.kinds and
harvester.model at commit 050136a). Never imported by live code, never changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

CONTENT_FIELDS: tuple[str, ...] = (
    "series_id",
    "counter",
    "title",
    "speaker",
    "speakers",
    "series_name",
    "abstract",
    "room",
    "talk_url",
    "livestream_url",
    "comments",
    "dtstart",
    "dtend",
    "summary",
    "description",
    "location",
    "urls",
)

CHANGE_KINDS: tuple[str, ...] = (
    "rescheduled",
    "duration",
    "retitled",
    "speakers",
    "abstract",
    "room",
    "comments",
    "livestream",
    "series_name",
    "other",
)

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
    return [kind for kind in CHANGE_KINDS if kind in kinds]


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


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [name for name in CONTENT_FIELDS if old.get(name) != new.get(name)]


def parse_moment(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


# --- as SQL functions ------------------------------------------------------------------------


def sql_change_kinds(old: str | None, new: str) -> str:
    return json.dumps(change_kinds(json.loads(old), json.loads(new)) if old else [])


def sql_automatic_reason(
    kinds: str, old: str | None, new: str, observed_at: str, previous_seen_at: str | None
) -> str | None:
    if old is None:
        return None
    seen = datetime.fromisoformat(previous_seen_at) if previous_seen_at else None
    return automatic_reason(
        json.loads(kinds),
        json.loads(old),
        json.loads(new),
        datetime.fromisoformat(observed_at),
        seen,
    )
