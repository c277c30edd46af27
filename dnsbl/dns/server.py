"""The DNS server: UDP and TCP listeners around the hot path and the general path.

This is the only module of the server that does socket I/O. Every datagram and every TCP
message is answered by `wire.answer_fast` when it can, else by `answers.Responder`; an
exception never leaves a handler, so one bad packet never stops the server. TCP carries
several queries per connection with 2-byte length framing, an idle timeout and a size limit;
one source holds at most `dns.tcp_max_per_source` connections, and when all
`tcp_max_connections` are taken the longest-idle one is closed for the newcomer (RFC 7766
§6.2.2), so that no one client can keep the others (zone transfers, the TCP retries of
truncated answers) out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterable
from time import perf_counter
from typing import Any

from dnsbl.config import DnsSettings, ZoneSettings
from dnsbl.dns.access import Access, Verdict
from dnsbl.dns.answers import TCP_LIMIT, RecordSource, Reply, Responder
from dnsbl.dns.cookies import Cookies
from dnsbl.dns.native import (
    NATIVE,
    Handed,
    NativeEngine,
    NativeLoop,
    NativeRateLimiter,
    engine_name,
)
from dnsbl.dns.notify import Notifier
from dnsbl.dns.ratelimit import Action, RateLimiter, truncated
from dnsbl.dns.sockets import Listener, bind
from dnsbl.dns.timing import Latency
from dnsbl.dns.tsig import TsigKeys
from dnsbl.dns.wire import answer_fast
from dnsbl.dns.zones import ZoneTable
from dnsbl.index.zone_index import ZoneIndex

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may stay silent (RFC 7766 suggests seconds)
TCP_MAX_CONNECTIONS = 512  # beyond this, the longest-idle connection makes room (fds)
TCP_MAX_QUERY = 16384  # no query of ours needs more; longer ones close the connection
_UDP_MAX_QUERY = 4096  # longer datagrams arrive cut, and get FORMERR
_UDP_BATCH = 64  # datagrams answered per readiness event before other tasks get a turn


class _UdpListener:
    """One UDP socket: read straight from the event loop's selector by the Python engine, or
    by a native loop on its own thread (`NativeLoop`) that hands this listener what Python
    must answer.

    asyncio's datagram transport hands over one datagram per loop iteration; reading up to
    `_UDP_BATCH` per readiness event and answering in place saves that round per query. A
    reply the socket cannot take right now is dropped, as UDP allows: the client retries.
    """

    def __init__(self, server: DnsServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()

    def hand_off(self, handed: Handed, episodes: list[Any]) -> None:
        """What the native loop leaves to Python (called on its thread): to the event loop."""
        loop = self.server._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: stopping
                loop.call_soon_threadsafe(self.answer_handed, handed, episodes)

    def answer_handed(self, handed: Handed, episodes: list[Any]) -> None:
        """Answer on the Python path what the native loop handed over."""
        native = self.server.native
        assert native is not None
        native.took_over(handed, episodes)
        if not handed:
            return
        started = perf_counter()
        for data, addr in handed:
            self._answer_in_python(data, addr, hot=True)
        self.server.latency.record("udp", (perf_counter() - started) / len(handed), len(handed))

    def _answer_in_python(self, data: bytes, addr: Any, hot: bool = False) -> None:
        """Answer on the general path; `hot`: try the hot path first (what the native engine
        hands back includes hot-path queries it leaves to Python, such as ANY over UDP)."""
        server = self.server
        try:
            fast = (
                answer_fast(data, server.table, server.max_payload, None, addr[0]) if hot else None
            )
            reply = (
                Reply([fast[0]], fast[1])
                if fast is not None
                else server.responder.respond(data, tcp=False, peer=addr[0])
            )
            server.counts[reply.key] += 1
            self._send(reply, addr)
        except OSError as exc:
            log.debug("UDP reply to %s dropped: %s", addr[0], exc, extra={"peer": addr[0]})
        except Exception:
            log.exception("failed to answer a UDP query from %s", addr[0], extra={"peer": addr[0]})

    def _send(self, reply: Reply, addr: Any) -> None:
        """Send `reply`'s messages to `addr`, what rate limiting lets out of them."""
        server = self.server
        messages = reply.messages
        if server.limiter is not None:
            messages = server.rate_limited(reply, addr[0])
        for message in messages:
            self.sock.sendto(message, addr)

    def read_ready(self) -> None:
        server = self.server
        table = server.table
        max_payload = server.max_payload
        counts = server.counts
        limiter = server.limiter
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        answer_in_python = self._answer_in_python
        # Timed per batch, not per query (dnsbl.dns.timing): two clock reads per readiness.
        started = perf_counter()
        answered = 0
        try:
            for _ in range(_UDP_BATCH):
                try:
                    data, addr = recvfrom(_UDP_MAX_QUERY)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:  # e.g. an ICMP error reported for an earlier reply
                    log.debug("UDP receive error: %s", exc)
                    continue
                answered += 1
                try:
                    fast = answer_fast(data, table, max_payload, None, addr[0])
                    if fast is not None:
                        counts[fast[1]] += 1
                        if limiter is None:
                            sendto(fast[0], addr)
                        else:
                            self._send(Reply([fast[0]], fast[1]), addr)
                        continue
                except OSError as exc:
                    log.debug("UDP reply to %s dropped: %s", addr[0], exc, extra={"peer": addr[0]})
                    continue
                except Exception:
                    log.exception(
                        "failed to answer a UDP query from %s", addr[0], extra={"peer": addr[0]}
                    )
                    continue
                answer_in_python(data, addr)
        finally:
            if answered:
                server.latency.record("udp", (perf_counter() - started) / answered, answered)


class _Connection:
    """One TCP client: where from, and since when it waits for its next query (None: busy)."""

    __slots__ = ("idle_since", "peer", "writer")

    def __init__(self, writer: asyncio.StreamWriter, peer: str, now: float) -> None:
        self.writer = writer
        self.peer = peer
        self.idle_since: float | None = now


class DnsServer:
    """An authoritative server for `zones`, listening where `settings.listen` says."""

    def __init__(
        self,
        zones: list[ZoneSettings],
        settings: DnsSettings,
        *,
        tcp_idle_timeout: float = TCP_IDLE_TIMEOUT,
        tcp_max_connections: int = TCP_MAX_CONNECTIONS,
        records: RecordSource | None = None,
    ) -> None:
        self.settings = settings
        # Who may ask (dnsbl.dns.access); a node's key follower keeps `access.keys` current.
        self.access = Access(zones)
        self.table = ZoneTable(zones, self.access.admitters())
        # Which engine answers UDP (dnsbl.dns.native); its name labels the query metrics.
        self.engine = engine_name(settings.engine)
        # Response rate limiting over UDP (dnsbl.dns.ratelimit); None: off. Under the native
        # engine, on its C buckets, which both its paths share.
        limits = settings.rate_limit
        self.limiter: RateLimiter | NativeRateLimiter | None = None
        if limits.responses_per_second:
            native_limits = self.engine == NATIVE
            self.limiter = NativeRateLimiter(limits) if native_limits else RateLimiter(limits)
        native_limiter = self.limiter if isinstance(self.limiter, NativeRateLimiter) else None
        self.native = (
            NativeEngine(self.table, settings, native_limiter) if self.engine == NATIVE else None
        )
        self.max_payload = settings.max_udp_payload
        keys = TsigKeys(settings.transfer_keys)
        self.responder = Responder(
            self.table,
            max_payload=settings.max_udp_payload,
            transfer_peers=settings.transfer_peers,
            transfer_keys=keys,
            records=records,
            access=self.access,
            cookies=Cookies(settings.cookies),
            strict_cookies=self.limiter is not None,
        )
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_max_connections = tcp_max_connections
        # Queries answered, by (zone, qtype, rcode): one increment per query, read at scrape
        # time by dnsbl.node.metrics (query_labels is the one place that reads the key).
        self.counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        self.latency = Latency()  # see dnsbl.dns.timing
        if self.native is not None:
            self.latency.attach("udp", self.native.latency)
        self.notifier = Notifier(settings.notify, key=keys.first)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: list[socket.socket] = []
        self._native_loops: list[NativeLoop] = []
        self._tcp: list[asyncio.Server] = []
        self._connections: dict[asyncio.StreamWriter, _Connection] = {}
        self._per_source: collections.Counter[str] = collections.Counter()
        self._endpoints: list[tuple[str, int]] = []

    # -- zones -----------------------------------------------------------------------------

    def publish(self, index: ZoneIndex) -> None:
        """Answer `index`'s zone from `index` from the next query on (any thread may call).

        A new serial is NOTIFYed to `settings.notify` while the server runs.
        """
        zone, previous = self.table.publish(index)
        if self.native is not None:
            self.native.publish(zone)
        loop = self._loop
        if loop is not None and previous != zone.serial and not loop.is_closed():
            loop.call_soon_threadsafe(self.notifier.zone_changed, zone)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        """The (host, port) of every listener, UDP and TCP alike, once started."""
        return list(self._endpoints)

    async def start(self, listeners: list[Listener] | None = None) -> None:
        """Answer on `listeners`, or bind UDP and TCP on every `settings.listen` address.

        Every zone already published is NOTIFYed once the server answers.
        """
        self._loop = asyncio.get_running_loop()
        try:
            for udp, tcp in listeners if listeners is not None else bind(self.settings.listen):
                await self._serve_on(udp, tcp)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "DNS listening on %s (%s engine)",
            ", ".join(f"{h}:{p}" for h, p in self._endpoints),
            self.engine,
        )
        # The zones may have changed while no server ran: tell the secondaries now.
        for zone in self.table:
            if zone.index is not None:
                self.notifier.zone_changed(zone)

    async def _serve_on(self, udp: socket.socket, tcp: socket.socket) -> None:
        """Answer on a bound UDP socket and a listening TCP socket (of one address and port)."""
        self._udp.append(udp)
        self._tcp.append(await asyncio.start_server(self._serve_tcp, sock=tcp))
        listener = _UdpListener(self, udp)
        if self.native is not None:
            self._native_loops.append(
                NativeLoop(self.native, udp, self.counts, self.access.counts, listener.hand_off)
            )
        else:
            asyncio.get_running_loop().add_reader(udp.fileno(), listener.read_ready)
        host, port = udp.getsockname()[:2]
        self._endpoints.append((host, port))

    async def stop(self) -> None:
        """Close every listener and connection, and stop sending NOTIFY."""
        for native_loop in self._native_loops:
            native_loop.stop()
        self._native_loops.clear()
        for udp in self._udp:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(udp.fileno())
            udp.close()
        for tcp in self._tcp:
            tcp.close()
        for writer in list(self._connections):
            self._forget(writer)
            writer.close()
        for tcp in self._tcp:
            with contextlib.suppress(Exception):
                await tcp.wait_closed()
        await self.notifier.close()
        self._udp.clear()
        self._tcp.clear()
        self._endpoints.clear()
        self._loop = None

    def rate_limited(self, reply: Reply, peer: str) -> list[bytes]:
        """What of a UDP `reply` to `peer` goes out under rate limiting: all, its first
        message truncated (slipped), or nothing (dropped); counted as a verdict."""
        assert self.limiter is not None
        messages = list(reply.messages)
        if not messages:
            return messages
        zone = reply.key[0]
        action = self.limiter.check(peer, messages[0], zone, reply.proven)
        if action == Action.SEND:
            return messages
        verdict = Verdict.SLIPPED if action == Action.SLIP else Verdict.RATE_LIMITED
        self.access.counts[zone, verdict] += 1
        if self.limiter.log_only:
            return messages
        return [truncated(messages[0])] if action == Action.SLIP else []

    # -- TCP -------------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername: Any = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else ""
        if not self._admit(peer):
            writer.close()
            return
        loop = asyncio.get_running_loop()
        connection = self._connections[writer] = _Connection(writer, peer, loop.time())
        self._per_source[peer] += 1
        try:
            while True:
                query = await self._read_message(reader)
                if query is None:
                    break
                connection.idle_since = None
                started = perf_counter()
                try:
                    fast = answer_fast(query, self.table, self.max_payload, TCP_LIMIT, peer)
                    if fast is not None:
                        writer.write(len(fast[0]).to_bytes(2, "big") + fast[0])
                        self.counts[fast[1]] += 1
                        self.latency.record("tcp", perf_counter() - started)
                    else:
                        reply = self.responder.respond(query, tcp=True, peer=peer)
                        # Counted before sending: a transfer's client has its last message,
                        # and may look at the metrics, before the generator is exhausted.
                        self.counts[reply.key] += 1
                        if isinstance(reply.messages, (list, tuple)):  # not a zone transfer
                            self.latency.record("tcp", perf_counter() - started)
                        async for message in _produced(reply.messages):
                            writer.write(len(message).to_bytes(2, "big") + message)
                            await writer.drain()
                            # drain() does not yield while the socket keeps up: let the
                            # other clients in between the messages of a long transfer.
                            await asyncio.sleep(0)
                    await writer.drain()
                    connection.idle_since = loop.time()
                except (ConnectionError, asyncio.CancelledError):
                    raise
                except Exception:
                    log.exception(
                        "failed to answer a TCP query from %s", peer, extra={"peer": peer}
                    )
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._forget(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _admit(self, peer: str) -> bool:
        """Whether a new connection from `peer` may stay; closes an idle one to make room."""
        if self._per_source[peer] >= self.settings.tcp_max_per_source:
            log.info(
                "TCP client %s turned away: it has %d connections open",
                peer,
                self._per_source[peer],
                extra={"peer": peer},
            )
            return False
        if len(self._connections) < self.tcp_max_connections:
            return True
        idle = [c for c in self._connections.values() if c.idle_since is not None]
        if not idle:  # every connection is in the middle of an answer
            log.warning(
                "TCP client %s turned away: %d connections busy",
                peer,
                len(self._connections),
                extra={"peer": peer},
            )
            return False
        oldest = min(idle, key=lambda c: c.idle_since or 0.0)
        log.info(
            "TCP client %s closed, idle the longest, to make room for %s",
            oldest.peer,
            peer,
            extra={"peer": oldest.peer},
        )
        self._forget(oldest.writer)
        oldest.writer.close()
        return True

    def _forget(self, writer: asyncio.StreamWriter) -> None:
        """Stop counting `writer`'s connection (once, whoever closes it first)."""
        connection = self._connections.pop(writer, None)
        if connection is not None:
            self._per_source[connection.peer] -= 1
            if not self._per_source[connection.peer]:
                del self._per_source[connection.peer]

    async def _read_message(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next length-prefixed message, or None when the client is done, idle or wrong."""
        try:
            prefix = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
            length = int.from_bytes(prefix, "big")
            if not 12 <= length <= TCP_MAX_QUERY:
                return None
            return await asyncio.wait_for(reader.readexactly(length), self.tcp_idle_timeout)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return None


async def _produced(messages: Iterable[bytes]) -> AsyncIterator[bytes]:
    """The messages of a reply; those of a zone transfer are built in a worker thread.

    A transfer is a lazy generator, and the zone records of a million listings cost tens of
    seconds of CPU: built on the event loop they would stop every other answer meanwhile.
    """
    if isinstance(messages, (list, tuple)):
        for message in messages:
            yield message
        return
    iterator = iter(messages)
    while (message := await asyncio.to_thread(next, iterator, None)) is not None:
        yield message
