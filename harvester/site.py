"""Feed URLs: normalisation, the kind of feed a URL names, and secret-free default names."""

from __future__ import annotations

import hashlib
import re
from typing import Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

from harvester.redact import escape_controls, redact

FeedKind = Literal["series", "talk", "personal", "other", "file"]

SITE_HOST = "researchseminars.org"
# Old names of the site that answer with a 301 to researchseminars.org.
OLD_SITE_HOSTS = frozenset(
    {
        "www.researchseminars.org",
        "mathseminars.org",
        "www.mathseminars.org",
        "rsem.org",
        "www.rsem.org",
    }
)

# The site's rule for series shortnames: letters, digits, hyphens and underscores.
_SHORTNAME = re.compile(r"[A-Za-z0-9_-]+")
_SERIES_PATH = re.compile(r"^/seminar/(?P<series>[^/]+)/ics/?$")
_TALK_PATH = re.compile(r"^/talk/(?P<series>[^/]+)/(?P<counter>-?\d+)/ics/?$")
_PERSONAL_PATH = re.compile(r"^(?P<prefix>/user/ics/)(?P<token>[^/?#]+)")


def is_shortname(text: str) -> bool:
    return _SHORTNAME.fullmatch(text) is not None


def split_url(url: str) -> SplitResult | None:
    """`urlsplit`, or None for a URL it cannot read (`http://[::1/`): such a feed is kept,
    and its poll fails with the transport's one clear line."""
    try:
        parts = urlsplit(url)
        _ = parts.hostname, parts.port
    except ValueError:
        return None
    return parts


def normalize_url(url: str) -> str:
    """The URL the harvester fetches: webcal:// means https://, old site names mean the site."""
    url = url.strip()
    parts = split_url(url)
    if parts is None:
        return url
    scheme = parts.scheme.lower()
    if scheme in ("webcal", "webcals"):
        scheme = "https"
    host = (parts.hostname or "").lower()
    netloc = parts.netloc
    if host in OLD_SITE_HOSTS or host == SITE_HOST:
        netloc = SITE_HOST
        scheme = "https"
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def feed_kind(url: str) -> FeedKind:
    """Which of the site's three feed kinds a URL is (`other` for any other calendar)."""
    parts = split_url(url)
    if parts is None:
        return "other"
    if parts.scheme == "file":
        return "file"
    if _SERIES_PATH.match(parts.path):
        return "series"
    if _TALK_PATH.match(parts.path):
        return "talk"
    if _PERSONAL_PATH.match(parts.path):
        return "personal"
    return "other"


def url_hash(url: str) -> str:
    """The key that matches an archived feed to a config entry without storing its secret."""
    return hashlib.sha256(url.encode()).hexdigest()


def default_feed_name(url: str) -> str:
    """A short, secret-free name for a feed: the series shortname, `series/counter`, or host."""
    parts = split_url(url)
    if parts is None:
        return escape_controls(redact(url))
    if match := _SERIES_PATH.match(parts.path):
        return match["series"]
    if match := _TALK_PATH.match(parts.path):
        return f"{match['series']}/{match['counter']}"
    if _PERSONAL_PATH.match(parts.path):
        return redact(parts.path).strip("/")
    if parts.scheme == "file":
        return parts.path.rsplit("/", 1)[-1] or parts.path
    return escape_controls((parts.hostname or "") + parts.path.rstrip("/"))


# http(s), a host, and no whitespace or control character anywhere.
_HTTP_URL = re.compile(r"(?i:https?)://[^\s\x00-\x1f\x7f-\x9f/?#][^\s\x00-\x1f\x7f-\x9f]*")


def http_url(value: object) -> str | None:
    """`value` when it is one plain http(s) URL, else None: the one rule for what the
    archive stores as a URL and what a calendar, a feed or a page links to."""
    text = value if isinstance(value, str) else ""
    return text if _HTTP_URL.fullmatch(text) else None


def series_feed_url(base_url: str, shortname: str) -> str:
    """The feed of the series `shortname` on the site at `base_url`."""
    return f"{base_url.rstrip('/')}/seminar/{shortname}/ics"


def series_shortname(url: str, base_url: str) -> str | None:
    """The shortname of a series feed URL on the site at `base_url` (any user or password
    in the URL aside), else None."""
    parts, site = split_url(url), split_url(base_url)
    if parts is None or site is None or _origin(parts) != _origin(site):
        return None
    return parts.path.strip("/").split("/")[1] if feed_kind(url) == "series" else None


def _origin(parts: SplitResult) -> tuple[str, str | None, int | None]:
    return parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)


_DEFAULT_PORTS = {"http": 80, "https": 443}
