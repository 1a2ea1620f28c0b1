"""Outbound HTTP that cannot be turned against the service's own network (SSRF).

Every address the service connects to for a URL it was given (a recording's URL from Africa's
Talking, a client's webhook) passes one ``EgressPolicy``: in production only public addresses, plus
the networks an operator opens; in development and tests anything, loopback included.

A URL is checked twice: when it is given (``check_url``: scheme, no credentials, every address its
host resolves to) and again when a connection is opened (``GuardedBackend``, the network backend of
every client ``make_client`` builds): the host is resolved once more, every answer is checked, and the
socket is connected to one of those checked addresses, never to the name. A DNS answer that changes
between the two (rebinding) and every redirect hop meet the same check before any packet is sent.

Every request has a deadline on the wall clock (``make_client``'s ``deadline``), covering
connecting, sending, the status line and headers, and the body: each wait on the socket is cut to
what is left of it, so a peer that trickles its answer a byte at a time holds nothing past it.

``download`` streams a body into a file within a size cap and timeouts, and says what it got.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import ipaddress
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import BinaryIO

import httpcore
import httpx

from ..exceptions import (
    BadStatus,
    LengthMismatch,
    NetworkError,
    TimedOut,
    TooLarge,
    TooManyRedirects,
    UnsafeURL,
)

# Who is asking, for the logs of the servers asked; nothing of the service's own credentials.
USER_AGENT = "recordings-service"
MAX_REDIRECTS = 5
# A redirect's body is read (and dropped) by httpx before the next hop: never more than this of it.
MAX_REDIRECT_BODY = 64 * 1024
# The wall-clock bound of one exchange (connecting to the body's last byte) when none is given.
DEADLINE = 60.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 forms that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052; IPv4-translated,
# RFC 2765): each reaches that IPv4 address, so it is the one judged.
_EMBEDDING_IPV4 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::ffff:0:0:0/96"))
# IPv6 networks that are no public destination, though Python's ``is_global`` may say they are:
# IPv4-compatible addresses (deprecated, RFC 4291), local-use NAT64 (RFC 8215), site-local (RFC 3879).
_NOT_PUBLIC_IPV6 = (
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("fec0::/10"),
)


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses outbound connections may reach.

    Public (globally routable) addresses always; every other address (private, loopback, link-local,
    shared, reserved, multicast) only with ``allow_private`` or when inside ``allowed_networks``.
    """

    allow_private: bool = False
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def from_networks(cls, allow_private: bool, cidrs: Iterable[str]) -> EgressPolicy:
        """Build a policy from CIDR strings; ValueError names one that is not a network."""
        return cls(allow_private, tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs))

    @classmethod
    def from_config(cls, config: Mapping) -> EgressPolicy:
        """The policy an app's settings ask for: ``EGRESS_ALLOW_PRIVATE``, ``EGRESS_ALLOWED_NETWORKS``."""
        return cls.from_networks(config["EGRESS_ALLOW_PRIVATE"], config["EGRESS_ALLOWED_NETWORKS"])

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be reached (``None`` when it may)."""
        if any(address in network for network in self.allowed_networks):
            return None
        if self.allow_private:
            return None
        for judged in _judged_addresses(address):
            if judged.is_multicast:
                return "a multicast address"
            if not judged.is_global or any(judged in network for network in _NOT_PUBLIC_IPV6):
                return _describe(judged)
        return None

    def check_address(self, host: str, address: Address) -> None:
        """Raise UnsafeURL when ``address`` (one of ``host``'s) may not be reached."""
        reason = self.refusal(address)
        if reason is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            raise UnsafeURL(f"{shown} is {reason}: outbound connections there are not allowed")


PRODUCTION_POLICY = EgressPolicy(allow_private=False)
DEVELOPMENT_POLICY = EgressPolicy(allow_private=True)


def _judged_addresses(address: Address) -> list[Address]:
    # An IPv6 address that carries IPv4 ones (mapped, translated, NAT64, 6to4, Teredo's server and
    # client) reaches those IPv4 addresses too.
    judged: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if any(address in network for network in _EMBEDDING_IPV4):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        judged.extend(inner for inner in embedded if inner is not None)
    return judged


def _describe(address: Address) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_private:
        return "a private address"
    return "not a public address"


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (itself when it is an address); NetworkError if none."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise NetworkError(f"{host} does not resolve: {error}") from None
    addresses: list[Address] = []
    for _family, _type, _proto, _canonname, sockaddr in answers:
        # An IPv6 link-local answer carries its zone ("fe80::1%eth0"): the address is before it.
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise NetworkError(f"{host} does not resolve")
    return addresses


def _check_form(url: httpx.URL) -> None:
    # What can be known of a URL without the network: the scheme, credentials, a host.
    if url.scheme not in ("http", "https"):
        raise UnsafeURL(f"the scheme {url.scheme!r} is not http or https")
    if url.userinfo:
        raise UnsafeURL("the URL carries credentials; the service sends none")
    if not url.host:
        raise UnsafeURL("the URL names no host")


def _parse(url: str | httpx.URL) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise UnsafeURL(f"not a URL: {error}") from None


def check_url(url: str | httpx.URL, policy: EgressPolicy) -> httpx.URL:
    """Return ``url`` parsed when the service may fetch it under ``policy``.

    Raises UnsafeURL for a scheme other than http(s), credentials in the URL, or a host any of whose
    addresses the policy refuses; NetworkError when the host does not resolve.
    """
    parsed = _parse(url)
    _check_form(parsed)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    for address in resolve(parsed.host, port):
        policy.check_address(parsed.host, address)
    return parsed


# When the exchange under way in this thread must end (time.monotonic()), if it has a deadline.
_ends_at: ContextVar[float | None] = ContextVar("egress_ends_at", default=None)


@contextmanager
def bounded(seconds: float | None) -> Iterator[None]:
    """Bound every outbound wait inside the block to ``seconds`` from now (and to any outer deadline)."""
    if seconds is None:
        yield
        return
    ends = time.monotonic() + seconds
    outer = _ends_at.get()
    token = _ends_at.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _ends_at.reset(token)


def _left(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    # A socket wait: its own timeout, cut to what is left of the deadline; ``expired`` once none is.
    ends = _ends_at.get()
    if ends is None:
        return timeout
    left = ends - time.monotonic()
    if left <= 0:
        raise expired("the exchange ran past its deadline")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection's socket stream whose every read and write ends by the deadline (``_left``)."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the policy allows.

    httpcore asks its network backend for every new connection (each redirect hop, each reconnect)
    with the URL's host name. This backend resolves the name itself, refuses it when any answer is
    refused (before a socket is opened), and connects to the checked address: the one it connects to
    is the one it checked, whatever a resolver answers the next time.
    """

    def __init__(self, policy: EgressPolicy):
        self.policy = policy

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolve(host, port)
        except NetworkError as error:
            raise httpcore.ConnectError(str(error)) from None
        for address in addresses:
            self.policy.check_address(host, address)
        last_error: Exception | None = None
        for address in addresses:
            try:
                stream = super().connect_tcp(
                    str(address), port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
                )
                return _DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None
        raise last_error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise UnsafeURL("connections through Unix sockets are not allowed")


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with its connection pool on a ``GuardedBackend``.

    httpx.HTTPTransport does not take a network backend, so its pool is rebuilt with one (httpcore's
    own public ConnectionPool argument); the rest of the transport (request mapping, exception
    mapping, closing) is httpx's. No proxy: a proxy would be the address connected to.
    """

    def __init__(self, policy: EgressPolicy, limits: httpx.Limits | None = None):
        limits = limits or httpx.Limits(max_connections=10, max_keepalive_connections=5)
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


def _no_cookies() -> http.cookiejar.CookieJar:
    # A jar whose policy accepts no domain: Set-Cookie is never kept, so nothing is ever sent back.
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class _CappedStream(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, limit: int):
        self._stream = stream
        self._limit = limit

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._stream:
            seen += len(chunk)
            if seen > self._limit:
                raise TooLarge(self._limit)
            yield chunk

    def close(self) -> None:
        self._stream.close()


class _BoundedBody(httpx.SyncByteStream):
    """A response's body read within the deadline its request had."""

    def __init__(self, stream: httpx.SyncByteStream, ends: float):
        self._stream = stream
        self._ends = ends

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._stream)
        while True:
            token = _ends_at.set(self._ends)
            try:
                chunk = next(chunks, None)
            finally:
                _ends_at.reset(token)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._stream.close()


class _BoundedClient(httpx.Client):
    """An httpx client each of whose requests (redirects and body included) ends by ``deadline`` s."""

    def __init__(self, *, deadline: float | None, **options):
        super().__init__(**options)
        self.deadline = deadline

    def send(self, request: httpx.Request, *, stream: bool = False, **options) -> httpx.Response:
        with bounded(self.deadline):
            ends = _ends_at.get()
            response = super().send(request, stream=stream, **options)
        if stream and ends is not None:
            response.stream = _BoundedBody(response.stream, ends)
        return response


def make_client(
    policy: EgressPolicy,
    *,
    timeout: float | httpx.Timeout = 10.0,
    deadline: float | None = DEADLINE,
    follow_redirects: bool = True,
    max_redirects: int = MAX_REDIRECTS,
) -> httpx.Client:
    """Build an httpx client for URLs the service was given, every connection checked against ``policy``.

    The client has:

    - ``timeout`` on connect, read, write and pool waits;
    - ``deadline`` (seconds, or None for none) on each request whole, from connecting to the body's
      last byte, redirects included (resolving a name is not cut short);
    - redirects followed, each hop's URL and connection checked;
    - no cookie kept between requests, and no credentials, proxy or ``.netrc`` from the environment;
    - a User-Agent naming the service.

    Close it, or use it in ``with``.
    """

    def check_hop(request: httpx.Request) -> None:
        _check_form(request.url)
        if request.url.host and _is_address(request.url.host):
            policy.check_address(request.url.host, ipaddress.ip_address(request.url.host))

    def cap_redirect_body(response: httpx.Response) -> None:
        # httpx reads a redirect's body before following it: a huge one must not fill the memory.
        if response.has_redirect_location:
            response.stream = _CappedStream(response.stream, MAX_REDIRECT_BODY)

    return _BoundedClient(
        deadline=deadline,
        transport=GuardedTransport(policy),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,
        cookies=_no_cookies(),
        headers={"User-Agent": USER_AGENT},
        event_hooks={"request": [check_hop], "response": [cap_redirect_body]},
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Downloaded:
    """What ``download`` wrote: its size and SHA-256, and what the server said of it."""

    size: int
    sha256: str  # hex
    content_type: str | None
    content_length: int | None  # as the server announced it
    url: str  # where the body came from after redirects, without its query (it may carry a token)


def download(
    url: str,
    into: BinaryIO,
    *,
    max_bytes: int,
    policy: EgressPolicy,
    timeout: float | httpx.Timeout = 10.0,
    deadline: float = DEADLINE,
    client: httpx.Client | None = None,
) -> Downloaded:
    """Stream the body at ``url`` into the binary file ``into``; return its size and SHA-256.

    The body is written as the server sent it (``Accept-Encoding: identity`` is asked for), a chunk
    at a time, never held whole. ``timeout`` bounds connecting and each wait for bytes; ``deadline``
    (seconds) the whole download, the wait for the headers included. Raises, each an
    ``EgressError``: UnsafeURL (the policy refuses the URL, a redirect or a resolved address),
    BadStatus (not 2xx), TooLarge (more than ``max_bytes``: announced, or read up to
    ``max_bytes + 1``), LengthMismatch (fewer or more bytes than Content-Length: a cut connection),
    TimedOut and NetworkError. On an error, ``into``
    may hold part of the body: the caller discards it.

    ``client``, when given (one of ``make_client``'s, to reuse its connections), brings its own
    policy and timeouts for the connections; ``policy`` still checks the URL first.
    """
    check_url(url, policy)
    own_client = client is None
    if client is None:
        client = make_client(policy, timeout=timeout, deadline=None)
    try:
        with (
            bounded(deadline),
            client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response,
        ):
            if not 200 <= response.status_code < 300:
                raise BadStatus(response.status_code)
            declared = _content_length(response)
            if declared is not None and declared > max_bytes:
                raise TooLarge(max_bytes, declared)
            digest = hashlib.sha256()
            size = 0
            try:
                # Chunks as they come off the socket (httpcore reads at most 64 KiB at a time): no
                # buffering in between, so a cut connection is told with every byte it did bring.
                for chunk in response.iter_raw():
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(max_bytes, declared)
                    digest.update(chunk)
                    into.write(chunk)
            except httpx.RemoteProtocolError as error:
                if declared is not None and size < declared:
                    raise LengthMismatch(declared, size) from None
                raise NetworkError(f"the server broke the HTTP exchange: {error}") from None
            if declared is not None and size != declared:
                raise LengthMismatch(declared, size)
            return Downloaded(
                size=size,
                sha256=digest.hexdigest(),
                content_type=response.headers.get("Content-Type"),
                content_length=declared,
                url=str(response.url.copy_with(query=None, fragment=None)),
            )
    except httpx.TooManyRedirects:
        raise TooManyRedirects(f"more than {client.max_redirects} redirects") from None
    except httpx.TimeoutException as error:
        raise TimedOut(f"{type(error).__name__}: the server took longer than allowed") from None
    except httpx.UnsupportedProtocol as error:
        raise UnsafeURL(f"a redirect left http(s): {error}") from None
    except httpx.TransportError as error:
        raise NetworkError(f"{type(error).__name__}: {error}") from None
    finally:
        if own_client:
            client.close()


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.isdigit():
        return None
    return int(value)
