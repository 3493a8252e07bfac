"""The fake as a real HTTP server on aiohttp's low-level server.

aiohttp because it is already a dependency, is the fastest server available
here, and lets a handler drop the connection without answering. The handler
only translates between aiohttp and the shared handler core; there is no
routing or logging per request, so benchmarks measure the client, not this.

`ServerThread` runs the server on its own asyncio loop in a thread, so
callers on any event loop (or none) can use it; `serve_forever` runs it in the
calling thread until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from ._state import FakeState

__all__ = ["ServerThread", "serve_forever"]

#: How long stopping waits for requests still being answered (a ``slow`` fault, say).
SHUTDOWN_TIMEOUT: Final = 0.25
#: Upper bound on starting or stopping the server thread.
THREAD_TIMEOUT: Final = 10.0


def _make_handler(fake: FakeState) -> web.Server:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        answer = await fake._respond(
            request.method,
            request.path,
            request.headers.get("Content-Type", ""),
            await request.read(),
            request.query_string,
        )
        response = web.Response(
            status=answer.status or 500,
            body=answer.body,
            headers={"Content-Type": answer.content_type, **dict(answer.headers)},
        )
        if answer.drop:
            # Closing the transport makes writing the response fail, which
            # aiohttp treats as a client that went away: nothing is sent.
            request.protocol.force_close()
        return response

    # access_log=None: no per-request logging cost.
    return web.Server(handle, access_log=None)


async def _start(fake: FakeState, host: str, port: int) -> tuple[web.ServerRunner, str]:
    """Start serving; return the runner (to clean up) and the base URL."""
    runner = web.ServerRunner(_make_handler(fake), shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    url_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{url_host}:{bound_port}/v1"


class ServerThread:
    """The fake's server on its own asyncio loop, in a daemon thread.

    `start`, then `wait_ready` for the URL (it re-raises a failure to bind),
    then `stop`, which returns once the server is closed and the thread gone.
    """

    def __init__(self, fake: FakeState, host: str, port: int) -> None:
        self._fake = fake
        self._host = host
        self._port = port
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
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
            loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            # RuntimeError: the loop is already closed, the thread is finishing.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        self._thread.join(THREAD_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the fake Convoso server did not stop in {THREAD_TIMEOUT} s")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if self._ready.is_set():
                raise  # after startup: let threading report it
            self._error = exc  # during startup: wait_ready re-raises it
            self._ready.set()

    async def _main(self) -> None:
        stop_event = asyncio.Event()
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._stop_event = stop_event
            if self._stopping:
                stop_event.set()
        runner, self._url = await _start(self._fake, self._host, self._port)
        try:
            self._ready.set()
            await stop_event.wait()
        finally:
            await runner.cleanup()


async def _serve_until_signal(fake: FakeState, host: str, port: int) -> None:
    runner, url = await _start(fake, host, port)
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows or off the main thread; SIGINT then ends
        # asyncio.run with KeyboardInterrupt, which serve_forever absorbs.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop_event.set)
            handled.append(signum)
    try:
        print(f"listening on {url}", flush=True)
        for token in fake.tokens:
            print(f"token {token}", flush=True)
        for token in fake.readonly_tokens:
            print(f"read-only token {token}", flush=True)
        print(
            f"try: CONVOSO_BASE_URL={url} CONVOSO_AUTH_TOKEN={fake.tokens[0]} "
            "convoso campaigns list",
            flush=True,
        )
        await stop_event.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await runner.cleanup()


def serve_forever(fake: FakeState, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve ``fake`` over HTTP in this thread until SIGINT or SIGTERM.

    Once ready, prints ``listening on http://HOST:PORT/v1`` as its first line
    on stdout (so another process can start it with ``--port 0`` and read the
    URL), then a ``token T`` line per accepted token (``read-only token T``
    for read-only ones) and a line showing how to point the CLI at it.
    """
    try:
        asyncio.run(_serve_until_signal(fake, host, port))
    except KeyboardInterrupt:
        pass
    finally:
        sys.stdout.flush()
