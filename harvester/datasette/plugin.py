"""A Datasette plugin for the archive, configured from its metadata (`metadata.yml` here).

Registered as the `seminar_harvester` entry point of the `datasette` group (the package
`harvester.datasette`, so that its `templates/` ship and load with it), so plain
`datasette` picks it up as well as `harvester serve`. Its pages and outputs act only on a
database whose metadata has a `plugins: seminar-harvester:` block. With one, it:

- `query_only: true` opens every connection Datasette makes to the database with
  SQLite's query_only switch, its write connection included: the web cannot change the
  archive (the harvester writes through its own connections, which this does not touch);
- a `_facet`/`_facet_array` argument for a facet the table's metadata already declares is
  dropped (Datasette would compute that facet twice over the whole table, and show it twice);
- `hidden_columns: {table: [column, ...]}` leaves those columns out of the HTML page of
  the table unless the reader chooses columns (`_col`/`_nocol`): the request is rewritten
  inside the server, so the address stays as the reader typed it. The JSON API, CSV and
  the row pages still show every column;
- renders cells for people: times as "Tue 1 Dec 2026, 16:00 UTC" (the ISO value in the
  tooltip; JSON and CSV keep ISO), a uid as a link to its talk page, http(s) URLs as
  links, speakers as "Name (Affiliation)", JSON lists of names as plain lists;
- makes `talk_history?uid=...` the talk's page: the talk as it is now and its full
  history (templates/query-archive-talk_history.html; `talks` is a view, and Datasette
  has no row pages for views), and `talk_history` without a uid a list of recently
  changed talks;
- draws the changes per week by kind as an inline SVG chart (no script, no CDN) above
  the `weekly_changes` view.

Whatever the metadata, it also registers two output renderers and makes CSV safe:

- `.ics`: any table, view or query with `uid` and `dtstart` columns, through
  harvester.calendars.render_calendar (the one renderer `harvester export` uses too);
  `_cancelled=1` keeps removed talks as STATUS:CANCELLED;
- `.atom`: any query with `atom_id`, `atom_title` and `atom_updated` columns, through
  harvester.atom.render_atom, as `application/atom+xml`, titled after its filter;
- every `.csv` Datasette writes has its formula cells neutralised (`=`, `+`, `-`, `@`, tab,
  CR ... get a leading `'`, via defusedcsv). Datasette has no hook for its built-in CSV, so
  the plugin swaps the `csv` module that `datasette.views.base` writes with for a shim whose
  `writer` is defused: this applies to every database of that Datasette;
"""

from __future__ import annotations

import html
import json
import math
import re
import sqlite3
import types
import zlib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from datasette import hookimpl
from datasette.utils import tilde_decode, tilde_encode
from datasette.utils.asgi import Response
from markupsafe import Markup, escape
from sqlite_utils import Database

from harvester import archive, textstore
from harvester.archive import set_query_only
from harvester.atom import CONTENT_TYPE as ATOM_CONTENT_TYPE
from harvester.atom import render_atom
from harvester.calendars import render_calendar, speakers_text
from harvester.export import DefusedWriter, clean_text
from harvester.humane import human_time
from harvester.kinds import word_changes
from harvester.site import http_url

PLUGIN_NAME = "seminar-harvester"
ICS_CONTENT_TYPE = "text/calendar; charset=utf-8"
CHART_WEEKS = 26
PHONE_CHART_WEEKS = 12  # a phone's chart: bars and labels it can show at a readable size
MAX_VALUE_BYTES = 50_000_000  # of one string or blob in a query through the web

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?$")
# The times the change views write into what_changed ("start: 2026-12-07 15:33 UTC → ...").
_VIEW_TIME = re.compile(r"\b(\d{4}-\d\d-\d\d) (\d\d:\d\d) UTC\b")
_UID_COLUMNS = frozenset({"uid", "talk_uid", "old_slot_uid"})
_URL_COLUMNS = frozenset({"talk_url", "livestream_url", "url"})
_LIST_COLUMNS = frozenset({"kinds", "changed_fields"})
ABSTRACT_PREVIEW_CHARS = 220  # about three lines of a table cell; the talk page has it all
STATIC_NAME = PLUGIN_NAME  # Datasette serves static/ under the name of the distribution


def _config(datasette: Any, database: str) -> dict[str, Any]:
    """The plugin's block of this database's metadata (read once: render_cell asks per cell)."""
    cache = datasette.__dict__.setdefault("_seminar_harvester_config", {})
    if database not in cache:
        found = datasette.plugin_config(PLUGIN_NAME, database=database, fallback=False)
        cache[database] = found if isinstance(found, dict) else {}
    config: dict[str, Any] = cache[database]
    return config


@hookimpl  # type: ignore[untyped-decorator]
def prepare_connection(conn: sqlite3.Connection, database: str, datasette: Any) -> None:
    if _config(datasette, database).get("query_only"):
        set_query_only(conn)
        # No value a query makes may pass this: `randomblob(300000000)` is one step of
        # SQLite's, which Datasette's time limit cannot interrupt, and ~1 GB of memory.
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)


@hookimpl  # type: ignore[untyped-decorator]
def startup(datasette: Any) -> None:
    from datasette.views import base

    if not getattr(base.csv, "harvester_defused", False):
        shim = types.SimpleNamespace(**{k: getattr(base.csv, k) for k in dir(base.csv)})
        shim.writer = DefusedWriter
        shim.harvester_defused = True
        base.csv = shim


# --- hidden columns, without a redirect ----------------------------------------------------


@hookimpl  # type: ignore[untyped-decorator]
def asgi_wrapper(datasette: Any) -> Callable[[ASGIApp], ASGIApp]:
    def wrap(app: ASGIApp) -> ASGIApp:
        async def hide_bookkeeping_columns(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
                scope = _relevance_search(datasette, scope)
                scope = _without_repeated_facets(datasette, scope)
                scope = await _without_hidden(datasette, scope)
            elif scope["type"] == "http" and _read_only(datasette, scope):
                await _refuse_method(send)  # no canned query writes: a POST would be a 500
                return
            await app(scope, receive, send)

        return hide_bookkeeping_columns

    return wrap


def _read_only(datasette: Any, scope: Scope) -> bool:
    """Whether the address is a page of a read-only (`query_only`) archive."""
    database, _ = _route(datasette, scope)
    return database is not None and bool(_config(datasette, database.name).get("query_only"))


async def _refuse_method(send: Send) -> None:
    body = b"405 Method Not Allowed: the archive is read-only here; use GET\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"allow", b"GET, HEAD")]
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _route(datasette: Any, scope: Scope) -> tuple[Any, list[str]]:
    """The database an address names (or None), and the address's parts after it."""
    local = scope.get("path", "").removeprefix(datasette.setting("base_url")).strip("/")
    first, *rest = local.split("/")
    return next((db for db in datasette.databases.values() if db.route == first), None), rest


def _table_route(datasette: Any, scope: Scope) -> tuple[Any, str] | None:
    """The database and the tilde-encoded table of a /<database>/<table> address, or None."""
    database, rest = _route(datasette, scope)
    return (database, rest[0]) if database is not None and len(rest) == 1 else None


def _table_setting(datasette: Any, database: Any, key: str, table: str) -> Any:
    """The plugin's `key: {table: value}` setting for this table, or None."""
    per_table = _config(datasette, database.name).get(key)
    return per_table.get(table) if isinstance(per_table, dict) else None


def _args(scope: Scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def _with_args(scope: Scope, args: list[tuple[str, str]]) -> Scope:
    return {**scope, "query_string": urlencode(args).encode("latin-1")}


_SORT_ARGUMENTS = frozenset({"_sort", "_sort_desc", "_sort_by_desc"})


def _relevance_search(datasette: Any, scope: Scope) -> Scope:
    """The request, a table's plain search answered by relevance.

    Datasette orders a table's search results by the table's sort (talks: the latest start
    first, so talks years ahead came first); `relevance_search: {table: query}` names a
    canned query that orders them by the search index's rank. A search with a filter, a
    page after the first or a sort of its own stays on the table; the search form's sort
    box sends the table's default sort, which counts as none. The request is answered
    inside the server: the address stays as the reader typed it."""
    route = _table_route(datasette, scope)
    if route is None:
        return scope
    database, table = route[0], tilde_decode(route[1])
    query = _table_setting(datasette, database, "relevance_search", table)
    if not query:
        return scope
    args = _args(scope)
    words = " ".join(value for key, value in args if key == "_search").strip()
    others = [(key, value) for key, value in args if key != "_search"]
    if not words or not _default_sort(datasette.table_metadata(database.name, table), others):
        return scope
    path = f"{datasette.urls.database(database.name)}/{tilde_encode(query)}"
    return _with_args({**scope, "path": path, "raw_path": path.encode("latin-1")}, [("q", words)])


def _default_sort(table_metadata: Mapping[str, Any], args: list[tuple[str, str]]) -> bool:
    """Whether these arguments ask for nothing but the table's default sort (or nothing)."""
    if any(key not in _SORT_ARGUMENTS for key, _ in args):
        return False
    given = dict(args)
    column = given.get("_sort_desc") or given.get("_sort")
    if column is None:
        return True
    descending = "_sort_desc" in given or given.get("_sort_by_desc") in ("on", "1")
    default = table_metadata.get("sort_desc") if descending else table_metadata.get("sort")
    return bool(column == default)


async def _without_hidden(datasette: Any, scope: Scope) -> Scope:
    """The request, a table's HTML page with its hidden columns left out."""
    route = _table_route(datasette, scope)
    if route is None or "." in route[1]:  # the HTML page of a table only
        return scope
    database, table = route[0], tilde_decode(route[1])
    wanted = _table_setting(datasette, database, "hidden_columns", table)
    args = _args(scope)
    if not wanted or any(key in ("_col", "_nocol") for key, _ in args):
        return scope  # nothing hidden, or the user chose the columns
    existing = set(await database.table_columns(table))
    nocols = [("_nocol", column) for column in wanted if column in existing]
    return _with_args(scope, args + nocols) if nocols else scope


def _without_repeated_facets(datasette: Any, scope: Scope) -> Scope:
    """The request, a table page (HTML or JSON) without the `_facet`/`_facet_array`
    arguments its metadata already declares (see the module's docstring)."""
    route = _table_route(datasette, scope)
    if route is None or not _archive_db(datasette, route[0].name):
        return scope
    database, table = route[0], tilde_decode(route[1]).removesuffix(".json")
    declared = _declared_facets(datasette.table_metadata(database.name, table))
    args = _args(scope)
    kept = [(key, value) for key, value in args if (key, value) not in declared]
    return _with_args(scope, kept) if len(kept) < len(args) else scope


def _declared_facets(table_metadata: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The metadata's facets as the arguments that ask for them: ("_facet_array", column) ..."""
    declared = set()
    for facet in table_metadata.get("facets") or []:
        if isinstance(facet, str):
            declared.add(("_facet", facet))
        elif isinstance(facet, dict):
            declared |= {(f"_facet_{kind}", str(column)) for kind, column in facet.items()}
    return declared


# --- cells ---------------------------------------------------------------------------------


def _archive_db(datasette: Any, database: str | None) -> bool:
    return database is not None and bool(_config(datasette, database))


def talk_link(datasette: Any, database: str, uid: str) -> str:
    """The talk's page: the `talk_history` query with its uid."""
    return f"{datasette.urls.database(database)}/talk_history?{urlencode({'uid': uid})}"


@hookimpl  # type: ignore[untyped-decorator]
def render_cell(
    row: Any, value: Any, column: str, table: str | None, database: str | None, datasette: Any
) -> Markup | None:
    if not _archive_db(datasette, database):
        return None
    if column == "raw" and isinstance(value, bytes):
        return _raw_cell(value)
    if not isinstance(value, str) or not value:
        return None
    assert database is not None
    return _link_cell(datasette, database, column, value) or _text_cell(
        datasette, database, row, column, value
    )


def _link_cell(datasette: Any, database: str, column: str, value: str) -> Markup | None:
    """A time, a talk's uid or a URL, as HTML."""
    # Markup from f-strings whose every part is escaped (noqa S704): Markup.format costs
    # four times as much, for every time, uid and URL cell of every page.
    if _ISO_TIME.match(value):
        iso, text = escape(value), escape(human_time(value))
        return Markup(  # noqa: S704
            f'<time datetime="{iso}" title="{iso}" class="harvester-time">{text}</time>'
        )
    if column in _UID_COLUMNS:
        href, uid = escape(talk_link(datasette, database, value)), escape(value)
        return Markup(f'<a href="{href}" title="This talk and its history">{uid}</a>')  # noqa: S704
    if column in _URL_COLUMNS and (url := http_url(value)):
        link = escape(url)
        return Markup(f'<a href="{link}" rel="nofollow">{link}</a>')  # noqa: S704
    return None


def _text_cell(datasette: Any, database: str, row: Any, column: str, value: str) -> Markup | None:
    """Speakers, what changed, an abstract's first lines, a JSON list, as people read them."""
    if column == "speakers" and value.startswith("["):
        return escape(speakers_text(value))
    if column == "what_changed" and _VIEW_TIME.search(value):
        return escape(_VIEW_TIME.sub(lambda m: human_time(f"{m[1]}T{m[2]}+00:00"), value))
    if column == "abstract" and len(value) > ABSTRACT_PREVIEW_CHARS:
        return _abstract_preview(datasette, database, value, _get(row, "uid"))
    if column in _LIST_COLUMNS and value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError:
            return None
        if isinstance(items, list):
            return escape(", ".join(str(item) for item in items))
    return None


def _abstract_preview(datasette: Any, database: str, abstract: str, uid: Any) -> Markup:
    """The abstract's first lines, cut at a word, and a link to the talk page for the rest."""
    cut = abstract[:ABSTRACT_PREVIEW_CHARS].rsplit(None, 1)[0].rstrip(" ,;:.")
    preview = escape(cut)
    if not isinstance(uid, str) or not uid:
        return Markup(f'<span title="{escape(abstract)}">{preview} …</span>')  # noqa: S704
    href = escape(talk_link(datasette, database, uid))
    return Markup(f'{preview} … <a href="{href}" class="harvester-more">the whole abstract</a>')  # noqa: S704


def _raw_cell(stored: bytes) -> Markup | None:
    """The VEVENT as received (it is stored compressed), its control characters dropped."""
    try:
        raw = textstore.unpack_raw(stored)
    except (zlib.error, UnicodeDecodeError):
        return None  # not ours: Datasette shows it as binary
    text = escape(clean_text(raw or ""))
    return Markup(f'<pre class="harvester-raw" style="white-space: pre-wrap">{text}</pre>')  # noqa: S704


@hookimpl  # type: ignore[untyped-decorator]
def extra_css_urls(database: str | None, datasette: Any) -> list[str]:
    """The archive's stylesheet (phone cards, wrapping cells) on its pages and the front page."""
    if database is not None and not _archive_db(datasette, database):
        return []
    return [datasette.urls.static_plugins(STATIC_NAME, "harvester.css")]


@hookimpl  # type: ignore[untyped-decorator]
def prepare_jinja2_environment(env: Any, datasette: Any) -> None:
    env.filters["human_time"] = human_time
    env.filters["tilde"] = tilde_encode


# --- output renderers ----------------------------------------------------------------------


def _title(datasette: Any, database: str, table: str | None, query_name: str | None) -> str:
    if query_name:
        queries = (datasette.metadata(database=database) or {}).get("queries") or {}
        meta = queries.get(query_name) or {}
    else:
        meta = datasette.table_metadata(database, table) if table else {}
    title = meta.get("title") if isinstance(meta, dict) else None
    return str(title or query_name or table or database)


def _filters(request: Any) -> list[str]:
    """The filters a reader gave (series=..., speaker=...), for a feed's or calendar's name."""
    shown = []
    for key in ("series", "speaker", "feed", "uid", "match", "speakers"):
        value = " ".join(clean_text(request.args.get(key) or "").split())[:200]
        if value:
            shown.append(f"{key} {value}")
    return shown


async def render_ics(
    datasette: Any,
    request: Any,
    database: str,
    table: str | None,
    rows: list[Any],
    query_name: str | None,
) -> Response:
    uids = list(dict.fromkeys(str(row["uid"]) for row in rows if row["uid"] is not None))
    db = datasette.get_database(database)
    talks = await db.execute_fn(lambda conn: archive.talks_by_uid(conn, uids))
    filters = _filters(request)
    name = _title(datasette, database, table, query_name)
    if filters:
        name += f" ({', '.join(filters)})"
    keep = request.args.get("_cancelled") in ("1", "on", "true", "keep")
    body = render_calendar(talks, name=name, keep_cancelled=keep)
    return Response(body, status=200, content_type=ICS_CONTENT_TYPE)


async def render_feed(
    datasette: Any,
    request: Any,
    database: str,
    table: str | None,
    rows: list[Any],
    query_name: str | None,
) -> Response:
    title = _title(datasette, database, table, query_name)
    names = sorted({str(row["atom_author_name"]) for row in rows if _get(row, "atom_author_name")})
    filters = _filters(request)
    if request.args.get("series") and names:
        filters = [
            f"series {', '.join(names)}",
            *(f for f in filters if not f.startswith("series")),
        ]
    if filters:
        title += f": {'; '.join(filters)}"
    body = render_atom(
        [dict(zip(row.keys(), tuple(row), strict=True)) for row in rows],
        title=title,
        feed_id=f"urn:seminar-harvester:{query_name or table}:{quote('&'.join(filters))}",
        link=request.url.replace(".atom", "", 1),
        self_link=request.url,
    )
    return Response(body, status=200, content_type=ATOM_CONTENT_TYPE)


def _get(row: Any, key: str) -> Any:
    try:
        return row[key]
    except (IndexError, KeyError):
        return None


@hookimpl  # type: ignore[untyped-decorator]
def register_output_renderer(datasette: Any) -> list[dict[str, Any]]:
    return [
        {
            "extension": "ics",
            "render": render_ics,
            "can_render": lambda columns: {"uid", "dtstart"} <= set(columns),
        },
        {
            "extension": "atom",
            "render": render_feed,
            "can_render": lambda columns: {"atom_id", "atom_title", "atom_updated"} <= set(columns),
        },
    ]


# --- the talk page, talk_history without a uid, the chart ----------------------------------


@hookimpl  # type: ignore[untyped-decorator]
def extra_template_vars(
    template: str,
    database: str | None,
    table: str | None,
    view_name: str,
    request: Any,
    datasette: Any,
) -> Callable[[], Awaitable[dict[str, Any]]] | dict[str, Any] | None:
    if not _archive_db(datasette, database) or request is None:
        return None
    assert database is not None
    db = datasette.get_database(database)

    if template.startswith("query-") and "talk_history" in template:

        async def history_vars() -> dict[str, Any]:
            uid = (request.args.get("uid") or "").strip()
            page: dict[str, Any] = await db.execute_fn(lambda conn: _history_vars(conn, uid))
            return page

        return history_vars

    if view_name == "table" and table == "weekly_changes":

        async def chart_vars() -> dict[str, Any]:
            since = (datetime.now(UTC) - timedelta(weeks=CHART_WEEKS)).date().isoformat()
            rows = await db.execute_fn(lambda conn: archive.weekly_changes(conn, since))
            return {
                "chart_svg": week_chart(rows, since),
                "chart_svg_phone": week_chart(rows, since, weeks=PHONE_CHART_WEEKS, width=420),
                **_NO_SCHEMA_SQL,
            }

        return chart_vars
    return dict(_NO_SCHEMA_SQL) if view_name == "table" else None


# The CREATE TABLE/VIEW text Datasette prints at the end of a table page: docs/design.md
# explains the schema to people, and /archive/sqlite_master still gives it to a query.
_NO_SCHEMA_SQL = {"view_definition": None, "table_definition": None}

# --- the talk page's "What changed" ------------------------------------------------------

_VERSION_FIELDS = ("title", "dtstart", "dtend", "speaker", "room", "abstract")
# A field's name on the page; None for a field another one already says.
_FIELD_NAMES = {
    "dtstart": "start",
    "dtend": "end",
    "speakers": "speaker",
    "summary": None,
    "description": None,
    "location": None,
}
_CHANGE_WORDS = {
    "new": "first seen",
    "removed": "gone from every feed that carried it",
    "restored": "back in a feed after being removed",
}
DIFF_CONTEXT_WORDS = 6
DIFF_MAX_WORDS = 5000  # per side: longer texts are said to be edited, not diffed


def _history_vars(conn: sqlite3.Connection, uid: str) -> dict[str, Any]:
    """Without a uid, the recently changed talks; with one, the talk as it is now and its
    versions newest first, each with what it changed as the talk page says it: one item per
    field, times as people read them, an abstract as a word diff."""
    if not uid:
        return {"recent_talks": archive.recently_changed_talks(conn)}
    changes: dict[int, list[Markup]] = {}
    previous: dict[str, Any] | None = None
    for version in archive.talk_history(Database(conn), uid):
        changes[version["version"]] = _changes_of(previous, version)
        previous = version
    history = archive.talk_page(conn, uid)
    for version in history:
        version["changes"] = changes.get(version["version"], [])
    talks = archive.talks_by_uid(conn, [uid])
    return {"talk": talks[0] if talks else None, "history": history}


def _changes_of(previous: Mapping[str, Any] | None, version: Mapping[str, Any]) -> list[Markup]:
    whole = _CHANGE_WORDS.get(str(version["change"]))
    if whole is not None or previous is None:
        return [escape(whole or "first seen")]
    fields = [str(f) for f in version.get("changed_fields") or []]
    shown = [
        f for f in _VERSION_FIELDS if f in fields and not (f == "dtend" and "dtstart" in fields)
    ]
    items = [_field_change(f, previous, version) for f in shown]
    said = {_field_name(f) for f in _VERSION_FIELDS if f in fields} | {None}
    others = dict.fromkeys(name for f in fields if (name := _field_name(f)) not in said)
    items += [escape(f"{name} edited") for name in others]
    return items or [escape("details edited")]


def _field_name(field: str) -> str | None:
    return _FIELD_NAMES.get(field, field.replace("_", " "))


def _field_change(field: str, previous: Mapping[str, Any], version: Mapping[str, Any]) -> Markup:
    old, new = previous.get(field), version.get(field)
    label = escape(_field_name(field))
    if field == "abstract":
        return Markup(f"{label}: {word_diff(str(old or ''), str(new or ''))}")  # noqa: S704
    if field in ("dtstart", "dtend"):
        old, new = (human_time(old) if old else None), (human_time(new) if new else None)
    before, after = escape(old if old else "–"), escape(new if new else "–")
    return Markup(f"{label}: {before} → {after}")  # noqa: S704


def word_diff(old: str, new: str, context: int = DIFF_CONTEXT_WORDS) -> Markup:
    """The words taken out (<del>) and put in (<ins>), with a few unchanged words around each;
    longer unchanged stretches shorten to "…"."""
    if len(old.split()) > DIFF_MAX_WORDS or len(new.split()) > DIFF_MAX_WORDS:
        return escape("edited (too long to compare word by word)")
    tags = {"-": "<del>{}</del>", "+": "<ins>{}</ins>", " ": "{}"}
    pieces = (tags[op].format(escape(text)) for op, text in word_changes(old, new, context))
    return Markup(" ".join(pieces))  # noqa: S704 (every word escaped)


KIND_COLOURS = {
    "rescheduled": "#d95f02",
    "retitled": "#1b9e77",
    "speaker changed": "#7570b3",
    "details changed": "#66a61e",
    "removed": "#e7298a",
    "restored": "#e6ab02",
    "automatic": "#a6a6a6",
}


def nice_step(top: int, ticks: int = 4) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50 ... that reaches `top` in at most `ticks` steps."""
    magnitude = int(10 ** max(0, math.floor(math.log10(max(top, 1) / ticks))))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude * ticks >= top)


def _counts_by_week(
    rows: list[Mapping[str, Any]], weeks: list[str]
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Changes per week and kind, and the kinds in legend order (the known ones first)."""
    counts: dict[str, dict[str, int]] = {week: {} for week in weeks}
    for row in rows:
        if row["week"] in counts:
            counts[row["week"]][str(row["kind"])] = int(row["changes"])
    kinds = [k for k in KIND_COLOURS if any(k in c for c in counts.values())]
    kinds += sorted({k for c in counts.values() for k in c} - set(kinds))
    return counts, kinds


def _stacked_bar(
    week: str,
    counts: Mapping[str, int],
    kinds: list[str],
    x: float,
    bar: float,
    y: float,
    scale: float,
) -> list[str]:
    """One week's bar: a rectangle per kind, stacked up from `y`."""
    parts = []
    for kind in kinds:
        if not (count := counts.get(kind, 0)):
            continue
        h = scale * count
        y -= h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" height="{h:.1f}"'
            f' fill="{KIND_COLOURS.get(kind, "#999")}"><title>{html.escape(kind)}, week of'
            f" {week}: {count}</title></rect>"
        )
    return parts


def week_chart(
    rows: list[Mapping[str, Any]],
    since: str,
    *,
    weeks: int = CHART_WEEKS,
    width: int = 1200,
) -> Markup:
    """Stacked bars of changes per week by kind, as inline SVG (no script, no CDN): the last
    `weeks` weeks up to the week of `since` + CHART_WEEKS, y ticks at even steps."""
    start = datetime.fromisoformat(since).date()
    start -= timedelta(days=start.weekday())
    start += timedelta(weeks=CHART_WEEKS - weeks)
    all_weeks = [(start + timedelta(weeks=n)).isoformat() for n in range(weeks + 1)]
    counts, kinds = _counts_by_week(rows, all_weeks)
    highest = max((sum(c.values()) for c in counts.values()), default=0)
    step = nice_step(highest)
    top = step * max(1, math.ceil(highest / step))
    wide = width >= 800
    left, bottom = 50, 40
    right = 20 if wide else 40  # room for the last week's date under its bar
    height, label_every = (320, 4) if wide else (300, 3)
    legend_per_row = max(1, (width - left) // 160)
    legend_rows = math.ceil(len(kinds) / legend_per_row)
    bar = (width - left - right) / len(all_weeks)
    plot = height - bottom - 20
    total_height = height + 24 * legend_rows + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total_height}"'
        f' width="100%" role="img" aria-label="Changes per week by kind">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}"'
        ' stroke="#444"/>',
    ]
    for value in range(0, top + 1, step):
        y = height - bottom - plot * value / top
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="13">{value}</text>'
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>'
        )
    for n, week in enumerate(all_weeks):
        x = left + n * bar + 2
        parts += _stacked_bar(week, counts[week], kinds, x, bar, height - bottom, plot / top)
        if n % label_every == 0:
            monday = date.fromisoformat(week)
            label = f"{monday.day} {monday:%b %Y}" if wide else f"{monday.day} {monday:%b}"
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle"'
                f' font-size="13">{label}</text>'
            )
    for n, kind in enumerate(kinds):
        x = left + (n % legend_per_row) * 160
        y = height + 6 + 24 * (n // legend_per_row)
        parts.append(
            f'<rect x="{x}" y="{y}" width="14" height="14"'
            f' fill="{KIND_COLOURS.get(kind, "#999")}"/>'
            f'<text x="{x + 20}" y="{y + 12}" font-size="14">{html.escape(kind)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (numbers, and kinds escaped above)
