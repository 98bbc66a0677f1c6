"""A Datasette plugin for the archive, configured from `config/datasette.yml`.

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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from datasette import hookimpl
from datasette.utils import tilde_decode

from harvester.archive import set_query_only

PLUGIN_NAME = "seminar-harvester"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _config(datasette: Any, database: str) -> dict[str, Any]:
    config = datasette.plugin_config(PLUGIN_NAME, database=database, fallback=False)
    return config if isinstance(config, dict) else {}


@hookimpl  # type: ignore[untyped-decorator]
def prepare_connection(conn: sqlite3.Connection, database: str, datasette: Any) -> None:
    if _config(datasette, database).get("query_only"):
        set_query_only(conn)


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
