"""`harvester notify`: deliver the notifications outbox now, or send a test message."""

from __future__ import annotations

import click
from sqlite_utils import Database

from harvester import outbox, run
from harvester.cli._app import EXIT_FAILED, App, UsageProblem, archive_errors, warn
from harvester.errors import ConfigError
from harvester.humane import counted
from harvester.logs import get_logger
from harvester.sync import utc_now

log = get_logger("harvester.notify")


@click.command("notify")
@click.option("--test", "test", is_flag=True, help="Send one test message to each target.")
@click.option(
    "--retry",
    is_flag=True,
    help="Send every pending notification now, whatever its backoff, and retry given-up ones.",
)
@click.pass_obj
def notify(app: App, test: bool, retry: bool) -> None:
    """Deliver the pending notifications of the [[notify]] targets (one message per target).

    Syncs and the daemon do this after their polls; this runs it on demand. With --test,
    one test message goes to each target and one line per target says what happened.
    Exit code 1 when a target could not be reached.
    """
    if not app.config.notify:
        click.echo(f"no [[notify]] targets in {app.config.path or 'the config'}")
        return
    if test:
        results = outbox.send_test(app.config)
        for result in results:
            click.echo(f"{result.target}: " + ("sent" if result.ok else f"FAILED: {result.error}"))
        if not all(r.ok for r in results):
            raise SystemExit(EXIT_FAILED)
        return
    db = app.archive()
    prepare_run(app, db)
    with archive_errors():
        report = outbox.send_pending(db, app.config, utc_now(), retry=retry)
    for result in report.results:
        if result.ok:
            app.say(f"{result.target}: sent {counted(result.count, 'notification')} in one message")
        else:
            click.echo(
                f"{result.target}: FAILED ({counted(result.count, 'notification')}):"
                f" {result.error}",
                err=True,
            )
    if not report.results:
        app.say("nothing to send")
    if report.failed:
        raise SystemExit(EXIT_FAILED)


def prepare_run(app: App, db: Database) -> None:
    """Before a run's polls (`run.prepare`): the integrity check when due (a damaged
    archive fails the run) and which targets the polls queue notifications for (a `match`
    the archive's search cannot run is a config error; another problem only a warning)."""
    try:
        with archive_errors():
            problem = run.prepare(db, app.config, utc_now())
    except ConfigError as exc:
        raise UsageProblem(f"bad config: {exc}") from None
    if problem is not None:
        warn(problem)


def send_after_run(app: App, db: Database) -> None:
    """After a run's polls: deliver what they queued. Errors are logged, and a warning line
    says so; they never change the run's exit code."""
    try:
        report = run.send(db, app.config, utc_now())
    except Exception as exc:  # archiving is done and stays done, whatever happens here
        log.exception("notify.send_crashed", error=str(exc))
        warn(f"notifications not sent: {exc}; `harvester notify --retry` tries again")
        return
    if report is None:
        return
    if report.sent:
        app.say(f"notifications: {report.sent} sent")
    if report.failed:
        targets = counted(sum(1 for r in report.results if not r.ok), "target")
        warn(
            f"notifications: {report.failed} not delivered to {targets}, kept for a"
            " retry (`harvester status` counts them)"
        )
