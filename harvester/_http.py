"""The URL policy and the one place it is enforced: the transport of every harvester client.

`UrlPolicy`, built from `[http]` settings, refuses a URL (FetchError, before any request)
when:

- it is not a URL httpx can parse (control characters, `http://0177.0.0.1/`, a missing
  `]`, a malformed IDNA label ...) or its port is out of range (the socket layer would
  quietly take 99999 modulo 65536);
- its scheme is not http or https (webcal is already https after `normalize_url`);
- `[http] allowed_hosts` is set and the host is not one of them. The match is exact and
  case-insensitive (a trailing dot ignored); subdomains do not match, so list every host;
- `[http] allow_private` is false and the host is, or resolves to, any address that is not
  globally reachable: loopback, private, link-local, multicast, reserved, unspecified,
  shared (100.64/10)... IPv4 embedded in IPv6 (mapped `::ffff:a.b.c.d`, 6to4, NAT64) is
  judged by its IPv4 address. Every address the name resolves to must pass, not just one.

Where it is enforced: `GuardedTransport`. httpx hands every request to its transport, each
redirect hop included, whoever sends it (`fetch`, the site API, anything else holding the
client), so the check cannot be skipped by a caller. A guard without a policy refuses
every request. The guard checks the URL (scheme, host, allowed hosts, IP literals), and
its connection pool connects through `PinnedBackend`: the host name is resolved once, with
the policy's resolver, every address is judged, and the socket goes to a vetted address
itself. There is no second lookup, so a name whose answers change between lookups (DNS
rebinding, TTL 0) cannot slip a private address past the check. TLS (SNI, certificate
check) and the Host header still use the URL's host name: httpcore takes them from the
request, not from the address connected to.

Proxies are not supported (a proxy would make the connection, unchecked): clients built
on this transport ignore the proxy environment variables.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
import ssl
import threading
import time
import typing
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpcore
import httpx

from harvester.config import HttpSettings
from harvester.errors import FetchError
from harvester.redact import redact

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Iterable[str]]
"""Host name → every address it resolves to; raises OSError when it does not resolve."""
Classifier = Callable[[IPAddress], str | None]
"""Address → why it may not be fetched ("a loopback address"), or None when it may."""
UrlCheck = Callable[[str], None]
"""Called with every URL before it is requested (redirect targets too); raises
FetchError to refuse it. `UrlPolicy` is the real one; any other callable is a test seam."""

FETCHABLE_SCHEMES = frozenset({"http", "https"})
ALLOW_PRIVATE_HINT = "(set [http] allow_private = true to allow)"
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
NO_POLICY = "refused: this client has no URL policy (build it with harvester.fetch.make_client)"

#: What parsing a URL can raise: httpx's own error, and IDNA's (a UnicodeError) for hosts.
URL_ERRORS = (httpx.InvalidURL, UnicodeError)


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to, as the system resolver sees it."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_url(url: str) -> httpx.URL:
    """`url` as httpx will send it; FetchError (not retryable) when httpx cannot parse it."""
    try:
        parsed = httpx.URL(url)
        parsed.host  # noqa: B018  (decodes an IDNA host, which can fail on its own)
    except URL_ERRORS as exc:
        raise FetchError(url, f"refused: not a valid URL ({_url_error(exc)})") from None
    if parsed.port is not None and not 0 < parsed.port < 65536:  # httpx lets 99999 through
        raise FetchError(url, f"refused: not a valid URL (port {parsed.port} out of range)")
    return parsed


def _url_error(exc: Exception) -> str:
    """The parser's complaint on one line, control characters escaped, secrets masked."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(exc))
    return redact(text).rstrip(".")


def address_problem(address: IPAddress) -> str | None:
    """Why `address` is not one the harvester may connect to, or None for a global one.

    `is_global` alone is not enough: Python counts multicast as global, for one.
    """
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return address_problem(embedded)
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a globally reachable address"),
    )
    return next((problem for refused, problem in checks if refused), None)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.ipv4_mapped or address.sixtofour


class AddressRefusedError(Exception):
    """The policy refused where a connection would go (raised by `PinnedBackend`).

    `unresolved`: the host name did not resolve, the one refusal worth a retry (as a failed
    lookup by httpx itself would be: a network error; see `UnresolvedHostError`).
    """

    def __init__(self, reason: str, *, unresolved: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unresolved = unresolved

    def as_fetch_error(self, url: str) -> FetchError:
        if self.unresolved:
            return UnresolvedHostError(url, self.reason, retryable=True)
        return FetchError(url, self.reason)


class UnresolvedHostError(FetchError):
    """The feed's host name did not resolve. A network failure like any other (retryable:
    the next poll tries again), but one the next seconds do not cure: offline, or a name
    that does not exist, so `fetch` does not retry it within the poll."""


@dataclass(frozen=True)
class UrlPolicy:
    """The URL policy of a client. Called with a URL, it returns or raises FetchError.

    The transport splits the call in two: `check_target` on each request (no DNS) and
    `connect_addresses` where the connection is made (the one lookup). Calling the policy
    runs both, for callers that want the verdict without a request.

    `resolve` and `classify` are seams for tests (no network, or a local server that
    counts as public); the defaults are the system resolver and `address_problem`.
    """

    allow_private: bool = False
    allowed_hosts: frozenset[str] | None = None
    resolve: Resolver = resolve_host
    classify: Classifier = address_problem

    @classmethod
    def from_settings(cls, settings: HttpSettings) -> UrlPolicy:
        hosts = settings.allowed_hosts
        return cls(
            allow_private=settings.allow_private,
            allowed_hosts=None if hosts is None else frozenset(_host_key(h) for h in hosts),
        )

    def __call__(self, url: str) -> None:
        host = self.check_target(url).host
        if self.allow_private:
            return  # nothing more to judge without connecting (not even resolved)
        try:
            self.connect_addresses(host)
        except AddressRefusedError as exc:
            raise exc.as_fetch_error(url) from None

    def check_target(self, url: str) -> httpx.URL:
        """Everything but the DNS lookup: parse, scheme, allowed hosts, an IP literal host."""
        parsed = parse_url(url)  # the parser httpx connects with, so both see one host
        if parsed.scheme not in FETCHABLE_SCHEMES:
            raise FetchError(url, f"refused: only http(s) URLs are fetched, not {parsed.scheme}:")
        host = parsed.host
        if not host:
            raise FetchError(url, "refused: the URL has no host")
        self._check_allowed_host(url, parsed)
        if refused := self._literal_refused(host):
            raise FetchError(url, refused)
        return parsed

    def connect_addresses(self, host: str) -> list[str]:
        """The addresses a connection to `host` may go to: resolved once, each one judged.

        Raises AddressRefusedError when the name does not resolve or, unless private hosts are
        allowed, when any of its addresses is not globally reachable.
        """
        if refused := self._literal_refused(host):
            raise AddressRefusedError(refused)
        if (literal := _ip_literal(host)) is not None:
            return [str(literal)]
        found = self._resolve(host)
        if not self.allow_private:
            for text, address in found:
                problem = self.classify(address)
                if problem:
                    raise AddressRefusedError(
                        f"refused: {host} resolves to {text}, {problem} {ALLOW_PRIVATE_HINT}"
                    )
        return list(dict.fromkeys(str(address) for _, address in found))

    def _literal_refused(self, host: str) -> str | None:
        """Why the policy refuses `host` if it is an IP address, else None."""
        literal = _ip_literal(host)
        problem = None if literal is None or self.allow_private else self.classify(literal)
        return problem and f"refused: {host} is {problem} {ALLOW_PRIVATE_HINT}"

    def _check_allowed_host(self, url: str, parsed: httpx.URL) -> None:
        if self.allowed_hosts is None:
            return
        names = {_host_key(parsed.host), _host_key(parsed.raw_host.decode("ascii"))}
        if not names & self.allowed_hosts:
            raise FetchError(url, f"refused: {parsed.host} is not in [http] allowed_hosts")

    def _resolve(self, host: str) -> list[tuple[str, IPAddress]]:
        """Each address as the resolver wrote it (shown in messages) and parsed."""
        try:
            found = [(a, ipaddress.ip_address(a)) for a in _resolve_in_time(self.resolve, host)]
        except (OSError, UnicodeError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise AddressRefusedError(f"cannot resolve {host}: {reason}", unresolved=True) from None
        if not found:
            raise AddressRefusedError(f"cannot resolve {host}: no addresses", unresolved=True)
        return found


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host_key(host: str) -> str:
    return host.strip().rstrip(".").lower()


# ------------------------------------------------------------------------------------------
# Enforcement: the transport every harvester client sends through.
# ------------------------------------------------------------------------------------------


class PinnedBackend(httpcore.SyncBackend):
    """Connects only to addresses the policy vetted, from one lookup per connection."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.policy.connect_addresses(host)  # raises AddressRefusedError
        failure: Exception | None = None
        for address in addresses:  # in the resolver's order, as socket.create_connection
            try:
                capped = _capped(timeout, httpcore.ConnectTimeout)
                stream = super().connect_tcp(address, port, capped, local_address, socket_options)
                return DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # connect_addresses never returns an empty list
        raise failure


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport, with a connection pool that connects through `PinnedBackend`."""

    def __init__(
        self, policy: UrlPolicy, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        # One SSL context for both pools: loading the CA bundle costs about 40 ms.
        ssl_context = ssl_context or httpx.create_ssl_context()
        super().__init__(limits=limits, verify=ssl_context)
        # httpx builds its pool without a way to pass a network backend: build our own,
        # as httpx does for a transport without a proxy.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(policy),
        )


class UrlRefusedError(httpx.RequestError):
    """The URL policy refused a request (or a redirect hop): an httpx error, as callers of
    an httpx client expect. `error` is the policy's FetchError, `url` the refused URL."""

    def __init__(self, error: FetchError, url: str, *, request: httpx.Request) -> None:
        super().__init__(str(error), request=request)
        self.error = error
        self.url = redact(url)


class GuardedTransport(httpx.BaseTransport):
    """Every request through `check` first; with no check, every request is refused.

    With a `UrlPolicy` and no `inner` transport, connections go through `PinnedTransport`,
    so the DNS half of the check happens where the socket is opened. Given another
    `inner` transport (a test's), the policy's whole check runs on each request instead.
    Any other `check` callable (a test seam) runs on each request, and the connection
    goes through httpx's own transport.
    """

    def __init__(
        self,
        check: UrlCheck | None,
        inner: httpx.BaseTransport | None = None,
        *,
        limits: httpx.Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        limits = limits or httpx.Limits()
        self._check: Callable[[str], object] | None = check
        if inner is None and isinstance(check, UrlPolicy):
            inner = PinnedTransport(check, limits, ssl_context)
            self._check = check.check_target
        elif inner is None and check is not None:
            inner = httpx.HTTPTransport(limits=limits, verify=ssl_context or True)
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        try:
            if self._check is None or self.inner is None:
                raise FetchError(url, NO_POLICY)
            self._check(url)
            return self.inner.handle_request(request)
        except FetchError as exc:
            raise UrlRefusedError(exc, url, request=request) from None
        except AddressRefusedError as exc:
            raise UrlRefusedError(exc.as_fetch_error(url), url, request=request) from None

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


# ------------------------------------------------------------------------------------------
# One wall-clock deadline for everything a request waits on: the DNS lookup, the connection,
# TLS, each read (headers, 1xx answers, the body) and each write. httpx's timeouts bound
# each wait alone, so a server that sends a byte every half second never trips them.
# ------------------------------------------------------------------------------------------

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "harvester_deadline", default=None
)


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Inside, this thread's requests wait in all at most `seconds` (none: no limit)."""
    token = _DEADLINE.set(time.monotonic() + seconds if seconds else None)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def out_of_time() -> bool:
    """Whether the current `time_limit` is spent."""
    deadline = _DEADLINE.get()
    return deadline is not None and time.monotonic() >= deadline


def _capped(timeout: float | None, timed_out: type[Exception]) -> float | None:
    """`timeout`, cut to what is left of the current `time_limit`; raises when none is."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise timed_out("the time limit is spent")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends by the current `time_limit`."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _capped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _capped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self.inner.start_tls(ssl_context, server_hostname, capped))

    def get_extra_info(self, info: str) -> typing.Any:
        return self.inner.get_extra_info(info)


def _resolve_in_time(resolve: Resolver, host: str) -> list[str]:
    """`resolve(host)`, given up when the current `time_limit` is spent (the system
    resolver has no timeout of its own: it runs in a thread that is left behind)."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return list(resolve(host))
    found: list[list[str] | BaseException] = []

    def lookup() -> None:
        try:
            found.append(list(resolve(host)))
        except BaseException as exc:  # handed to the caller's thread
            found.append(exc)

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(max(deadline - time.monotonic(), 0.0))
    if not found:
        raise OSError("no answer within the time limit")
    if isinstance(found[0], BaseException):
        raise found[0]
    return found[0]


def read_limited(
    url: str,
    response: httpx.Response,
    max_bytes: int,
    on_chunk: Callable[[], None] | None = None,
) -> bytes:
    """The body of a streamed response, decoded (gzip or deflate, once), refused with a
    FetchError as soon as it, or its decoded form, passes `max_bytes`: a small answer that
    inflates to gigabytes (a bomb, `gzip, gzip`) never reaches memory. `on_chunk` runs
    before each chunk is taken (a caller's own time check)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(url, f"body of {declared} bytes is over the limit of {max_bytes}")
    too_big = f"body is over the limit of {max_bytes} bytes (decoded)"
    if response.is_stream_consumed:  # an in-memory response (httpx.MockTransport): decoded
        if len(response.content) > max_bytes:
            raise FetchError(url, too_big)
        return response.content
    inflater = None if encoding in ("", "identity") else _Inflater(url, encoding)
    chunks: list[bytes] = []
    size = raw_size = 0
    for raw in response.iter_raw():
        if on_chunk is not None:
            on_chunk()
        raw_size += len(raw)
        if raw_size > max_bytes:
            raise FetchError(url, f"body is over the limit of {max_bytes} bytes")
        for piece in inflater.feed(raw, max_bytes - size + 1) if inflater else (raw,):
            size += len(piece)
            if size > max_bytes:
                raise FetchError(url, too_big)
            chunks.append(piece)
    if inflater:
        chunks.append(inflater.finish(max_bytes - size + 1))
        if size + len(chunks[-1]) > max_bytes:
            raise FetchError(url, too_big)
    return b"".join(chunks)


class _Inflater:
    """gzip or deflate, inflated piece by piece with `max_length`, so output stays bounded."""

    def __init__(self, url: str, encoding: str) -> None:
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise FetchError(url, f"unsupported Content-Encoding {encoding!r}")
        self.url = url
        self.encoding = encoding
        self.may_be_raw = encoding == "deflate"  # until its first piece is inflated
        self.inflater = zlib.decompressobj(zlib.MAX_WBITS + (0 if self.may_be_raw else 16))

    def feed(self, data: bytes, room: int) -> list[bytes]:
        """Inflate `data`; never more than `room` bytes out in total (the caller refuses then)."""
        pieces = []
        try:
            while data and room > 0 and not self.inflater.eof:
                piece = self._decompress(data, room)
                data = self.inflater.unconsumed_tail
                room -= len(piece)
                pieces.append(piece)
        except zlib.error as exc:
            raise FetchError(self.url, f"corrupt {self.encoding} body: {exc}") from None
        return pieces

    def finish(self, room: int) -> bytes:
        try:
            return self.inflater.flush(max(room, 1))
        except zlib.error as exc:
            raise FetchError(self.url, f"corrupt {self.encoding} body: {exc}") from None

    def _decompress(self, data: bytes, room: int) -> bytes:
        if not self.may_be_raw:
            return self.inflater.decompress(data, room)
        # "deflate" is meant to be zlib-wrapped, but some servers send a raw deflate stream.
        self.may_be_raw = False
        try:
            return self.inflater.decompress(data, room)
        except zlib.error:
            self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.inflater.decompress(data, room)


class HostLimiter:
    """Politeness towards each host: at most `per_host` requests in flight, and `min_gap`
    between the *starts* of requests to one host (a request waits for its turn after it
    has a slot). One is shared by every thread of a sync (it lives in the client's fetch
    policy), so the limits hold across feeds, retries and redirect hops alike.
    """

    def __init__(
        self,
        per_host: int = 2,
        min_gap: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_host < 1:
            raise ValueError(f"per_host must be at least 1, got {per_host}")
        self.per_host = per_host
        self.min_gap = max(min_gap, 0.0)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next_start: dict[str, float] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of the host's slots for the duration of the block (request + body)."""
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self.per_host))
        with semaphore:
            self._wait_for_turn(host)
            yield

    def _wait_for_turn(self, host: str) -> None:
        if not self.min_gap:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start.get(host, now))
            self._next_start[host] = start + self.min_gap
        if start > now:
            self._sleep(start - now)
