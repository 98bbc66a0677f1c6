"""Loading and validating `harvester.toml`.

A bad config is refused before anything runs, with the file, the key and what is wrong.
Every URL in the file, under any key, is remembered by `harvester.redact` before the file
is validated, so that no error, log line or archive row shows a secret it carries.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pytimeparse.timeparse import timeparse as parse_timespan

from harvester import user_agent as default_user_agent
from harvester.errors import ConfigError
from harvester.model import DEFAULT_NOTIFY_KINDS, NOTIFY_KINDS
from harvester.redact import redact, remember_url, remember_urls_in, url_only_secrets
from harvester.site import default_feed_name, is_shortname, normalize_url, split_url

DEFAULT_CONFIG_PATH = Path("config/harvester.toml")
DAY_S = 86400.0
DEFAULT_KEEP_POLLS_S = 30 * DAY_S  # [archive] keep_polls: unchanged polls kept one by one
FETCHABLE_SCHEMES = ("http", "https", "webcal", "webcals")
_D = TypeVar("_D", float, None)


@dataclass(frozen=True)
class HttpSettings:
    user_agent: str = field(default_factory=default_user_agent)
    timeout: float = 30.0
    max_bytes: int = 20_000_000
    retries: int = 3
    max_poll_time: float = 180.0  # seconds for one poll: every attempt, wait and body read
    per_host: int = 2  # requests in flight to one host
    min_gap: float = 0.0  # seconds between the starts of two requests to one host
    concurrency: int = 4  # feeds a sync polls at once
    allow_private: bool = False
    allowed_hosts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SiteSettings:
    base_url: str = "https://researchseminars.org"


@dataclass(frozen=True)
class ScheduleSettings:
    interval: float = 30 * 60.0
    jitter: float = 2 * 60.0
    gone_after: float = 24 * 3600.0  # rule 5b: 404/410 for this long removes a feed's talks


@dataclass(frozen=True)
class FeedConfig:
    url: str  # normalised; may carry a personal token, so never log it unmasked
    name: str
    interval: float | None = None
    enabled: bool = True

    def interval_or(self, default: float) -> float:
        return self.interval if self.interval is not None else default


@dataclass(frozen=True)
class NotifyConfig:
    """One `[[notify]]` entry: an Apprise URL (a secret: never log or store it) and filters."""

    url: str
    series: frozenset[str] | None = None  # None: every series
    kinds: frozenset[str] = frozenset(DEFAULT_NOTIFY_KINDS)
    upcoming_only: bool = True
    allow_private: bool = False  # a webhook on loopback or a private network (else [http]'s)
    match: str | None = None  # a full-text query over every archived talk (talks_fts syntax)
    speakers: tuple[str, ...] = ()  # names followed in every archived series
    digest: str | None = None  # "weekly": one message a week instead of one per run
    timezone: str = "UTC"  # of the digest's times and weeks

    @property
    def filtered(self) -> bool:
        """Whether the target follows words or speakers (then new talks are a default kind)."""
        return self.match is not None or bool(self.speakers)

    def __repr__(self) -> str:  # a stray repr in a traceback never shows the URL
        return f"NotifyConfig(url={redact(self.url)!r}, series={self.series!r})"


@dataclass(frozen=True)
class FollowConfig:
    """One `[[follow]]` entry: every public series of a topic (at an institution, if given)."""

    topic: str
    institution: str | None = None

    @property
    def reason(self) -> str:
        """How the archive records why a series joined (`series.followed_by`)."""
        at = f" institution={self.institution}" if self.institution else ""
        return f"topic={self.topic}{at}"


@dataclass(frozen=True)
class NotificationSettings:
    """`[notifications]`: how long one delivery may take, and how failed ones are retried."""

    max_attempts: int = 8
    backoff: float = 60.0  # seconds before the first retry; doubles with each failure
    max_backoff: float = 6 * 3600.0
    timeout: float = 30.0  # seconds for one delivery, every wait included (wall clock)


@dataclass(frozen=True)
class Config:
    path: Path | None
    archive_path: Path
    archive_file_mode: int = 0o600  # permissions of a newly created archive
    archive_keep_polls: float = DEFAULT_KEEP_POLLS_S  # then one row per feed and day
    http: HttpSettings = field(default_factory=HttpSettings)
    site: SiteSettings = field(default_factory=SiteSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    feeds: tuple[FeedConfig, ...] = ()
    notify: tuple[NotifyConfig, ...] = ()
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    follow: tuple[FollowConfig, ...] = ()

    def find_feed(self, name_or_url: str) -> FeedConfig | None:
        url = normalize_url(name_or_url)
        for feed in self.feeds:
            if name_or_url in (feed.name, feed.url) or url == feed.url:
                return feed
        return None


def parse_duration(value: object, path: Path | str, key: str, *, allow_zero: bool = False) -> float:
    """Seconds from `30m`, `6h`, `1d`, `90s` or a plain number of seconds."""
    seconds: float | None = None
    if isinstance(value, str):
        seconds = parse_timespan(value.strip())
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    if seconds is None or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(path, key, f"expected a duration like '30m' or '6h', got {value!r}")
    return float(seconds)


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """`--config`, then `$HARVESTER_CONFIG`, then `./config/harvester.toml` (if it exists)."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("HARVESTER_CONFIG"):
        return Path(env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def load_config(
    explicit_path: str | os.PathLike[str] | None = None,
    db_override: str | os.PathLike[str] | None = None,
) -> Config:
    """Read the config by the lookup order and apply `--db` / `$HARVESTER_DB`."""
    path = resolve_config_path(explicit_path)
    if path is None:
        config = Config(path=None, archive_path=Path("data/archive.db"))
    else:
        config = parse_config(_read_toml(path), path)
    db = db_override or os.environ.get("HARVESTER_DB")
    return replace(config, archive_path=Path(db)) if db else config


MAX_CONFIG_BYTES = 1_000_000  # a config is a few KB; a larger file is refused unparsed


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(path, "", f"larger than {MAX_CONFIG_BYTES} bytes: not a config")
    try:
        # The values' secrets are remembered by `parse_config`: a URL in a comment (the
        # shipped config's examples) is no secret, and masking its parts would mangle text.
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        remember_urls_in(raw.decode("utf-8", "replace"))  # its error may quote a line
        why = {RecursionError: "nested too deeply", UnicodeDecodeError: "not UTF-8 text"}
        raise ConfigError(path, "", f"not valid TOML: {why.get(type(exc), exc)}") from None


class _Table:
    """One TOML table being read, so every error can name its full key."""

    def __init__(self, data: object, path: Path, prefix: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, prefix, f"expected a table, got {type(data).__name__}")
        self.data, self.path, self.prefix = data, path, prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), reason)

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any) -> Any:
        self.seen.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if isinstance(value, bool) and bool not in kinds:
            value = None  # bool is an int in Python, never in a config file
        if not isinstance(value, kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise self.error(name, f"expected {wanted}, got {value!r}")
        return value

    def duration(self, name: str, default: _D, *, allow_zero: bool = False) -> float | _D:
        self.seen.add(name)
        if name not in self.data:
            return default
        return parse_duration(self.data[name], self.path, self.key(name), allow_zero=allow_zero)

    def strings(self, name: str, what: str) -> list[str] | None:
        """A list of non-blank strings (`what` names them in the error), None when absent."""
        values: list[Any] | None = self.get(name, list, None)
        if values is not None and not all(isinstance(v, str) and v.strip() for v in values):
            raise self.error(name, f"expected a list of {what}")
        return values

    def table(self, name: str) -> _Table:
        return _Table(self.get(name, dict, {}), self.path, self.key(name))

    def tables(self, name: str) -> Iterator[_Table]:
        """The entries of the array of tables `name`, each checked only when it is reached."""
        entries = self.get(name, list, [])
        return (_Table(raw, self.path, f"{self.key(name)}[{i}]") for i, raw in enumerate(entries))

    def refuse_unknown(self) -> None:
        for name in self.data:
            if name not in self.seen:
                raise self.error(name, "unknown key")


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """A validated Config from parsed TOML; relative paths resolve against the file's folder."""
    weak = url_only_secrets()
    _remember_urls(data)
    if url_only_secrets() > weak:
        logging.getLogger("harvester.config").warning(
            "%s: a password or token in a URL is short enough to be an ordinary word: it is"
            " masked inside URLs only; use a longer one",
            path,
        )
    top = _Table(data, path, "")
    archive = top.table("archive")
    archive_path = path.parent / archive.get("path", str, "../data/archive.db")  # unless absolute
    file_mode = _file_mode(archive)
    keep_polls = archive.duration("keep_polls", DEFAULT_KEEP_POLLS_S)
    if keep_polls < DAY_S:  # feed_health counts the last 24 hours poll by poll
        raise archive.error("keep_polls", f"must be 1d or more, got {keep_polls:g} seconds")
    archive.refuse_unknown()

    http = _parse_http(top.table("http"))
    site = top.table("site")
    base_url = site.get("base_url", str, SiteSettings.base_url).rstrip("/")
    _check_fetchable(base_url, site, "base_url")
    site.refuse_unknown()

    table = top.table("schedule")
    schedule = ScheduleSettings(
        interval=table.duration("interval", ScheduleSettings.interval),
        jitter=table.duration("jitter", ScheduleSettings.jitter, allow_zero=True),
        gone_after=table.duration("gone_after", ScheduleSettings.gone_after, allow_zero=True),
    )
    table.refuse_unknown()

    feed_tables = top.tables("feeds")
    notify = tuple(_parse_notify(entry) for entry in top.tables("notify"))
    first_of: dict[str, int] = {}
    for i, entry in enumerate(notify):
        if (first := first_of.setdefault(entry.url, i)) != i:
            raise ConfigError(path, f"notify[{i}].url", f"same target as notify[{first}]")
    notifications = _parse_notifications(top.table("notifications"))
    follow = _parse_follows(top.tables("follow"))
    top.refuse_unknown()
    feeds = _unique_names([_parse_feed(entry) for entry in feed_tables])
    _refuse_duplicate_feeds(feeds, path)
    return Config(
        path=path,
        archive_path=archive_path,
        archive_file_mode=file_mode,
        archive_keep_polls=keep_polls,
        http=http,
        site=SiteSettings(base_url=base_url),
        schedule=schedule,
        feeds=feeds,
        notify=notify,
        notifications=notifications,
        follow=follow,
    )


def _remember_urls(value: object) -> None:
    """Remember the secrets of every URL in the config, whatever key holds it."""
    if isinstance(value, str):
        remember_urls_in(value)
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            _remember_urls(item)


def _file_mode(table: _Table) -> int:
    """An octal permission string like "0600" or "0640"; never world-writable."""
    value = table.get("file_mode", str, "0600")
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777 or mode & 0o002 or not mode & 0o600 == 0o600:
        raise table.error(
            "file_mode", f'expected octal permissions like "0600" or "0640", got {value!r}'
        )
    return mode


def _parse_http(table: _Table) -> HttpSettings:
    defaults = HttpSettings()
    timeout = float(table.get("timeout", (int, float), defaults.timeout))
    max_bytes = table.get("max_bytes", int, defaults.max_bytes)
    retries = table.get("retries", int, defaults.retries)
    hosts = table.strings("allowed_hosts", "host names")
    settings = HttpSettings(
        user_agent=table.get("user_agent", str, defaults.user_agent),
        timeout=timeout,
        max_bytes=max_bytes,
        retries=retries,
        max_poll_time=table.duration("max_poll_time", defaults.max_poll_time),
        per_host=table.get("per_host", int, defaults.per_host),
        min_gap=table.duration("min_gap", defaults.min_gap, allow_zero=True),
        concurrency=table.get("concurrency", int, defaults.concurrency),
        allow_private=table.get("allow_private", bool, defaults.allow_private),
        allowed_hosts=None if hosts is None else tuple(h.lower() for h in hosts),
    )
    for name, value in (("timeout", timeout), ("max_bytes", max_bytes)):
        if value <= 0:
            raise table.error(name, f"must be positive, got {value!r}")
    for name, least in (("retries", 0), ("per_host", 1), ("concurrency", 1)):
        if (count := getattr(settings, name)) < least:
            raise table.error(name, f"must be {least} or more, got {count}")
    table.refuse_unknown()
    return settings


def _parse_feed(table: _Table) -> tuple[FeedConfig, bool]:
    """A feed entry, and whether its name was given (derived names may be made unique)."""
    raw_url = table.get("url", str, None)
    if raw_url is None:
        raise table.error("url", "missing: every feed needs a url")
    _check_fetchable(raw_url, table, "url")
    url = normalize_url(raw_url)
    name = table.get("name", str, None)
    feed = FeedConfig(
        url=url,
        name=name or default_feed_name(url),
        interval=table.duration("interval", None),
        enabled=table.get("enabled", bool, True),
    )
    table.refuse_unknown()
    return feed, bool(name)


def _parse_notify(table: _Table) -> NotifyConfig:
    url = table.get("url", str, None)
    if url is None:
        raise table.error("url", "missing: every [[notify]] needs an Apprise url")
    url = url.strip()
    remember_url(url)
    if (why := _apprise_problem(url)) is not None:
        raise table.error("url", f"{redact(url)}: {why}")
    series = table.strings("series", "series shortnames")
    match = _match_query(table)
    speakers = tuple(name.strip() for name in table.strings("speakers", "names") or [])
    default_kinds = list(DEFAULT_NOTIFY_KINDS)
    if match is not None or speakers:
        default_kinds.append("new")  # a target that follows words or people hears of new talks
    given = table.strings("kinds", "kinds of change")
    kinds = default_kinds if given is None else given
    unknown = [k for k in kinds if k not in NOTIFY_KINDS]
    if unknown:
        shown = ", ".join(sorted(NOTIFY_KINDS))
        raise table.error("kinds", f"unknown kind {unknown[0]!r} (one of: {shown})")
    if not kinds:
        raise table.error("kinds", "an empty list would never send anything")
    entry = NotifyConfig(
        url=url,
        series=None if series is None else frozenset(series),
        kinds=frozenset(kinds),
        upcoming_only=table.get("upcoming_only", bool, True),
        allow_private=table.get("allow_private", bool, False),
        match=match,
        speakers=speakers,
        digest=_digest(table),
        timezone=_timezone(table),
    )
    table.refuse_unknown()
    return entry


def _match_query(table: _Table) -> str | None:
    """`match` as given (the archive's search checks its syntax: `archive.search_problem`)."""
    query: str | None = table.get("match", str, None)
    if query is None:
        return None
    query = query.strip()
    if not query:
        raise table.error("match", "an empty query would match nothing")
    return query


def _digest(table: _Table) -> str | None:
    digest: str | None = table.get("digest", str, None)
    if digest not in (None, "weekly"):
        raise table.error("digest", f'expected "weekly", got {digest!r}')
    return digest


def _timezone(table: _Table) -> str:
    import zoneinfo

    name: str = table.get("timezone", str, "UTC")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise table.error("timezone", f"unknown time zone {name!r} (e.g. Europe/Paris)") from None
    return name


def _parse_follows(tables: Iterator[_Table]) -> tuple[FollowConfig, ...]:
    """`[[follow]]` entries: a topic id (as `harvester discover --topics` lists them) and
    maybe an institution's shortname; both must be names the site could have given."""
    follows: list[FollowConfig] = []
    for table in tables:
        topic = table.get("topic", str, None)
        institution = table.get("institution", str, None)
        table.refuse_unknown()
        for name, value in (("topic", topic), ("institution", institution)):
            if value is not None and not is_shortname(value):
                raise table.error(name, f"not a name the site uses: {value!r}")
        if topic is None:
            raise table.error("topic", "missing: every [[follow]] needs a topic")
        entry = FollowConfig(topic, institution)
        if entry in follows:
            raise ConfigError(table.path, table.prefix, f"same as follow[{follows.index(entry)}]")
        follows.append(entry)
    return tuple(follows)


def _apprise_problem(url: str) -> str | None:
    """None when Apprise can use `url`, else why not (without the URL)."""
    import apprise  # only a config with [[notify]] pays for importing it

    if "://" not in url:
        return "not an Apprise URL (expected scheme://...)"
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return "not an Apprise URL Apprise can use (unknown scheme or missing parts)"
    remember_url(plugin.url(privacy=False))  # type: ignore[no-untyped-call]  # as Apprise writes them
    return None


def _parse_notifications(table: _Table) -> NotificationSettings:
    defaults = NotificationSettings()
    max_attempts = table.get("max_attempts", int, defaults.max_attempts)
    if max_attempts < 1:
        raise table.error("max_attempts", f"must be 1 or more, got {max_attempts}")
    settings = NotificationSettings(
        max_attempts=max_attempts,
        backoff=table.duration("backoff", defaults.backoff, allow_zero=True),
        max_backoff=table.duration("max_backoff", defaults.max_backoff, allow_zero=True),
        timeout=table.duration("timeout", defaults.timeout),
    )
    table.refuse_unknown()
    return settings


def _unique_names(parsed: list[tuple[FeedConfig, bool]]) -> tuple[FeedConfig, ...]:
    """Derived names that collide (two personal feeds share a masked prefix) get -2, -3, …"""
    taken = {feed.name for feed, explicit in parsed if explicit}
    feeds = []
    for feed, explicit in parsed:
        name, n = feed.name, 1
        while not explicit and name in taken:
            n += 1
            name = f"{feed.name}-{n}"
        taken.add(name)
        feeds.append(feed if name == feed.name else replace(feed, name=name))
    return tuple(feeds)


def _check_fetchable(url: str, table: _Table, name: str) -> None:
    parts = split_url(url.strip())
    if parts is None:
        return  # unreadable: kept, so that its poll fails and says why (the others go on)
    if parts.scheme.lower() not in FETCHABLE_SCHEMES:
        shown = parts.scheme + ":" if parts.scheme else repr(url[:40])
        raise table.error(name, f"only http(s) and webcal feed URLs can be polled, not {shown}")
    if not parts.hostname:
        raise table.error(name, "the URL has no host")


def _refuse_duplicate_feeds(feeds: tuple[FeedConfig, ...], path: Path) -> None:
    first_url: dict[str, int] = {}
    first_name: dict[str, int] = {}
    for i, feed in enumerate(feeds):
        if (first := first_url.setdefault(feed.url, i)) != i:
            raise ConfigError(path, f"feeds[{i}].url", f"same feed as feeds[{first}]")
        if (first := first_name.setdefault(feed.name, i)) != i:
            raise ConfigError(
                path, f"feeds[{i}].name", f"name {feed.name!r} already used by feeds[{first}]"
            )
