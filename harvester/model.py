"""The talk record: what the parser produces and the archive stores, field by field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from harvester.redact import redact

# C0 controls but tab and newline.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f]")


def clean_text(text: str) -> str:
    """A property's text as a record holds it: no C0 control characters but tab and newline."""
    return _CONTROLS.sub("", text) if _CONTROLS.search(text) else text


# The fields of `talks` that describe the talk itself; a difference in any of them is a change.
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
JSON_FIELDS = frozenset({"speakers", "urls"})

# What a `[[notify]]` target is sent when it names no kinds.
DEFAULT_NOTIFY_KINDS: tuple[str, ...] = (
    "rescheduled",
    "retitled",
    "removed",
    "restored",
    "speakers",
)
# The contract's change kinds (Revision 2), in the contract's order (see harvester.kinds).
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
# The kinds a notification target may name: the change kinds, plus a version's own change.
NOTIFY_KINDS: frozenset[str] = frozenset({"new", "removed", "restored", *CHANGE_KINDS})


@dataclass(frozen=True, slots=True)
class Speaker:
    name: str
    affiliation: str | None = None


@dataclass(frozen=True, slots=True)
class TalkRecord:
    """One VEVENT as the archive sees it. Times are ISO 8601 strings in UTC."""

    uid: str
    dtstart: str
    fingerprint: str
    raw: str
    series_id: str | None = None
    counter: int | None = None
    title: str | None = None
    speaker: str | None = None
    speakers: tuple[Speaker, ...] = field(default_factory=tuple)
    series_name: str | None = None
    abstract: str | None = None
    room: str | None = None
    talk_url: str | None = None
    livestream_url: str | None = None
    comments: str | None = None
    dtend: str | None = None
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    urls: tuple[str, ...] = field(default_factory=tuple)
    dtstamp: str | None = None

    def content(self) -> dict[str, Any]:
        """The content fields as they are stored (lists as JSON text)."""
        stored = {name: getattr(self, name) for name in CONTENT_FIELDS}
        stored["speakers"] = json.dumps([asdict(s) for s in self.speakers], ensure_ascii=False)
        stored["urls"] = json.dumps(list(self.urls), ensure_ascii=False)
        return stored


def masked(record: TalkRecord) -> TalkRecord:
    """`record` with every secret the harvester knows masked in its text, as the archive
    stores it (a personal feed may carry its own token in a title); `record` itself when
    it holds none."""
    texts = {f.name: v for f in fields(record) if isinstance(v := getattr(record, f.name), str)}
    people = [part for s in record.speakers for part in (s.name, s.affiliation) if part]
    joined = "\0".join([*texts.values(), *record.urls, *people])
    if redact(joined) == joined:
        return record
    speakers = tuple(
        Speaker(redact(s.name), redact(s.affiliation) if s.affiliation else s.affiliation)
        for s in record.speakers
    )
    found: dict[str, Any] = {name: redact(value) for name, value in texts.items()}
    return replace(record, **found, speakers=speakers, urls=tuple(map(redact, record.urls)))


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The content fields whose stored values differ, in schema order."""
    return [name for name in CONTENT_FIELDS if old.get(name) != new.get(name)]


@dataclass(frozen=True, slots=True)
class KnownTalk:
    """An incoming event the fast path did not parse: the archive has its UID and fingerprint."""

    uid: str
    fingerprint: str
    dtstamp: str | None
