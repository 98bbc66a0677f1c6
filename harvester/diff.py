"""Diff stage: archive state + incoming talk records → changes (pure, no I/O).

Implements the change rules of the contract: DTSTAMP alone says nothing on
researchseminars.org (it is the download time), so content decides, by fingerprint first
and field by field second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from harvester.humane import parse_moment
from harvester.kinds import STATUS_KINDS, automatic_reason, change_kinds
from harvester.model import KnownTalk, TalkRecord, changed_fields
from harvester.site import FeedKind

Change = Literal["new", "changed", "removed", "restored"]
RemovedReason = Literal["absent", "feed_gone"]
PERSONAL_WINDOW = timedelta(days=14)
MASS_REMOVAL_MINIMUM = 5


@dataclass(frozen=True)
class StoredTalk:
    """What the archive knows of one UID (its `talks` row)."""

    uid: str
    fingerprint: str
    dtstamp: str | None
    status: str
    version: int
    content: Mapping[str, Any]
    last_seen: str | None = None  # when the archive last saw this copy (ISO UTC)


@dataclass(frozen=True)
class FeedState:
    kind: FeedKind
    present: frozenset[str] = frozenset()  # UIDs the feed carried at its last good poll
    held_removals: frozenset[str] = frozenset()  # removals the guard held back last poll


@dataclass(frozen=True)
class ArchiveState:
    feed: FeedState
    talks: Mapping[str, StoredTalk]  # at least the incoming UIDs and feed.present
    carried_elsewhere: frozenset[str] = frozenset()  # UIDs present in some other feed


@dataclass(frozen=True)
class NewVersion:
    uid: str
    version: int
    change: Change
    changed_fields: tuple[str, ...]
    content: Mapping[str, Any]
    record: TalkRecord | None  # None for a removal: the content is the last one known
    kinds: tuple[str, ...] = ()  # see harvester.kinds
    automatic_reason: str | None = None  # the site made it by itself (harvester.kinds)
    previous_seen_at: str | None = None  # the archive last saw the previous content then
    removed_reason: RemovedReason | None = None


@dataclass
class Changes:
    versions: list[NewVersion] = field(default_factory=list)
    unchanged: list[TalkRecord | KnownTalk] = field(default_factory=list)  # dtstamp/last_seen
    refingerprinted: list[TalkRecord] = field(default_factory=list)  # new bytes, same content
    stale: list[str] = field(default_factory=list)
    present: frozenset[str] = frozenset()  # UIDs in this poll
    left: frozenset[str] = frozenset()  # UIDs that leave this feed now
    aged_out: frozenset[str] = frozenset()
    held_removals: frozenset[str] = frozenset()
    warnings: list[str] = field(default_factory=list)

    def count(self, change: Change) -> int:
        return sum(1 for v in self.versions if v.change == change)

    @property
    def counts(self) -> dict[str, int]:
        return {change: self.count(change) for change in get_args(Change)} | {
            "unchanged": len(self.unchanged) + len(self.refingerprinted),
            "stale": len(self.stale),
        }

    @property
    def any_change(self) -> bool:
        return bool(self.versions)


def diff(
    state: ArchiveState,
    incoming: Iterable[TalkRecord],
    observed_at: datetime,
    known: Iterable[KnownTalk] = (),
) -> Changes:
    """The changes one complete, successful poll of a feed makes to the archive.

    `known` are further events of the poll, unparsed because the archive has them active
    with the same fingerprint (the caller checked that inside the poll's transaction, see
    `store.load_state`): each is unchanged, as `_classify` would find.
    """
    changes = Changes()
    records = list(incoming)
    for record in records:
        _classify(state.talks.get(record.uid), record, changes, observed_at)
    changes.unchanged.extend(known)
    changes.present = frozenset(r.uid for r in records) | {t.uid for t in changes.unchanged}
    if changes.stale:  # said on the terminal, not only counted: the change is not archived
        changes.warnings.append(
            f"{len(changes.stale)} event(s) ignored as older than the archive's copy (rule 4:"
            f" an earlier DTSTAMP, e.g. {changes.stale[0]}); if the feed's DTSTAMP never"
            " moves, or this machine's clock is behind, changes can look stale"
        )
    _removals(state, changes, observed_at)
    return changes


def _classify(
    stored: StoredTalk | None, record: TalkRecord, changes: Changes, observed_at: datetime
) -> None:
    if stored is None:
        changes.versions.append(_version(record, 1, "new", ()))
        return
    if _is_stale(record, stored, observed_at.isoformat()):
        if stored.status == "removed" or record.fingerprint != stored.fingerprint:
            changes.stale.append(record.uid)
        else:
            changes.unchanged.append(record)
        return
    content = record.content()
    if stored.status == "removed":
        fields = (*changed_fields(stored.content, content), "status")
        version = _version(record, stored.version + 1, "restored", fields, stored, content)
        changes.versions.append(version)
    elif record.fingerprint == stored.fingerprint:
        changes.unchanged.append(record)
    elif fields := tuple(changed_fields(stored.content, content)):
        kinds = change_kinds(stored.content, content)
        seen = parse_moment(stored.last_seen)
        reason = automatic_reason(kinds, stored.content, content, observed_at, seen)
        version = _version(record, stored.version + 1, "changed", fields, stored, content)
        changes.versions.append(replace(version, kinds=tuple(kinds), automatic_reason=reason))
    else:
        changes.refingerprinted.append(record)


def _version(
    record: TalkRecord,
    number: int,
    change: Change,
    fields: tuple[str, ...],
    stored: StoredTalk | None = None,
    content: Mapping[str, Any] | None = None,
) -> NewVersion:
    kinds = tuple(STATUS_KINDS) if change in ("removed", "restored") else ()
    seen = stored.last_seen if stored else None
    content = record.content() if content is None else content
    return NewVersion(record.uid, number, change, fields, content, record, kinds, None, seen)


def _is_stale(record: TalkRecord, stored: StoredTalk, seen_at: str) -> bool:
    """A copy whose DTSTAMP is older than the one stored (ISO UTC strings sort by time).

    DTSTAMP has one-second resolution: when two polls got different content within the
    same second and the later download committed first, the earlier download is the
    stale one, so on a tie the time we saw each copy decides.
    """
    if not (record.dtstamp and stored.dtstamp):
        return False
    if record.dtstamp != stored.dtstamp:
        return record.dtstamp < stored.dtstamp
    differs = record.fingerprint != stored.fingerprint
    return differs and stored.last_seen is not None and seen_at < stored.last_seen


def gone(state: ArchiveState, observed_at: datetime) -> Changes:
    """Rule 5b: a feed confirmed gone (404/410 across `gone_after`) carries nothing any more.

    Every talk leaves it; each that no other feed carries is `removed`, reason `feed_gone`.
    The two polls that confirmed it are rule 7's second look, so nothing is held back.
    """
    changes = Changes()
    _removals(state, changes, observed_at, reason="feed_gone", guard=False)
    return changes


def _removals(
    state: ArchiveState,
    changes: Changes,
    observed_at: datetime,
    reason: RemovedReason = "absent",
    *,
    guard: bool = True,
) -> None:
    feed = state.feed
    leaving = feed.present - changes.present
    if guard and _is_suspect(feed, changes.present, leaving) and not feed.held_removals:
        changes.held_removals = frozenset(leaving)
        changes.warnings.append(
            f"feed would lose {len(leaving)} of {len(feed.present)} talks at once; "
            "removals held back until the next poll confirms them"
        )
        return
    changes.left = frozenset(leaving)
    aged_out = set()
    for uid in sorted(leaving - state.carried_elsewhere):
        stored = state.talks.get(uid)
        if stored is None or stored.status == "removed":
            continue
        if feed.kind == "personal" and _ended_before(stored, observed_at - PERSONAL_WINDOW):
            aged_out.add(uid)
            continue
        changes.versions.append(_removal(stored, reason))
    changes.aged_out = frozenset(aged_out)


def _removal(stored: StoredTalk, reason: RemovedReason) -> NewVersion:
    return NewVersion(
        uid=stored.uid,
        version=stored.version + 1,
        change="removed",
        changed_fields=("status",),
        content=stored.content,
        record=None,
        kinds=tuple(STATUS_KINDS),
        previous_seen_at=stored.last_seen,
        removed_reason=reason,
    )


def _is_suspect(feed: FeedState, present: frozenset[str], leaving: frozenset[str]) -> bool:
    if not feed.present:
        return False
    if not present:
        return True
    return len(leaving) >= MASS_REMOVAL_MINIMUM and len(leaving) * 2 > len(feed.present)


def _ended_before(stored: StoredTalk, moment: datetime) -> bool:
    ended = parse_moment(stored.content.get("dtend") or stored.content.get("dtstart"))
    return ended is not None and ended < moment
