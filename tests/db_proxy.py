"""A TCP proxy in front of PostgreSQL that a test can freeze, close and open again.

Frozen, it keeps every connection open and accepts new ones but passes no byte either way (a
database, or a network, that stops answering); closed, it drops every connection and refuses
new ones (a database that is down). Threads, not asyncio, so that it keeps working while the
code under test blocks its own event loop or threads.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.conftest import write_config

BOUND = 2.0  # the database bounds (connect, statement) of the processes these tests start


def bounded_config(path: Path, database_url: str, **extra: str) -> Path:
    """`write_config`, with both database bounds at BOUND seconds."""
    config = write_config(path, database_url, **extra)
    head, _, rest = config.read_text().partition("\n")
    bounds = f"database_connect_timeout = {BOUND}\ndatabase_statement_timeout = {BOUND}\n"
    config.write_text(f"{head}\n{bounds}{rest}")
    return config


class FreezableProxy:
    """Forwards 127.0.0.1:`port` to `target` until frozen or closed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.flowing = threading.Event()
        self.flowing.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self.open()

    def url_for(self, url: str) -> str:
        """`url` (a PostgreSQL URL of the target) pointed at this proxy."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # -- what a test does ----------------------------------------------------------------

    def freeze(self) -> None:
        """Pass nothing more, in either direction, on any connection (they stay open)."""
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        """Drop every connection and stop listening: connecting is refused."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def open(self) -> None:
        """Listen again (on the same port, after a `close`)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    # -- the forwarding ------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                self.flowing.wait()
                data = source.recv(65536)
                if not data:
                    break
                self.flowing.wait()  # read before the freeze: held, not passed
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def proxy_to(url: str) -> Iterator[FreezableProxy]:
    """A proxy to the PostgreSQL of `url`, closed at the exit."""
    parts = urlsplit(url)
    proxy = FreezableProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        yield proxy
    finally:
        proxy.thaw()
        proxy.close()
