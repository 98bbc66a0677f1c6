"""`harvester discover` and `harvester feeds ...`: find series through the site's API and
follow them by editing the config file (comments and layout kept, see config_edit)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click

from harvester.archive import open_archive, series_names
from harvester.cli._app import App, UsageProblem, fail, warn
from harvester.cli._output import aligned
from harvester.config import (
    DEFAULT_CONFIG_PATH,
    HttpSettings,
    SiteSettings,
    parse_duration,
    resolve_config_path,
)
from harvester.config_edit import ConfigFile, FeedEntry, canonical_feed_url
from harvester.errors import ApiError, ArchiveError, ConfigEditError, ConfigError
from harvester.series import open_api, store_series
from harvester.site import default_feed_name, series_feed_url, series_shortname
from harvester.site_api import SeriesInfo, SiteApi, Topic, select_series


def _config_path(app: App, *, must_exist: bool = False) -> Path:
    """The config file `harvester` reads (or would create)."""
    path = resolve_config_path(app.config_path) or DEFAULT_CONFIG_PATH
    if must_exist and not path.exists():
        raise UsageProblem(f"{path}: no such config file (`harvester feeds add` creates one)")
    return path


def _settings(app: App) -> tuple[HttpSettings, SiteSettings]:
    """The configured HTTP settings and site (the defaults while `feeds add` creates the config)."""
    if _config_path(app).exists():
        return app.config.http, app.config.site
    return HttpSettings(), SiteSettings()


# --- editing the config ------------------------------------------------------------------


def _config_file(app: App, *, create: bool = False) -> ConfigFile:
    """The config file to edit: the one `harvester` reads, created on `create` if missing."""
    path = _config_path(app, must_exist=not create)
    try:
        return ConfigFile.open(path, _settings(app)[1].base_url, create=create)
    except ConfigEditError as exc:
        raise UsageProblem(str(exc)) from None


def _save(config_file: ConfigFile) -> None:
    try:
        config_file.save()
    except ConfigEditError as exc:
        raise UsageProblem(str(exc)) from None
    except OSError as exc:
        fail(f"{config_file.path}: cannot write: {exc.strerror}")


def _store_metadata(app: App, infos: list[SeriesInfo]) -> None:
    """Keep what the API said about newly followed series (best effort)."""
    if not infos:
        return
    config = app.config
    try:
        with closing(open_archive(config.archive_path, file_mode=config.archive_file_mode)) as db:
            store_series(db, infos, datetime.now(UTC))
    except (ArchiveError, OSError, sqlite3.Error) as exc:
        warn(f"series metadata not stored: {exc}")


# --- discover ----------------------------------------------------------------------------


@click.command()
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="ID",
    help="Series with this topic (repeatable: any of them). IDs: `discover --topics`.",
)
@click.option(
    "--institution",
    "institutions",
    multiple=True,
    metavar="ID",
    help="Series at this institution (repeatable: any of them). IDs: `discover --institutions`.",
)
@click.option("--all", "everything", is_flag=True, help="Every public series of the site.")
@click.option(
    "--add",
    is_flag=True,
    help="Follow the series found: add their series feeds to the config file.",
)
@click.option(
    "--topics", "list_topics", is_flag=True, help="List the topic IDs (a graph: parents first)."
)
@click.option("--institutions", "list_institutions", is_flag=True, help="List the institution IDs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def discover(
    app: App,
    topics: tuple[str, ...],
    institutions: tuple[str, ...],
    everything: bool,
    add: bool,
    list_topics: bool,
    list_institutions: bool,
    as_json: bool,
) -> None:
    """Find series through the site's JSON API ([site] base_url) and optionally follow them.

    Lists the matching series (shortname, name, institutions, topics). Several --topic
    (or --institution) options widen the search; --topic and --institution together
    narrow it to series matching both. With --add, their feeds are appended to the config
    file; the file's comments and layout are kept and series already followed are left
    alone. Exit code 1 when the API fails, 2 for a usage error.
    """
    selecting = bool(topics or institutions or everything)
    if sum((selecting, list_topics, list_institutions)) != 1:
        raise UsageProblem(
            "give --topic, --institution or --all to find series,"
            " or one of --topics / --institutions to list the valid IDs"
        )
    if everything and (topics or institutions):
        raise UsageProblem("--all already selects every series: drop --topic/--institution")
    if add and not selecting:
        raise UsageProblem("--add needs --topic, --institution or --all")
    try:
        with open_api(*_settings(app)) as api:
            if list_topics:
                _print_topics(api.topics(), as_json)
                return
            if list_institutions:
                _print_institutions(api, as_json)
                return
            _check_ids(api, topics, institutions)
            found = select_series(api, topics, institutions, everything)
    except ApiError as exc:
        fail(str(exc))
    _print_series(app, found, as_json)
    if add:
        _follow(app, found, as_json)


def _check_ids(api: SiteApi, topics: tuple[str, ...], institutions: tuple[str, ...]) -> None:
    for kind, ids, known in (
        ("topic", topics, api.topics),
        ("institution", institutions, api.institutions),
    ):
        if ids and (unknown := sorted(set(ids) - set(known()))):
            raise UsageProblem(
                f"unknown {kind} {', '.join(unknown)}: `harvester discover --{kind}s` lists the IDs"
            )


def _print_series(app: App, found: list[SeriesInfo], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([asdict(s) for s in found], ensure_ascii=False, indent=2))
        return
    width = min(max((len(s.shortname) for s in found), default=0), 28)
    for series in found:
        line = f"{series.shortname:<{width}}  {series.name or '-'}"
        if series.institutions:
            line += f"  @ {', '.join(series.institutions)}"
        if series.topics:
            line += f"  [{', '.join(series.topics)}]"
        click.echo(line)
    app.say(f"{len(found)} series")


def _print_topics(topics: dict[str, Topic], as_json: bool) -> None:
    if as_json:
        data = {t.id: {"name": t.name, "children": list(t.children)} for t in topics.values()}
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    children = {c for t in topics.values() for c in t.children}
    roots = sorted(t for t in topics if t not in children) or sorted(topics)

    def show(topic_id: str, depth: int, path: tuple[str, ...]) -> None:
        topic = topics.get(topic_id)
        if topic is None or topic_id in path:
            return
        click.echo(f"{'  ' * depth}{topic.id}  {topic.name}")
        for child in sorted(topic.children):
            show(child, depth + 1, (*path, topic_id))

    for root in roots:
        show(root, 0, ())


def _print_institutions(api: SiteApi, as_json: bool) -> None:
    institutions = api.institutions()
    if as_json:
        data = {
            i.shortname: {"name": i.name, "city": i.city, "timezone": i.timezone, "type": i.type}
            for i in institutions.values()
        }
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    for shortname in sorted(institutions):
        institution = institutions[shortname]
        city = f" ({institution.city})" if institution.city else ""
        click.echo(f"{shortname}  {institution.name}{city}")


def _follow(app: App, found: list[SeriesInfo], as_json: bool) -> None:
    def say(text: str) -> None:  # stdout carries the JSON listing: the summary goes aside
        if not app.quiet:
            click.echo(text, err=as_json)

    config_file = _config_file(app, create=True)
    existing = config_file.entries()
    urls = {e.url for e in existing}
    names = {e.name for e in existing}
    added: list[SeriesInfo] = []
    skipped: list[str] = []
    for series in found:
        url = series_feed_url(config_file.base_url, series.shortname)
        if url in urls:
            continue
        if default_feed_name(url) in names:
            skipped.append(series.shortname)
            continue
        config_file.add(url)
        urls.add(url)
        names.add(default_feed_name(url))
        added.append(series)
    for shortname in skipped:
        warn(f"not added {shortname}: another feed of {config_file.path} is named {shortname}")
    already = len(found) - len(added) - len(skipped)
    if not added:
        say(f"nothing to add: {already} of {len(found)} series already followed")
        return
    _save(config_file)
    _store_metadata(app, added)
    say(
        f"added {len(added)} feed{'' if len(added) == 1 else 's'} to {config_file.path}"
        + (f" ({already} already followed)" if already else "")
        + "; `harvester sync` archives them"
    )


# --- feeds -------------------------------------------------------------------------------


@click.group("feeds")
def feeds_group() -> None:
    """List and edit the feeds of the config file (comments and layout are kept).

    A feed can be named by its config name, its URL (webcal:// and the site's old host
    names are understood) or, for a series of the site, its bare shortname. A running
    `harvester run` picks the changes up when it reloads its config (SIGHUP).
    """


@feeds_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the feeds as a JSON array.")
@click.pass_obj
def list_feeds(app: App, as_json: bool) -> None:
    """The feeds of the config: name, enabled or disabled, URL (personal tokens masked).

    The config is read as `sync` reads it: any valid layout will do.
    """
    path = _config_path(app, must_exist=True)
    config = app.config
    names = series_names(app.archive(read_only=True)) if config.archive_path.exists() else {}
    series = [names.get(series_shortname(f.url, config.site.base_url) or "") for f in config.feeds]
    if as_json:
        rows = [
            {"name": f.name, "url": f.url, "enabled": f.enabled, "series_name": name}
            for f, name in zip(config.feeds, series, strict=True)
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not config.feeds:
        click.echo(f"no feeds in {path}: add one with `harvester feeds add SHORTNAME`")
        return
    table = [
        [f.name, "enabled" if f.enabled else "disabled", f.url, f"({name})" if name else ""]
        for f, name in zip(config.feeds, series, strict=True)
    ]
    for line in aligned(table):
        click.echo(line)


@feeds_group.command("add")
@click.argument("refs", nargs=-1, required=True, metavar="URL_OR_SHORTNAME...")
@click.option("--name", help="The feed's name in the config (default: from the URL).")
@click.option("--interval", help="Poll interval of this feed, like 6h (default: [schedule]).")
@click.option(
    "--no-check",
    is_flag=True,
    help="Do not ask the site's API whether a series exists before adding it.",
)
@click.pass_obj
def add_feed(
    app: App, refs: tuple[str, ...], name: str | None, interval: str | None, no_check: bool
) -> None:
    """Follow a feed: append it to the config file (created if there is none).

    A bare shortname (MITNT) means that series' feed on [site] base_url; a series page
    URL means its feed; webcal:// and the site's old host names are normalised. A feed
    already in the config is left alone (exit code 0). Series of the site are checked
    against its API first (skip with --no-check; an unreachable API only warns).
    """
    if name and len(refs) > 1:
        raise UsageProblem("--name names one feed: give one URL or shortname with it")
    if interval:
        try:
            parse_duration(interval, "--interval", "interval")
        except ConfigError as exc:
            raise UsageProblem(f"--interval: {exc.reason}") from None
    config_file = _config_file(app, create=True)
    urls = _new_urls(app, config_file, refs)
    shortnames = [s for url in urls if (s := series_shortname(url, config_file.base_url))]
    infos = [] if no_check else _check_series(app, shortnames)
    for url in urls:
        config_file.add(url, name=name, interval=interval)
    if urls:
        _save(config_file)
        _store_metadata(app, infos)
    for url in urls:
        app.say(f"added {name or default_feed_name(url)} ({url}) to {config_file.path}")


def _new_urls(app: App, config_file: ConfigFile, refs: tuple[str, ...]) -> list[str]:
    """The feed URLs of `refs` that the config does not have yet."""
    urls: list[str] = []
    for ref in refs:
        try:
            url = canonical_feed_url(ref, config_file.base_url)
        except ConfigEditError as exc:
            raise UsageProblem(str(exc)) from None
        present = next((e for e in config_file.entries() if url == e.url or ref == e.name), None)
        if present is not None or url in urls:
            shown = present.name if present else default_feed_name(url)
            app.say(f"already following {shown} ({url}): nothing to do")
            continue
        urls.append(url)
    return urls


def _check_series(app: App, shortnames: list[str]) -> list[SeriesInfo]:
    """Refuse series the API does not know; warn (and go on) when it cannot be asked."""
    if not shortnames:
        return []
    infos = []
    try:
        with open_api(*_settings(app)) as api:
            for shortname in shortnames:
                info = api.lookup_series(shortname)
                if info is None:
                    fail(
                        f"no public series {shortname!r} on {api.base_url}:"
                        " `harvester discover` finds series (--no-check adds it anyway)"
                    )
                infos.append(info)
    except ApiError as exc:
        warn(f"could not check with the site's API, adding anyway: {exc}")
    return infos


@feeds_group.command("remove")
@click.argument("refs", nargs=-1, required=True, metavar="URL_OR_NAME...")
@click.pass_obj
def remove_feed(app: App, refs: tuple[str, ...]) -> None:
    """Stop following a feed: take its entry out of the config file.

    The archive is not touched: every talk and version the feed brought stays, and
    `history`, `export` and Datasette still show them. Exit code 1 for a feed that is
    not in the config.
    """
    config_file = _config_file(app)
    removed = []
    for entry in _entries(config_file, refs):
        config_file.remove(entry)
        removed.append(entry)
    _save(config_file)
    for entry in removed:
        app.say(f"removed {entry.name} from {config_file.path}; its archived history is kept")


def _entries(config_file: ConfigFile, refs: tuple[str, ...]) -> Iterator[FeedEntry]:
    for ref in refs:  # each found after the edit of the one before (indexes move)
        entry = config_file.find(ref)
        if entry is None:
            fail(f"no feed {ref!r} in {config_file.path} (`harvester feeds list` shows them)")
        yield entry


def _set_enabled(app: App, refs: tuple[str, ...], enabled: bool) -> None:
    config_file = _config_file(app)
    changed: list[str] = []
    for entry in _entries(config_file, refs):
        if config_file.set_enabled(entry, enabled):
            changed.append(entry.name)
        else:
            app.say(f"{entry.name} is already {'enabled' if enabled else 'disabled'}")
    _save(config_file)
    for name in changed:
        if enabled:
            app.say(f"enabled {name}")
        else:
            app.say(f"disabled {name}: sync and run skip it until `harvester feeds enable {name}`")


@feeds_group.command("enable")
@click.argument("refs", nargs=-1, required=True, metavar="URL_OR_NAME...")
@click.pass_obj
def enable_feed(app: App, refs: tuple[str, ...]) -> None:
    """Poll a disabled feed again (removes its `enabled = false`)."""
    _set_enabled(app, refs, True)


@feeds_group.command("disable")
@click.argument("refs", nargs=-1, required=True, metavar="URL_OR_NAME...")
@click.pass_obj
def disable_feed(app: App, refs: tuple[str, ...]) -> None:
    """Stop polling a feed but keep it in the config (adds `enabled = false`)."""
    _set_enabled(app, refs, False)
