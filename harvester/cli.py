"""The `harvester` command line: a thin layer over the pipeline and the archive queries."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlite_utils import Database

from harvester import __version__, health, query
from harvester.cli_feeds import discover, feeds_group
from harvester.cli_run import EXIT_LOCKED, run
from harvester.config import Config, ConfigError, load_config
from harvester.export import FORMATS, render
from harvester.fetch import make_client
from harvester.lock import LockBusyError, hold
from harvester.logs import configure_logging
from harvester.series import refresh_followed_series
from harvester.serve import serve
from harvester.store import ArchiveError, FetchFacts, open_archive
from harvester.sync import FeedTarget, PollResult, archive_body, sync_feeds, utc_now
from harvester.urls import mask_secrets, normalize_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageProblem(click.ClickException):
    """A usage or config error: one line on stderr, exit code 2."""

    exit_code = EXIT_USAGE


@dataclass
class App:
    config_path: str | None
    db_path: str | None
    quiet: bool
    _config: Config | None = field(default=None, init=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path, self.db_path)
            except ConfigError as exc:
                raise UsageProblem(f"bad config: {exc}") from None
        return self._config

    def archive(self) -> Database:
        try:
            return open_archive(self.config.archive_path, file_mode=self.config.archive_file_mode)
        except ArchiveError as exc:
            fail(str(exc))

    def say(self, text: str) -> None:
        if not self.quiet:
            click.echo(text)


@contextlib.contextmanager
def archive_errors() -> Iterator[None]:
    """An archive that cannot be written (disk full, read-only) ends the command: exit 1."""
    try:
        yield
    except ArchiveError as exc:
        fail(str(exc))


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"error: {mask_secrets(message)}", err=True)
    raise SystemExit(code)


class IsoTime(click.ParamType):  # type: ignore[type-arg]
    """ISO 8601 date or date-time; without an offset it is UTC."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-05-01T12:00:00Z)", param, ctx)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harvester")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Config file. Default: $HARVESTER_CONFIG, then ./config/harvester.toml.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    envvar="HARVESTER_DB",
    help="Archive file; overrides archive.path of the config ($HARVESTER_DB).",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    help="Log format on stderr. Default: console on a terminal, json otherwise.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug events too (HTTP requests).")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only; no summary.")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    db_path: str | None,
    log_format: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Archive researchseminars.org calendars in SQLite, with the full history of every talk."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    configure_logging(log_format, level)  # type: ignore[arg-type]
    ctx.obj = App(config_path=config_path, db_path=db_path, quiet=quiet)


def main() -> None:
    cli(prog_name="harvester")


cli.add_command(run)
cli.add_command(discover)
cli.add_command(feeds_group)
cli.add_command(serve)


# --- sync and import ---------------------------------------------------------------------


def _targets(app: App, urls: tuple[str, ...]) -> list[FeedTarget]:
    config = app.config
    if not urls:
        return [FeedTarget(f.url, f.name) for f in config.feeds if f.enabled]
    targets = []
    for given in urls:
        feed = config.find_feed(given)
        if feed is not None:
            targets.append(FeedTarget(feed.url, feed.name))
            continue
        url = normalize_url(given)
        if not url.startswith(("http://", "https://")):
            raise UsageProblem(
                f"{mask_secrets(given)}: not a configured feed name nor an http(s) URL"
            )
        targets.append(FeedTarget(url))
    return targets


def _report(app: App, results: list[PollResult]) -> None:
    """A summary on stdout and one line per failed feed on stderr; exit 1 if any failed."""
    totals = dict.fromkeys(("new", "changed", "removed", "restored", "unchanged"), 0)
    for result in results:
        for key in totals:
            totals[key] += result.counts.get(key, 0)
    failed = [r for r in results if r.failed]
    for result in failed:
        click.echo(f"error: {result.name or result.feed}: {result.error}", err=True)
    app.say(
        f"{len(results)} feeds: {totals['new']} new, {totals['changed']} changed, "
        f"{totals['removed']} removed, {totals['restored']} restored, "
        f"{totals['unchanged']} unchanged, {len(failed)} failed"
    )
    if failed:
        raise SystemExit(EXIT_FAILED)


@cli.command()
@click.argument("urls", nargs=-1)
@click.option(
    "--lock",
    "use_lock",
    is_flag=True,
    help="Skip this run (exit 3) while another `sync --lock` on the archive is running.",
)
@click.pass_obj
def sync(app: App, urls: tuple[str, ...], use_lock: bool) -> None:
    """Poll every enabled feed of the config once (or only URLS) and archive the changes.

    URLS may be configured feed names or URLs; an unknown URL is polled ad hoc and
    recorded in the archive. Exit code 0 when every feed was fine, 1 when at least one
    failed (the others are still archived), 2 for a usage or config error, 3 when --lock
    found another `sync --lock` still running (cron runs never pile up).
    """
    targets = _targets(app, urls)
    if not targets:
        raise UsageProblem(
            f"no feeds to poll: add [[feeds]] to {app.config.path or 'a config file'}"
        )
    if not use_lock:
        _sync(app, targets)
        return
    try:
        with hold(app.config.archive_path, "sync"):
            _sync(app, targets)
    except LockBusyError as exc:
        fail(f"another `harvester sync --lock` is still running ({exc}); skipped", EXIT_LOCKED)


def _sync(app: App, targets: list[FeedTarget]) -> None:
    db = app.archive()
    http, path = app.config.http, app.config.archive_path
    with (
        archive_errors(),
        make_client(http) as client,
        _progress(app, len(targets)) as advance,
    ):
        results = sync_feeds(
            lambda: open_archive(path, file_mode=app.config.archive_file_mode),
            client,
            targets,
            http.max_bytes,
            concurrency=http.concurrency,
            on_result=advance,
        )
    refresh_followed_series(db, app.config)  # series metadata, at most daily; never fails
    _report(app, results)


PROGRESS_MIN_FEEDS = 5


@contextlib.contextmanager
def _progress(app: App, total: int) -> Iterator[Callable[[PollResult], None]]:
    """A progress bar on a terminal for a sync of many feeds; nothing in cron or with -q/-v.

    While it shows, the per-feed info lines are held back (warnings and errors still
    print); the summary line follows the bar.
    """
    show = (
        total >= PROGRESS_MIN_FEEDS
        and not app.quiet
        and sys.stderr.isatty()
        and logging.getLogger().getEffectiveLevel() == logging.INFO
    )
    if not show:
        yield lambda _result: None
        return
    chatty = [logging.getLogger(name) for name in ("harvester.sync", "harvester.fetch")]
    levels = [logger.level for logger in chatty]
    for logger in chatty:
        logger.setLevel(logging.WARNING)
    try:
        with click.progressbar(length=total, label="polling", file=sys.stderr) as bar:
            yield lambda _result: bar.update(1)
    finally:
        for logger, level in zip(chatty, levels, strict=True):
            logger.setLevel(level)


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--feed",
    "feed_name",
    help="Archive as this configured feed (name or URL), or as this URL. Default: the file itself.",
)
@click.option(
    "--observed-at",
    type=IsoTime(),
    help="When the files were downloaded (ISO 8601, UTC without offset). Default: now.",
)
@click.pass_obj
def import_(
    app: App, files: tuple[Path, ...], feed_name: str | None, observed_at: datetime | None
) -> None:
    """Archive local .ics files exactly as if they had been fetched (backfill, offline use).

    Files are applied in the order given; exit codes as for sync.
    """
    db = app.archive()
    results = []
    for path in files:
        target = _import_target(app, path, feed_name)
        started = utc_now()
        try:
            body = path.read_bytes()
        except OSError as exc:
            results.append(
                PollResult(
                    feed=str(path),
                    name=str(path),
                    outcome="error",
                    error=f"cannot read: {exc.strerror}",
                )
            )
            continue
        facts = FetchFacts(started, utc_now(), bytes=len(body))
        with archive_errors():
            results.append(archive_body(db, target, body, facts, observed_at or facts.finished_at))
    _report(app, results)


def _import_target(app: App, path: Path, feed_name: str | None) -> FeedTarget:
    if feed_name is None:
        return FeedTarget(path.resolve().as_uri(), path.name, kind="file")
    feed = app.config.find_feed(feed_name)
    if feed is not None:
        return FeedTarget(feed.url, feed.name)
    url = normalize_url(feed_name)
    if not url.startswith(("http://", "https://")):
        raise UsageProblem(f"--feed {feed_name!r}: not a configured feed name nor an http(s) URL")
    return FeedTarget(url)


# --- reading the archive -----------------------------------------------------------------


@cli.command()
@click.argument("uid")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as a JSON array.")
@click.pass_obj
def history(app: App, uid: str, as_json: bool) -> None:
    """Every version of one talk, oldest first, with what changed.

    UID is the talk's iCalendar UID, e.g. PhysicsMeetsML/3. Exit code 1 for a UID the
    archive has never seen.
    """
    db = app.archive()
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
    click.echo(f"{uid}: {versions[-1]['title'] or versions[-1]['summary'] or ''}")
    _echo_reschedule(versions[-1], links)
    previous: dict[str, Any] = {}
    for version in versions:
        click.echo(f"  v{version['version']}  {version['observed_at']}  {version['change']}")
        for name in version["changed_fields"]:
            if version["change"] != "new" and name in previous:
                click.echo(f"      {name}: {_short(previous[name])} → {_short(version[name])}")
        previous = version


def _echo_reschedule(latest: dict[str, Any], links: dict[str, Any]) -> None:
    if links["old_slot_of"]:
        click.echo(
            f"  old slot of a reschedule: {links['old_slot_of']} moved from"
            f" {latest['dtstart']} to {links['moved_to_dtstart']}"
        )
    elif (latest.get("counter") or 0) < 0:
        click.echo("  old slot of a reschedule (the archive cannot tell which talk moved)")
    for slot in links["old_slots"]:
        click.echo(f"  rescheduled: the site keeps its old slot as {slot}")


def _short(value: Any, width: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command()
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
    talks = query.talks_as_of(app.archive(), as_of or utc_now())
    text = render(talks, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the feeds as a JSON array.")
@click.option(
    "--check",
    is_flag=True,
    help="For monitoring: print one summary line; exit 1 if a feed is failing, 4 if one is"
    " stale or the daemon died.",
)
@click.pass_obj
def status(app: App, as_json: bool, check: bool) -> None:
    """One line per feed: last poll, last success, outcome, counts, consecutive failures.

    A configured feed is STALE when its last success is older than 3 of its intervals.
    The first line tells whether the daemon (`harvester run`) is running, by its heartbeat.
    Exit code 1 when any feed's last poll failed. With --check: 0 all healthy, 1 a feed is
    failing, 4 none failing but a feed is stale or the daemon stopped beating without a
    clean stop.
    """
    db = app.archive()
    now = utc_now()
    feeds = query.feed_status(db)
    health.annotate_feeds(feeds, app.config, now)
    daemon = health.daemon_status(db, now)
    code, summary = health.check(feeds, daemon)
    if as_json:
        click.echo(json.dumps(feeds, ensure_ascii=False, indent=2))
    elif check:
        click.echo(summary)
    else:
        if daemon is not None:
            click.echo(daemon.text)
        for feed in feeds:
            click.echo(_status_line(feed, now))
        if not feeds:
            click.echo("no feeds polled yet")
    if check and code:
        raise SystemExit(code)
    if any(f["last_outcome"] == "error" for f in feeds):
        raise SystemExit(EXIT_FAILED)


def _status_line(feed: dict[str, Any], now: datetime) -> str:
    counts = ", ".join(
        f"{feed[k]} {k}" for k in ("new", "changed", "removed", "restored", "unchanged") if feed[k]
    )
    line = (
        f"{feed['name']}  {feed['last_outcome'] or 'never'}"
        f"  last poll {feed['last_fetched_at'] or '-'}"
        f"  last success {feed['last_success_at'] or '-'}  {feed['talks']} talks"
    )
    if counts:
        line += f"  ({counts})"
    if feed["consecutive_failures"]:
        line += f"  {feed['consecutive_failures']} failures: {feed['last_error']}"
    if feed["stale"]:
        since = feed["last_success_at"] or feed["added_at"]
        age = health.human_duration((now - datetime.fromisoformat(since)).total_seconds())
        line += (
            f"  STALE: no success for {age} (interval {health.human_duration(feed['interval_s'])})"
        )
    return line
