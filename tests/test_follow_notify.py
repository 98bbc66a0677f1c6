"""Alerts on words and speakers, and the weekly digest (issue 23): real polls of the local
site through the real CLI, the outbox in the archive, Apprise posting to a local receiver."""

from __future__ import annotations

import sqlite3
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harvester.archive import open_archive
from harvester.config import load_config
from harvester.daemon import Daemon
from harvester.digest import week_of
from harvester.notify import fold_name, speaks
from harvester.outbox import register, send_pending
from tests.conftest import Harvester, write_config
from tests.receiver import Receiver, receiving
from tests.sitesim import Site, serve
from tests.test_notify import sync_killed_before_send

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


@pytest.fixture
def quiet_site() -> Iterator[Site]:
    """Two series whose first talks mention no followed word or speaker."""
    site = Site()
    alg = site.add_series("AlgGeom", "Algebraic Geometry")
    alg.add(1, NOW + timedelta(days=2), [("Ada Lovelace", None)], abstract="Engines.")
    nt = site.add_series("NumThy", "Number Theory Web Seminar")
    nt.add(1, NOW + timedelta(days=3), [("Sophie Germain", None)], abstract="Primes.")
    with serve(site):
        yield site


def target_config(workdir: Path, site: Site, receiver: Receiver, entry: str) -> Harvester:
    text = f'\n[notifications]\nbackoff = "0s"\n\n[[notify]]\nurl = "{receiver.url()}"\n{entry}\n'
    feeds = [site.feed_url(name) for name in site.series]
    return Harvester(write_config(workdir, feeds, text))


def ok(result: Any, code: int = 0) -> Any:
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def bodies(receiver: Receiver) -> str:
    return "\n".join(f"{m['title']}\n{m['message']}" for m in receiver.messages)


# --- match --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_new_talk_whose_abstract_matches_is_sent_and_one_that_matches_nothing_is_not(
    workdir: Path, quiet_site: Site, receiver: Receiver
) -> None:
    h = target_config(workdir, quiet_site, receiver, 'match = "langlands OR \\"local fields\\""')
    ok(h("sync"))
    assert receiver.messages == []  # nothing archived so far matches

    nt = quiet_site.series["NumThy"]
    nt.add(2, NOW + timedelta(days=4), [("Pierre Colmez", None)], title="Banach spaces",
           abstract="Towards the p-adic Langlands correspondence.")  # fmt: skip
    nt.add(3, NOW + timedelta(days=5), [("Someone Else", None)], title="Elliptic curves",
           abstract="Rational points.")  # fmt: skip
    quiet_site.series["AlgGeom"].add(
        2, NOW + timedelta(days=6), [("A. Weil", None)], title="On LOCAL Fields"
    )
    result = ok(h("sync"))
    assert "notifications: 2 sent" in result.stdout
    assert len(receiver.messages) == 1
    text = bodies(receiver)
    assert "Banach spaces" in text and "On LOCAL Fields" in text  # title or abstract, any case
    assert "Elliptic curves" not in text and "Engines" not in text
    assert "/talk/NumThy/2/" in text


@pytest.mark.slow
def test_a_match_target_hears_of_a_change_to_a_matching_talk_and_kinds_can_narrow_it(
    workdir: Path, quiet_site: Site, receiver: Receiver
) -> None:
    h = target_config(workdir, quiet_site, receiver, 'match = "primes"\nkinds = ["rescheduled"]')
    ok(h("sync"))
    quiet_site.series["NumThy"].add(2, NOW + timedelta(days=4), [("X", None)], abstract="Primes!")
    ok(h("sync"))
    assert receiver.messages == []  # a new talk, and this target's kinds leave new ones out
    quiet_site.series["NumThy"].talks[1].start += timedelta(hours=2)
    quiet_site.series["AlgGeom"].talks[1].start += timedelta(hours=2)  # does not match
    ok(h("sync"))
    assert len(receiver.messages) == 1
    assert "NumThy" in bodies(receiver) and "Algebraic Geometry" not in bodies(receiver)


@pytest.mark.slow
def test_a_match_the_archive_cannot_run_is_refused_before_any_poll(
    workdir: Path, quiet_site: Site, receiver: Receiver
) -> None:
    h = target_config(workdir, quiet_site, receiver, 'match = "langlands AND"')
    result = h("sync")
    assert result.exit_code == 2
    assert "notify[0].match: not a search the archive can run" in result.stderr
    assert quiet_site.hits["/seminar/NumThy/ics"] == 0
    daemon = h("run")  # the daemon refuses it the same way, before it starts
    assert daemon.exit_code == 2, daemon.output
    assert "notify[0].match: not a search the archive can run" in daemon.stderr
    assert "Traceback" not in daemon.output


@pytest.mark.slow
def test_a_reload_with_a_match_the_archive_cannot_run_keeps_the_old_config(
    workdir: Path, quiet_site: Site, receiver: Receiver
) -> None:
    h = target_config(workdir, quiet_site, receiver, 'match = "langlands"')
    config = load_config(h.config)
    daemon = Daemon(config, config_path=str(h.config), db_override=None)
    try:
        h.config.write_text(
            h.config.read_text(encoding="utf-8").replace('"langlands"', '"langlands AND"'),
            encoding="utf-8",
        )
        daemon.reload()
        assert daemon.config is config  # refused: the running config stays
    finally:
        daemon.client.close()


# --- speakers ----------------------------------------------------------------------------


def test_fold_name_and_speaks_ignore_case_and_accents_and_match_whole_words() -> None:
    assert fold_name("  Émile   PICARD ") == "emile picard"
    talk = {"speakers": '[{"name": "Émile Picard", "affiliation": "Göttingen"}]'}
    assert speaks([fold_name("PICARD")], talk)
    assert speaks([fold_name("emile picard")], talk)
    assert not speaks([fold_name("Pic")], talk)
    assert not speaks([fold_name("Picard Émile")], talk)  # the words in their order
    assert not speaks([fold_name("Göttingen")], talk)  # a name, not an affiliation
    assert speaks([fold_name("Noether")], {"speaker": "Emmy Noether (Göttingen)"})


@pytest.mark.slow
def test_a_new_talk_by_a_followed_speaker_in_any_archived_series_is_sent(
    workdir: Path, quiet_site: Site, receiver: Receiver
) -> None:
    h = target_config(workdir, quiet_site, receiver, 'speakers = ["EMILE picard", "Ramanujan"]')
    ok(h("sync"))
    assert receiver.messages == []

    quiet_site.series["NumThy"].add(
        2, NOW + timedelta(days=4), [("Émile Picard", "Paris")], title="Ideals"
    )
    quiet_site.series["AlgGeom"].add(
        2,
        NOW + timedelta(days=5),
        [("S. Ramanujan", None), ("G. H. Hardy", None)],
        title="Partitions",
    )
    quiet_site.series["AlgGeom"].add(
        3, NOW + timedelta(days=6), [("Max Picardy", None)], title="Not her"
    )
    quiet_site.series["NumThy"].add(
        4, NOW - timedelta(days=6), [("Emile Picard", None)], title="Past talk"
    )
    ok(h("sync"))
    assert len(receiver.messages) == 1
    text = bodies(receiver)
    assert "Ideals" in text and "Partitions" in text
    assert "Not her" not in text and "Past talk" not in text


# --- the weekly digest -----------------------------------------------------------------------


def roomiest_zone(now: datetime) -> tuple[str, datetime]:
    """The fixed-offset zone in which the most of `now`'s week is still ahead, and its end:
    at least 12 hours whatever the day, so the test never straddles a week's end."""
    zones = [f"Etc/GMT{sign}{n}" for n in range(1, 13) for sign in "+-"] + ["UTC"]
    best = max(zones, key=lambda zone: week_of(now, zone)[2] - now)
    return best, week_of(now, best)[2]


def digest_site(site: Site, end: datetime) -> None:
    """Talks in and out of the coming week, matching and not."""
    ahead = min(timedelta(hours=6), (end - NOW) / 2)
    nt = site.series["NumThy"]
    nt.add(2, NOW + ahead, [("Pierre Colmez", None)], title="Langlands this week")
    nt.add(3, NOW + ahead, [("Someone", None)], title="Elliptic this week")
    nt.add(4, end + timedelta(hours=1), [("Someone", None)], title="Langlands next week")
    nt.add(5, NOW - timedelta(days=8), [("Someone", None)], title="Langlands long ago")
    site.series["AlgGeom"].add(2, NOW + ahead, [("Emmy Noether", None)], title="Her talk this week")


def digest_entry(zone: str) -> str:
    return f'match = "langlands"\nspeakers = ["noether"]\ndigest = "weekly"\ntimezone = "{zone}"'


@pytest.mark.slow
def test_the_weekly_digest_lists_exactly_the_coming_weeks_matching_talks_once(
    workdir: Path, quiet_site: Site, receiver: Receiver
) -> None:
    zone, end = roomiest_zone(NOW)
    digest_site(quiet_site, end)
    h = target_config(workdir, quiet_site, receiver, digest_entry(zone))
    result = ok(h("sync"))
    assert "notifications: 1 sent" in result.stdout
    assert len(receiver.messages) == 1
    message = receiver.messages[0]
    week = week_of(NOW, zone)[0]
    assert message["title"] == f"2 talks for you this week ({week})"
    body = message["message"]
    assert "Langlands this week" in body and "Her talk this week" in body
    for absent in ("Elliptic", "next week", "long ago", "Engines", "Primes"):
        assert absent not in body
    start = (NOW + min(timedelta(hours=6), (end - NOW) / 2)).astimezone(zoneinfo.ZoneInfo(zone))
    assert f"{start:%H:%M} {start.tzname()}" in body  # in the target's timezone
    assert "/talk/NumThy/2/" in body

    quiet_site.series["NumThy"].talks[2].title = "Langlands, retitled"
    ok(h("sync"))
    ok(h("notify", "--retry"))
    assert len(receiver.messages) == 1  # one a week, and no per-change message besides


@pytest.mark.slow
def test_a_sync_killed_between_commit_and_send_sends_the_digest_once_on_the_next_run(
    workdir: Path, quiet_site: Site, receiver: Receiver
) -> None:
    zone, end = roomiest_zone(NOW)
    digest_site(quiet_site, end)
    h = target_config(workdir, quiet_site, receiver, digest_entry(zone))
    sync_killed_before_send(h.config)
    assert receiver.messages == []
    with sqlite3.connect(h.db_path) as conn:
        rows = conn.execute("SELECT uid, status FROM notifications").fetchall()
    assert rows == [(f"digest/{week_of(NOW, zone)[0]}", "pending")]

    ok(h("sync"))
    ok(h("sync"))
    assert len(receiver.messages) == 1
    assert "Langlands this week" in receiver.messages[0]["message"]
    assert "notifications: 0 pending, 0 failed, 1 sent" in ok(h("status")).stdout


@pytest.mark.slow
def test_the_digest_weeks_follow_the_targets_timezone(
    workdir: Path, quiet_site: Site, receiver: Receiver
) -> None:
    """With a clock passed in: Monday 08:00 in Paris, a talk late on Sunday is in that
    week's digest, one early on the next Monday in the next week's."""
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    monday = datetime(2031, 1, 6, 8, tzinfo=paris)  # a Monday
    nt = quiet_site.series["NumThy"]
    nt.add(2, datetime(2031, 1, 12, 23, 30, tzinfo=paris), [("A", None)], title="Langlands Sun")
    nt.add(3, datetime(2031, 1, 13, 0, 30, tzinfo=paris), [("B", None)], title="Langlands Mon")
    nt.add(4, datetime(2031, 1, 6, 7, 0, tzinfo=paris), [("C", None)], title="Langlands early")
    h = target_config(
        workdir,
        quiet_site,
        receiver,
        'match = "langlands"\ndigest = "weekly"\ntimezone = "Europe/Paris"',
    )
    ok(h("sync"))  # today's digest week lists none of 2031's talks
    assert receiver.messages == []
    config = load_config(h.config)
    db = open_archive(h.db_path)
    try:
        register(db, config, monday)
        first = send_pending(db, config, monday.astimezone(UTC))
        again = send_pending(db, config, monday.astimezone(UTC) + timedelta(days=3))
        next_monday = datetime(2031, 1, 13, 0, 5, tzinfo=paris)  # 23:05 UTC, still Sunday
        following = send_pending(db, config, next_monday.astimezone(UTC))
    finally:
        db.conn.close()
    assert (first.sent, again.sent, following.sent) == (1, 0, 1)
    titles = [m["title"] for m in receiver.messages]
    assert titles == ["1 talk for you this week (2031-W02)", "1 talk for you this week (2031-W03)"]
    assert "Langlands Sun" in receiver.messages[0]["message"]
    assert "Sun 12 Jan 2031, 23:30 CET" in receiver.messages[0]["message"]
    assert "Langlands Mon" in receiver.messages[1]["message"]
    assert "early" not in bodies(receiver)  # it had started before the digest was made
