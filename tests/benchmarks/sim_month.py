"""A simulated month of the site: how many archived versions are the site's own churn
(livestream links posted and removed on its clock) and how many are organisers' edits,
against the script's ground truth.

    .venv/bin/python tests/benchmarks/sim_month.py            # 50 series, 30 days, every 30 min
    .venv/bin/python tests/benchmarks/sim_month.py --quick    # 8 series, 4 days

The site is tests/sitesim.py on a clock the script controls; every poll goes over HTTP to
it and through the real pipeline (`poll_feed`) into a real archive file.
"""

from __future__ import annotations

import argparse
import logging
import random
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script: make the checkout importable (`tests.*`).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harvester.archive import open_archive
from harvester.config import HttpSettings
from harvester.fetch import make_client
from harvester.logs import configure_logging
from harvester.sync import FeedTarget, poll_feed
from tests.sitesim import SimTalk, Site, serve

ACCESS_TIMES = [
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=8),
    timedelta(hours=24),
    timedelta(hours=48),
    timedelta(weeks=1),
    timedelta(weeks=2),
    None,
]
EDITS = ("retitle", "reschedule", "abstract", "speaker")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Edit:
    at: datetime
    talk: SimTalk
    kind: str


def build_site(
    site: Site, series: int, days: int, start: datetime, rng: random.Random
) -> list[Edit]:
    edits: list[Edit] = []
    for s in range(series):
        shortname = f"S{s:03d}"
        sim = site.add_series(shortname, f"Series {s}")
        for counter in range(1, 9):
            when = start + timedelta(hours=rng.randrange(-24 * 7, 24 * (days + 7)))
            online = rng.random() < 0.7
            talk = sim.add(
                counter,
                when,
                [(f"Speaker {s}-{counter}", "Somewhere")],
                title=f"Talk {counter} of series {s}",
                livestream=f"https://zoom.example/j/{s}{counter}" if online else None,
                access_time=rng.choice(ACCESS_TIMES),
            )
            if rng.random() < 0.25:
                at = start + timedelta(minutes=rng.randrange(30, days * 24 * 60 - 30))
                edits.append(Edit(at, talk, rng.choice(EDITS)))
    return sorted(edits, key=lambda e: e.at)


def apply(edit: Edit, n: int) -> None:
    talk = edit.talk
    if edit.kind == "retitle":
        talk.title = f"{talk.title} (revised {n})"
    elif edit.kind == "reschedule":
        talk.start += timedelta(days=1)
    elif edit.kind == "abstract":
        talk.abstract = f"{talk.abstract} Revised {n}."
    else:
        talk.speakers = [(f"Other speaker {n}", None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 series over 4 days")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    series, days = (8, 4) if args.quick else (50, 30)
    configure_logging("json", logging.WARNING)
    rng = random.Random(args.seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    clock = Clock(start)
    site = Site(clock=clock)
    edits = build_site(site, series, days, start, rng)
    links_before: dict[str, bool] = {}
    truth = {"edits": 0, "automatic": 0, "mixed": 0}
    with tempfile.TemporaryDirectory() as tmp, serve(site):
        db = open_archive(Path(tmp) / "archive.db")
        client = make_client(HttpSettings(allow_private=True, retries=0))
        targets = [FeedTarget(site.feed_url(name)) for name in site.series]
        polls = days * 48
        for step in range(polls + 1):
            clock.now = start + timedelta(minutes=30 * step)
            edited: set[str] = set()
            while edits and edits[0].at <= clock.now:
                edit = edits.pop(0)
                apply(edit, step)
                edited.add(edit.talk.uid)
            for sim in site.series.values():
                for talk in sim.talks.values():
                    shown = talk.live_link(clock.now) is not None
                    flipped = talk.uid in links_before and links_before[talk.uid] != shown
                    links_before[talk.uid] = shown
                    if talk.uid in edited:
                        truth["edits"] += 1
                        truth["mixed"] += flipped
                    elif flipped:
                        truth["automatic"] += 1
            for target in targets:
                poll_feed(db, client, target, 20_000_000, clock=clock)
        counts = archived_counts(Path(tmp) / "archive.db")
    print(f"simulated: {series} series × 8 talks, {days} days, a poll every 30 minutes")
    print(f"ground truth: {truth['edits']} organiser edits ({truth['mixed']} in the same poll")
    print(f"  as a link change), {truth['automatic']} link changes made by the site's clock")
    print(f"archived:     {counts['edits']} changed versions that are edits,")
    print(f"              {counts['automatic']} automatic versions")
    ok = counts == {"edits": truth["edits"], "automatic": truth["automatic"]}
    print("verdict:", "exact" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


def archived_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "select automatic, count(*) from talk_versions where change = 'changed' group by 1"
        ).fetchall()
    by_flag = {int(flag): count for flag, count in rows}
    return {"edits": by_flag.get(0, 0), "automatic": by_flag.get(1, 0)}


if __name__ == "__main__":
    main()
