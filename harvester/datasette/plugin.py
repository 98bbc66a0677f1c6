"""A Datasette plugin for the archive, configured from its metadata (`metadata.yml` here).

Registered as the `seminar_harvester` entry point of the `datasette` group, so plain
`datasette` picks it up as well as `harvester serve`. It does nothing for a database whose
metadata has no `plugins: seminar-harvester:` block. With one, it:

- `query_only: true` opens every connection Datasette makes to the database with
  SQLite's query_only switch, its write connection included: the web cannot change the archive,
  whatever a canned query or another plugin tries (the harvester writes through its own
  connections, which this does not touch);
- `hidden_columns: {table: [column, ...]}` sends a browser that opens the HTML page of one
  of those tables without choosing columns (`_col`/`_nocol`) to the same page with
  `_nocol=` for each: bookkeeping columns stay out of sight until asked for. The JSON
  API and the row pages still show every column.

Whatever the metadata, it also makes output safe for the people who open it:

- every `.csv` Datasette writes has its formula cells neutralised (`=`, `+`, `-`, `@`, tab,
  CR ... get a leading `'`, via defusedcsv). Datasette has no hook for its built-in CSV, so
  the plugin swaps the `csv` module that `datasette.views.base` writes with for a shim whose
  `writer` is defused: this applies to every database of that Datasette;
- SQL functions for the canned queries: `harvester_text(value)` drops control characters
  (a feed's XML and a calendar's text cannot carry them) and `harvester_ics_uid(value)`
  keeps a UID that datasette-ics can take (its `ics` library hashes an event by turning the
  UID into one decimal integer of 3+ digits per character, which Python refuses beyond
  4,300 digits: a UID of ~1,433 characters or more answered 500 for the whole calendar).
"""

from __future__ import annotations

import hashlib
import sqlite3
import types
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from datasette import hookimpl
from datasette.utils import tilde_decode

from harvester.archive import set_query_only
from harvester.export import clean_text, defused_writer

PLUGIN_NAME = "seminar-harvester"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _config(datasette: Any, database: str) -> dict[str, Any]:
    config = datasette.plugin_config(PLUGIN_NAME, database=database, fallback=False)
    return config if isinstance(config, dict) else {}


# Longer UIDs are shortened to a prefix and a hash for datasette-ics: at most 7 digits per
# character in its hash, 500 * 7 stays under Python's 4,300-digit limit.
ICS_UID_MAX = 500


def harvester_text(value: Any) -> Any:
    return clean_text(value) if isinstance(value, str) else value


def harvester_ics_uid(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    uid = "".join(clean_text(value).split("\n"))
    if len(uid) <= ICS_UID_MAX:
        return uid
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{uid[:200]}…sha256:{digest}"


@hookimpl  # type: ignore[untyped-decorator]
def prepare_connection(conn: sqlite3.Connection, database: str, datasette: Any) -> None:
    conn.create_function("harvester_text", 1, harvester_text, deterministic=True)
    conn.create_function("harvester_ics_uid", 1, harvester_ics_uid, deterministic=True)
    if _config(datasette, database).get("query_only"):
        set_query_only(conn)


@hookimpl  # type: ignore[untyped-decorator]
def startup(datasette: Any) -> None:
    from datasette.views import base

    if not getattr(base.csv, "harvester_defused", False):
        shim = types.SimpleNamespace(**{k: getattr(base.csv, k) for k in dir(base.csv)})
        shim.writer = defused_writer
        shim.harvester_defused = True
        base.csv = shim


@hookimpl  # type: ignore[untyped-decorator]
def asgi_wrapper(datasette: Any) -> Callable[[ASGIApp], ASGIApp]:
    def wrap(app: ASGIApp) -> ASGIApp:
        async def hide_bookkeeping_columns(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
                location = await _location_without_hidden(datasette, scope)
                if location is not None:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 302,
                            "headers": [
                                (b"location", location.encode("latin-1")),
                                (b"content-length", b"0"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": b""})
                    return
            await app(scope, receive, send)

        return hide_bookkeeping_columns

    return wrap


async def _location_without_hidden(datasette: Any, scope: Scope) -> str | None:
    """Where to send a request for a table page with hidden columns, or None to serve it."""
    path: str = scope.get("path", "")
    base_url: str = datasette.setting("base_url")
    local = "/" + path[len(base_url) :] if base_url != "/" and path.startswith(base_url) else path
    parts = local.strip("/").split("/")
    if len(parts) != 2 or "." in parts[1]:  # only /<database>/<table>, the HTML page
        return None
    database = next((db for db in datasette.databases.values() if db.route == parts[0]), None)
    if database is None:
        return None
    hidden = _config(datasette, database.name).get("hidden_columns") or {}
    table = tilde_decode(parts[1])
    wanted = hidden.get(table) if isinstance(hidden, dict) else None
    if not wanted:
        return None
    args = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    if any(key in ("_col", "_nocol") for key, _ in args):
        return None  # the user chose the columns
    existing = set(await database.table_columns(table))
    nocols = [("_nocol", column) for column in wanted if column in existing]
    if not nocols:
        return None
    raw_path = scope.get("raw_path")  # as the browser sent it, percent-encoding included
    return f"{raw_path.decode('latin-1') if raw_path else path}?{urlencode(args + nocols)}"
