"""A small toxiproxy-like TCP proxy that injects network faults between a client and a server.

It runs its own asyncio loop in a background thread, so sync code and asyncio or trio tests can
all use it::

    with FaultProxy(upstream=("127.0.0.1", 8080), seed=1) as proxy:
        proxy.add(Toxic.latency(0.05, jitter=0.02))
        proxy.add(Toxic.reset_peer(probability=0.1))
        httpx.get(proxy.url_for("/v1/campaigns/search"))

A toxic acts on one direction: ``"downstream"`` (server to client, the default) or ``"upstream"``
(client to server), and on a ``probability`` fraction of connections. Whether a toxic hits a
connection is decided once, from ``(seed, connection number, toxic name)``, so a seed replays the
same set of hit connections (``Toxic.strikes`` tells which, without a proxy). Toxics can be added
and removed at any time, from any thread; a change takes effect from the next chunk of data on
every open connection, pooled keep-alive ones included.

Order in which the toxics act on each chunk read from one side before it is written to the other:

1. gates: ``reset_peer`` and ``timeout`` once their ``after`` has passed, then ``limit_data``;
2. ``latency`` holds the chunk (several latencies add up);
3. ``slicer`` cuts it into pieces and ``bandwidth`` paces them (the lowest rate wins);
4. at end of stream, ``slow_close`` holds the close back (several add up).

``after`` (and ``limit_data``'s count) start from the first chunk the toxic sees on a connection.
A connection ends as soon as either peer closes: the proxy does not relay half-closes, which HTTP
clients never use, and that keeps a hung connection from outliving its client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Literal

Direction = Literal["upstream", "downstream"]
Kind = Literal[
    "latency", "reset_peer", "timeout", "slicer", "limit_data", "slow_close", "bandwidth"
]

_READ_SIZE = 65536
_PACE_STEP = 0.02  # bandwidth writes at most this many seconds' worth of bytes at once
_CONNECT_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 1.0  # how long a graceful close may wait for a peer that stopped reading
_THREAD_TIMEOUT = 5.0


@dataclass(frozen=True)
class Toxic:
    """One kind of fault. Build it with a class method (``Toxic.latency(0.1)``), then ``add`` it."""

    kind: Kind
    direction: Direction = "downstream"
    probability: float = 1.0
    name: str = ""  # defaults to "<kind>_<direction>" when added
    delay: float = 0.0  # latency, slicer (between pieces), slow_close; seconds
    jitter: float = 0.0  # latency: the delay varies uniformly by +/- this much
    after: float = 0.0  # reset_peer, timeout: seconds of normal forwarding first
    size: int = 0  # slicer: average piece size; limit_data: bytes forwarded before closing
    size_variation: int = 0  # slicer
    rate: float = 0.0  # bandwidth: bytes per second

    def __post_init__(self) -> None:
        if self.direction not in ("upstream", "downstream"):
            raise ValueError(
                f"direction must be 'upstream' or 'downstream', not {self.direction!r}"
            )
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], not {self.probability}")
        numbers = (self.delay, self.jitter, self.after, self.size, self.size_variation, self.rate)
        if min(numbers) < 0:
            raise ValueError(f"{self.kind} parameters must not be negative")

    @property
    def label(self) -> str:
        """The toxic's name: ``name`` if given, else ``"<kind>_<direction>"``."""
        return self.name or f"{self.kind}_{self.direction}"

    def strikes(self, seed: int, connection: int) -> bool:
        """Whether this toxic hits connection number ``connection`` (0 is the first accepted).

        The proxy decides with exactly this, so a test can choose a seed that makes a toxic hit a
        connection every run is sure to open, instead of hoping that some connection is hit.
        """
        draw = random.Random(f"{seed}:{connection}:{self.label}").random()
        return draw < self.probability

    @classmethod
    def latency(
        cls,
        delay: float,
        jitter: float = 0.0,
        *,
        direction: Direction = "downstream",
        probability: float = 1.0,
        name: str = "",
    ) -> Toxic:
        """Hold each chunk for ``delay`` seconds, give or take ``jitter``."""
        return cls("latency", direction, probability, name, delay=delay, jitter=jitter)

    @classmethod
    def reset_peer(
        cls,
        after: float = 0.0,
        *,
        direction: Direction = "downstream",
        probability: float = 1.0,
        name: str = "",
    ) -> Toxic:
        """Tear the connection down with RST (both sockets) ``after`` seconds past its first chunk.

        Downstream, the request has reached the server and the client gets ECONNRESET instead of
        the answer; upstream with ``after=0``, the request never reaches the server.
        """
        return cls("reset_peer", direction, probability, name, after=after)

    @classmethod
    def timeout(
        cls,
        after: float = 0.0,
        *,
        direction: Direction = "downstream",
        probability: float = 1.0,
        name: str = "",
    ) -> Toxic:
        """Forward for ``after`` seconds, then swallow all data and hang until the client leaves."""
        return cls("timeout", direction, probability, name, after=after)

    @classmethod
    def slicer(
        cls,
        average_size: int,
        size_variation: int = 0,
        delay: float = 0.0,
        *,
        direction: Direction = "downstream",
        probability: float = 1.0,
        name: str = "",
    ) -> Toxic:
        """Deliver bytes in pieces of about ``average_size``, ``delay`` seconds apart."""
        if average_size < 1 or size_variation >= average_size:
            raise ValueError("slicer needs average_size >= 1 and size_variation < average_size")
        return cls(
            "slicer",
            direction,
            probability,
            name,
            delay=delay,
            size=average_size,
            size_variation=size_variation,
        )

    @classmethod
    def limit_data(
        cls,
        bytes: int,
        *,
        direction: Direction = "downstream",
        probability: float = 1.0,
        name: str = "",
    ) -> Toxic:
        """Forward ``bytes`` bytes (headers included), then close the connection."""
        return cls("limit_data", direction, probability, name, size=bytes)

    @classmethod
    def slow_close(
        cls,
        delay: float,
        *,
        direction: Direction = "downstream",
        probability: float = 1.0,
        name: str = "",
    ) -> Toxic:
        """When the sending side closes, wait ``delay`` seconds before closing the connection."""
        return cls("slow_close", direction, probability, name, delay=delay)

    @classmethod
    def bandwidth(
        cls,
        rate: float,
        *,
        direction: Direction = "downstream",
        probability: float = 1.0,
        name: str = "",
    ) -> Toxic:
        """Cap throughput at ``rate`` bytes per second."""
        if rate <= 0:
            raise ValueError("bandwidth rate must be positive")
        return cls("bandwidth", direction, probability, name, rate=rate)


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of what the proxy has seen."""

    accepted: int  # connections accepted since start
    open: int  # connections currently open
    hits: Mapping[str, int]  # toxic name -> connections it hit


class _ResetPeer(Exception):
    """Raised inside a pump to tear its connection down with RST."""


@dataclass
class _ToxicState:
    """What one toxic remembers about one connection."""

    hit: bool
    started: float | None = None  # loop time of the first chunk it saw
    passed: int = 0  # limit_data: bytes let through so far
    timer: asyncio.TimerHandle | None = None


_Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Link:
    """One client connection and its upstream connection.

    Each end is opened by a task of its own, kept here: a relay cancelled just as a connection
    opens would lose the streams it was about to get, but the task keeps them for the shutdown.
    """

    def __init__(self, index: int, seed: int, accepting: asyncio.Task[_Streams]) -> None:
        self.index = index
        self.accepting = accepting  # wraps the accepted socket in streams
        self.dialing: asyncio.Task[_Streams] | None = None  # connects to the upstream
        self.states: dict[Toxic, _ToxicState] = {}
        self.hung: dict[Direction, bool] = {"upstream": False, "downstream": False}
        self.pace_at: dict[Direction, float] = {"upstream": 0.0, "downstream": 0.0}
        self.rng = random.Random(f"{seed}:{index}")  # jitter and slice sizes
        self.ended = asyncio.Event()
        self.reset = False

    def end(self, *, reset: bool) -> None:
        self.reset = self.reset or reset
        self.ended.set()

    @property
    def client(self) -> _Streams | None:
        return _opened(self.accepting)

    @property
    def upstream(self) -> _Streams | None:
        return _opened(self.dialing)

    @property
    def opening(self) -> list[asyncio.Task[_Streams]]:
        return [task for task in (self.accepting, self.dialing) if task is not None]

    @property
    def writers(self) -> list[asyncio.StreamWriter]:
        """The ends that are open: the client's, and the upstream's once it is connected."""
        return [streams[1] for streams in (self.client, self.upstream) if streams is not None]

    def abort(self) -> None:
        """Close both ends now, without waiting for unsent data; safe to repeat."""
        for writer in self.writers:
            writer.transport.abort()


class FaultProxy:
    """Listen on ``host:port`` (a free port by default) and relay each connection to ``upstream``.

    Use it as a context manager, or call ``start()`` and ``close()``. ``seed`` makes the choice of
    hit connections, the jitter and the slice sizes reproducible; without one a seed is drawn and
    kept in ``proxy.seed`` so a failing run can be replayed.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = upstream
        self.host = host
        self.seed = random.randrange(2**32) if seed is None else seed
        self._requested_port = port
        self._port: int | None = None
        # The loop thread reads _toxics once per chunk; writers swap in a new tuple under the lock,
        # so a reader never sees a half-made change and no hand-off to the loop is needed.
        self._lock = threading.Lock()
        self._toxics: tuple[Toxic, ...] = ()
        self._accepted = 0
        self._open = 0
        self._hits: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        # Every accepted connection until its relay has ended, with the task relaying it.
        self._links: dict[_Link, asyncio.Task[None]] = {}

    # -- control, from any thread ---------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start listening; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the fault proxy is already started")
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        self._ready.wait(_THREAD_TIMEOUT)
        if self._port is None:
            error, self._error = self._error, None
            self.close()
            raise RuntimeError("the fault proxy did not start") from error
        return self

    def close(self) -> None:
        """Stop the loop, close every socket and join the thread. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._stopping.set)
        thread.join(_THREAD_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("the fault proxy thread did not stop")
        if self._error is not None:
            raise RuntimeError("the fault proxy loop failed") from self._error

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._port is None:
            raise RuntimeError("the fault proxy is not started")
        return self._port

    def url_for(self, path: str = "", scheme: str = "http") -> str:
        """``"http://127.0.0.1:PORT" + path``."""
        return f"{scheme}://{self.host}:{self.port}{path}"

    def add(self, toxic: Toxic) -> str:
        """Activate ``toxic`` and return its name (for ``remove``)."""
        toxic = replace(toxic, name=toxic.label)
        with self._lock:
            if any(t.name == toxic.name for t in self._toxics):
                raise ValueError(f"a toxic named {toxic.name!r} is already active; pass name=")
            self._toxics = (*self._toxics, toxic)
        return toxic.name

    def remove(self, name: str) -> None:
        """Deactivate the toxic called ``name``."""
        with self._lock:
            if all(t.name != name for t in self._toxics):
                raise KeyError(f"no active toxic named {name!r}")
            self._toxics = tuple(t for t in self._toxics if t.name != name)

    def clear(self) -> None:
        """Deactivate every toxic; connections that are hung by a timeout stay hung."""
        with self._lock:
            self._toxics = ()

    @property
    def toxics(self) -> tuple[Toxic, ...]:
        """The active toxics, in the order they were added."""
        return self._toxics

    @property
    def stats(self) -> ProxyStats:
        """Connections accepted and open now, and how many connections each toxic hit."""
        with self._lock:
            return ProxyStats(self._accepted, self._open, dict(self._hits))

    # -- the loop thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # kept for close() to re-raise in the caller's thread
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        family, _, _, _, address = socket.getaddrinfo(
            self.host, self._requested_port, type=socket.SOCK_STREAM
        )[0]
        listener = socket.create_server(address, family=family)
        try:
            listener.setblocking(False)
            self._port = listener.getsockname()[1]
            loop.add_reader(listener, self._accept, listener)
            self._ready.set()
            await self._stopping.wait()
        finally:
            loop.remove_reader(listener)
            listener.close()  # the kernel resets connections that were not accepted yet
            await self._shut_down()

    def _accept(self, listener: socket.socket) -> None:
        """Accept every connection waiting on the listener and start relaying each.

        The proxy accepts by itself rather than through ``asyncio.start_server``: that server
        wraps each accepted socket in a later task, so a socket accepted just before shutdown
        could escape it and stay open until the garbage collector found it. Here a socket is
        in ``_links`` from the moment it is accepted.
        """
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            sock.setblocking(False)
            accepting = loop.create_task(asyncio.open_connection(sock=sock))
            # Closes the socket if it never became streams (failed, or cancelled by shutdown).
            accepting.add_done_callback(functools.partial(_close_unless_opened, sock))
            with self._lock:
                link = _Link(self._accepted, self.seed, accepting)
                self._accepted += 1
                self._open += 1
            relay = loop.create_task(self._relay(link))
            self._links[link] = relay
            relay.add_done_callback(functools.partial(self._forget, link))

    async def _shut_down(self) -> None:
        """Close every accepted connection, whatever its relay is doing, and wait until it is.

        A relay may be cancelled before it ever ran, or in the middle of its own hang-up, so the
        sockets are aborted here as well as by the relays.
        """
        assert self._stopping is not None
        self._stopping.set()
        links = dict(self._links)
        for link, relay in links.items():
            relay.cancel()
            for task in link.opening:
                task.cancel()
        tasks = [task for link, relay in links.items() for task in (relay, *link.opening)]
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in links:
            link.abort()
        closing = [writer.wait_closed() for link in links for writer in link.writers]
        await asyncio.gather(*closing, return_exceptions=True)

    def _forget(self, link: _Link, relay: asyncio.Task[None]) -> None:
        del self._links[link]
        with self._lock:
            self._open -= 1
        if not relay.cancelled() and relay.exception() is not None:
            relay.get_loop().call_exception_handler(
                {"message": "fault proxy relay failed", "exception": relay.exception()}
            )

    async def _relay(self, link: _Link) -> None:
        pumps: list[asyncio.Task[None]] = []
        try:
            try:
                await link.accepting
                link.dialing = asyncio.create_task(asyncio.open_connection(*self.upstream))
                await asyncio.wait([link.dialing], timeout=_CONNECT_TIMEOUT)
                if link.upstream is None:
                    return  # the client sees its connection closed, as with a dead upstream
            except OSError:
                return  # the client left before its connection was set up
            pumps = [asyncio.create_task(self._pump(link, d)) for d in ("upstream", "downstream")]
            await link.ended.wait()
        finally:
            try:
                await self._hang_up(link, pumps)
            except asyncio.CancelledError:
                # Shutdown came in the middle of the hang-up: stop waiting, but close both ends.
                link.abort()
                raise

    async def _hang_up(self, link: _Link, pumps: list[asyncio.Task[None]]) -> None:
        for task in (*pumps, *link.opening):
            task.cancel()  # an upstream still connecting (timed out, or cancelled) too
        for state in link.states.values():
            if state.timer is not None:
                state.timer.cancel()
        await asyncio.gather(*pumps, *link.opening, return_exceptions=True)
        abort = self._stopping is not None and self._stopping.is_set()
        await asyncio.gather(*(_close(w, reset=link.reset, abort=abort) for w in link.writers))

    async def _pump(self, link: _Link, direction: Direction) -> None:
        try:
            await self._forward(link, direction)
            link.end(reset=False)
        except _ResetPeer:
            link.end(reset=True)
        except OSError:  # a peer vanished mid-write: end the connection like any close
            link.end(reset=False)

    async def _forward(self, link: _Link, direction: Direction) -> None:
        client, upstream = link.client, link.upstream
        assert client is not None
        assert upstream is not None
        if direction == "upstream":
            src, dst = client[0], upstream[1]
        else:
            src, dst = upstream[0], client[1]
        while True:
            chunk = await src.read(_READ_SIZE)
            if link.hung[direction]:
                # A timed-out stream swallows what it reads and ends only when the client leaves.
                if not chunk and direction == "upstream":
                    return
                if not chunk:
                    await asyncio.get_running_loop().create_future()  # until cancelled
                continue
            active = self._active(link, direction)
            if not chunk:
                await asyncio.sleep(sum(t.delay for t, _ in active if t.kind == "slow_close"))
                return
            chunk, last = self._gate(link, direction, active, chunk)
            if link.hung[direction]:
                continue
            delay = sum(
                max(0.0, t.delay + link.rng.uniform(-t.jitter, t.jitter))
                for t, _ in active
                if t.kind == "latency"
            )
            if delay:
                await asyncio.sleep(delay)
            await self._deliver(link, direction, active, chunk, dst)
            if last:
                return

    def _active(self, link: _Link, direction: Direction) -> list[tuple[Toxic, _ToxicState]]:
        """The toxics that hit this connection in this direction, deciding for new ones."""
        active = []
        for toxic in self._toxics:
            if toxic.direction != direction:
                continue
            state = link.states.get(toxic)
            if state is None:
                # Decided per (connection, toxic), not from one shared generator, so the decision
                # does not depend on the order in which concurrent connections meet their toxics.
                hit = toxic.strikes(self.seed, link.index)
                state = link.states[toxic] = _ToxicState(hit=hit)
                if state.hit:
                    with self._lock:
                        self._hits[toxic.name] = self._hits.get(toxic.name, 0) + 1
            if state.hit:
                active.append((toxic, state))
        return active

    def _gate(
        self,
        link: _Link,
        direction: Direction,
        active: list[tuple[Toxic, _ToxicState]],
        chunk: bytes,
    ) -> tuple[bytes, bool]:
        """Apply reset_peer, timeout and limit_data; return what passes and whether to end after."""
        loop = asyncio.get_running_loop()
        last = False
        for toxic, state in active:
            if state.started is None:
                state.started = loop.time()
                if toxic.kind in ("reset_peer", "timeout") and toxic.after > 0:
                    # A timer, so the fault strikes on time even if no more data comes.
                    state.timer = loop.call_later(toxic.after, self._strike, link, direction, toxic)
            if (
                toxic.kind in ("reset_peer", "timeout")
                and loop.time() - state.started >= toxic.after
            ):
                if toxic.kind == "reset_peer":
                    raise _ResetPeer  # before writing: a chunk sent now could beat the RST
                link.hung[direction] = True
                return b"", False
            if toxic.kind == "limit_data":
                chunk = chunk[: toxic.size - state.passed]
                state.passed += len(chunk)
                last = last or state.passed >= toxic.size
        return chunk, last

    def _strike(self, link: _Link, direction: Direction, toxic: Toxic) -> None:
        if toxic not in self._toxics:
            return  # removed since the timer was set
        if toxic.kind == "reset_peer":
            link.end(reset=True)
        else:
            link.hung[direction] = True

    async def _deliver(
        self,
        link: _Link,
        direction: Direction,
        active: list[tuple[Toxic, _ToxicState]],
        chunk: bytes,
        dst: asyncio.StreamWriter,
    ) -> None:
        slicer = next((t for t, _ in active if t.kind == "slicer"), None)
        rate = min((t.rate for t, _ in active if t.kind == "bandwidth"), default=0.0)
        pieces = _slices(chunk, slicer, link.rng) if slicer else [chunk]
        step = max(1, int(rate * _PACE_STEP)) if rate else max(1, len(chunk))
        loop = asyncio.get_running_loop()
        for piece in pieces:
            for start in range(0, len(piece), step):
                if link.hung[direction] or link.ended.is_set():
                    return  # a timer struck mid-chunk: nothing more may pass
                part = piece[start : start + step]
                dst.write(part)
                await dst.drain()
                if rate:
                    # Pace against a running schedule, so that many short sleeps, each of which
                    # oversleeps a little, don't add up to a much lower rate than asked.
                    now = loop.time()
                    link.pace_at[direction] = max(now, link.pace_at[direction]) + len(part) / rate
                    await asyncio.sleep(link.pace_at[direction] - now)
            if slicer is not None:
                await asyncio.sleep(slicer.delay)


def _slices(chunk: bytes, slicer: Toxic, rng: random.Random) -> list[bytes]:
    pieces = []
    start = 0
    while start < len(chunk):
        size = slicer.size + rng.randint(-slicer.size_variation, slicer.size_variation)
        pieces.append(chunk[start : start + size])
        start += size
    return pieces


def _opened(task: asyncio.Task[_Streams] | None) -> _Streams | None:
    """The streams ``task`` opened, or None if it has not (yet, or ever)."""
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def _close_unless_opened(sock: socket.socket, accepting: asyncio.Task[_Streams]) -> None:
    # Safe even if a transport was made for it: asyncio closes that transport on the way out.
    if _opened(accepting) is None:
        sock.close()


async def _close(writer: asyncio.StreamWriter, *, reset: bool, abort: bool) -> None:
    if reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER on with a zero timeout: close() drops unsent data and sends RST, not FIN.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if reset or abort:
        writer.transport.abort()
    else:
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        writer.transport.abort()  # a peer that stopped reading must not hold the socket open
        await asyncio.sleep(0)  # let connection_lost run, which releases the fd
