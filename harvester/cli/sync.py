"""`harvester sync` and `import`: one pass of the pipeline over feeds or local files."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import click

from harvester import parse, run
from harvester.archive import FetchFacts, open_archive
from harvester.cli._app import (
    EXIT_FAILED,
    EXIT_LOCKED,
    POLL_COUNTS,
    App,
    IsoTime,
    UsageProblem,
    archive_errors,
    fail,
)
from harvester.cli.notify import prepare_run, send_after_run
from harvester.config import Config
from harvester.errors import LockBusyError
from harvester.humane import counted
from harvester.lock import hold
from harvester.site import normalize_url, series_shortname
from harvester.sync import (
    FeedTarget,
    PollResult,
    archive_body,
    sync_with_client,
    utc_now,
)


def _targets(app: App, urls: tuple[str, ...]) -> list[FeedTarget]:
    config = app.config
    if not urls:
        return [_target(config, f.url, f.name) for f in config.feeds if f.enabled]
    return [_named_target(config, given, given) for given in urls]


def _named_target(config: Config, given: str, shown: str) -> FeedTarget:
    """The configured feed named `given` (by name or URL), else `given` as an http(s) URL."""
    feed = config.find_feed(given)
    if feed is not None:
        return _target(config, feed.url, feed.name)
    url = normalize_url(given)
    if not url.startswith(("http://", "https://")):
        raise UsageProblem(f"{shown}: not a configured feed name nor an http(s) URL")
    return _target(config, url)


def _series_feed_of(app: App, body: bytes) -> FeedTarget | None:
    """The configured series feed of the one series whose talks the file holds, if any:
    an offline copy of a followed feed is archived as that feed."""
    series = {uid.split("/", 1)[0] for uid in parse.uids(body)}
    if len(series) != 1:
        return None
    (shortname,) = series
    base = app.config.site.base_url
    feed = next((f for f in app.config.feeds if series_shortname(f.url, base) == shortname), None)
    return None if feed is None else _target(app.config, feed.url, feed.name)


def _target(config: Config, url: str, name: str | None = None) -> FeedTarget:
    return FeedTarget(url, name, gone_after=config.schedule.gone_after)


def _report(app: App, results: list[PollResult]) -> None:
    """A summary on stdout and one line per failed feed on stderr (but where a person reads
    the log, whose line for the poll said it already); exit 1 if any failed."""
    totals = sum((Counter(result.counts) for result in results), Counter[str]())
    failed = [r for r in results if r.failed]
    for result in [] if app.logs_for_people else failed:
        click.echo(f"error: {result.name or result.feed}: {result.error}", err=True)
    counts = ", ".join(f"{totals[key]} {key}" for key in POLL_COUNTS)
    app.say(f"{counted(len(results), 'feed')}: {counts}, {len(failed)} failed")
    if failed and len(failed) == len(results) and all(_unreachable(r.error) for r in failed):
        click.echo(
            "hint: no feed's server could be reached (offline?); `harvester import"
            " data/samples/PhysicsMeetsML.ics` archives the sample feed that ships here",
            err=True,
        )
    if failed:
        raise SystemExit(EXIT_FAILED)


_UNREACHABLE = ("cannot resolve", "ConnectError", "ConnectTimeout", "Network is unreachable")


def _unreachable(error: str | None) -> bool:
    return error is not None and any(sign in error for sign in _UNREACHABLE)


@click.command()
@click.argument("urls", nargs=-1)
@click.option(
    "--lock",
    "use_lock",
    is_flag=True,
    help="Skip this run (exit 3) while another `sync --lock` on the archive is running.",
)
@click.option(
    "--refresh", is_flag=True, help="Search the followed topics and refresh series details now."
)
@click.pass_obj
def sync(app: App, urls: tuple[str, ...], use_lock: bool, refresh: bool) -> None:
    """Poll every enabled feed of the config once (or only URLS) and archive the changes.

    URLS may be configured feed names or URLs; an unknown URL is polled ad hoc and
    recorded in the archive. Exit code 0 when every feed was fine, 1 when at least one
    failed (the others are still archived), 2 for a usage or config error, 3 when --lock
    found another `sync --lock` still running (cron runs never pile up).
    """
    targets = _targets(app, urls)
    if not targets and not app.config.follow:
        raise UsageProblem(
            f"no feeds to poll: add [[feeds]] to {app.config.path or 'a config file'}"
        )
    lock = hold(app.config.archive_path, "sync") if use_lock else contextlib.nullcontext()
    try:
        with lock:
            results = _sync(app, targets, refresh=refresh, followed=not urls)
    except LockBusyError as exc:
        fail(f"another `harvester sync --lock` is still running ({exc}); skipped", EXIT_LOCKED)
    # After the lock: a slow receiver never keeps the next cron run out (the outbox's
    # leases keep two senders from sending one row twice).
    if app.config.notify:
        send_after_run(app, app.archive())
    _report(app, results)


def _sync(
    app: App, targets: list[FeedTarget], *, refresh: bool = False, followed: bool = False
) -> list[PollResult]:
    from harvester.follow import sync_targets

    db = app.archive()
    prepare_run(app, db)  # a damaged archive is reported before any poll (once a day)
    with archive_errors():
        targets += sync_targets(db, app.config, force=refresh) if followed else []
    db.conn.close()
    path = app.config.archive_path
    with archive_errors(), _progress(app, len(targets)) as advance:
        results = sync_with_client(
            lambda: open_archive(path, file_mode=app.config.archive_file_mode),
            app.config.http,
            targets,
            on_result=advance,
        )
    run.upkeep(app.config, utc_now(), refresh=refresh)
    return results


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


@click.command("import")
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
    prepare_run(app, db)
    results = []
    for path in files:
        started = utc_now()
        try:
            body = _read_at_most(path, app.config.http.max_bytes)
        except OSError as exc:
            error = f"cannot read: {exc.strerror}"
            results.append(PollResult(feed=str(path), name=str(path), outcome="error", error=error))
            continue
        target = _import_target(app, path, feed_name, body)
        facts = FetchFacts(started, utc_now(), bytes=len(body))
        with archive_errors():
            results.append(archive_body(db, target, body, facts, observed_at or facts.finished_at))
    run.upkeep(app.config, utc_now(), online=False)
    send_after_run(app, db)
    _report(app, results)


def _read_at_most(path: Path, limit: int) -> bytes:
    """The file's bytes, as a feed's body would be: OSError past `[http] max_bytes` (a
    device like /dev/zero never ends)."""
    with path.open("rb") as file:
        body = file.read(limit + 1)
    if len(body) > limit:
        raise OSError(errno.EFBIG, f"over the limit of {limit} bytes ([http] max_bytes)")
    return body


def _import_target(app: App, path: Path, feed_name: str | None, body: bytes) -> FeedTarget:
    if feed_name is None:
        return _series_feed_of(app, body) or FeedTarget(
            path.resolve().as_uri(), path.name, kind="file"
        )
    return _named_target(app.config, feed_name, f"--feed {feed_name!r}")
