"""The Redis deployments the shared limiter meets, started for real on loopback by the tests.

- `start_cluster`: a Redis Cluster of three masters (``cluster-enabled yes``, joined by
  ``redis-cli --cluster create``), and `RedisClusterNodes.migrate_slot` to move one slot's keys
  to another master mid-run (``CLUSTER SETSLOT`` IMPORTING / MIGRATING, ``MIGRATE``, ``NODE``);
- `start_sentinel`: a primary, its replica and a Sentinel watching them;
- `start_replica` and `wait_for_role`: a primary and replica to fail over by hand;
- `make_tls_files`: a test CA (trustme) and a certificate for 127.0.0.1;
- `SwitchProxy`: a TCP proxy whose upstream can be repointed, as a DNS name or a cloud
  "primary endpoint" is after a failover: open connections stay where they were;
- `max_in_window`: the most grants any window of one period held;
- `StandInRedis`: a stand-in Redis on loopback that speaks the handshake of RESP2 and RESP3 (or,
  as Redis before 6 does, knows no ``HELLO``), for answers a real server won't give on cue;
- `sentinel`: redis-py's asyncio ``Sentinel``, typed whatever redis-py's version.

Each helper skips the test like `redis_server` does when the binaries are missing (and fails it
under CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import redis.asyncio as aioredis
import trustme
from redis.asyncio.sentinel import Sentinel
from redis_server import RedisServer, TlsFiles, start_redis

__all__ = [
    "RedisClusterNodes",
    "command",
    "SentinelSetup",
    "StandInRedis",
    "SwitchProxy",
    "make_tls_files",
    "max_in_window",
    "primary_and_replica_fixture",
    "read_command",
    "sentinel",
    "start_cluster",
    "start_replica",
    "start_sentinel",
    "wait_for_role",
]

#: Seconds a deployment may take to settle (a cluster to agree, a replica to sync).
SETTLE_TIMEOUT = 20.0
#: A primary sends its data to a new replica at once, not after the default 5 s wait for more.
PRIMARY_OPTIONS = ["--repl-diskless-sync-delay", "0"]


def redis_cli_binary() -> str:
    """The ``redis-cli`` path; skips the test locally, fails it under CI, when missing."""
    binary = shutil.which("redis-cli")
    if binary is None:
        message = "redis-cli is not installed (apt-get install redis-tools)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must provide it", pytrace=False)
        pytest.skip(message)
    return binary


def max_in_window(stamps: Sequence[float], period: float = 1.0) -> int:
    """The most of ``stamps`` that any window of ``period`` seconds holds."""
    ordered = sorted(stamps)
    most, first = 0, 0
    for last, stamp in enumerate(ordered):
        while stamp - ordered[first] >= period:
            first += 1
        most = max(most, last - first + 1)
    return most


Check = Callable[[], Awaitable[bool]]


async def command(client: aioredis.Redis, *args: str | int | bytes) -> Any:
    """Any command, raw (redis-py leaves ``execute_command`` untyped)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def sentinel(addresses: list[tuple[str, int]], **kwargs: Any) -> Sentinel:
    """``redis.asyncio.sentinel.Sentinel(addresses, **kwargs)``.

    Its constructor has annotations from redis-py 8 on, none before: called through this
    signature it type-checks the same on every version, with no ``type: ignore`` to go stale.
    """
    make = cast(Callable[..., Sentinel], Sentinel)
    return make(addresses, **kwargs)


async def _settle(what: str, check: Check) -> None:
    """Poll ``check`` until it returns True, or fail the test."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {SETTLE_TIMEOUT:g}s", pytrace=False)
        await asyncio.sleep(0.05)


# --- Cluster --------------------------------------------------------------------------------


class RedisClusterNodes:
    """The masters of a test cluster, each a `RedisServer`."""

    def __init__(self, servers: list[RedisServer]) -> None:
        self.servers = servers

    @property
    def url(self) -> str:
        """The limiter's cluster URL, naming two of the nodes as startup nodes."""
        nodes = ",".join(f"127.0.0.1:{server.port}" for server in self.servers[:2])
        return f"redis+cluster://{nodes}"

    def close(self) -> None:
        for server in self.servers:
            server.close()

    async def owner(self, slot: int) -> RedisServer:
        """The master that serves ``slot``, as that master itself says."""
        for server in self.servers:
            async with aioredis.Redis(port=server.port) as client:
                if slot in _own_slots(await command(client, "CLUSTER", "NODES")):
                    return server
        raise AssertionError(f"no master serves slot {slot}")

    async def migrate_slot(self, slot: int, target: RedisServer) -> None:
        """Move ``slot`` and its keys to ``target``, as ``redis-cli --cluster reshard`` does."""
        source = await self.owner(slot)
        assert source is not target, "the slot is already there"
        async with (
            aioredis.Redis(port=source.port) as src,
            aioredis.Redis(port=target.port) as dst,
        ):
            source_id = (await command(src, "CLUSTER", "MYID")).decode()
            target_id = (await command(dst, "CLUSTER", "MYID")).decode()
            await command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            await command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := await command(src, "CLUSTER", "GETKEYSINSLOT", slot, 100):
                await command(src, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        # The target first, then the source, then the rest: the order the Redis docs give.
        for server in [target, source, *(s for s in self.servers if s not in (source, target))]:
            async with aioredis.Redis(port=server.port) as client:
                await command(client, "CLUSTER", "SETSLOT", slot, "NODE", target_id)


def _own_slots(nodes: bytes | str) -> set[int]:
    text = nodes.decode() if isinstance(nodes, bytes) else nodes
    mine = next(line for line in text.splitlines() if "myself" in line.split()[2])
    slots: set[int] = set()
    for item in mine.split()[8:]:
        if item.startswith("["):
            continue  # a slot being imported or migrated: not (yet, or any longer) served here
        first, _, last = item.partition("-")
        slots.update(range(int(first), int(last or first) + 1))
    return slots


def start_cluster(masters: int = 3) -> RedisClusterNodes:
    """Start a cluster of ``masters`` masters on loopback; the caller must `close` it."""
    cli = redis_cli_binary()
    options = [
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-port", "{free_port}",
        "--cluster-node-timeout", "5000",
    ]  # fmt: skip
    cluster = RedisClusterNodes([])
    try:
        for _ in range(masters):
            cluster.servers.append(start_redis(args=options))
        addresses = [f"127.0.0.1:{server.port}" for server in cluster.servers]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=SETTLE_TIMEOUT,
        )
        asyncio.run(_settle("the cluster did not agree", cluster_agrees(cluster)))
    except BaseException:
        cluster.close()
        raise
    return cluster


def cluster_agrees(cluster: RedisClusterNodes) -> Check:
    """A check for `_settle`: every node says the cluster is ok and sees every master."""

    async def check() -> bool:
        for server in cluster.servers:
            async with aioredis.Redis(port=server.port) as client:
                info = (await command(client, "CLUSTER", "INFO")).decode()
                nodes = (await command(client, "CLUSTER", "NODES")).decode()
            masters = [line for line in nodes.splitlines() if "master" in line.split()[2]]
            if "cluster_state:ok" not in info or len(masters) != len(cluster.servers):
                return False
        return True

    return check


# --- Replication and Sentinel ---------------------------------------------------------------


@pytest.fixture(name="primary_and_replica")
def primary_and_replica_fixture() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its synced replica, for one test."""
    primary = start_redis(args=PRIMARY_OPTIONS)
    try:
        replica = start_replica(primary)
        try:
            yield primary, replica
        finally:
            replica.close()
    finally:
        primary.close()


def start_replica(primary: RedisServer, *, args: Sequence[str] = ()) -> RedisServer:
    """Start a replica of ``primary`` and wait until it has synced."""
    replica = start_redis(args=["--replicaof", "127.0.0.1", str(primary.port), *args])
    try:
        asyncio.run(wait_for_role(replica, "slave"))
    except BaseException:
        replica.close()
        raise
    return replica


async def wait_for_role(server: RedisServer, role: str) -> None:
    """Wait until ``server`` has ``role`` ("master", or "slave" with its link to the master up)."""

    async def check() -> bool:
        async with aioredis.Redis(port=server.port) as client:
            info = await client.info("replication")
        if info.get("role") != role:
            return False
        return role == "master" or info.get("master_link_status") == "up"

    await _settle(f"redis-server :{server.port} did not become {role}", check)


@dataclass
class SentinelSetup:
    """A primary, its replica, and one Sentinel watching them as ``mymaster``."""

    primary: RedisServer
    replica: RedisServer
    sentinel: RedisServer
    service: str = "mymaster"

    def close(self) -> None:
        for server in (self.sentinel, self.replica, self.primary):
            server.close()


def start_sentinel() -> SentinelSetup:
    """Start a primary, a replica and a Sentinel (quorum 1, down after 500 ms)."""
    primary = start_redis(args=PRIMARY_OPTIONS)
    servers = [primary]
    try:
        replica = start_replica(primary)
        servers.append(replica)
        config = (
            f"sentinel monitor mymaster 127.0.0.1 {primary.port} 1\n"
            "sentinel down-after-milliseconds mymaster 500\n"
            "sentinel failover-timeout mymaster 10000\n"
        )
        sentinel = start_redis(config=config, args=["--sentinel"])
        servers.append(sentinel)

        async def sees_the_replica() -> bool:
            async with aioredis.Redis(port=sentinel.port) as client:
                replicas = await command(client, "SENTINEL", "REPLICAS", "mymaster")
            # A map per replica in RESP3 (redis-py 8's default), a flat list of names and
            # values in RESP2 (older redis-py's): the floors run both.
            fields = [
                r if isinstance(r, dict) else dict(zip(r[::2], r[1::2], strict=True))
                for r in replicas
            ]
            return any(
                replica.get(b"flags") == b"slave" and replica.get(b"master-link-status") == b"ok"
                for replica in fields
            )

        asyncio.run(_settle("the Sentinel did not find the replica", sees_the_replica))
    except BaseException:
        for server in servers:
            server.close()
        raise
    return SentinelSetup(primary, replica, sentinel)


# --- TLS ------------------------------------------------------------------------------------


def make_tls_files(directory: Path) -> TlsFiles:
    """A new test CA, and a certificate it signed for 127.0.0.1, written under ``directory``."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    files = TlsFiles(directory / "server.pem", directory / "server.key", directory / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(files.cert), append=True)
    cert.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.ca))
    return files


# --- a proxy to repoint ---------------------------------------------------------------------


_Server = TypeVar("_Server", bound="LoopbackServer")


class LoopbackServer:
    """A TCP server on 127.0.0.1 in the running event loop that closes every connection it
    accepted when it stops. A subclass answers each connection in ``handle``.

    Before 3.12, ``wait_closed()`` does not wait for the connection handlers: one left pending is
    closed by the garbage collector after its loop, an unraisable error in whichever test runs
    then. Closing every end lets each handler see the end of its stream and finish here.
    """

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self: _Server) -> _Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._server.wait_closed()

    def track(self, writer: asyncio.StreamWriter) -> None:
        """Close ``writer`` too when the server stops (a connection the handler opened)."""
        self._writers.add(writer)

    async def handle(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer connection ``number`` (0 for the first); it is closed after."""
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        number = self.connections
        self.connections += 1
        try:
            await self.handle(number, reader, writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)


class SwitchProxy(LoopbackServer):
    """A TCP proxy on 127.0.0.1 in the running event loop, relaying to ``upstream``.

    Assigning ``upstream`` sends the connections made from then on to the new address; those
    already open stay with the old one, as a repointed DNS name or cloud endpoint leaves them.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__()
        self.upstream = upstream

    async def handle(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            return
        self.track(up_writer)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            self._writers.discard(up_writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side ends, then close the writing side (so its peer sees the end)."""
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    writer.close()


class StandInRedis(LoopbackServer):
    """A stand-in Redis on loopback: it answers ``reply``'s bytes to each command.

    The connection handshake is a real server's: ``HELLO 3`` gets a RESP3 map (``HELLO 2`` a
    flat array), another version the NOPROTO error, and with ``knows_hello=False`` ``HELLO`` is
    an unknown command, as for Redis before 6. What ``reply`` leaves (None) gets ``+OK``.
    """

    def __init__(self, *, knows_hello: bool = True) -> None:
        super().__init__()
        self.knows_hello = knows_hello
        #: Every command received: (connection number, the command's words).
        self.commands: list[tuple[int, list[bytes]]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def reply(self, number: int, request: list[bytes]) -> bytes | None:
        """The answer to a command other than HELLO, or None for ``+OK``."""
        return None

    async def handle(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while (request := await read_command(reader)) is not None:
            self.commands.append((number, request))
            if request[0].upper() == b"HELLO":
                writer.write(self._hello(request[1:2]))
            else:
                writer.write(self.reply(number, request) or b"+OK\r\n")
            await writer.drain()

    def _hello(self, version: list[bytes]) -> bytes:
        if not self.knows_hello:
            return b"-ERR unknown command 'HELLO', with args beginning with: \r\n"
        protocol = version[0] if version else b"2"
        if protocol not in (b"2", b"3"):
            return b"-NOPROTO unsupported protocol version\r\n"
        fields: list[tuple[bytes, bytes]] = [
            (b"server", _bulk(b"redis")),
            (b"version", _bulk(b"7.0.0")),
            (b"proto", b":" + protocol + b"\r\n"),
            (b"id", b":1\r\n"),
            (b"mode", _bulk(b"standalone")),
            (b"role", _bulk(b"master")),
            (b"modules", b"*0\r\n"),
        ]
        body = b"".join(_bulk(name) + value for name, value in fields)
        header = b"%" if protocol == b"3" else b"*"
        count = len(fields) if protocol == b"3" else 2 * len(fields)
        return header + str(count).encode() + b"\r\n" + body


def _bulk(data: bytes) -> bytes:
    return b"$" + str(len(data)).encode() + b"\r\n" + data + b"\r\n"


async def read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    """One command a client sent (a RESP array of bulk strings), or None at the end."""
    header = await reader.readline()
    if not header:
        return None
    assert header.startswith(b"*"), header
    parts = []
    for _ in range(int(header[1:])):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts
