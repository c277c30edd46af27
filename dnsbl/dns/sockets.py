"""The listening sockets of a DNS server: on each address a UDP socket and a listening TCP
socket, both non-blocking and on one port (port 0: one free port taken for both).

Bound before the server starts (and, under `dns.processes`, once in the parent of the
answering processes, which share them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from dnsbl.config import parse_endpoint

_BIND_ATTEMPTS = 20
_TCP_BACKLOG = 128
_UDP_BUFFER = 4 << 20  # receive buffer asked for (the kernel caps it at net.core.rmem_max)


Listener = tuple[socket.socket, socket.socket]  # (UDP, listening TCP) on one address and port


def bind(listen: list[str]) -> list[Listener]:
    """UDP and TCP sockets on every `listen` address; port 0 takes one free port for both."""
    listeners: list[Listener] = []
    try:
        for text in listen:
            host, port = parse_endpoint(text, 53)
            listeners.append(_bind_pair(host, port))
    except BaseException:
        for udp, tcp in listeners:
            udp.close()
            tcp.close()
        raise
    return listeners


def _bind_pair(host: str, port: int) -> Listener:
    for attempt in range(_BIND_ATTEMPTS if port == 0 else 1):
        udp = _udp_socket(host, port)
        try:
            return udp, _tcp_socket(host, udp.getsockname()[1])
        except OSError:
            udp.close()
            if port or attempt == _BIND_ATTEMPTS - 1:
                raise
            # the port UDP got is taken for TCP: try another
    raise AssertionError("unreachable")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def _tcp_socket(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on `host:port` (as asyncio would make it)."""
    family = _family(host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(_TCP_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _udp_socket(host: str, port: int) -> socket.socket:
    """A bound, non-blocking UDP socket for `host:port`."""
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_BUFFER)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
