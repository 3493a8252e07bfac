"""Loopback servers for the parity suite: a scripted HTTP(S) origin and a forward/CONNECT proxy.

Both run in threads with blocking sockets, so they serve asyncio and trio
clients alike and record exactly what arrived on the wire.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: What the origin answers: the bytes to send, all at once or piece by piece.
Responder = Callable[["Seen"], "bytes | Iterable[bytes]"]


@dataclass
class Seen:
    """One request as it arrived."""

    request_line: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def answer(
    status: int = 200,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    length: int | None = None,
) -> bytes:
    """A raw HTTP/1.1 answer (Content-Length from the body unless one is given)."""
    lines = [f"HTTP/1.1 {status} Whatever"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _read_head(conn: socket.socket, buffer: bytes) -> tuple[bytes, bytes] | None:
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _parse(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    line, *rest = head.decode("latin-1").split("\r\n")
    headers = [(k, v.strip()) for k, _, v in (item.partition(":") for item in rest)]
    return line, headers


class _Threads:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.open_connections = 0
        self.alpn: list[str | None] = []
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._socks.append(conn)
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        with self._lock:
            self.open_connections += 1
        try:
            if self.ssl_context is not None:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
                self.alpn.append(conn.selected_alpn_protocol())
            self.serve(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self._lock:
                self.open_connections -= 1
            with contextlib.suppress(OSError):
                conn.close()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stopped = True
        self.listener.close()
        with self._lock:
            for conn in self._socks:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()


class Origin(_Threads):
    """An HTTP/1.1 server that records each request and answers with ``responder``."""

    def __init__(self, responder: Responder, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.responder = responder
        self.seen: list[Seen] = []
        self.bytes_sent = 0
        super().__init__(ssl_context)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    def serve(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            parsed = _read_head(conn, buffer)
            if parsed is None:
                return
            head, buffer = parsed
            line, headers = _parse(head)
            length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
            while len(buffer) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            seen = Seen(line, headers, buffer[:length])
            buffer = buffer[length:]
            self.seen.append(seen)
            out = self.responder(seen)
            for piece in [out] if isinstance(out, bytes) else out:
                conn.sendall(piece)
                self.bytes_sent += len(piece)


@dataclass
class ProxySaw:
    request_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)


class Proxy(_Threads):
    """A forward proxy: ``CONNECT host:port`` tunnels, absolute-form requests are relayed."""

    def __init__(self) -> None:
        self.saw: list[ProxySaw] = []
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        parsed = _read_head(conn, b"")
        if parsed is None:
            return
        head, rest = parsed
        line, headers = _parse(head)
        self.saw.append(ProxySaw(line, headers))
        method, target, _ = line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            first = rest
        else:
            authority = target.split("://", 1)[1].split("/", 1)[0]
            host, _, port = authority.rpartition(":")
            upstream = socket.create_connection((host, int(port or 80)))
            first = head + b"\r\n\r\n" + rest
        with upstream:
            if first:
                upstream.sendall(first)
            pump = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
            pump.start()
            _pipe(conn, upstream)
            pump.join(10)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
