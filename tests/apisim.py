"""The site's JSON API (`/api/0/`) on top of tests/sitesim.py, as the research note says.

- `GET /api/0/topics`, `GET /api/0/institutions`;
- `GET|POST /api/0/search/series`: GET values are JSON (so strings must be quoted) and
  are equality filters on known columns; POST takes `{"query": {...}}` with `$contains`
  and `$in`; only public series (visibility 2) are listed;
- `GET|POST /api/0/lookup/series` with `series_id` (JSON): `properties` is null for a
  series the site does not show;
- errors are `{"code", "description"}` with status 400 (401 for the save endpoints);
- datetimes look like `2020-05-01 15:00:00+00:00`.

The API lists exactly the series of the `Site` (its name from the site); topics,
institutions, timezone and visibility come from `Api.meta`. Every API request is recorded
in `Api.requests`, and `Site.overrides` work for API paths too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.sitesim import Site, _Handler, _Server, running

API_PREFIX = "/api/"
SERIES_COLUMNS = frozenset(
    {"shortname", "name", "institutions", "topics", "timezone", "language", "visibility"}
)
DEFAULT_TOPICS: dict[str, dict[str, Any]] = {
    "math": {"name": "Mathematics", "children": ["math_NT", "math_AG", "math-ph"]},
    "physics": {"name": "Physics", "children": ["math-ph", "hep-th"]},
    "math_NT": {"name": "Number theory", "children": []},
    "math_AG": {"name": "Algebraic geometry", "children": []},
    "math-ph": {"name": "Mathematical physics", "children": []},
    "hep-th": {"name": "High energy physics - theory", "children": []},
}
DEFAULT_INSTITUTIONS: dict[str, dict[str, Any]] = {
    "MIT": {
        "name": "Massachusetts Institute of Technology",
        "city": "Cambridge, MA",
        "timezone": "America/New_York",
        "type": "university",
        "homepage": "https://www.mit.edu",
    },
    "IAS": {
        "name": "Institute for Advanced Study",
        "city": "Princeton, NJ",
        "timezone": "America/New_York",
        "type": "institute",
        "homepage": "https://www.ias.edu",
    },
}


class SimApiError(Exception):
    def __init__(self, body: dict[str, Any], status: int = 400) -> None:
        self.body, self.status = body, status


@dataclass
class SeriesMeta:
    topics: list[str] = field(default_factory=list)
    institutions: list[str] = field(default_factory=list)
    timezone: str = "UTC"
    visibility: int = 2  # 2 public, 1 unlisted, 0 private: the API lists only 2


@dataclass
class ApiRequest:
    method: str
    path: str
    raw_query: str
    body: Any


class Api:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.topics = {k: dict(v) for k, v in DEFAULT_TOPICS.items()}
        self.institutions = {k: dict(v) for k, v in DEFAULT_INSTITUTIONS.items()}
        self.meta: dict[str, SeriesMeta] = {}
        self.requests: list[ApiRequest] = []
        self.lock = threading.Lock()

    def describe(self, shortname: str, **meta: Any) -> SeriesMeta:
        self.meta[shortname] = SeriesMeta(**meta)
        return self.meta[shortname]

    def record(self, shortname: str) -> dict[str, Any] | None:
        series = self.site.series.get(shortname)
        if series is None:
            return None
        meta = self.meta.get(shortname, SeriesMeta())
        return {
            "shortname": shortname,
            "name": series.name,
            "institutions": list(meta.institutions),
            "topics": list(meta.topics),
            "timezone": meta.timezone,
            "language": "en",
            "visibility": meta.visibility,
            "edited_at": "2020-05-01 15:00:00+00:00",
        }

    def records(self) -> list[dict[str, Any]]:
        with self.site.lock:
            names = list(self.site.series)
        return [r for name in names if (r := self.record(name)) is not None]

    # --- endpoints ---------------------------------------------------------------------

    def answer(self, method: str, path: str, args: dict[str, str], body: Any) -> Any:
        parts = path.strip("/").split("/")  # api, version, endpoint...
        if len(parts) < 3:
            raise SimApiError({"code": "not_found", "description": "no such endpoint"}, 404)
        if parts[1] != "0":
            raise SimApiError(
                {"code": "invalid_version", "description": f"Unknown API version: {parts[1]}"}
            )
        endpoint = "/".join(parts[2:])
        if endpoint == "topics" and method == "GET":
            return self.topics
        if endpoint == "institutions" and method == "GET":
            return self.institutions
        if endpoint == "search/series":
            return self.search_series(method, args, body)
        if endpoint == "lookup/series":
            return self.lookup_series(method, args, body)
        if endpoint.startswith("save/") or endpoint == "test":
            raise SimApiError(
                {"code": "missing_authorization", "description": "No authorization header"}, 401
            )
        raise SimApiError({"code": "not_found", "description": "no such endpoint"}, 404)

    def search_series(self, method: str, args: dict[str, str], body: Any) -> Any:
        if method == "POST":
            data = _json_body(body)
            query = data.pop("query", {})
            if data or not isinstance(query, dict):
                raise _search_error(f"unexpected arguments {sorted(data)}")
        else:
            query = _json_args(args)
            for column in query:
                if column not in SERIES_COLUMNS:
                    raise SimApiError(
                        {
                            "code": "unknown_column",
                            "col": column,
                            "description": f"{column} not a column of seminars",
                        }
                    )
        results = [r for r in self.records() if r["visibility"] == 2 and _matches(r, query)]
        return {"code": "success", "results": results}

    def lookup_series(self, method: str, args: dict[str, str], body: Any) -> Any:
        data = _json_body(body) if method == "POST" else _json_args(args)
        series_id = data.get("series_id")
        if series_id is None:
            raise SimApiError(
                {
                    "code": "unspecified_series_id",
                    "description": "You must specify series_id when looking up a series",
                }
            )
        record = self.record(series_id) if isinstance(series_id, str) else None
        if record is None or record["visibility"] == 0:
            return {"code": "success", "properties": None, "talks": []}
        series = self.site.series[series_id]
        talks = [
            {
                "seminar_id": series_id,
                "seminar_ctr": t.counter,
                "title": t.title,
                "start_time": t.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00"),
            }
            for t in sorted(series.talks.values(), key=lambda t: t.start)
        ]
        return {"code": "success", "properties": record, "talks": talks}


def _json_args(args: dict[str, str]) -> dict[str, Any]:
    try:
        return {key: json.loads(value) for key, value in args.items()}
    except ValueError as exc:
        raise SimApiError(
            {"code": "json_parse_error", "description": "could not parse json", "error": str(exc)}
        ) from None


def _json_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SimApiError({"code": "json_parse_error", "description": "could not parse json"})
    return dict(body)


def _search_error(detail: str) -> SimApiError:
    return SimApiError(
        {"code": "search_error", "description": "error in executing search", "error": detail}
    )


def _matches(record: dict[str, Any], query: dict[str, Any]) -> bool:
    for column, condition in query.items():
        if column not in SERIES_COLUMNS:
            raise _search_error(f"column {column} does not exist")
        value = record.get(column)
        if isinstance(condition, dict):
            for op, operand in condition.items():
                if op == "$contains":
                    wanted = operand if isinstance(operand, list) else [operand]
                    if not isinstance(value, list) or not all(w in value for w in wanted):
                        return False
                elif op == "$in":
                    if not isinstance(operand, list) or value not in operand:
                        return False
                else:
                    raise _search_error(f"unknown operator {op}")
        elif value != condition:
            return False
    return True


# --- the HTTP side -----------------------------------------------------------------------


class _ApiHandler(_Handler):
    server: _ApiServer
    # Headers and body go out in two writes: without TCP_NODELAY each response waits
    # ~40 ms for a delayed ACK, which would make a 300-feed sync take 15 s of idling.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if not self.path.startswith(API_PREFIX):
            super().do_GET()
            return
        self._api("GET", None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.startswith(API_PREFIX):
            self._send(405, b"", {})
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._api("POST", body)

    def _api(self, method: str, body: Any) -> None:
        api, site = self.server.api, self.server.site
        parts = urlsplit(self.path)
        site.hits[parts.path] += 1
        with api.lock:
            api.requests.append(ApiRequest(method, parts.path, parts.query, body))
        override = site.overrides.get(parts.path)
        if override is not None and override(self):
            return
        args = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            answer, status = api.answer(method, parts.path, args, body), 200
        except SimApiError as problem:
            answer, status = problem.body, problem.status
        payload = json.dumps(answer, default=str).encode()
        self._send(status, payload, {"Content-Type": "application/json"})


class _ApiServer(_Server):
    api: Api


@contextmanager
def serve_with_api(site: Site) -> Iterator[Api]:
    """Run the site and its API on 127.0.0.1 (a free port) for the duration of the block."""
    server = _ApiServer(("127.0.0.1", 0), _ApiHandler)
    api = Api(site)
    server.api = api
    with running(server, site):
        yield api


def api_error_override(status: int, code: str, description: str) -> Any:
    """A `Site.overrides` handler answering with the API's error shape."""

    def answer(handler: Any) -> bool:
        body = json.dumps({"code": code, "description": description}).encode()
        handler._send(status, body, {"Content-Type": "application/json"})
        return True

    return answer


def utc(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)
