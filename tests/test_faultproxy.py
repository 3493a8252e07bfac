"""The fault proxy: each toxic does what it says to a real client, and closing leaks nothing."""

from __future__ import annotations

import asyncio
import errno
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import faultproxy
import h11
import httpx
import psutil
import pytest
from faultproxy import FaultProxy, Toxic

# Any of these means "the connection broke" to an httpx caller; which one depends on timing.
CONNECTION_ERRORS = (
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.ConnectError,
)


#: How long a test waits for something that takes milliseconds, on a loaded machine included.
#: Waits end as soon as the thing happens, so a generous bound costs nothing.
PATIENCE = 30.0


def body_of(size: int) -> bytes:
    """Random-looking bytes, so a lost, repeated or reordered slice changes the body."""
    return random.Random(size).randbytes(size)


class Upstream:
    """An HTTP/1.1 server (h11 on asyncio streams) on loopback in its own thread.

    ``GET /bytes/N`` answers N bytes of `body_of` (and then closes the
    connection if the query says ``close``); ``POST /echo`` answers its body.
    """

    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def _answer(self, request: h11.Request, body: bytes) -> tuple[bytes, bool]:
        """What to send back, and whether to close the connection after it."""
        self.requests += 1
        path, _, query = request.target.decode().partition("?")
        if request.method == b"POST" and path == "/echo":
            return body, False
        return body_of(int(path.removeprefix("/bytes/"))), "close" in query

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = None, b""
                while not isinstance(event := connection.next_event(), h11.EndOfMessage):
                    if event is h11.NEED_DATA:
                        connection.receive_data(await reader.read(65536))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    else:
                        return  # the client closed the connection
                assert request is not None
                content, close = self._answer(request, body)
                headers = [("content-length", str(len(content)))]
                if close:
                    headers.append(("connection", "close"))
                response = h11.Response(status_code=200, headers=headers)
                writer.write(
                    (connection.send(response) or b"")
                    + (connection.send(h11.Data(data=content)) or b"")
                    + (connection.send(h11.EndOfMessage()) or b"")
                )
                await writer.drain()
                if connection.our_state is not h11.DONE:
                    return
                connection.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError):
            pass  # a toxic cut the connection
        finally:
            writer.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._converse, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()  # asyncio.run then cancels the connections still open

    def __enter__(self) -> Upstream:
        self._thread.start()
        assert self._ready.wait(PATIENCE), "the upstream server did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(PATIENCE)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", upstream.port), seed=1) as running:
        yield running


def client(*, read: float = PATIENCE, keepalive: bool = True) -> httpx.Client:
    # trust_env=False: a proxy set in the environment must never see these requests.
    return httpx.Client(
        timeout=httpx.Timeout(PATIENCE, read=read),
        limits=httpx.Limits(max_keepalive_connections=None if keepalive else 0),
        trust_env=False,
    )


def raw_get(proxy: FaultProxy, path: str, *, keepalive: bool = False) -> socket.socket:
    """Send a GET over a plain socket, for tests that look below HTTP (RST, exact byte counts)."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=PATIENCE)
    connection = "keep-alive" if keepalive else "close"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\n\r\n".encode())
    return sock


def read_to_eof(sock: socket.socket) -> list[bytes]:
    """Every recv() result up to end of stream, so tests can count the pieces."""
    pieces = []
    while piece := sock.recv(65536):
        pieces.append(piece)
    return pieces


def wait_until(condition: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_clean_proxy_passes_requests_and_bodies_through_unchanged(proxy: FaultProxy) -> None:
    with client() as http:
        got = http.get(proxy.url_for("/bytes/100000"))
        echoed = http.post(proxy.url_for("/echo"), content=body_of(20000))
    assert got.content == body_of(100000)
    assert echoed.content == body_of(20000)
    assert proxy.stats.accepted == 1  # both requests shared one kept-alive connection
    assert proxy.stats.hits == {}
    assert wait_until(lambda: proxy.stats.open == 0)


def test_a_dead_upstream_closes_the_client_connection() -> None:
    # Bound but not listening: connections are refused, and no other process can take the port.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
        with FaultProxy(("127.0.0.1", dead_port)) as proxy, client() as http:
            with pytest.raises(httpx.RemoteProtocolError):
                http.get(proxy.url_for("/bytes/10"))
            assert wait_until(lambda: proxy.stats.open == 0)
            assert proxy.stats.accepted == 1


def test_latency_delays_the_response_by_at_least_the_delay(proxy: FaultProxy) -> None:
    proxy.add(Toxic.latency(0.25))
    with client() as http:
        started = time.monotonic()
        response = http.get(proxy.url_for("/bytes/100"))
        elapsed = time.monotonic() - started
    assert response.content == body_of(100)
    assert elapsed >= 0.25
    assert proxy.stats.hits == {"latency_downstream": 1}


def test_reset_peer_gives_an_httpx_client_a_connection_error(proxy: FaultProxy) -> None:
    proxy.add(Toxic.reset_peer())
    with client() as http, pytest.raises(CONNECTION_ERRORS):
        http.get(proxy.url_for("/bytes/100"))


def test_reset_peer_closes_with_rst_not_fin(proxy: FaultProxy) -> None:
    proxy.add(Toxic.reset_peer())
    # A FIN would make recv() return b""; only an RST raises ECONNRESET.
    with raw_get(proxy, "/bytes/100") as sock, pytest.raises(ConnectionResetError) as caught:
        read_to_eof(sock)
    assert caught.value.errno == errno.ECONNRESET


def test_reset_peer_after_a_delay_strikes_an_idle_connection_on_time(proxy: FaultProxy) -> None:
    proxy.add(Toxic.reset_peer(after=0.3))
    started = time.monotonic()  # before the request, so before the toxic's clock starts
    with raw_get(proxy, "/bytes/10", keepalive=True) as sock:
        answer = b""
        while not answer.endswith(body_of(10)):  # the answer passes before the deadline
            answer += sock.recv(65536)
        with pytest.raises(ConnectionResetError):
            sock.recv(65536)  # nothing more is sent: only the timer can end this wait
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 200")
    assert elapsed >= 0.3


def test_upstream_reset_peer_stops_the_request_before_the_server(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    before = upstream.requests
    proxy.add(Toxic.reset_peer(direction="upstream"))
    with client() as http, pytest.raises(CONNECTION_ERRORS):
        http.get(proxy.url_for("/bytes/100"))
    assert upstream.requests == before


def test_timeout_hangs_until_the_client_gives_up_then_frees_the_connection(
    proxy: FaultProxy,
) -> None:
    proxy.add(Toxic.timeout())
    with client(read=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.get(proxy.url_for("/bytes/100"))
    # The client closed its socket on the way out; the proxy must let go of both ends.
    assert wait_until(lambda: proxy.stats.open == 0)
    assert proxy.stats.hits == {"timeout_downstream": 1}


def test_upstream_timeout_swallows_the_request_and_ends_when_the_client_leaves(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    before = upstream.requests
    proxy.add(Toxic.timeout(direction="upstream"))
    with client(read=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.get(proxy.url_for("/bytes/100"))
    assert wait_until(lambda: proxy.stats.open == 0)
    assert upstream.requests == before


def test_slicer_delivers_the_full_body_in_many_pieces(proxy: FaultProxy) -> None:
    proxy.add(Toxic.slicer(average_size=50, delay=0.01))
    started = time.monotonic()
    with raw_get(proxy, "/bytes/1000") as sock:
        received = b"".join(read_to_eof(sock))
        elapsed = time.monotonic() - started
    assert received.endswith(b"\r\n\r\n" + body_of(1000))
    # Pieces of 50 bytes, 10 ms apart. How many recv() calls see them depends on when this thread
    # runs (a late reader gets several at once), but the gaps between them cannot shrink.
    assert elapsed >= (len(received) // 50 - 1) * 0.01


def test_slicer_with_tiny_pieces_keeps_httpx_bodies_intact(proxy: FaultProxy) -> None:
    proxy.add(Toxic.slicer(average_size=4, size_variation=3, delay=0.0005))
    proxy.add(Toxic.slicer(average_size=16, delay=0.0005, direction="upstream"))
    with client() as http:
        got = http.get(proxy.url_for("/bytes/300"))
        echoed = http.post(proxy.url_for("/echo"), content=body_of(1500))
    assert got.content == body_of(300)
    assert echoed.content == body_of(1500)


def test_limit_data_forwards_exactly_n_bytes_then_closes(proxy: FaultProxy) -> None:
    proxy.add(Toxic.limit_data(bytes=100))
    with raw_get(proxy, "/bytes/1000") as sock:
        received = b"".join(read_to_eof(sock))
    assert len(received) == 100
    assert received.startswith(b"HTTP/1.1 200")


def test_limit_data_makes_httpx_see_a_truncated_body(proxy: FaultProxy) -> None:
    proxy.add(Toxic.limit_data(bytes=1000))
    with client() as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(proxy.url_for("/bytes/5000"))


def test_slow_close_holds_the_connection_open_after_the_server_closes(proxy: FaultProxy) -> None:
    proxy.add(Toxic.slow_close(0.3))
    started = time.monotonic()  # before the request, so before the server closes
    with raw_get(proxy, "/bytes/10?close") as sock:
        received = b"".join(read_to_eof(sock))
        elapsed = time.monotonic() - started
    assert received.endswith(body_of(10))
    assert elapsed >= 0.3


@pytest.mark.timing
def test_bandwidth_caps_throughput(proxy: FaultProxy) -> None:
    proxy.add(Toxic.bandwidth(rate=100_000))
    with client() as http:
        started = time.monotonic()
        response = http.get(proxy.url_for("/bytes/50000"))
        elapsed = time.monotonic() - started
    assert response.content == body_of(50000)
    assert elapsed > 0.25  # half of the ideal 0.5 s


def hit_connections(upstream: Upstream, seed: int) -> set[int]:
    """Which of 50 fresh connections a reset_peer at probability 0.3 breaks."""
    with FaultProxy(("127.0.0.1", upstream.port), seed=seed) as proxy:
        proxy.add(Toxic.reset_peer(probability=0.3))
        broken = set()
        with client(keepalive=False) as http:  # one connection per request
            for index in range(50):
                try:
                    http.get(proxy.url_for("/bytes/10"))
                except CONNECTION_ERRORS:
                    broken.add(index)
        assert proxy.stats.accepted == 50
        assert proxy.stats.hits == {"reset_peer_downstream": len(broken)}
    return broken


def test_probability_with_a_seed_picks_the_same_connections_every_time(
    upstream: Upstream,
) -> None:
    first = hit_connections(upstream, seed=7)
    assert hit_connections(upstream, seed=7) == first
    assert hit_connections(upstream, seed=8) != first
    assert 5 <= len(first) <= 25  # about 15 expected


def test_probability_zero_never_hits_and_one_always_hits(proxy: FaultProxy) -> None:
    proxy.add(Toxic.latency(0.0, probability=0.0, name="never"))
    proxy.add(Toxic.latency(0.0, probability=1.0, name="always"))
    with client(keepalive=False) as http:
        for _ in range(10):
            http.get(proxy.url_for("/bytes/10"))
    assert proxy.stats.hits == {"always": 10}


def test_toxics_reach_open_connections_and_clear_removes_them(proxy: FaultProxy) -> None:
    with client() as http:
        http.get(proxy.url_for("/bytes/10"))
        name = proxy.add(Toxic.reset_peer())
        with pytest.raises(CONNECTION_ERRORS):
            http.get(proxy.url_for("/bytes/10"))  # on the kept-alive connection
        proxy.remove(name)
        assert http.get(proxy.url_for("/bytes/10")).content == body_of(10)
        proxy.add(Toxic.limit_data(bytes=50))
        proxy.add(Toxic.latency(0.0))
        assert [t.name for t in proxy.toxics] == ["limit_data_downstream", "latency_downstream"]
        proxy.clear()
        assert http.get(proxy.url_for("/bytes/10")).content == body_of(10)
    assert proxy.toxics == ()


def test_toxic_names_are_unique_and_parameters_are_checked(proxy: FaultProxy) -> None:
    assert proxy.add(Toxic.latency(0.1)) == "latency_downstream"
    assert proxy.add(Toxic.latency(0.1, direction="upstream")) == "latency_upstream"
    with pytest.raises(ValueError, match="already active"):
        proxy.add(Toxic.latency(0.2))
    with pytest.raises(KeyError):
        proxy.remove("nothing")
    with pytest.raises(ValueError, match="probability"):
        Toxic.latency(0.1, probability=1.5)
    with pytest.raises(ValueError, match="direction"):
        Toxic.latency(0.1, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate"):
        Toxic.bandwidth(0)


def test_start_on_a_taken_port_fails_loudly_and_leaves_no_thread(upstream: Upstream) -> None:
    threads = set(threading.enumerate())
    with socket.create_server(("127.0.0.1", 0)) as taken:
        proxy = FaultProxy(("127.0.0.1", upstream.port), port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="did not start") as caught:
            proxy.start()
    assert isinstance(caught.value.__cause__, OSError)
    assert set(threading.enumerate()) - threads == set()


def test_close_leaks_no_threads_or_fds_even_with_a_hung_connection(upstream: Upstream) -> None:
    process = psutil.Process()
    threads, fds = set(threading.enumerate()), process.num_fds()
    proxy = FaultProxy(("127.0.0.1", upstream.port)).start()
    with client() as http:
        http.get(proxy.url_for("/bytes/10"))
    proxy.add(Toxic.timeout())
    hung = raw_get(proxy, "/bytes/10")
    assert wait_until(lambda: proxy.stats.hits.get("timeout_downstream") == 1)
    proxy.close()  # raises if the loop thread does not stop
    proxy.close()  # and a second close is harmless
    hung.close()
    assert set(threading.enumerate()) - threads == set()
    sockets = process.net_connections("tcp")
    ports = {c.laddr.port for c in sockets} | {c.raddr.port for c in sockets if c.raddr}
    assert proxy.port not in ports  # neither the listener nor an accepted connection is left
    # The upstream server closes its ends of the proxy's connections a moment later.
    assert wait_until(lambda: process.num_fds() <= fds), (process.num_fds(), fds)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1.0)


def sees_its_connection_closed(sock: socket.socket) -> bool:
    """Whether the proxy ends ``sock`` (FIN or RST) within PATIENCE, whatever was sent before."""
    try:
        read_to_eof(sock)
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_close_ends_every_connection_whatever_it_is_doing(upstream: Upstream) -> None:
    proxy = FaultProxy(("127.0.0.1", upstream.port)).start()
    idle = raw_get(proxy, "/bytes/10", keepalive=True)
    answer = b""
    while not answer.endswith(body_of(10)):
        answer += idle.recv(65536)
    # Clients that never read their answer: the relay is held up writing to them.
    unread = [raw_get(proxy, "/bytes/4000000", keepalive=True) for _ in range(4)]
    assert wait_until(lambda: proxy.stats.open == 5)
    for sock in unread:
        assert select.select([sock], [], [], PATIENCE)[0], "no answer started"
    # And clients that connect while the proxy closes: refused, or accepted and then closed.
    late: list[socket.socket] = []

    def connect_until_refused() -> None:
        for _ in range(100):
            try:
                late.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=PATIENCE))
            except OSError:
                return

    connecting = threading.Thread(target=connect_until_refused)
    connecting.start()
    proxy.close()  # raises if the loop thread does not stop
    connecting.join(PATIENCE)
    for sock in [idle, *unread, *late]:
        with sock:
            assert sees_its_connection_closed(sock)
    assert proxy.stats.open == 0


def test_close_ends_connections_it_interrupts_in_the_middle_of_their_hang_up(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    hanging_up: list[bool] = []

    async def close_never_completes(writer: object, *, reset: bool, abort: bool) -> None:
        hanging_up.append(True)
        await asyncio.get_running_loop().create_future()  # like a peer that never lets go

    monkeypatch.setattr(faultproxy, "_close", close_never_completes)
    proxy = FaultProxy(("127.0.0.1", upstream.port)).start()
    # The server closes after answering, which ends each connection and starts its hang-up.
    clients = [raw_get(proxy, "/bytes/10") for _ in range(5)]
    assert wait_until(lambda: len(hanging_up) == 2 * len(clients))  # both ends of each
    proxy.close()  # cancels every hang-up midway; raises if the loop thread does not stop
    for sock in clients:
        with sock:
            assert sees_its_connection_closed(sock)
    assert proxy.stats.open == 0


@pytest.mark.anyio
async def test_async_clients_on_asyncio_and_trio_work_through_the_proxy(
    proxy: FaultProxy,
) -> None:
    proxy.add(Toxic.latency(0.1))
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
        started = time.monotonic()
        response = await http.get(proxy.url_for("/bytes/1000"))
    assert response.content == body_of(1000)
    assert time.monotonic() - started >= 0.1
