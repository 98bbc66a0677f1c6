"""Every secret the harvester was given, and the one function that masks them: `redact`.

What is remembered, as it is learned:

- every URL in the config file's text, whatever the key (`remember_urls_in`, called when
  a config is read, before it is validated), and every URL on the command line;
- from each such URL (`remember_url`):
  - a personal-feed token, the last part of a `/user/ics/<token>` path;
  - the password of a `user:password@` part;
  - the value of a query parameter whose name reads as a secret (a word of the name, split
    at anything but letters and digits, is one of `SECRET_PARAM_WORDS`, e.g. `token`,
    `api_key`, `X-Auth`), or whose value looks like a token (20 or more letters, digits,
    `-` and `_`, with both letters and digits), whatever the name;
  - for a notification URL (any scheme but http(s), webcal(s) and file): the whole URL
    after `scheme://`, its password, and every piece of it (userinfo, host, path segments,
    query values) that looks like a token (8+ characters mixing letters and digits, or 16+
    characters), except host names with a dot.
- anything passed to `remember` directly.

`redact` masks each remembered secret wherever it appears in a text (as given, URL-encoded
or JSON-escaped), plus any personal-feed token in `/user/ics/<token>` form, remembered or
not. A token shows as its first 4 characters and `…`; a password, or any secret shorter
than 16 characters, as `…` alone. Every output goes through `redact`: the CLI's stdout
and stderr (`harvester.cli`), the log renderer's final string (`harvester.logs`), and text
stored in the archive.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, quote, unquote, urlsplit

# A personal token also appears in error messages from httpx, so it is masked inside any text.
_PERSONAL_IN_TEXT = re.compile(r"(/user/ics/)([^/?#\s'\"]{4})[^/?#\s'\"]*")
_PERSONAL_PATH = re.compile(r"/user/ics/([^/?#]+)")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_LONGEST_SCHEME = 32
_URL_STOPS = frozenset("\"'<>`")
_TOKEN_LIKE = re.compile(r"(?=[A-Za-z0-9_-]*[A-Za-z])(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}")
_PIECES = re.compile(r"[/@:?&=#,;]+")

FEED_SCHEMES = frozenset({"http", "https", "webcal", "webcals", "file"})
SECRET_PARAM_WORDS = frozenset(
    {
        "token",
        "key",
        "apikey",
        "secret",
        "password",
        "passwd",
        "pass",
        "pwd",
        "auth",
        "authorization",
        "sig",
        "signature",
        "session",
        "sessionid",
        "sid",
        "credential",
        "credentials",
        "accesstoken",
    }
)
MIN_SECRET = 4  # shorter strings are ignored: masking them would mangle ordinary text
SHOWN_FROM = 16  # secrets at least this long keep their first 4 characters when masked
# A secret shorter than this, or this long with letters only, could be a word of ordinary
# text ("pass" in "passing"): it is masked only inside URLs, where it stands as a secret.
ANYWHERE_FROM = 8
WORDS_ANYWHERE_FROM = 12

_lock = threading.Lock()
_known: dict[str, str] = {}  # every form of every secret → what replaces it
_in_urls: dict[str, str] = {}  # the same, for secrets masked only inside URLs
_pattern: re.Pattern[str] | None = None  # made from _known by the first `redact` after a change
_stale = False


def remember(secret: str, *, show_start: bool = True) -> bool:
    """Mask `secret` from now on (too short a string is ignored): wherever it appears, or,
    for one that could be an ordinary word, only inside URLs. Whether it is masked
    everywhere.

    `show_start=False` (passwords) masks it as `…` whatever its length.
    """
    global _stale
    if len(secret) < MIN_SECRET:
        return False
    anywhere = masks_anywhere(secret)
    shown = f"{secret[:4]}…" if show_start and len(secret) >= SHOWN_FROM else "…"
    forms = {secret, unquote(secret), quote(secret, safe=""), json.dumps(secret)[1:-1]}
    with _lock:
        for form in forms:
            if len(form) >= MIN_SECRET and form not in _known:
                (_known if anywhere else _in_urls)[form] = shown
                _stale = _stale or anywhere
    return anywhere


def masks_anywhere(secret: str) -> bool:
    """Whether `secret` is safe to mask in any text: long, or not a word of letters."""
    if len(secret) >= WORDS_ANYWHERE_FROM:
        return True
    return len(secret) >= ANYWHERE_FROM and not secret.isalpha()


def url_only_secrets() -> int:
    """How many forms of secrets are masked only inside URLs (for the config's warning)."""
    return len(_in_urls)


def remember_url(url: str) -> None:
    """Remember the secrets a URL carries (see the module's docstring for the rule)."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        return
    if scheme.lower() not in FEED_SCHEMES:
        _remember_notification_url(rest)
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if match := _PERSONAL_PATH.search(parts.path):
        remember(match[1])
    userinfo, at, _host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        remember(userinfo.split(":", 1)[1], show_start=False)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if _secret_param(name, value):
            remember(value)


def _remember_notification_url(rest: str) -> None:
    """A notification URL is a credential as a whole: remember it and its pieces."""
    remember(rest)
    userinfo, at, _ = rest.partition("/")[0].rpartition("@")
    if at and ":" in userinfo:
        remember(userinfo.split(":", 1)[1], show_start=False)
    for piece in _PIECES.split(rest):
        piece = piece.strip()
        if _looks_secret(piece) and not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\.?", piece):
            remember(piece)


def _looks_secret(piece: str) -> bool:
    # Apprise puts tokens anywhere (host, path, query); words like `notify` or `json` are
    # not secrets, and masking them would mangle ordinary output.
    has_digit = any(c.isdigit() for c in piece)
    has_alpha = any(c.isalpha() for c in piece)
    return (len(piece) >= 8 and has_digit and has_alpha) or len(piece) >= 16


def remember_urls_in(text: str) -> None:
    """Remember the secrets of every URL found in `text` (a config file, an argument)."""
    for url in urls_in(text):
        remember_url(url.rstrip(".,;)]}"))


def urls_in(text: str) -> Iterator[str]:
    """Every `scheme://…` in `text`, in one pass (no backtracking pattern: a long run of
    letters with no `://` in it would cost time quadratic in its length)."""
    at = text.find("://")
    while at >= 0:
        start = at
        while start > 0 and at - start < _LONGEST_SCHEME and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        while start < at and not (text[start].isascii() and text[start].isalpha()):
            start += 1
        end = at + 3
        while end < len(text) and not (text[end] in _URL_STOPS or text[end].isspace()):
            end += 1
        if start < at and end > at + 3:
            yield text[start:end]
        at = text.find("://", max(end, at + 3))


def redact(text: str) -> str:
    """`text` with every known secret and every personal-feed token masked."""
    text = _PERSONAL_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}…", text)
    pattern, known = _current_pattern(), _known
    if pattern is not None:
        text = pattern.sub(lambda m: known[m.group(0)], text)
    if _in_urls:
        text = _in_each_url(text, _mask_url_only_secrets)
    return text


def _in_each_url(text: str, mask: Callable[[str], str]) -> str:
    """`text` with each URL in it replaced by `mask(url)`."""
    for url in set(urls_in(text)):
        masked = mask(url)
        if masked != url:
            text = text.replace(url, masked)
    return text


def _mask_url_only_secrets(url: str) -> str:
    for form in sorted(_in_urls, key=len, reverse=True):
        url = url.replace(form, _in_urls[form])
    return url


def redact_query_secrets(text: str) -> str:
    """`text` with the secret-looking query values of every URL in it masked, remembered or
    not (a token a server put in a redirect's Location, say), as `remember_url` judges
    them. For log lines: a feed's own text keeps its links as they are."""
    return _in_each_url(text, _mask_query_secrets)


def _mask_query_secrets(url: str) -> str:
    query = url.partition("?")[2].partition("#")[0]
    for name, value in parse_qsl(query, keep_blank_values=False):
        if _secret_param(name, value):
            url = url.replace(value, "…").replace(quote(value, safe=""), "…")
    return url


def _secret_param(name: str, value: str) -> bool:
    words = {w for w in re.split(r"[^a-z0-9]+", name.lower()) if w}
    words.add(re.sub(r"[^a-z0-9]+", "", name.lower()))
    return len(value) >= MIN_SECRET and bool(
        words & SECRET_PARAM_WORDS or _TOKEN_LIKE.fullmatch(value)
    )


def _current_pattern() -> re.Pattern[str] | None:
    """One alternation of every known form, longest first: made once per change."""
    global _pattern, _stale
    if _stale:
        with _lock:
            ordered = sorted(_known, key=len, reverse=True)
            _pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            _stale = False
    return _pattern


def forget_all() -> None:
    """Forget every remembered secret (for tests: one process runs many configs)."""
    global _pattern, _stale
    with _lock:
        _known.clear()
        _in_urls.clear()
        _pattern = None
        _stale = False


# What a terminal would act on instead of showing: C0 and C1 controls (ESC sequences, CR,
# BEL, ...), DEL, and the bidirectional overrides that reorder what is shown.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """`text` with each control character written out as an escape, e.g. ESC as `\\x1b`."""
    return _UNSAFE.sub(lambda match: repr(match.group())[1:-1], text)
