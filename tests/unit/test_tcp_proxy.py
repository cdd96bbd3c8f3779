"""The fault-test TCP proxy, against a local echo server (and once against PostgreSQL)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.helpers import wait_until
from tests.pg_server import ensure_postgres_url
from tests.tcp_proxy import TcpProxy

TIMEOUT = 5.0


class _EchoHandler(socketserver.BaseRequestHandler):
    server: EchoServer
    request: socket.socket

    def handle(self) -> None:
        self.server.opened(self.request)
        try:
            while data := self.request.recv(65536):
                self.server.record(data)
                self.request.sendall(data)
        except OSError:
            pass  # reset by the proxy: expected in these tests
        finally:
            self.server.closed(self.request)


class EchoServer(socketserver.ThreadingTCPServer):
    """Echoes every byte back; records what it received and its open connections."""

    # Not daemon threads: server_close() joins them, so nothing outlives a test.
    daemon_threads = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.lock = threading.Lock()
        self.received = bytearray()
        self.accepted = 0
        self.open: set[socket.socket] = set()
        self.port: int = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def opened(self, conn: socket.socket) -> None:
        with self.lock:
            self.accepted += 1
            self.open.add(conn)

    def closed(self, conn: socket.socket) -> None:
        with self.lock:
            self.open.discard(conn)

    def record(self, data: bytes) -> None:
        with self.lock:
            self.received += data

    def got(self) -> bytes:
        with self.lock:
            return bytes(self.received)

    def open_count(self) -> int:
        with self.lock:
            return len(self.open)

    def hang_up(self) -> None:
        """Close the server side of every connection (shutdown wakes the blocked recv)."""
        with self.lock:
            for conn in self.open:
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()
    server.thread.join(TIMEOUT)


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo.port).start() as proxy:
        yield proxy


Connect = Callable[[], socket.socket]


@pytest.fixture
def connect(proxy: TcpProxy) -> Iterator[Connect]:
    """``connect()`` opens a client socket to the proxy; all are closed after the test."""
    made: list[socket.socket] = []

    def make() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"EOF after {bytes(data)!r}")
        data += chunk
    return bytes(data)


def assert_nothing_arrived(sock: socket.socket) -> None:
    """Nothing to read right now (call once the proxy is known to hold the bytes)."""
    sock.setblocking(False)
    try:
        with pytest.raises(BlockingIOError):
            sock.recv(1)
    finally:
        sock.settimeout(TIMEOUT)


def test_forwards_both_ways(echo: EchoServer, proxy: TcpProxy, connect: Connect) -> None:
    a, b = connect(), connect()
    a.sendall(b"hello ")
    b.sendall(b"world")
    assert recv_exactly(a, 6) == b"hello "
    assert recv_exactly(b, 5) == b"world"
    assert sorted(echo.got()) == sorted(b"hello world")
    assert echo.accepted == 2


def test_drop_holds_everything_then_forward_delivers_in_order(
    echo: EchoServer, proxy: TcpProxy, connect: Connect
) -> None:
    before = connect()
    before.sendall(b"ping")
    assert recv_exactly(before, 4) == b"ping"

    proxy.drop()
    after = connect()  # still accepted during the partition...
    messages = [f"message {i};".encode() for i in range(200)]
    for message in messages:
        before.sendall(message)
        after.sendall(message)
    total = len(b"".join(messages))
    wait_until(lambda: proxy.held_bytes("to_server") == 2 * total)
    assert proxy.connections() == 2
    assert echo.got() == b"ping"
    assert echo.accepted == 1  # ...but the server has not heard of it yet
    assert_nothing_arrived(before)
    assert_nothing_arrived(after)

    proxy.forward()
    assert recv_exactly(before, total) == b"".join(messages)
    assert recv_exactly(after, total) == b"".join(messages)
    assert proxy.held_bytes() == 0
    assert echo.accepted == 2


def test_drop_to_client_only(echo: EchoServer, proxy: TcpProxy, connect: Connect) -> None:
    client = connect()
    proxy.drop("to_client")
    client.sendall(b"request")
    wait_until(lambda: echo.got() == b"request")  # the server got it and answered
    wait_until(lambda: proxy.held_bytes("to_client") == len(b"request"))
    assert_nothing_arrived(client)

    proxy.forward()
    assert recv_exactly(client, 7) == b"request"


def test_cut_replies_after_pattern(echo: EchoServer, proxy: TcpProxy, connect: Connect) -> None:
    cut, other = connect(), connect()
    proxy.cut_replies_after(b"COMMIT")
    cut.sendall(b"BEGIN;COM")
    assert recv_exactly(cut, 9) == b"BEGIN;COM"  # no pattern yet: replies flow
    cut.sendall(b"MIT;")  # completes the pattern across two chunks
    wait_until(lambda: echo.got().endswith(b"COMMIT;"))  # the request itself gets through
    wait_until(lambda: proxy.held_bytes("to_client") == 4)
    assert_nothing_arrived(cut)

    other.sendall(b"SELECT 1;")  # other connections are not affected
    assert recv_exactly(other, 9) == b"SELECT 1;"

    proxy.forward()
    assert recv_exactly(cut, 4) == b"MIT;"
    cut.sendall(b"COMMIT;")  # forward() disarmed the pattern
    assert recv_exactly(cut, 7) == b"COMMIT;"


def test_reset_breaks_connections_and_new_ones_work(
    echo: EchoServer, proxy: TcpProxy, connect: Connect
) -> None:
    client = connect()
    client.sendall(b"hi")
    assert recv_exactly(client, 2) == b"hi"
    wait_until(lambda: echo.open_count() == 1)

    proxy.reset()
    with pytest.raises(ConnectionResetError):
        client.recv(1)
    assert proxy.connections() == 0
    wait_until(lambda: echo.open_count() == 0)  # the server side was reset too

    again = connect()
    again.sendall(b"again")
    assert recv_exactly(again, 5) == b"again"


def test_reset_drops_held_bytes_and_keeps_the_mode(
    echo: EchoServer, proxy: TcpProxy, connect: Connect
) -> None:
    proxy.drop("to_server")
    client = connect()
    client.sendall(b"lost")
    wait_until(lambda: proxy.held_bytes() == 4)
    proxy.reset()
    assert proxy.held_bytes() == 0

    fresh = connect()
    fresh.sendall(b"held")
    wait_until(lambda: proxy.held_bytes() == 4)
    proxy.forward()
    assert recv_exactly(fresh, 4) == b"held"
    assert echo.got() == b"held"


def test_connections_counts_and_closing_one_side_closes_the_other(
    echo: EchoServer, proxy: TcpProxy, connect: Connect
) -> None:
    assert proxy.connections() == 0
    a, b = connect(), connect()
    wait_until(lambda: proxy.connections() == 2)
    wait_until(lambda: echo.open_count() == 2)

    a.close()  # client side closes: the proxy closes the server side
    wait_until(lambda: proxy.connections() == 1)
    wait_until(lambda: echo.open_count() == 1)

    echo.hang_up()  # server side closes: the client sees EOF
    assert b.recv(1) == b""
    wait_until(lambda: proxy.connections() == 0)


def test_stop_closes_everything(echo: EchoServer) -> None:
    with TcpProxy("127.0.0.1", echo.port).start() as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as client:
            client.sendall(b"x")
            assert recv_exactly(client, 1) == b"x"
            proxy.stop()
            assert client.recv(1) == b""
            wait_until(lambda: echo.open_count() == 0)
        assert not any(t.name == f"tcp-proxy-{proxy.port}" for t in threading.enumerate())
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT).close()
        assert proxy.connections() == 0
        proxy.stop()  # idempotent (and again at the with's exit)


def test_target_down_closes_the_client() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused
        with TcpProxy("127.0.0.1", port).start() as proxy:
            # The RST can come so fast that connect() itself reports it.
            with pytest.raises(ConnectionResetError):
                client = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
                with client:
                    client.recv(1)
            assert proxy.connections() == 0


def test_url_for() -> None:
    with TcpProxy("127.0.0.1", 5432).start() as proxy:
        assert (
            proxy.url_for("postgresql://postgres:s%40cret@db.example:5432/postgres?sslmode=disable")
            == f"postgresql://postgres:s%40cret@127.0.0.1:{proxy.port}/postgres?sslmode=disable"
        )
        assert (
            proxy.url_for("postgresql://localhost/db") == f"postgresql://127.0.0.1:{proxy.port}/db"
        )


def test_through_postgres() -> None:
    url = ensure_postgres_url()
    parts = urlsplit(url)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start() as proxy:
        proxied = proxy.url_for(url)
        with psycopg.connect(proxied, autocommit=True, connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            proxy.reset()
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        with psycopg.connect(proxied, autocommit=True, connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        wait_until(lambda: proxy.connections() == 0)
