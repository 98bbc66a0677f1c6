"""Change kinds and automatic changes, on events the simulated site builds and the real
parser reads (harvester.kinds is pure: these tests feed it what a poll would)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from harvester.kinds import automatic_reason, change_kinds, has_livestream, word_diff
from harvester.parse import parse_feed
from tests.sitesim import SimTalk, calendar_bytes

START = datetime(2026, 12, 10, 16, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def talk(**changes: Any) -> SimTalk:
    base = SimTalk(
        "AlgGeom",
        7,
        START,
        [("Ada Lovelace", "Analytical Engines Ltd")],
        title="Motives",
        abstract="We discuss the motivic Galois group.",
        livestream="https://zoom.example/j/42",
        access_time=timedelta(hours=24),
    )
    return replace(base, **changes)


def content(sim: SimTalk, now: datetime) -> dict[str, Any]:
    """What the archive stores for `sim` as the site serves it at `now`."""
    record = parse_feed(calendar_bytes([sim.event("Algebraic Geometry", now)])).talks[0]
    return record.content()


def test_the_site_clock_posts_and_removes_links() -> None:
    sim = talk()
    assert not has_livestream(content(sim, START - 48 * HOUR))
    assert has_livestream(content(sim, START - 23 * HOUR))
    assert has_livestream(content(sim, START + 2 * HOUR - timedelta(minutes=1)))
    assert not has_livestream(content(sim, START + 2 * HOUR + timedelta(minutes=1)))


def test_link_posted_before_the_talk_is_automatic() -> None:
    before, after = START - 25 * HOUR, START - 23 * HOUR
    old, new = content(talk(), before), content(talk(), after)
    kinds = change_kinds(old, new)
    assert kinds == ["livestream"]
    assert automatic_reason(kinds, old, new, after, before) == "livestream_posted"


def test_link_gone_an_hour_after_the_end_is_automatic() -> None:
    seen, now = START + 90 * timedelta(minutes=1), START + 2 * HOUR + timedelta(minutes=20)
    old, new = content(talk(), seen), content(talk(), now)
    kinds = change_kinds(old, new)
    assert kinds == ["livestream"]
    assert automatic_reason(kinds, old, new, now, seen) == "livestream_expired"


def test_link_removed_before_the_talk_is_an_edit() -> None:
    seen, now = START - 2 * HOUR, START - HOUR
    old, new = content(talk(), seen), content(talk(livestream=None), now)
    kinds = change_kinds(old, new)
    assert kinds == ["livestream"]
    assert automatic_reason(kinds, old, new, now, seen) is None


def test_link_posted_long_after_the_talk_is_an_edit() -> None:
    seen, now = START + 3 * HOUR, START + 4 * HOUR
    old = content(talk(livestream=None), seen)
    new = content(talk(livestream="https://zoom.example/j/43", minutes=600), now)
    kinds = change_kinds(old, new)
    assert "livestream" in kinds
    assert automatic_reason(kinds, old, new, now, seen) is None


def test_retitle_is_retitled_not_description() -> None:
    now = START - 72 * HOUR
    kinds = change_kinds(content(talk(), now), content(talk(title="Mixed motives"), now))
    assert kinds == ["retitled"]


def test_retitle_and_reschedule_is_one_change_with_two_kinds_in_contract_order() -> None:
    now = START - 72 * HOUR
    new = content(talk(title="Mixed motives", start=START + 24 * HOUR), now)
    assert change_kinds(content(talk(), now), new) == ["rescheduled", "retitled"]


def test_only_the_end_moving_is_duration() -> None:
    now = START - 72 * HOUR
    assert change_kinds(content(talk(), now), content(talk(minutes=90), now)) == ["duration"]


def test_speakers_abstract_room_comments() -> None:
    now = START - 72 * HOUR
    old = content(talk(), now)
    assert change_kinds(old, content(talk(speakers=[("Emmy Noether", None)]), now)) == ["speakers"]
    assert change_kinds(old, content(talk(abstract="Something else."), now)) == ["abstract"]
    assert change_kinds(old, content(talk(room="Room 5"), now)) == ["room"]
    # With an abstract, the feed cannot tell trailing comments from its last paragraph; with
    # "Abstract: TBA" it can.
    tba = content(talk(abstract=None), now)
    with_comments = content(talk(abstract=None, comments="Coffee at 3."), now)
    assert change_kinds(tba, with_comments) == ["comments"]


def test_a_mixed_change_is_not_automatic_and_lists_livestream() -> None:
    before, after = START - 25 * HOUR, START - 23 * HOUR
    old, new = content(talk(), before), content(talk(title="Mixed motives"), after)
    kinds = change_kinds(old, new)
    assert kinds == ["retitled", "livestream"]
    assert automatic_reason(kinds, old, new, after, before) is None


def test_nothing_changed_has_no_kinds() -> None:
    now = START - 72 * HOUR
    assert change_kinds(content(talk(), now), content(talk(), now + HOUR)) == []


def test_word_diff_shows_the_changed_words_with_context() -> None:
    old = "We discuss the motivic Galois group of a field and its many representations today."
    new = "We discuss the motivic Galois group of a number field and its representations today."
    diff = word_diff(old, new)
    assert diff == "… Galois group of a {+number+} field and its [-many-] representations today."


def test_word_diff_of_a_first_abstract_and_of_a_removed_one() -> None:
    assert word_diff(None, "New text") == "{+New text+}"
    assert word_diff("Old text", "") == "[-Old text-]"
