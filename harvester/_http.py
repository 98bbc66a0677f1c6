"""Which URLs the harvester may fetch: the `UrlCheck` built from `[http]` settings.

A URL is refused (FetchError, before any request) when:

- its scheme is not http or https (webcal is already https after `normalize_url`);
- `[http] allowed_hosts` is set and the host is not one of them. The match is exact and
  case-insensitive (a trailing dot ignored); subdomains do not match, so list every host;
- `[http] allow_private` is false and the host is, or resolves to, any address that is not
  globally reachable: loopback, private, link-local, multicast, reserved, unspecified,
  shared (100.64/10)... IPv4 embedded in IPv6 (mapped `::ffff:a.b.c.d`, 6to4, NAT64) is
  judged by its IPv4 address. Every address the name resolves to must pass, not just one.

`fetch` runs the check on every hop of a redirect, so a public feed cannot send the
harvester into the local network.

Left open: DNS rebinding. The check resolves the name, then httpx resolves it again to
connect; a name whose answers change in between (TTL 0) can still reach a private address.
Closing that means connecting to the checked address itself (an httpcore network backend
that resolves, checks and connects in one step); feeds are configured by the archive's
owner, so the check guards against mistakes and redirects, not a hostile DNS server.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from harvester.config import HttpSettings
from harvester.errors import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Iterable[str]]
"""Host name → every address it resolves to; raises OSError when it does not resolve."""
Classifier = Callable[[IPAddress], str | None]
"""Address → why it may not be fetched ("a loopback address"), or None when it may."""

FETCHABLE_SCHEMES = frozenset({"http", "https"})
ALLOW_PRIVATE_HINT = "(set [http] allow_private = true to allow)"
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to, as the system resolver (and so httpx) sees it."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


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
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class UrlPolicy:
    """The `UrlCheck` of a client: call it with a URL; it returns, or raises FetchError.

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
        try:
            parsed = httpx.URL(url)  # the parser httpx connects with, so both see one host
        except httpx.InvalidURL as exc:
            raise FetchError(url, f"refused: not a valid URL ({exc})") from None
        if parsed.scheme not in FETCHABLE_SCHEMES:
            raise FetchError(url, f"refused: only http(s) URLs are fetched, not {parsed.scheme}:")
        host = parsed.host
        if not host:
            raise FetchError(url, "refused: the URL has no host")
        self._check_allowed_host(url, parsed)
        if not self.allow_private:
            self._check_addresses(url, host)

    def _check_allowed_host(self, url: str, parsed: httpx.URL) -> None:
        if self.allowed_hosts is None:
            return
        names = {_host_key(parsed.host), _host_key(parsed.raw_host.decode("ascii"))}
        if not names & self.allowed_hosts:
            raise FetchError(url, f"refused: {parsed.host} is not in [http] allowed_hosts")

    def _check_addresses(self, url: str, host: str) -> None:
        literal = _ip_literal(host)
        if literal is not None:
            problem = self.classify(literal)
            if problem:
                raise FetchError(url, f"refused: {host} is {problem} {ALLOW_PRIVATE_HINT}")
            return
        for text, address in self._resolve(url, host):
            problem = self.classify(address)
            if problem:
                raise FetchError(
                    url, f"refused: {host} resolves to {text}, {problem} {ALLOW_PRIVATE_HINT}"
                )

    def _resolve(self, url: str, host: str) -> list[tuple[str, IPAddress]]:
        """Each address as the resolver wrote it (shown in messages) and parsed."""
        try:
            found = [(a, ipaddress.ip_address(a)) for a in self.resolve(host)]
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            # As httpx's own failed lookup would be: a network error, worth a retry.
            raise FetchError(url, f"cannot resolve {host}: {reason}", retryable=True) from None
        if not found:
            raise FetchError(url, f"cannot resolve {host}: no addresses", retryable=True)
        return found


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host_key(host: str) -> str:
    return host.strip().rstrip(".").lower()


# ------------------------------------------------------------------------------------------
# Politeness towards each host: at most N requests in flight and a minimum gap between starts.
#
# One `HostLimiter` is shared by every thread of a sync (it lives in the client's fetch
# policy), so the limits hold across feeds, retries and redirect hops alike.
# ------------------------------------------------------------------------------------------


class HostLimiter:
    """Per-host semaphores plus a schedule of request start times.

    `min_gap` spaces the *starts* of requests to one host; a request waits for its turn
    after it has a slot, so a host never has more than `per_host` requests in flight.
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
            semaphore = self._slots.get(host)
            if semaphore is None:
                semaphore = self._slots[host] = threading.BoundedSemaphore(self.per_host)
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
