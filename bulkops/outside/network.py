"""The guard against private-network targets (server-side request forgery).

A URL a request gives (an image to fetch, a webhook to call) must not reach the service's
own network: loopback, private ranges, link-local (cloud metadata at 169.254.169.254),
shared, multicast or reserved addresses, also when written inside an IPv6 address. The
check is made where the connection is opened, on the very address connected to: a host
name is resolved once, every address it resolves to is checked, and the connection goes to
one of those addresses. A redirect, or a DNS answer that changes between a check and the
connection (DNS rebinding), therefore cannot slip past it. TLS still verifies the
certificate against the host name.

`BULKOPS_ALLOW_PRIVATE_NETWORKS=true` turns the guard off (a catalog whose images live on
an internal host, the tests)."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from bulkops.outside.errors import CallFailed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64's well-known prefix carries an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificate-verifying TLS context of every outside call of the process, made
    once: loading the certificate authorities takes tens of milliseconds each time."""
    return httpx.create_ssl_context(trust_env=False)


def is_public(address: Address) -> bool:
    """Whether `address` is on the public internet, judged by the IPv4 address an IPv6
    one carries (mapped, NAT64, 6to4, Teredo) when it carries one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def refused(host: str) -> CallFailed:
    return CallFailed(
        f"{host} is on a private network; outside calls may not reach it",
        code="PRIVATE_NETWORK",
    )


async def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses of `host` in the resolver's order, all of them public unless
    `allow_private`. Raises CallFailed PRIVATE_NETWORK when one is not (a name that also
    points inside is refused whole), HOST_NOT_FOUND when the name does not exist; a
    failing resolver is a connection error (tried again)."""
    literal = _literal(host)
    if literal is not None:
        if not allow_private and not is_public(literal):
            raise refused(host)
        return [str(literal)]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _NO_SUCH_NAME:
            raise CallFailed(f"{host} does not exist", code="HOST_NOT_FOUND") from exc
        raise httpcore.ConnectError(f"{host} could not be resolved: {exc}") from exc
    addresses = _unique(str(info[4][0]) for info in infos)
    if not addresses:
        raise httpcore.ConnectError(f"{host} has no address")
    if not allow_private and not all(is_public(_address(a)) for a in addresses):
        raise refused(host)
    return addresses


_NO_SUCH_NAME = {
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
}


async def check_public_url(url: str, *, allow_private: bool) -> None:
    """Refuse, before anything is sent, a URL a request gives that calls could not follow
    (CallFailed INVALID_URL: not http or https, no host) or that leads into a private
    network (PRIVATE_NETWORK, HOST_NOT_FOUND; see `checked_addresses`). A webhook URL is
    checked so when it is saved; the connection is checked again when it is made."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise CallFailed(f"not a URL: {exc}", code="INVALID_URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CallFailed(f"not an http(s) URL: {url}", code="INVALID_URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        await checked_addresses(parsed.host, port, allow_private=allow_private)
    except httpcore.ConnectError as exc:
        raise CallFailed(str(exc), code="UNREACHABLE") from exc


def is_private_literal(host: str) -> bool:
    """Whether `host` is an IP address (not a name) outside the public internet: what can
    be refused before any DNS lookup (a name is judged once resolved, when connecting)."""
    address = _literal(host)
    return address is not None and not is_public(address)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _address(value: str) -> Address:
    return ipaddress.ip_address(value.split("%", 1)[0])


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


class _Stream(httpcore.AsyncNetworkStream):
    """A connection's stream as the backend opened it, answering httpcore's "is_readable"
    (is this idle connection closed by the server?) from the socket it keeps. httpcore asks
    it of every idle connection in the pool whenever a request starts or ends, and
    anyio's stream answers it by building its whole attribute table again, a `getpeername`
    call included: with a few dozen connections to one host that cost more than the
    request itself."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: socket.socket | None = stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._socket)
        return self._stream.get_extra_info(info)


def _readable(sock: socket.socket | None) -> bool:
    """Whether reading `sock` would not wait (data, or the end of the stream); a socket
    that is gone counts as readable (its next read ends the connection), as in httpcore."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to public addresses (see the module docstring), or to
    any the host name resolves to when `allow_private`; their streams are `_Stream`s."""

    def __init__(self, *, allow_private: bool) -> None:
        self._backend = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await checked_addresses(host, port, allow_private=self._allow_private)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"{host} was not resolved in time") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                stream = await self._backend.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _Stream(stream)
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise CallFailed("outside calls do not go to unix sockets", code="INVALID_URL")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport whose connections go through `GuardedBackend`.

    httpx takes no network backend, so the connection pool it builds is replaced by one
    built the same way with the guarded backend (httpx has kept the pool in `_pool` since
    0.18)."""

    def __init__(self, *, limits: httpx.Limits, allow_private: bool) -> None:
        super().__init__(verify=tls_context(), trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private=allow_private),
        )
