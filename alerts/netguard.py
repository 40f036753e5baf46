"""SSRF guard for user-supplied Slack and webhook URLs.

:func:`check_url` resolves a URL's host and refuses it when any address it
resolves to is loopback, private, link-local, CGNAT, multicast, reserved,
unspecified or a cloud metadata endpoint (IPv4-mapped, NAT64 and 6to4 IPv6
forms are unwrapped first). :func:`safe_request` is the only way the
notifier makes outbound HTTP calls: it checks the URL, connects to the very
address it checked (no second DNS lookup an attacker could rebind), and
follows redirects itself, checking every hop.

``allow_private`` (``ALLOW_PRIVATE_WEBHOOKS``) lets an operator reach
private and loopback addresses; metadata endpoints stay refused regardless.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

__all__ = ["UnsafeURL", "check_url", "resolve_checked", "safe_request"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
                      ipaddress.ip_address("100.100.100.200")})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
MAX_REDIRECTS = 5


class UnsafeURL(ValueError):
    """The URL is malformed or reaches an address the notifier must not call."""


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address hidden in an IPv4-mapped, NAT64 or 6to4 IPv6 address, else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
    return ip


def address_problem(ip: IPAddress, allow_private: bool) -> str | None:
    """Why ``ip`` must not be called, or None when it may."""
    inner = _unwrap(ip)
    for candidate in (ip, inner):
        if candidate in METADATA:
            return f"{ip} is a cloud metadata address"
    if allow_private:
        return None
    for candidate in (inner, ip) if inner != ip else (ip,):
        if candidate.is_loopback:
            return f"{ip} is a loopback address"
        if candidate.is_link_local:
            return f"{ip} is a link-local address"
        if candidate.is_multicast:
            return f"{ip} is a multicast address"
        if candidate.is_unspecified:
            return f"{ip} is an unspecified address"
        if isinstance(candidate, ipaddress.IPv4Address) and candidate in _CGNAT:
            return f"{ip} is a carrier-grade NAT (shared) address"
        if candidate.is_reserved:
            return f"{ip} is a reserved address"
        if candidate.is_private:
            return f"{ip} is a private address"
        if not candidate.is_global:
            return f"{ip} is not a global address"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: IPAddress


def resolve_checked(url: str, allow_private: bool) -> Target:
    """Parse and resolve ``url``; raise :class:`UnsafeURL` unless every address is allowed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs are allowed, got {parts.scheme or 'no'} scheme")
    host = parts.hostname
    if not host:
        raise UnsafeURL("the URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UnsafeURL(f"cannot resolve {host}: {exc}") from None
        addresses = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise UnsafeURL(f"{host} resolves to no address")
    for ip in addresses:
        problem = address_problem(ip, allow_private)
        if problem:
            if literal is not None:
                raise UnsafeURL(f"refused: {problem}")
            # a name: say nothing of what it resolves to (that would map the internal network)
            raise UnsafeURL(f"refused: {host} resolves to a non-public address")
    return Target(parts.scheme, host, port, addresses[0])


def check_url(url: str, allow_private: bool) -> None:
    """Raise :class:`UnsafeURL` (with a message for the user) if ``url`` must not be called.

    Blocks on DNS resolution; redirects are checked by :func:`safe_request` when it is called.
    """
    resolve_checked(url, allow_private)


def _pinned(url: str, target: Target) -> tuple[str, dict[str, Any], str]:
    """The URL rewritten to the checked address, the request extensions, and the Host header."""
    parts = urlsplit(url)
    ip = target.address
    ip_text = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    default_port = 443 if target.scheme == "https" else 80
    netloc = ip_text if target.port == default_port else f"{ip_text}:{target.port}"
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host and not target.host.startswith("["):
        host_header = f"[{target.host}]" if target.port == default_port else f"[{target.host}]:{target.port}"
    extensions: dict[str, Any] = {}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    return urlunsplit(parts._replace(netloc=netloc)), extensions, host_header


def safe_request(client: httpx.Client, method: str, url: str, *, allow_private: bool,
                 content: bytes | None = None, headers: dict[str, str] | None = None,
                 timeout_s: float = 10.0) -> httpx.Response:
    """Send a request to a checked address, following up to 5 redirects, each checked.

    The answer comes back *unread* (streamed): the caller reads what it needs (see
    :func:`alerts.transport.read_capped`) and closes it. Raises :class:`UnsafeURL` for a
    refused URL or redirect, ``httpx.HTTPError`` for network errors and timeouts. A 303, or
    a 301/302 after POST, continues as GET.
    """
    for _ in range(MAX_REDIRECTS + 1):
        target = resolve_checked(url, allow_private)
        pinned_url, extensions, host_header = _pinned(url, target)
        req_headers = {**(headers or {}), "Host": host_header}
        request = client.build_request(method, pinned_url, content=content, headers=req_headers,
                                       timeout=timeout_s, extensions=extensions)
        response = client.send(request, stream=True, follow_redirects=False)
        location = response.headers.get("location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            return response
        response.close()
        url = urljoin(url, location)
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, content = "GET", None
    raise UnsafeURL(f"more than {MAX_REDIRECTS} redirects")
