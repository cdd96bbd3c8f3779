"""A small TCP proxy for fault tests: put it between a process and PostgreSQL to simulate
network partitions, lost replies and connection resets.

One background thread runs a ``selectors`` loop over non-blocking sockets. Every public
method hands its work to that thread (through a queue and a wake-up socketpair) and waits
until it is done, so a mode change has taken effect when the call returns: bytes a test
sends afterwards are treated in the new mode.

Held bytes (``drop``, ``cut_replies_after``) are read from the sender and kept, like a
network that loses packets which TCP will retransmit: the peers see silence, and
``forward()`` delivers everything, in order. A peer's EOF in a held direction is held too.

Caveat: the proxy's own kernel acknowledges what it receives and answers TCP keepalive
probes, so a held connection looks alive at the TCP level; only timeouts above TCP notice
the "partition".
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import selectors
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

T = TypeVar("T")

_CHUNK = 65536
# Stop reading from a side while this much waits for the other side: memory stays bounded and
# the rest waits in the kernel's buffers (delivered in order later all the same).
_BUFFER_LIMIT = 1 << 20
_CALL_TIMEOUT = 10.0
_DIRECTIONS = {
    "both": ("to_client", "to_server"),
    "to_client": ("to_client",),
    "to_server": ("to_server",),
}
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def _directions(direction: str) -> tuple[str, ...]:
    try:
        return _DIRECTIONS[direction]
    except KeyError:
        raise ValueError(f"direction must be one of {sorted(_DIRECTIONS)}: {direction!r}") from None


class _Direction:
    """The bytes going one way on one proxied connection."""

    def __init__(self, name: str) -> None:
        self.name = name  # "to_server" or "to_client"
        self.buf = bytearray()  # read from the sender, not yet written to the receiver
        self.eof = False  # the sender closed; passed on once ``buf`` is delivered


class _Pair:
    """One proxied connection: the accepted client socket and our socket to the target."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        # Connected once bytes may flow to the server: a connection accepted while "to_server"
        # is held stays unknown to the server, as if its SYN were lost.
        self.server: socket.socket | None = None
        self.connecting = False
        self.up = _Direction("to_server")
        self.down = _Direction("to_client")
        self.cut = False  # replies held by cut_replies_after()
        self.tail = b""  # last client bytes, to find the cut pattern across chunks
        self.events: dict[socket.socket, int] = {}  # what each socket is registered for
        self.closed = False


class TcpProxy:
    """``with TcpProxy(host, port).start() as proxy:`` then connect to ``proxy.url_for(url)``."""

    # Set by start().
    _listener: socket.socket
    _wake_r: socket.socket
    _wake_w: socket.socket
    _sel: selectors.BaseSelector
    _target: tuple[socket.AddressFamily, Any]

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        # Owned by the loop thread (or by the caller while no loop runs).
        self._drop: set[str] = set()
        self._cut_pattern = b""
        self._pairs: set[_Pair] = set()
        self._stopping = False
        # Shared with the test thread, under _lock.
        self._lock = threading.Lock()
        self._commands: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._running = False
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- the test thread's side ---------------------------------------------------------

    def start(self) -> TcpProxy:
        if self._thread is not None:
            raise RuntimeError("TcpProxy.start() was already called")
        family, _, _, _, address = socket.getaddrinfo(
            self.target_host, self.target_port, type=socket.SOCK_STREAM
        )[0]
        self._target = (family, address)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, _READ)
        self._sel.register(self._wake_r, _READ)
        self._running = True
        self._thread = threading.Thread(
            target=self._run, name=f"tcp-proxy-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def url_for(self, url: str) -> str:
        """``url`` (postgresql://...) with its host:port replaced by the proxy's."""
        if not self.port:
            raise RuntimeError("start() the proxy first")
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"not a URL with a host: {url!r}")
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{self.port}"))

    def forward(self) -> None:
        """Normal operation; everything held is delivered now, in order."""

        def apply() -> None:
            self._drop.clear()
            self._cut_pattern = b""
            for pair in self._pairs:
                pair.cut = False
            self._settle_all()

        self._call(apply)

    def drop(self, direction: str = "both") -> None:
        """Hold bytes going ``direction`` on every connection, current and new, until
        forward(). Cumulative: drop("to_client") then drop("to_server") holds both."""
        names = _directions(direction)

        def apply() -> None:
            self._drop.update(names)
            self._settle_all()

        self._call(apply)

    def cut_replies_after(self, pattern: bytes) -> None:
        """Hold the replies of each connection whose client sends ``pattern`` (from now on),
        from the chunk that completes it, until forward(). The pattern itself reaches the
        server: a request that arrives but whose answer is lost."""
        if not pattern:
            raise ValueError("the pattern must not be empty")

        def apply() -> None:
            self._cut_pattern = bytes(pattern)
            for pair in self._pairs:
                pair.tail = b""  # only bytes sent from now on count

        self._call(apply)

    def reset(self) -> None:
        """Close every current connection with an RST on both sides; held bytes are lost.
        The mode (drop, cut pattern) stays for new connections."""

        def apply() -> None:
            for pair in list(self._pairs):
                self._close_pair(pair, abort=True)

        self._call(apply)

    def connections(self) -> int:
        return self._call(lambda: len(self._pairs))

    def held_bytes(self, direction: str = "both") -> int:
        """How many bytes the proxy holds (read, not delivered because of the mode)."""
        names = _directions(direction)

        def count() -> int:
            return sum(
                len(d.buf)
                for pair in self._pairs
                for d in (pair.up, pair.down)
                if d.name in names and self._held(pair, d)
            )

        return self._call(count)

    def stop(self) -> None:
        """Stop listening, close every connection and join the thread. Idempotent."""
        if self._thread is None or self._stopped:
            return
        self._call(functools.partial(setattr, self, "_stopping", True))
        self._thread.join(_CALL_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the proxy thread did not stop")
        self._wake_r.close()
        self._wake_w.close()
        self._stopped = True

    def __enter__(self) -> TcpProxy:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread and wait for it; inline when no loop runs."""
        future: Future[T] = Future()
        with self._lock:
            queued = self._running
            if queued:
                self._commands.append((fn, future))
        if not queued:
            return fn()
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"\0")
        return future.result(timeout=_CALL_TIMEOUT)

    # -- the loop thread's side ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._sel.select():
                    if key.fileobj is self._wake_r:
                        self._run_commands()
                    elif key.fileobj is self._listener:
                        self._accept()
                    else:
                        pair, sock = key.data, key.fileobj
                        assert isinstance(sock, socket.socket)
                        self._safely(pair, functools.partial(self._serve, pair, sock, mask))
        except Exception:
            # Only a bug gets here: a peer's error closes its pair in _safely().
            log.exception("tcp proxy: the loop failed")
        finally:
            for pair in list(self._pairs):
                self._close_pair(pair, abort=False)
            self._sel.close()
            self._listener.close()
            with self._lock:
                self._running = False
            self._run_commands()  # those queued before _running went false

    def _run_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        while True:
            with self._lock:
                if not self._commands:
                    return
                fn, future = self._commands.popleft()
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. out of file descriptors: keep serving the others
            log.warning("tcp proxy: accept failed: %r", exc)
            return
        pair = _Pair(client)
        self._pairs.add(pair)
        self._safely(pair, functools.partial(self._open, pair))

    def _open(self, pair: _Pair) -> None:
        pair.client.setblocking(False)
        pair.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._settle(pair)

    def _connect(self, pair: _Pair) -> None:
        family, address = self._target
        pair.server = server = socket.socket(family, socket.SOCK_STREAM)
        server.setblocking(False)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = server.connect_ex(address)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            raise OSError(err, f"connect to the target: {os.strerror(err)}")
        pair.connecting = err != 0

    def _serve(self, pair: _Pair, sock: socket.socket, mask: int) -> None:
        if pair.closed:  # closed by an earlier event of the same select() batch
            return
        if sock is pair.server and pair.connecting:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, f"connect to the target: {os.strerror(err)}")
            pair.connecting = False
        else:
            incoming, outgoing = (
                (pair.up, pair.down) if sock is pair.client else (pair.down, pair.up)
            )
            if mask & _READ:
                self._read(pair, sock, incoming)
            if mask & _WRITE:
                self._write(sock, outgoing)
        self._settle(pair)

    def _read(self, pair: _Pair, sock: socket.socket, d: _Direction) -> None:
        try:
            data = sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            d.eof = True
            return
        d.buf += data
        pattern = self._cut_pattern
        if d is pair.up and pattern and not pair.cut:
            window = pair.tail + data
            if pattern in window:
                pair.cut = True
                pair.tail = b""
            else:
                pair.tail = window[max(0, len(window) - len(pattern) + 1) :]

    def _write(self, sock: socket.socket, d: _Direction) -> None:
        try:
            sent = sock.send(d.buf)
        except (BlockingIOError, InterruptedError):
            return
        del d.buf[:sent]

    def _held(self, pair: _Pair, d: _Direction) -> bool:
        return d.name in self._drop or (d is pair.down and pair.cut)

    def _interest(self, pair: _Pair, incoming: _Direction, outgoing: _Direction) -> int:
        events = 0
        if not incoming.eof and len(incoming.buf) < _BUFFER_LIMIT:
            events |= _READ
        # Held bytes wait without asking for writability: no busy loop while held.
        if outgoing.buf and not self._held(pair, outgoing):
            events |= _WRITE
        return events

    def _settle(self, pair: _Pair) -> None:
        """After any change: close a finished pair, connect, update the selector."""
        if pair.closed:
            return
        for d in (pair.up, pair.down):
            if d.eof and not d.buf and not self._held(pair, d):
                # One side closed and all it sent has been delivered: close the other side.
                self._close_pair(pair, abort=False)
                return
        if pair.server is None and not self._held(pair, pair.up):
            self._connect(pair)
        self._register(pair, pair.client, self._interest(pair, pair.up, pair.down))
        if pair.server is not None:
            events = _WRITE if pair.connecting else self._interest(pair, pair.down, pair.up)
            self._register(pair, pair.server, events)

    def _settle_all(self) -> None:
        for pair in list(self._pairs):
            self._safely(pair, functools.partial(self._settle, pair))

    def _register(self, pair: _Pair, sock: socket.socket, events: int) -> None:
        old = pair.events.get(sock, 0)
        if events == old:
            return
        if not old:
            self._sel.register(sock, events, pair)
        elif not events:
            self._sel.unregister(sock)
        else:
            self._sel.modify(sock, events, pair)
        if events:
            pair.events[sock] = events
        else:
            del pair.events[sock]

    def _safely(self, pair: _Pair, action: Callable[[], None]) -> None:
        """Run ``action`` on ``pair``; any error closes that pair only."""
        try:
            action()
        except OSError as exc:
            log.info("tcp proxy: closing a connection after %r", exc)
            self._close_pair(pair, abort=True)
        except Exception:
            log.exception("tcp proxy: closing a connection after an unexpected error")
            self._close_pair(pair, abort=True)

    def _close_pair(self, pair: _Pair, abort: bool) -> None:
        """Close both sockets; ``abort`` sends an RST (SO_LINGER 0) instead of a FIN."""
        if pair.closed:
            return
        pair.closed = True
        self._pairs.discard(pair)
        for sock in (pair.client, pair.server):
            if sock is None:
                continue
            if sock in pair.events:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(sock)
            if abort:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        pair.events.clear()
