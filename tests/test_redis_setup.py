"""The shared limiter set up as people run Redis: TLS with their CA, ACL users, clients of
their own; and what it says when the setup is wrong, in the words of what is wrong."""

from __future__ import annotations

import asyncio
import http.server
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from limiters import CountingFallback
from redis_deployments import (  # noqa: F401  (registers `primary_and_replica`)
    StandInRedis,
    command,
    make_tls_files,
    primary_and_replica_fixture,
)
from redis_server import RedisServer, TlsFiles, redis_server_fixture, start_redis  # noqa: F401

from convoso_async._errors import ConfigurationError
from convoso_async._redis_connection import ACL_COMMANDS, CLUSTER_ACL_COMMANDS
from convoso_async.redis_limiter import RateLimiterUnavailableError, RedisRateLimiter

pytestmark = pytest.mark.redis

PASSWORD = "pw-S3CRET-4a5b6c"
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(tls_files: TlsFiles) -> Iterator[RedisServer]:
    server = start_redis(password=PASSWORD, tls=tls_files)
    try:
        yield server
    finally:
        server.close()


# --- a client of the caller's own -------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_callers_client_with_a_wrong_password_fails_at_once_saying_so() -> None:
    server = start_redis(password=PASSWORD)
    wrong = "wrong-PW-8e7f"
    timeout = 5.0
    try:
        # redis-py's own default: ten retries with a backoff that outlasts `timeout`.
        async with aioredis.Redis(host="127.0.0.1", port=server.port, password=wrong) as client:
            limiter = RedisRateLimiter(client, rate=10, timeout=timeout)
            started = time.monotonic()
            with pytest.raises(RateLimiterUnavailableError) as caught:
                await limiter.acquire()
            elapsed = time.monotonic() - started
    finally:
        server.close()
    message = str(caught.value)
    assert "refused the limiter's credentials (AuthenticationError" in message
    assert "did not answer" not in message
    assert wrong not in message
    assert elapsed < timeout  # the refusal itself, not a timeout waited out


# --- each kind of failure says what it is -----------------------------------------------------

KINDS = {
    "auth": "refused the limiter's credentials",
    "permission": "does not let this user run the limiter",
    "read-only": "is a read-only replica",
    "unreachable": "is unreachable",
    "timeout": "did not answer within",
}


async def failure_message(limiter: RedisRateLimiter) -> str:
    async with limiter:
        with pytest.raises(RateLimiterUnavailableError) as caught, anyio.fail_after(10):
            await limiter.acquire()
    return str(caught.value)


@pytest.mark.asyncio
async def test_each_kind_of_failure_has_a_message_of_its_own(
    primary_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = primary_and_replica
    user, key = f"u{uuid.uuid4().hex[:8]}", "convoso:acme"
    async with aioredis.Redis(port=primary.port) as admin:
        # A user that may run the scripts but not the adaptive mode's commands inside them.
        rules = ["+evalsha", "+script|load", "+time", "+get", "+set", "~*"]
        await command(admin, "ACL", "SETUSER", user, "on", f">{PASSWORD}", *rules)
    stopped = start_redis()
    stopped.stop()
    frozen = start_redis()
    frozen.pause()
    try:
        messages = {
            "auth": await failure_message(
                RedisRateLimiter(f"redis://{user}:wrong@127.0.0.1:{primary.port}/0", rate=10)
            ),
            "permission": await failure_message(
                RedisRateLimiter(
                    f"redis://{user}:{PASSWORD}@127.0.0.1:{primary.port}/0", key=key, rate="auto"
                )
            ),
            "read-only": await failure_message(RedisRateLimiter(replica.url, rate=10)),
            "unreachable": await failure_message(RedisRateLimiter(stopped.url, rate=10)),
            "timeout": await failure_message(RedisRateLimiter(frozen.url, rate=10, timeout=0.5)),
        }
    finally:
        frozen.close()
        stopped.close()
    for kind, message in messages.items():
        assert isinstance(message, str)
        others = [phrase for other, phrase in KINDS.items() if other != kind and phrase in message]
        assert KINDS[kind] in message, (kind, message)
        assert others == [], (kind, message)
        assert PASSWORD not in message
        # A wrong setup is fixed in the setup; an outage is what a fallback limiter is for.
        assert ("fallback=" in message) == (kind in ("unreachable", "timeout")), message
    # The permission message names every command the limiter runs, and its keys.
    for rule in [*ACL_COMMANDS, f"~{key}", f"~{key}:*"]:
        assert rule in messages["permission"]


@pytest.mark.asyncio
async def test_the_acl_rules_the_limiter_names_are_enough_for_every_mode(
    redis_server: RedisServer,
) -> None:
    key = f"convoso:{uuid.uuid4().hex}"
    user = f"u{uuid.uuid4().hex[:8]}"
    rules = RedisRateLimiter(redis_server.url, key=key, rate="auto").acl_rules
    async with aioredis.Redis(port=redis_server.port) as admin:
        await command(admin, "ACL", "SETUSER", user, "on", f">{PASSWORD}", *rules.split())
    url = f"redis://{user}:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    with anyio.fail_after(10):
        async with (
            RedisRateLimiter(url, key=key, rate="auto") as adaptive,
            RedisRateLimiter(url, key=key, rate=100, burst=2) as fixed,
        ):
            await adaptive.acquire()
            await adaptive.on_throttle(0.01)
            await adaptive.acquire()
            await fixed.acquire()
            async with aioredis.Redis(port=redis_server.port) as admin:
                await admin.script_flush()  # Redis lost the scripts: the user loads them again
            await fixed.acquire()
    assert adaptive.rate < 10  # the 429 went through the throttle script


def test_the_readme_gives_the_acl_rules_the_limiter_needs() -> None:
    readme = README.read_text(encoding="utf-8")
    single = RedisRateLimiter("redis://cache:6379/0", key="convoso:acme", rate=10)
    cluster = RedisRateLimiter("redis+cluster://cache:7000", key="convoso:acme", rate=10)
    assert single.acl_rules in readme
    assert cluster.acl_rules in readme
    assert " ".join(CLUSTER_ACL_COMMANDS) in cluster.acl_rules


# --- a 429 that only this process can honour ---------------------------------------------------


def unshared(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "could not be shared" in r.getMessage()
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("with_fallback", [True, False])
async def test_a_429_that_cannot_be_shared_is_a_warning_once_per_outage(
    caplog: pytest.LogCaptureFixture, with_fallback: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="convoso_async")
    server = start_redis(password=PASSWORD)
    fallback = CountingFallback() if with_fallback else None
    limiter = RedisRateLimiter(server.url, key="k", rate=100, timeout=1.0, fallback=fallback)
    try:
        async with limiter:
            await limiter.acquire()
            server.stop()
            for _ in range(3):
                await limiter.on_throttle(2.0)
            assert len(unshared(caplog)) == 1
            assert "Retry-After 2s" in unshared(caplog)[0].getMessage()

            server.start()
            await limiter.on_throttle(0.01)  # shared again: the outage is over
            server.stop()
            await limiter.on_throttle(1.0)
            assert len(unshared(caplog)) == 2
    finally:
        server.close()
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


# --- TLS --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_tls_url_and_a_tls_client_are_both_named_rediss(
    tls_server: RedisServer, tls_files: TlsFiles
) -> None:
    url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_server.port}/0?ssl_ca_certs={tls_files.ca}"
    async with RedisRateLimiter(url, key="k", rate=100) as from_url:
        await from_url.acquire()
    assert repr(from_url).startswith(f"RedisRateLimiter('rediss://:***@127.0.0.1:{tls_server.port}")
    client = aioredis.Redis(
        host="127.0.0.1",
        port=tls_server.port,
        password=PASSWORD,
        ssl=True,
        ssl_ca_certs=str(tls_files.ca),
    )
    async with client:
        limiter = RedisRateLimiter(client, key="k", rate=100)
        await limiter.acquire()
    assert f"'rediss://:***@127.0.0.1:{tls_server.port}/0'" in repr(limiter)
    assert PASSWORD not in repr(limiter) + repr(from_url)


@pytest.mark.asyncio
async def test_a_server_certificate_the_client_does_not_trust_is_named_a_tls_failure(
    tls_server: RedisServer, tmp_path: Path
) -> None:
    other_ca = make_tls_files(tmp_path).ca
    url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_server.port}/0?ssl_ca_certs={other_ca}"
    message = await failure_message(RedisRateLimiter(url, rate=10))
    assert "failed the TLS handshake" in message
    assert "ssl_ca_certs" in message
    assert PASSWORD not in message


# --- a setup that can never work says what is wrong, in one sentence ---------------------------


def assert_one_sentence(message: str) -> None:
    """One sentence: what is wrong; what to do (no second sentence, no dangling "; or")."""
    assert ". " not in message.rstrip("."), message
    assert "; or " not in message, message
    assert message.count(";") == 1, message


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["", "?protocol=2", "?protocol=3"])
@pytest.mark.parametrize("form", ["url", "client"])
async def test_a_server_that_wants_a_password_given_none_says_it_needs_one(
    protocol: str, form: str
) -> None:
    server = start_redis(password=PASSWORD)
    url = f"redis://127.0.0.1:{server.port}/0{protocol}"
    try:
        if form == "client":
            async with aioredis.Redis.from_url(url) as client:
                message = await failure_message(RedisRateLimiter(client, rate=10))
        else:
            message = await failure_message(RedisRateLimiter(url, rate=10))
    finally:
        server.close()
    assert "needs a password (AUTH)" in message
    assert "redis://:PASSWORD@host:port/0" in message
    assert "refused" not in message
    assert "fallback=" not in message  # a setup to fix, not an outage to ride out
    assert_one_sentence(message)


class PlainHttpHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: every Redis command is a bad request here


@pytest.fixture
def http_port() -> Iterator[int]:
    """The port of a plain HTTP server on loopback (Python's own), serving in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PlainHttpHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class HttpOneOne(StandInRedis):
    """An HTTP/1.1 server as nginx answers a line it can't read: a status line, then it closes."""

    async def handle(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readline()
        writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["", "?protocol=2", "?protocol=3"])
async def test_an_http_server_on_the_port_is_named_not_redis(http_port: int, protocol: str) -> None:
    url = f"redis://127.0.0.1:{http_port}/0{protocol}"
    message = await failure_message(RedisRateLimiter(url, rate=10))
    assert f"is not Redis: port {http_port} answers" in message
    assert "check the host and port in the Redis URL" in message
    assert "unreachable" not in message
    assert "fallback=" not in message
    assert_one_sentence(message)


@pytest.mark.asyncio
async def test_an_http_status_line_is_named_not_redis() -> None:
    async with HttpOneOne() as server:
        port = server.port
        message = await failure_message(RedisRateLimiter(server.url, rate=10))
    assert f"is not Redis: port {port} answers" in message
    assert "HTTP/1.1 400 Bad Request" in message
    assert_one_sentence(message)


@pytest.mark.parametrize("protocol", ["7", "1", "three"])
def test_a_protocol_redis_py_would_refuse_is_refused_when_the_limiter_is_built(
    protocol: str,
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:6379/0?protocol={protocol}"
    with pytest.raises(ConfigurationError, match="protocol") as caught:
        RedisRateLimiter(url, rate=10)
    assert PASSWORD not in str(caught.value)
    options: dict[str, Any] = {"protocol": protocol}  # a string too, as a URL's query gives it
    client = aioredis.Redis(port=6379, **options)
    with pytest.raises(ConfigurationError, match=r"protocol must be 2 \(RESP2\) or 3 \(RESP3\)"):
        RedisRateLimiter(client, rate=10)
    with pytest.raises(ConfigurationError, match="protocol"):
        RedisRateLimiter(f"redis+cluster://127.0.0.1:7000?protocol={protocol}", rate=10)


def test_an_option_redis_py_does_not_know_is_refused_when_the_limiter_is_built() -> None:
    with pytest.raises(ConfigurationError, match="unexpected keyword argument 'colour'"):
        RedisRateLimiter("redis://127.0.0.1:6379/0?colour=blue", rate=10)


@pytest.mark.asyncio
async def test_a_database_the_server_does_not_have_is_named(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/99"
    message = await failure_message(RedisRateLimiter(url, rate=10))
    assert "has no database 99" in message
    assert "'databases' setting" in message
    assert "fallback=" not in message
    assert_one_sentence(message)
