"""The change rules of the contract, on the pure diff function."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from harvester.diff import ArchiveState, FeedState, StoredTalk, diff
from harvester.model import TalkRecord
from harvester.site import FeedKind

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def record(
    uid: str,
    title: str = "T",
    start: str = "2030-06-10T10:00:00+00:00",
    stamp: str = "2030-06-01T11:00:00+00:00",
    fp: str | None = None,
) -> TalkRecord:
    return TalkRecord(
        uid=uid,
        dtstart=start,
        dtend=start,
        fingerprint=fp or f"{uid}|{title}|{start}",
        raw="",
        title=title,
        dtstamp=stamp,
    )


def stored(rec: TalkRecord, status: str = "active", version: int = 1) -> StoredTalk:
    return StoredTalk(rec.uid, rec.fingerprint, rec.dtstamp, status, version, rec.content())


def state(
    talks: list[StoredTalk],
    present: set[str] | None = None,
    kind: FeedKind = "series",
    elsewhere: frozenset[str] | set[str] = frozenset(),
    held: set[str] = frozenset(),  # type: ignore[assignment]
) -> ArchiveState:
    return ArchiveState(
        feed=FeedState(
            kind,
            frozenset(present if present is not None else {t.uid for t in talks}),
            frozenset(held),
        ),
        talks={t.uid: t for t in talks},
        carried_elsewhere=frozenset(elsewhere),
    )


def test_rule1_unknown_uid_is_new_version_1() -> None:
    changes = diff(state([]), [record("S/1")], NOW)
    assert [(v.uid, v.version, v.change) for v in changes.versions] == [("S/1", 1, "new")]


def test_rule2_same_fingerprint_is_unchanged_even_with_a_new_dtstamp() -> None:
    old = record("S/1")
    new = replace(old, dtstamp="2030-06-01T12:00:00+00:00")
    changes = diff(state([stored(old)]), [new], NOW)
    assert changes.versions == [] and changes.unchanged == [new]
    assert changes.counts["unchanged"] == 1


def test_rule3_content_change_is_a_changed_version_with_fields() -> None:
    old = record("S/1", title="Old")
    new = record(
        "S/1", title="New", start="2030-06-11T10:00:00+00:00", stamp="2030-06-01T12:00:00+00:00"
    )
    (version,) = diff(state([stored(old, version=4)]), [new], NOW).versions
    assert (version.change, version.version) == ("changed", 5)
    assert version.changed_fields == ("title", "dtstart", "dtend")


def test_rule3_other_bytes_same_content_only_refingerprints() -> None:
    old = record("S/1")
    new = replace(old, fingerprint="other-bytes", dtstamp="2030-06-01T12:00:00+00:00")
    changes = diff(state([stored(old)]), [new], NOW)
    assert changes.versions == [] and changes.refingerprinted == [new]


def test_rule4_older_dtstamp_is_stale_and_ignored() -> None:
    current = record("S/1", title="Current", stamp="2030-06-01T11:00:00+00:00")
    old_copy = record("S/1", title="Older", stamp="2030-05-01T11:00:00+00:00")
    changes = diff(state([stored(current)]), [old_copy], NOW)
    assert changes.versions == [] and changes.stale == ["S/1"]
    assert changes.counts["stale"] == 1
    (warning,) = changes.warnings  # said, not only counted: the change is not archived
    assert "1 event(s) ignored as older than the archive's copy" in warning and "S/1" in warning


def test_rule5_missing_uid_is_removed_unless_another_feed_carries_it() -> None:
    a, b, c = record("S/1"), record("S/2"), record("S/3")
    changes = diff(state([stored(a), stored(b), stored(c)]), [a, b], NOW)
    assert [(v.uid, v.change, v.version) for v in changes.versions] == [("S/3", "removed", 2)]
    assert changes.left == {"S/3"}
    changes = diff(state([stored(a), stored(b), stored(c)], elsewhere={"S/3"}), [a, b], NOW)
    assert changes.versions == [] and changes.left == {"S/3"}


def test_rule5_personal_feed_ageing_out_is_not_a_removal() -> None:
    past = record("S/1", start=(NOW - timedelta(days=15)).isoformat())
    recent = record("S/2", start=(NOW - timedelta(days=3)).isoformat())
    keep = [record(f"S/{n}") for n in range(3, 8)]
    talks = [stored(t) for t in (past, recent, *keep)]
    changes = diff(state(talks, kind="personal"), keep, NOW)
    assert [(v.uid, v.change) for v in changes.versions] == [("S/2", "removed")]
    assert changes.aged_out == {"S/1"} and changes.left == {"S/1", "S/2"}
    # the same talk leaving a series feed is a removal
    changes = diff(state(talks, kind="series"), keep, NOW)
    assert {v.uid for v in changes.versions} == {"S/1", "S/2"}


def test_rule6_removed_uid_coming_back_is_restored() -> None:
    talk = record("S/1", stamp="2030-06-01T12:00:00+00:00")
    (version,) = diff(
        state([stored(talk, status="removed", version=2)], present=set()), [talk], NOW
    ).versions
    assert (version.change, version.version) == ("restored", 3)
    assert version.changed_fields == ("status",)


def test_rule7_empty_feed_holds_removals_until_confirmed() -> None:
    talks = [stored(record(f"S/{n}")) for n in range(3)]
    first = diff(state(talks), [], NOW)
    assert first.versions == [] and first.held_removals == {"S/0", "S/1", "S/2"}
    assert first.left == frozenset() and first.warnings
    second = diff(state(talks, held=set(first.held_removals)), [], NOW)
    assert sorted(v.uid for v in second.versions) == ["S/0", "S/1", "S/2"]
    assert second.held_removals == frozenset()


def test_rule7_losing_more_than_half_and_at_least_five_is_suspect() -> None:
    records = [record(f"S/{n}") for n in range(10)]
    talks = [stored(r) for r in records]
    assert diff(state(talks), records[:4], NOW).versions == []  # loses 6 of 10: held
    losing_five_of_ten = diff(state(talks), records[:5], NOW)
    assert len(losing_five_of_ten.versions) == 5  # exactly half is not "more than half"
    small = [stored(r) for r in records[:4]]
    assert len(diff(state(small), records[:1], NOW).versions) == 3  # fewer than 5: not suspect


def test_first_poll_of_a_feed_with_zero_events_is_fine() -> None:
    changes = diff(state([], present=set()), [], NOW)
    assert changes.versions == [] and changes.held_removals == frozenset() and not changes.warnings


def test_rule4_same_second_dtstamp_the_copy_seen_earlier_is_stale() -> None:
    """Two polls downloaded different content within one second (DTSTAMP resolution)."""
    newer = record("S/1", title="Newer", stamp="2030-06-01T11:00:00+00:00")
    stored_newer = replace(stored(newer), last_seen=(NOW + timedelta(seconds=0.5)).isoformat())
    older = record("S/1", title="Older", stamp="2030-06-01T11:00:00+00:00")
    changes = diff(state([stored_newer]), [older], NOW)  # seen at NOW, before last_seen
    assert changes.versions == [] and changes.stale == ["S/1"]
    later = diff(state([stored_newer]), [older], NOW + timedelta(seconds=1))
    assert [v.change for v in later.versions] == ["changed"]
