"""The `harvester` command line: a thin layer over the pipeline and the archive queries.

The root group is the CLI's secrets choke point: it remembers the secrets of every URL on
the command line before anything runs, masks click's own error messages, and redacts all
of stdout and stderr (summaries, errors, warnings, log lines) while a command runs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from harvester import __version__
from harvester.cli import feeds, notify, read, run, serve, sync
from harvester.cli._app import App, redacted_click_errors, redacted_output
from harvester.logs import configure_logging
from harvester.redact import remember_urls_in


class _Harvester(click.Group):
    """The root group: no command's output, nor click's, shows a known secret."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        for arg in args:
            remember_urls_in(arg)
        with redacted_output():
            return super().main(args, *rest, **kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with redacted_click_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with redacted_click_errors():
            return super().invoke(ctx)


@click.group(cls=_Harvester, context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (
    sync.sync,
    sync.import_,
    read.history,
    read.export,
    read.status,
    run.run,
    feeds.discover,
    feeds.feeds_group,
    serve.serve,
    notify.notify,
):
    cli.add_command(command)
