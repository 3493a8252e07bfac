"""A real ``redis-server`` on a free loopback port, for tests that need one,
and the worker processes of the multi-process tests that share it.

    from redis_server import redis_server_fixture  # noqa: F401  (registers `redis_server`)

    def test_something(redis_server: RedisServer) -> None:
        limiter = RedisRateLimiter(redis_server.url, rate=10)

Without a ``redis-server`` binary the test is skipped locally, but fails when
the ``CI`` environment variable is set: a missing server in CI is a broken
setup, never a silent skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "RedisServer",
    "TlsFiles",
    "Worker",
    "finish_workers",
    "redis_server",
    "redis_server_fixture",
    "start_redis",
    "start_worker",
]

#: Seconds to wait for a started server to answer PING.
STARTUP_TIMEOUT = 10.0


class PortTakenError(RuntimeError):
    """redis-server could not bind its port: something else took it first."""


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate and key for 127.0.0.1, and the test CA that signed them."""

    cert: Path
    key: Path
    ca: Path

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the test CA."""
        return ssl.create_default_context(cafile=str(self.ca))


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``; no persistence.

    ``stop()`` then ``start()`` brings it back on the same port (empty), for
    "Redis went away and came back" tests; ``pause()`` / ``resume()`` freeze
    it (SIGSTOP / SIGCONT) so that connections open but nothing answers.
    """

    def __init__(
        self,
        binary: str,
        *,
        password: str | None = None,
        args: Sequence[str] = (),
        config: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.binary = binary
        self.password = password
        #: More options, after the defaults (``--cluster-enabled yes``, ``--replicaof``...).
        self.args = list(args)
        #: A configuration file's text, passed first (a Sentinel's must be a writable file).
        self.config = config
        #: Serve TLS only, with these files (the ``port`` is then the TLS port).
        self.tls = tls
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="redis-test-")
        self._log = Path(self._dir.name) / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:port/0`` (``rediss://`` with TLS)."""
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    @property
    def log(self) -> str:
        """What the server wrote to its log so far."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the server (again) and return once it answers PING."""
        if self._process is not None:
            raise RuntimeError("redis-server is already running")
        args = [self.binary]
        if self.config is not None:
            config = Path(self._dir.name) / "redis.conf"
            config.write_text(self.config)
            args += [str(config)]
        args += [
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", self._dir.name,
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.tls is not None:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        args += self.args
        # Output goes to a file: an undrained pipe could block the server.
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._answers_ping():
            if self._process.poll() is not None:
                self._process = None
                output = self._log.read_text(errors="replace").strip()
                error = PortTakenError if "already in use" in output else RuntimeError
                raise error(f"redis-server exited at start: {output[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {STARTUP_TIMEOUT}s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server can't act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would, and wait for it."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=5)

    def pause(self) -> None:
        """Freeze the server: connections still open, but no command is answered."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo `pause`."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        self._dir.cleanup()

    def _answers_ping(self) -> bool:
        command = b"PING\r\n"
        if self.password:
            command = f"AUTH {self.password}\r\n".encode() + command
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as raw:
                conn = raw
                if self.tls is not None:
                    conn = self.tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1")
                conn.sendall(command)
                reply = b""
                while b"PONG" not in reply and len(reply) < 256:
                    chunk = conn.recv(256)
                    if not chunk:
                        break
                    reply += chunk
                return b"PONG" in reply
        except OSError:
            return False


def redis_server_binary() -> str:
    """The ``redis-server`` path; skips the test locally, fails it under CI, when missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must provide it", pytrace=False)
        pytest.skip(message)
    return binary


#: How many free ports to try: between finding a port free and redis-server binding it, another
#: process on a busy machine (other test suites) can take it.
PORT_ATTEMPTS = 5


def start_redis(
    *,
    password: str | None = None,
    args: Sequence[str] = (),
    config: str | None = None,
    tls: TlsFiles | None = None,
) -> RedisServer:
    """Start a fresh ``redis-server`` on a free loopback port; the caller must `close` it.

    ``args``, ``config`` and ``tls`` are `RedisServer`'s. An ``args`` item ``"{free_port}"`` is
    replaced by another free port (a Cluster node's bus port), chosen again with the server's.
    """
    server = RedisServer(
        redis_server_binary(), password=password, args=args, config=config, tls=tls
    )
    server.args = [_free_port_for(arg) for arg in args]
    try:
        for attempt in range(PORT_ATTEMPTS):
            try:
                server.start()
                break
            except PortTakenError:
                if attempt == PORT_ATTEMPTS - 1:
                    raise
                server.port = _free_port()
                server.args = [_free_port_for(arg) for arg in args]
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    """A running ``redis-server`` for one test, stopped and removed after it."""
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


# Importing the fixture by its own name works too, but then every test that
# takes a `redis_server` argument shadows the import (ruff F811).
redis_server = redis_server_fixture


#: A worker process of the multi-process tests, and the file it writes its outcome to.
Worker = tuple[subprocess.Popen[bytes], Path]


def start_worker(script: Path, out: Path, *args: str) -> Worker:
    """Run ``python SCRIPT OUT ARGS...``: a worker that writes its outcome to OUT as JSON."""
    process = subprocess.Popen(
        [sys.executable, str(script), str(out), *args], stderr=subprocess.PIPE
    )
    return process, out


def finish_workers(workers: list[Worker], *, timeout: float) -> list[dict[str, Any]]:
    """Wait for every worker (each within ``timeout`` seconds); their outcomes, in order.

    A worker that exits non-zero fails the test with its stderr.
    """
    results = []
    for process, out in workers:
        _, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err.decode()
        results.append(json.loads(out.read_text()))
    return results


def _free_port_for(arg: str) -> str:
    return str(_free_port()) if arg == "{free_port}" else arg


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
