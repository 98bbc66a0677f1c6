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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from harvester._http import URL_ERRORS, UrlRefusedError, read_limited, time_limit
from harvester.config import HttpSettings
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


@dataclass(frozen=True)
class SeriesInfo:
    """What the API says about one series (the fields the archive keeps)."""

    shortname: str
    name: str | None = None
    institutions: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    timezone: str | None = None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)


def _series_info(record: object) -> SeriesInfo | None:
    """One series of an answer; None for one without a shortname the site could have given."""
    if not isinstance(record, dict):
        return None
    shortname = record.get("shortname")
    if not isinstance(shortname, str) or not is_shortname(shortname):
        return None
    return SeriesInfo(
        shortname=shortname,
        name=_text(record.get("name")),
        institutions=_names(record.get("institutions")),
        topics=_names(record.get("topics")),
        timezone=_text(record.get("timezone")),
    )


class SiteApi:
    """The site's JSON API over one httpx client (the caller owns and closes the client)."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        max_bytes: int = HttpSettings.max_bytes,
        max_time: float = HttpSettings.max_poll_time,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.max_bytes = max_bytes  # of an answer, decoded: the limit feed bodies have
        self.max_time = max_time  # for one call, every wait included (`[http] max_poll_time`)

    # --- endpoints ---------------------------------------------------------------------

    def topics(self) -> dict[str, Topic]:
        return {
            key: Topic(key, _text(entry.get("name")) or key, _names(entry.get("children")))
            for key, entry in self._objects("/topics").items()
        }

    def institutions(self) -> dict[str, Institution]:
        return {
            key: Institution(
                key,
                _text(entry.get("name")) or key,
                *(_text(entry.get(field)) for field in ("city", "timezone", "type")),
            )
            for key, entry in self._objects("/institutions").items()
        }

    def search_series(self, query: Mapping[str, Any] | None = None) -> list[SeriesInfo]:
        """Public series matching `query` (the API's query language); all of them for None."""
        body = {"query": dict(query)} if query else None
        data = self._call("POST" if query else "GET", "/search/series", body=body)
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise self._malformed("/search/series", "expected a list of results")
        return [info for record in results if (info := _series_info(record)) is not None]

    def series_named(self, shortnames: Iterable[str]) -> list[SeriesInfo]:
        """The public series among `shortnames` (private or unknown ones are simply absent)."""
        names = sorted(set(shortnames))
        found: list[SeriesInfo] = []
        for start in range(0, len(names), LOOKUP_CHUNK):
            found += self.search_series({"shortname": {"$in": names[start : start + LOOKUP_CHUNK]}})
        return found

    def lookup_series(self, shortname: str) -> SeriesInfo | None:
        """One series by shortname; None when the site has no public series of that name."""
        data = self._call("GET", "/lookup/series", params={"series_id": shortname})
        if not isinstance(data, dict):
            raise self._malformed("/lookup/series", "expected an object")
        return _series_info(data.get("properties"))

    # --- plumbing ----------------------------------------------------------------------

    def _objects(self, path: str) -> dict[str, dict[str, Any]]:
        """The entries of an answer that is an object of objects, by key."""
        data = self._call("GET", path)
        if not isinstance(data, dict):
            raise self._malformed(path, f"expected an object of {path.lstrip('/')}")
        return {key: entry for key, entry in data.items() if isinstance(entry, dict)}

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        url = f"{self.base_url}{API_PATH}{path}"
        # The API parses GET values as JSON: a string goes quoted.
        query = {k: json.dumps(v, ensure_ascii=False) for k, v in (params or {}).items()}
        try:
            with (
                time_limit(self.max_time),
                self.client.stream(
                    method,
                    url,
                    params=query or None,
                    json=body,
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
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if status >= 400 or (isinstance(data, dict) and data.get("code") not in (None, "success")):
            raise _api_error(url, status, data)
        if data is None:
            raise self._malformed(path, "the answer is not JSON")
        return data

    def _malformed(self, path: str, what: str) -> ApiError:
        return ApiError(f"{self.base_url}{API_PATH}{path}: unexpected answer from the API: {what}")


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
    if everything:
        found = {s.shortname: s for s in api.search_series()}
    else:
        found = _containing(api, "topics", topics) if topics else {}
        if institutions:
            at = _containing(api, "institutions", institutions)
            found = {k: v for k, v in found.items() if k in at} if topics else at
    return [found[name] for name in sorted(found)]


def _containing(api: SiteApi, field: str, ids: Iterable[str]) -> dict[str, SeriesInfo]:
    """The series whose `field` contains any of `ids`, one search per ID, by shortname."""
    union: dict[str, SeriesInfo] = {}
    for wanted in sorted(set(ids)):
        for series in api.search_series({field: {"$contains": wanted}}):
            union.setdefault(series.shortname, series)
    return union
