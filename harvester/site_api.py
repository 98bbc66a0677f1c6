"""A client for the site's public JSON API (`/api/0/`): topics, institutions, series.

The API is version 0 ("subject to change") and has two quirks this client hides:

- GET parameter values are parsed as JSON, so a string must be sent quoted
  (`?series_id="MITNT"`, never `?series_id=MITNT`);
- errors come back as `{"code": ..., "description": ...}` with status 400 or 401, and
  become an `ApiError` whose message says what the site said.

Filters beyond equality (`$contains` on the topics/institutions lists, `$in`) only work
with POST and a `{"query": {...}}` body.

The URL policy is the client's: a client from `harvester.fetch.make_client` checks every
API request and redirect hop in its transport; a refusal becomes an `ApiError` that says
which URL was refused and why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from harvester._http import URL_ERRORS, UrlRefusedError, read_limited, time_limit
from harvester.errors import ApiError, FetchError
from harvester.site import is_shortname

API_PATH = "/api/0"
# The site answers one search per request; a few hundred names per `$in` keep bodies small.
LOOKUP_CHUNK = 100


@dataclass(frozen=True)
class Topic:
    id: str
    name: str
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class Institution:
    shortname: str
    name: str
    city: str | None = None
    timezone: str | None = None
    type: str | None = None
    homepage: str | None = None


@dataclass(frozen=True)
class SeriesInfo:
    """What the API says about one series (the fields the archive keeps)."""

    shortname: str
    name: str | None = None
    institutions: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    timezone: str | None = None

    @classmethod
    def from_api(cls, record: Mapping[str, Any]) -> SeriesInfo:
        shortname = record.get("shortname")
        if not isinstance(shortname, str) or not is_shortname(shortname):
            raise ValueError("a series without a shortname the site could have given")
        return cls(
            shortname=shortname,
            name=_text(record.get("name")),
            institutions=_names(record.get("institutions")),
            topics=_names(record.get("topics")),
            timezone=_text(record.get("timezone")),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "shortname": self.shortname,
            "name": self.name,
            "institutions": list(self.institutions),
            "topics": list(self.topics),
            "timezone": self.timezone,
        }


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)


def encode_get_params(params: Mapping[str, Any]) -> dict[str, str]:
    """GET values as the API reads them: every value JSON-encoded (strings get quotes)."""
    return {key: json.dumps(value, ensure_ascii=False) for key, value in params.items()}


class SiteApi:
    """The site's JSON API over one httpx client (the caller owns and closes the client)."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        max_bytes: int = 20_000_000,
        max_time: float = 180.0,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.max_bytes = max_bytes  # of an answer, decoded: the limit feed bodies have
        self.max_time = max_time  # for one call, every wait included (`[http] max_poll_time`)

    # --- endpoints ---------------------------------------------------------------------

    def topics(self) -> dict[str, Topic]:
        data = self._call("GET", "/topics")
        if not isinstance(data, dict):
            raise self._malformed("/topics", "expected an object of topics")
        topics = {}
        for topic_id, entry in data.items():
            if isinstance(entry, dict):
                name = _text(entry.get("name")) or topic_id
                topics[topic_id] = Topic(topic_id, name, _names(entry.get("children")))
        return topics

    def institutions(self) -> dict[str, Institution]:
        data = self._call("GET", "/institutions")
        if not isinstance(data, dict):
            raise self._malformed("/institutions", "expected an object of institutions")
        institutions = {}
        for shortname, entry in data.items():
            if isinstance(entry, dict):
                fields = {k: _text(entry.get(k)) for k in ("city", "timezone", "type", "homepage")}
                name = _text(entry.get("name")) or shortname
                institutions[shortname] = Institution(shortname, name, **fields)
        return institutions

    def search_series(self, query: Mapping[str, Any] | None = None) -> list[SeriesInfo]:
        """Public series matching `query` (the API's query language); all of them for None."""
        if query:
            data = self._call("POST", "/search/series", body={"query": dict(query)})
        else:
            data = self._call("GET", "/search/series")
        return self._series_results("/search/series", data)

    def series_by_topic(self, topic_id: str) -> list[SeriesInfo]:
        return self.search_series({"topics": {"$contains": topic_id}})

    def series_by_institution(self, shortname: str) -> list[SeriesInfo]:
        return self.search_series({"institutions": {"$contains": shortname}})

    def all_series(self) -> list[SeriesInfo]:
        return self.search_series()

    def series_named(self, shortnames: Iterable[str]) -> list[SeriesInfo]:
        """The public series among `shortnames` (private or unknown ones are simply absent)."""
        found: list[SeriesInfo] = []
        for chunk in _chunks(sorted(set(shortnames)), LOOKUP_CHUNK):
            found += self.search_series({"shortname": {"$in": chunk}})
        return found

    def lookup_series(self, shortname: str) -> SeriesInfo | None:
        """One series by shortname; None when the site has no public series of that name."""
        data = self._call("GET", "/lookup/series", params={"series_id": shortname})
        if not isinstance(data, dict):
            raise self._malformed("/lookup/series", "expected an object")
        properties = data.get("properties")
        if not isinstance(properties, dict):
            return None
        try:
            return SeriesInfo.from_api(properties)
        except ValueError:
            return None

    # --- plumbing ----------------------------------------------------------------------

    def _series_results(self, path: str, data: Any) -> list[SeriesInfo]:
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise self._malformed(path, "expected a list of results")
        series = []
        for record in results:
            if isinstance(record, dict):
                try:
                    series.append(SeriesInfo.from_api(record))
                except ValueError:
                    continue
        return series

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        url = f"{self.base_url}{API_PATH}{path}"
        try:
            with (
                time_limit(self.max_time),
                self.client.stream(
                    method,
                    url,
                    params=encode_get_params(params) if params else None,
                    json=dict(body) if body is not None else None,
                    headers={"Accept": "application/json"},
                ) as response,
            ):
                raw = read_limited(url, response, self.max_bytes)
                status = response.status_code
        except FetchError as exc:  # over the size limit, or an encoding that cannot be bounded
            raise ApiError(f"{url}: the API's answer: {exc.reason}") from None
        except UrlRefusedError as exc:
            first_hop = exc.request.url.copy_with(query=None) == httpx.URL(url)
            where = "" if first_hop else f"redirected to {exc.url}: "
            raise ApiError(f"{url}: {where}{exc.error.reason}") from None
        except URL_ERRORS as exc:
            raise ApiError(f"{url}: not a valid URL ({type(exc).__name__}: {exc})") from None
        except httpx.TimeoutException:
            raise ApiError(f"{url}: the site's API timed out") from None
        except httpx.HTTPError as exc:
            raise ApiError(
                f"{url}: cannot reach the site's API ({type(exc).__name__}: {exc})"
            ) from None
        data = _json_or_none(raw)
        if status >= 400 or (isinstance(data, dict) and data.get("code") not in (None, "success")):
            raise _api_error(url, status, data)
        if data is None:
            raise self._malformed(path, "the answer is not JSON")
        return data

    def _malformed(self, path: str, what: str) -> ApiError:
        return ApiError(f"{self.base_url}{API_PATH}{path}: unexpected answer from the API: {what}")


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _api_error(url: str, status: int, data: Any) -> ApiError:
    """`{"code", "description"}` → "the API refused the request (400 code): description"."""
    if isinstance(data, dict) and ("code" in data or "description" in data):
        code = str(data.get("code") or "error")
        description = str(data.get("description") or "no description")
        detail = f": {data['error']}" if isinstance(data.get("error"), str) else ""
        hint = " (this needs an API login, which the harvester never uses)" if status == 401 else ""
        return ApiError(
            f"{url}: the site's API refused the request (HTTP {status}, {code}): "
            f"{description}{detail}{hint}",
            status=status,
            code=code,
        )
    return ApiError(f"{url}: the site's API answered HTTP {status}", status=status)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def select_series(
    api: SiteApi,
    topics: Iterable[str] = (),
    institutions: Iterable[str] = (),
    everything: bool = False,
) -> list[SeriesInfo]:
    """Series in any of `topics` and at any of `institutions` (both when both are given).

    Several topics widen the selection (union), as do several institutions; giving topics
    and institutions narrows it to their intersection. Sorted by shortname.
    """
    topics, institutions = sorted(set(topics)), sorted(set(institutions))
    found: dict[str, SeriesInfo] | None = None
    if everything:
        found = {s.shortname: s for s in api.all_series()}
    else:
        found = _union(api.series_by_topic(t) for t in topics) if topics else None
        if institutions:
            at = _union(api.series_by_institution(i) for i in institutions)
            found = at if found is None else {k: v for k, v in found.items() if k in at}
    found = found or {}
    return [found[name] for name in sorted(found)]


def _union(results: Iterable[list[SeriesInfo]]) -> dict[str, SeriesInfo]:
    union: dict[str, SeriesInfo] = {}
    for series_list in results:
        for series in series_list:
            union.setdefault(series.shortname, series)
    return union
