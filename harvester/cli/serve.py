"""`harvester serve`: Datasette on the archive, with the shipped metadata and plugins.

The archive is opened read-write only when it needs a migration (so an old archive gains
full-text search and the views), then served by Datasette as a mutable database (no
immutable mode: the daemon keeps writing while people browse). The web cannot write:
Datasette runs only read-only SQL, no canned query may write (checked here), and the
seminar-harvester plugin opens every connection to the archive with PRAGMA query_only.

Datasette is an optional extra; nothing here imports it before the command runs.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.resources
import importlib.util
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harvester.archive import open_archive
from harvester.errors import ArchiveError

if TYPE_CHECKING:
    from datasette.app import Datasette

    from harvester.cli._app import App

DATABASE_NAME = "archive"
METADATA_FILENAME = "datasette.yml"  # a user's override, beside the config file
INSTALL_HINT = "pip install 'seminar-harvester[datasette]'"
PLUGIN_NAME = "seminar-harvester"
# The extra: Datasette itself and feedgen, for the plugin's Atom output (the calendar
# output is the harvester's own, on icalendar).
REQUIRED_MODULES = ("datasette", "feedgen")
# No suggested facets: they cost a query per column on every page, and would offer the
# hidden bookkeeping columns; the metadata names the facets that help.
SETTINGS = {"suggest_facets": False}


class ServeError(click.ClickException):
    """Datasette cannot be started; the message says why and what to do (exit code 1)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def missing_packages() -> list[str]:
    """The distributions of the `datasette` extra that are not installed."""
    return [module for module in REQUIRED_MODULES if not _importable(module)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def shipped_metadata() -> Traversable:
    """The metadata that ships with the package (package data: a wheel or pipx install has it)."""
    return importlib.resources.files("harvester.datasette") / "metadata.yml"


def find_metadata(config_path: Path | None) -> Traversable:
    """`datasette.yml` beside the config file in use, else the metadata the package ships."""
    if config_path is not None:
        beside = config_path.parent / METADATA_FILENAME
        if beside.is_file():
            return beside
    return shipped_metadata()


def load_metadata(path: Traversable) -> dict[str, Any]:
    """Read Datasette metadata (YAML or JSON) and check it keeps the archive read-only."""
    from datasette.utils import parse_metadata

    try:
        metadata = parse_metadata(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ServeError(f"{path}: cannot read: {exc.strerror}") from None
    except Exception as exc:  # datasette raises BadMetadataError, yaml its own errors
        raise ServeError(f"{path}: not valid Datasette metadata: {exc}") from None
    if not isinstance(metadata, dict):
        raise ServeError(f"{path}: not valid Datasette metadata: not a mapping")
    writing = write_queries(metadata)
    if writing:
        raise ServeError(
            f"{path}: canned queries {', '.join(writing)} have write: true;"
            " harvester serve keeps the archive read-only"
        )
    return metadata


def write_queries(metadata: dict[str, Any]) -> list[str]:
    """Names of canned queries (of any database) configured with `write: true`."""
    names = []
    for database in (metadata.get("databases") or {}).values():
        for name, query in ((database or {}).get("queries") or {}).items():
            if isinstance(query, dict) and query.get("write"):
                names.append(name)
    return names


def archive_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata with the archive's read-only guard switched on whatever the file says."""
    metadata = copy.deepcopy(metadata)
    block = metadata
    for key in ("databases", DATABASE_NAME, "plugins", PLUGIN_NAME):
        block[key] = block.get(key) or {}
        block = block[key]
    block["query_only"] = True
    return metadata


def build_datasette(archive: Path, metadata: dict[str, Any]) -> Datasette:
    """A Datasette serving `archive` as the database "archive", mutable, read-only."""
    from datasette.app import Datasette

    ds = Datasette(
        files=[str(archive)],
        immutables=[],
        metadata=archive_metadata(metadata),
        settings=SETTINGS,
    )
    name = next(name for name, db in ds.databases.items() if db.path == str(archive))
    if name != DATABASE_NAME:  # the metadata is written for "archive"; name it so
        database = ds.databases[name]
        ds.remove_database(name)
        ds.add_database(database, name=DATABASE_NAME, route=DATABASE_NAME)
    return ds


def prepare_archive(path: Path) -> None:
    """Check the archive opens read-only (migrating it first if it is from an older release
    and can be written) before Datasette opens it."""
    if not path.exists():
        raise ServeError(f"no archive at {path} yet: run `harvester sync` first (or give --db)")
    try:
        open_archive(path, read_only=True).close()
    except ArchiveError as exc:
        raise ServeError(str(exc)) from None


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 makes the archive visible to your whole network.",
)
@click.option(
    "-p",
    "--port",
    default=8001,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--metadata",
    "metadata_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help=f"Datasette metadata. Default: {METADATA_FILENAME} beside the config file if there"
    " is one, else the metadata shipped with the package.",
)
@click.pass_obj
def serve(app: App, host: str, port: int, metadata_path: Path | None) -> None:
    """Browse the archive in Datasette: search, upcoming talks, changes, a calendar (.ics)
    and a changes feed (Atom).

    Serves the configured archive (--db) read-only while `harvester run` keeps writing
    to it. Needs the datasette extra:

    \b
        pip install 'seminar-harvester[datasette]'
    """
    if missing := missing_packages():
        raise ServeError(
            f"harvester serve needs {', '.join(missing)}, not installed here.\n"
            f"Install the datasette extra: {INSTALL_HINT}"
        )
    config = app.config
    metadata_file = find_metadata(config.path) if metadata_path is None else metadata_path
    metadata = load_metadata(metadata_file)
    archive = Path(config.archive_path)
    prepare_archive(archive)
    ds = build_datasette(archive, metadata)

    import uvicorn

    asyncio.run(ds.invoke_startup())
    app.say(f"Serving {archive} on http://{host}:{port}/ (metadata {metadata_file}); Ctrl-C stops")
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning", lifespan="on")
