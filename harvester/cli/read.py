"""`harvester history`, `export` and `status`: reading the archive."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from harvester import archive as query
from harvester import health
from harvester.cli._app import EXIT_FAILED, POLL_COUNTS, App, IsoTime, fail
from harvester.cli._output import aligned
from harvester.export import FORMATS, render
from harvester.humane import counted, human_time
from harvester.kinds import word_diff
from harvester.redact import escape_controls


@click.command()
@click.argument("uid")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as a JSON array.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also show the versions the site made by itself (livestream links on its clock).",
)
@click.pass_obj
def history(app: App, uid: str, as_json: bool, show_all: bool) -> None:
    """Every version of one talk, oldest first: its kinds of change, when it happened
    (between the last time the archive saw the old content and the poll that saw the new),
    and what changed, word by word for long texts.

    UID is the talk's iCalendar UID, e.g. PhysicsMeetsML/3. Automatic versions are counted
    but not shown unless --all (JSON always has them). Exit code 1 for a UID the archive
    has never seen.
    """
    db = app.archive(read_only=True)
    versions = query.talk_history(db, uid)
    if not versions:
        fail(f"no talk with UID {uid!r} in the archive")
    links = query.reschedule_links(db, uid)
    if as_json:
        versions = [
            v | {"old_slot_of": links["old_slot_of"], "old_slots": links["old_slots"]}
            for v in versions
        ]
        click.echo(json.dumps(versions, ensure_ascii=False, indent=2))
        return
    _say(f"{uid}: {versions[-1]['title'] or versions[-1]['summary'] or ''}")
    _echo_reschedule(versions[-1], links)
    previous: dict[str, Any] = {}
    hidden = 0
    for version in versions:
        if version["automatic"] and not show_all:
            hidden += 1
        else:
            _echo_version(version, previous)
        previous = version
    if hidden:
        _say(f"  ({counted(hidden, 'automatic version')} not shown: --all shows them)")


# Fields shown as a word-level diff rather than old → new; raw ones the parsed fields explain.
_LONG_FIELDS = frozenset({"abstract", "comments"})
_RAW_FIELDS = frozenset({"description", "summary"})
_TIME_FIELDS = frozenset({"dtstart", "dtend"})  # shown as people read times; --json keeps ISO


def _echo_version(version: dict[str, Any], previous: dict[str, Any]) -> None:
    _say(f"  v{version['version']}  {human_time(version['observed_at'])}  {version['change']}")
    if version["change"] == "new":
        return
    facts = [", ".join(version["kinds"])]
    if version["automatic"]:
        facts.append(f"automatic ({version['automatic_reason']})")
    if seen := version.get("previous_seen_at"):
        facts.append(f"changed between {human_time(seen)} and {human_time(version['observed_at'])}")
    _say("      " + "; ".join(fact for fact in facts if fact))
    for name in version["changed_fields"]:
        if name not in previous or name == "status":
            continue
        if name in _RAW_FIELDS and "other" not in version["kinds"]:
            continue  # the parsed fields above say what changed in it
        if name in _LONG_FIELDS or name in _RAW_FIELDS:
            _say(f"      {name}: {word_diff(previous[name], version[name])}")
        elif name in _TIME_FIELDS:
            _say(f"      {name}: {human_time(previous[name])} → {human_time(version[name])}")
        else:
            _say(f"      {name}: {_short(previous[name])} → {_short(version[name])}")


def _echo_reschedule(latest: dict[str, Any], links: dict[str, Any]) -> None:
    if links["old_slot_of"]:
        _say(
            f"  old slot of a reschedule: {links['old_slot_of']} moved from"
            f" {human_time(latest['dtstart'])} to {human_time(links['moved_to_dtstart'])}"
        )
    elif (latest.get("counter") or 0) < 0:
        _say("  old slot of a reschedule (the archive cannot tell which talk moved)")
    for slot in links["old_slots"]:
        _say(f"  rescheduled: the site keeps its old slot as {slot}")


def _say(line: str) -> None:
    """One line for a terminal: archived text cannot move the cursor or rewrite the screen."""
    click.echo(escape_controls(line))


def _short(value: Any, width: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command()
@click.option(
    "--as-of", type=IsoTime(), help="Show the archive as it was at TIME (ISO 8601). Default: now."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="json",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE instead of stdout.",
)
@click.pass_obj
def export(app: App, as_of: datetime | None, fmt: str, output: Path | None) -> None:
    """The talks as the archive knew them at a time: every talk present then, sorted by UID."""
    talks = query.talks_as_of(app.archive(read_only=True), as_of or datetime.now(UTC))
    text = render(talks, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the feeds as a JSON array.")
@click.option(
    "--check",
    is_flag=True,
    help="For monitoring: print one summary line; exit 1 if a feed is failing, 4 if one is"
    " stale or the daemon died.",
)
@click.pass_obj
def status(app: App, as_json: bool, check: bool) -> None:
    """A table of the feeds: last outcome, last poll, last success, talks, changes, problems.

    CHANGES counts what the feed's last poll changed; PROBLEMS says its consecutive
    failures and whether it is STALE.

    A configured feed is STALE when its last success is older than 3 of its intervals.
    The first line tells whether the daemon (`harvester run`) is running, by its heartbeat.
    Exit code 1 when the last poll of a configured, enabled feed, or of a series a followed
    topic brings in, failed (feeds polled ad hoc, imported files, removed or disabled feeds
    are listed but not judged). With --check:
    0 all healthy, 1 a feed is failing, 4 none failing but a feed is stale or the daemon
    stopped beating without a clean stop.
    """
    db = app.archive(read_only=True)
    now = datetime.now(UTC)
    feeds = query.feed_status(db)
    health.annotate_feeds(db, feeds, app.config, now)
    daemon = health.daemon_status(db, now)
    code, summary = health.check(feeds, daemon)
    if as_json:
        click.echo(json.dumps(feeds, ensure_ascii=False, indent=2))
    elif check:
        _say(summary)
    else:
        if daemon is not None:
            _say(daemon.text)
        for line in _status_table(feeds, now) if feeds else ["no feeds polled yet"]:
            click.echo(line)
        from harvester.follow_status import status_lines  # what [[follow]] brought in

        for line in status_lines(db, app.config):
            _say(line)
        _say_notifications(db, app)
    if check and code:
        raise SystemExit(code)
    if health.failing_feeds(feeds):
        raise SystemExit(EXIT_FAILED)


def _say_notifications(db: Any, app: App) -> None:
    """The outbox's line: pending and failed (given up) notifications."""
    counts = query.notification_counts(db)
    if app.config.notify or counts["pending"] or counts["failed"]:
        _say(
            f"notifications: {counts['pending']} pending, {counts['failed']} failed,"
            f" {counts['sent']} sent"
        )


STATUS_HEADER = ("FEED", "OUTCOME", "LAST POLL", "LAST SUCCESS", "TALKS", "CHANGES", "PROBLEMS")


def _status_table(feeds: list[dict[str, Any]], now: datetime) -> list[str]:
    """The feeds as a table under a header; a column empty for every feed is left out."""
    rows = [_status_row(feed, now) for feed in feeds]
    kept = [i for i in range(len(STATUS_HEADER)) if i < 5 or any(row[i] for row in rows)]
    table = [[row[i] for i in kept] for row in [list(STATUS_HEADER), *rows]]
    return aligned(table, right=frozenset({kept.index(4)}))


def _status_row(feed: dict[str, Any], now: datetime) -> list[str]:
    counts = ", ".join(f"{feed[k]} {k}" for k in POLL_COUNTS if feed[k])
    problems = []
    if feed["consecutive_failures"]:
        failures = feed["consecutive_failures"]
        in_a_row = " in a row" if failures > 1 else ""
        problems.append(f"{counted(failures, 'failure')}{in_a_row}: {feed['last_error']}")
    if feed["stale"]:
        since = feed["last_success_at"] or feed["added_at"]
        age = health.human_duration((now - datetime.fromisoformat(since)).total_seconds())
        problems.append(
            f"STALE: no success for {age} (interval {health.human_duration(feed['interval_s'])})"
        )
    return [
        feed["name"],
        feed["last_outcome"] or "never polled",
        human_time(feed["last_fetched_at"], missing="never"),
        human_time(feed["last_success_at"], missing="never"),
        str(feed["talks"]),
        counts,
        "; ".join(problems),
    ]
