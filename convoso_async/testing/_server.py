"""The fake as a real HTTP/1.1 server on loopback, on anyio streams and h11.

h11 already comes with the HTTP client (httpcore2 is built on it) and anyio
runs the same serving loop on asyncio and trio, so the server needs nothing
else. A connection carries requests one after another (keep-alive, pipelined
or not), each answered by the shared handler core; a ``drop`` answer closes
the connection without sending a byte. Nothing is routed or logged per
request and each answer goes out in one send, so benchmarks that use this as
their load target measure the client, not the server.

`ServerThread` runs the server on its own event loop (asyncio unless told
trio) in a thread, so callers on any event loop (or none) can use it;
`serve_forever` runs it in the calling thread until SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal, get_args
from urllib.parse import unquote, urlsplit

import anyio
import h11
from anyio.abc import SocketAttribute
from anyio.from_thread import BlockingPortal

if TYPE_CHECKING:
    from anyio.abc import Listener, SocketStream, TaskGroup

    from ._state import Answer, FakeState

__all__ = ["BACKENDS", "Backend", "ServerThread", "serve_forever"]

#: The event loops the server runs on.
Backend = Literal["asyncio", "trio"]
BACKENDS: Final[frozenset[str]] = frozenset(get_args(Backend))

#: How long stopping waits for requests still being answered (a ``slow`` fault, say).
SHUTDOWN_TIMEOUT: Final = 0.25
#: Upper bound on starting or stopping the server thread.
THREAD_TIMEOUT: Final = 10.0
#: How long a connection closing after its last answer waits for the client to hang up.
CLOSE_TIMEOUT: Final = 5.0
#: The largest request body read; a larger one gets HTTP 413 and the connection closes.
MAX_BODY: Final = 1024 * 1024

#: The Server header of every answer, so a capture shows where an answer came from.
SERVER_NAME: Final = "convoso-async-fake"

#: What the handler core takes: method, path, content type, body, raw query string.
_RequestParts = tuple[str, str, str, bytes, str]

_REASONS: Final = {status.value: status.phrase.encode() for status in http.HTTPStatus}
#: What a peer that went away raises on the stream, on either backend.
_GONE: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, not {backend!r}")


@functools.lru_cache(maxsize=1)
def _http_date(second: int) -> str:
    """The Date header for a moment in Unix seconds: formatted once a second, not per answer."""
    return email.utils.formatdate(second, usegmt=True)


def _parts(request: h11.Request, body: bytes) -> _RequestParts:
    """What the handler core takes of a request, as the in-process transport gives it."""
    target = request.target.decode("latin-1")
    path, _, query = target.partition("?")
    if not path.startswith("/"):  # absolute form, as sent to a proxy: http://host/path
        path = urlsplit(path).path or "/"
    if "%" in path:
        path = unquote(path)
    content_type = ""
    for name, value in request.headers:
        if name == b"content-type":
            content_type = value.decode("latin-1")
            break
    return request.method.decode("ascii"), path, content_type, body, query


class _Connection:
    """One accepted connection: its stream and h11 state, kept for every request on it.

    ``scope`` wraps the whole conversation, so the server can close the
    connection while it waits for a request; ``busy`` is true while a
    request is being answered, which the server lets finish.
    """

    def __init__(self, stream: SocketStream) -> None:
        self._stream = stream
        self._socket = stream.extra(SocketAttribute.raw_socket)
        self._h11 = h11.Connection(h11.SERVER)
        self._head = False
        self.scope = anyio.CancelScope()
        self.busy = False

    async def read_request(self) -> _RequestParts | None:
        """The next whole request, or `None` once the client has closed the connection.

        Raises `h11.RemoteProtocolError` for a request h11 cannot parse or one
        over `MAX_BODY`.
        """
        conn = self._h11
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    await self._send(h11.InformationalResponse(status_code=100, headers=[]))
                try:
                    conn.receive_data(await self._stream.receive())
                except anyio.EndOfStream:
                    conn.receive_data(b"")
            elif isinstance(event, h11.Request):
                request = event
                self._head = event.method == b"HEAD"
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError("request body too large", 413)
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return _parts(request, bytes(body))
            else:  # ConnectionClosed
                return None

    def client_has_left(self) -> bool:
        """Whether the client has closed its end, giving up on the request it sent.

        A client that cancels a request closes the connection. The request,
        if it was sent, is then not handled (nor recorded), as the fake's
        aiohttp server did not handle it either: a test that stops a run sees
        no request land after it. Looks without reading: asyncio lends its
        socket without ``recv``, so this peeks through a second socket object
        on the same descriptor, detached again at once.
        """
        raw = self._socket
        peek = socket.socket(raw.family, raw.type, raw.proto, fileno=raw.fileno())
        try:
            peek.setblocking(False)
            return peek.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False  # nothing more to read: the client waits for its answer
        except OSError:
            return True  # reset
        finally:
            peek.detach()

    async def answer(self, answer: Answer, *, last: bool) -> bool:
        """Send ``answer``; whether the connection carries on, or has been closed.

        ``last`` tells the client this is the last answer (the server is stopping).
        """
        headers = [
            ("server", SERVER_NAME),
            ("date", _http_date(int(time.time()))),
            ("content-type", answer.content_type),
            ("content-length", str(len(answer.body))),
            *answer.headers,
        ]
        if last:
            headers.append(("connection", "close"))
        status = answer.status or 500
        events: list[h11.Event] = [
            h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))
        ]
        if answer.body and not self._head:
            events.append(h11.Data(data=answer.body))
        events.append(h11.EndOfMessage())
        await self._send(*events)
        if self._h11.our_state is not h11.DONE:  # MUST_CLOSE: by the client, HTTP/1.0 or `last`
            await self._close_after_answer()
            return False
        self._h11.start_next_cycle()
        return True

    async def refuse(self, error: h11.RemoteProtocolError) -> None:
        """Answer a request that could not be read with the status h11 suggests, if possible."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = error.error_status_hint
        headers = [(b"content-length", b"0"), (b"connection", b"close")]
        response = h11.Response(
            status_code=status, headers=headers, reason=_REASONS.get(status, b"")
        )
        with contextlib.suppress(*_GONE):  # a client that sent half a request may be gone
            await self._send(response, h11.EndOfMessage())
            await self._close_after_answer()

    async def _close_after_answer(self) -> None:
        """Let the client read the last answer before the connection closes.

        Closing at once could lose it: asyncio drops what it has not yet
        written, and a close with unread input resets the connection. So send
        our end-of-stream, then discard input until the client hangs up, for
        at most `CLOSE_TIMEOUT`.
        """
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await self._stream.send_eof()
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    await self._stream.receive()

    async def _send(self, *events: h11.Event) -> None:
        data = b"".join(self._h11.send(event) or b"" for event in events)
        await self._stream.send(data)


class _LoopbackServer:
    """The fake's HTTP server on one listener; `serve` runs it until told to stop."""

    def __init__(self, fake: FakeState, listener: Listener[SocketStream], url: str) -> None:
        self._fake = fake
        self._listener = listener
        self.url = url
        self._connections: set[_Connection] = set()
        self._accepting = anyio.CancelScope()
        self._closing = False

    @classmethod
    async def bind(cls, fake: FakeState, host: str, port: int) -> _LoopbackServer:
        """Listen on ``host:port`` (port 0 picks a free one); `serve` must follow."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        bound_port = listener.extra(SocketAttribute.local_port)
        url_host = f"[{host}]" if ":" in host else host
        return cls(fake, listener, f"http://{url_host}:{bound_port}/v1")

    async def serve(self, stopped: anyio.Event) -> None:
        """Answer connections until ``stopped`` is set, then close every one and return.

        Stopping closes the listener and the idle connections at once, and
        gives requests being answered `SHUTDOWN_TIMEOUT` to finish.
        """
        with anyio.CancelScope() as grace:
            async with anyio.create_task_group() as connections:
                connections.start_soon(self._accept, connections)
                await stopped.wait()
                self._close()
                grace.deadline = anyio.current_time() + SHUTDOWN_TIMEOUT
            # Leaving the task group waits for every connection, the grace period
            # cuts off those still answering.

    async def _accept(self, connections: TaskGroup) -> None:
        async with self._listener:  # closed as soon as accepting stops
            with self._accepting:
                await self._listener.serve(self._converse, connections)

    def _close(self) -> None:
        self._closing = True
        self._accepting.cancel()
        for connection in self._connections:
            if not connection.busy:
                connection.scope.cancel()

    async def _converse(self, stream: SocketStream) -> None:
        connection = _Connection(stream)
        self._connections.add(connection)
        try:
            with connection.scope:
                async with stream:
                    await self._answer_all(connection)
        finally:
            self._connections.discard(connection)

    async def _answer_all(self, connection: _Connection) -> None:
        try:
            while not self._closing:
                request = await connection.read_request()
                if request is None or connection.client_has_left():
                    return
                connection.busy = True
                answer = await self._fake._respond(*request)
                if answer.drop:
                    return  # hang up without a byte
                if not await connection.answer(answer, last=self._closing):
                    return
                connection.busy = False
        except h11.RemoteProtocolError as error:
            await connection.refuse(error)
        except _GONE:
            pass  # the client went away; nothing to answer


class ServerThread:
    """The fake's server on its own event loop, in a daemon thread.

    `start`, then `wait_ready` for the URL (it re-raises a failure to bind),
    then `stop`, which returns once every connection is closed and the thread
    gone. ``backend`` picks the event loop: ``"asyncio"`` or ``"trio"``.
    """

    def __init__(
        self, fake: FakeState, host: str, port: int, *, backend: Backend = "asyncio"
    ) -> None:
        _check_backend(backend)
        self._fake = fake
        self._host = host
        self._port = port
        self._backend = backend
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        # The way in from other threads, and what it sets; both exist while serving.
        self._portal: BlockingPortal | None = None
        self._stopped: anyio.Event | None = None
        self._error: BaseException | None = None
        self._url = ""
        self._thread = threading.Thread(target=self._run, name="fake-convoso-server", daemon=True)

    def start(self) -> None:
        """Start the thread; the server binds in it."""
        self._thread.start()

    def wait_ready(self) -> str:
        """Block until the server listens; return its base URL."""
        if not self._ready.wait(THREAD_TIMEOUT):
            raise RuntimeError(f"the fake Convoso server did not start in {THREAD_TIMEOUT} s")
        if self._error is not None:
            self._thread.join(THREAD_TIMEOUT)
            raise self._error
        return self._url

    def stop(self) -> None:
        """Stop the server and join its thread. Safe to call more than once."""
        with self._lock:
            self._stopping = True
            portal, stopped = self._portal, self._stopped
        if portal is not None and stopped is not None:
            # RuntimeError: the portal has closed, the server has already stopped.
            with contextlib.suppress(RuntimeError):
                portal.call(stopped.set)
        self._thread.join(THREAD_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the fake Convoso server did not stop in {THREAD_TIMEOUT} s")

    def _run(self) -> None:
        try:
            anyio.run(self._main, backend=self._backend)
        except BaseException as exc:
            if self._ready.is_set():
                raise  # after startup: let threading report it
            self._error = exc  # during startup: wait_ready re-raises it
            self._ready.set()

    async def _main(self) -> None:
        server = await _LoopbackServer.bind(self._fake, self._host, self._port)
        stopped = anyio.Event()
        async with BlockingPortal() as portal:
            with self._lock:
                self._portal, self._stopped = portal, stopped
                if self._stopping:
                    stopped.set()
            self._url = server.url
            self._ready.set()
            await server.serve(stopped)


def _announce(fake: FakeState, url: str) -> None:
    print(f"listening on {url}", flush=True)
    for token in fake.tokens:
        print(f"token {token}", flush=True)
    for token in fake.readonly_tokens:
        print(f"read-only token {token}", flush=True)
    print(
        f"try: CONVOSO_BASE_URL={url} CONVOSO_AUTH_TOKEN={fake.tokens[0]} convoso campaigns list",
        flush=True,
    )


async def _until_stop_signal(ready: Callable[[], None]) -> None:
    """Call ``ready`` once SIGINT and SIGTERM are caught, then return when one arrives."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        # Signals cannot be caught here: Ctrl-C ends anyio.run with KeyboardInterrupt.
        ready()
        await anyio.sleep_forever()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        ready()
        async for _ in signals:
            return


async def _serve_until_signal(fake: FakeState, host: str, port: int) -> None:
    server = await _LoopbackServer.bind(fake, host, port)
    stopped = anyio.Event()
    async with anyio.create_task_group() as serving:
        serving.start_soon(server.serve, stopped)
        await _until_stop_signal(lambda: _announce(fake, server.url))
        stopped.set()


def serve_forever(
    fake: FakeState, host: str = "127.0.0.1", port: int = 0, *, backend: Backend = "asyncio"
) -> None:
    """Serve ``fake`` over HTTP in this thread until SIGINT or SIGTERM.

    Once ready, prints ``listening on http://HOST:PORT/v1`` as its first line
    on stdout (so another process can start it with ``--port 0`` and read the
    URL), then a ``token T`` line per accepted token (``read-only token T``
    for read-only ones) and a line showing how to point the CLI at it.
    ``backend`` picks the event loop: ``"asyncio"`` or ``"trio"``.
    """
    _check_backend(backend)
    try:
        anyio.run(_serve_until_signal, fake, host, port, backend=backend)
    except KeyboardInterrupt:
        pass
    finally:
        sys.stdout.flush()
