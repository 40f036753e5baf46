"""A DNS-rebinding attacker for the SSRF tests, and a connect() that lets nothing leave the machine.

The made-up name :data:`REBIND_NAME` resolves to a public address the first time it is
looked up (what the guard checks) and to loopback every time after (what an unpinned
client would connect to). Every other name goes to the real resolver. Every TCP connect in
the process is recorded; one to a non-loopback address raises before the socket connects.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest

REBIND_NAME = "rebind.invalid"  # made up; only this name is answered by the attacker's resolver
CHECKED_PUBLIC = "8.8.8.8"  # what the guard sees and allows; no packet is ever sent to it


@dataclass
class Rebinding:
    answers: list[str] = field(default_factory=list)  # what the name resolved to, lookup by lookup
    connects: list[tuple[str, int]] = field(default_factory=list)  # (address, port) asked of connect()


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Rebinding:
    state = Rebinding()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != REBIND_NAME:
            return real_getaddrinfo(host, port, *args, **kwargs)
        answer = CHECKED_PUBLIC if not state.answers else "127.0.0.1"
        state.answers.append(answer)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answer, int(port or 0)))]

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = str(address[0]), int(address[1])
            state.connects.append((host, port))
            if not ipaddress.ip_address(host.split("%", 1)[0]).is_loopback:
                raise ConnectionRefusedError(f"test: no packet may leave the machine (connect to {host}:{port})")
        real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return state
