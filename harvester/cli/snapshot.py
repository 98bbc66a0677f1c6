"""`harvester snapshot OUT.db`: a consistent read-only copy of the archive to publish."""

from __future__ import annotations

from pathlib import Path

import click

from harvester import archive
from harvester.cli._app import App, archive_errors, fail
from harvester.humane import counted


@click.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--include-personal",
    is_flag=True,
    help="Keep personal feeds and the talks only they carry (left out by default).",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.pass_obj
def snapshot(app: App, out: Path, include_personal: bool, force: bool) -> None:
    """Copy the archive to OUT as of one moment, safe while `harvester run` writes.

    The copy is made with SQLite's VACUUM INTO, checked with integrity_check, and leaves out
    personal feeds and the talks only they carry unless --include-personal. Serve it with
    `datasette --immutable OUT` or publish it with `datasette publish`.
    """
    source = Path(app.config.archive_path)
    if not source.exists():
        fail(f"no archive at {source} yet: run `harvester sync` first (or give --db)")
    if out.exists() and not force:
        fail(f"{out} exists: give --force to replace it")
    if out.resolve() == source.resolve():
        fail(f"{out} is the archive itself")
    app.archive(read_only=True).close()  # the archive is one, and up to date
    with archive_errors():
        facts = archive.snapshot_archive(source, out, include_personal=include_personal)
    left_out = "" if include_personal else f", {facts.personal_talks_left_out} personal left out"
    talks, versions = counted(facts.talks, "talk"), counted(facts.versions, "version")
    app.say(f"Snapshot {out}: {talks}, {versions}{left_out}")
