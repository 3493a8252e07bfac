"""How the shared limiter reaches Redis, names it, and reads its failures.

`~convoso_async.redis_limiter.RedisRateLimiter` keeps the rate; this module holds what depends
on the deployment behind it:

- the URL forms it accepts: ``redis://``, ``rediss://``, ``unix://`` (one server, through
  redis-py's own ``from_url``) and ``redis+cluster://`` / ``rediss+cluster://`` (a Redis
  Cluster, one or more comma-separated startup nodes, through redis-py's ``RedisCluster``);
- the retry policy of every client it uses, its own or one passed in: one immediate retry on a
  fresh connection, also after READONLY / LOADING / MASTERDOWN (a primary demoted behind a
  stable address), so the limiter follows a failover and a wrong password fails at once;
- where a client points, as a URL without its password, for repr, logs and errors;
- the names of the limiter's keys: in a Cluster, one hash tag puts all of them in one slot;
- what a failure means, in the user's terms: a password missing or refused, permissions (and
  the ACL rules the limiter needs), a server that cannot speak RESP3, a database it does not
  have, a Cluster reached without the cluster URL, a read-only replica, a server still loading,
  a port that answers but is not Redis, or Redis unreachable;
- what a URL or client asks that redis-py would refuse only at the first connection (a
  ``protocol`` other than 2 or 3, an option it does not know): refused when the limiter is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterCrossSlotError,
    ClusterError,
    InvalidResponse,
    MasterDownError,
    MovedError,
    NoPermissionError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._redaction import redact_url

__all__ = [
    "ACL_COMMANDS",
    "CLUSTER_ACL_COMMANDS",
    "AsyncRedis",
    "Failure",
    "acl_rules",
    "bounded_retry",
    "check_client",
    "client_secrets",
    "connect",
    "describe_client",
    "diagnose",
    "explain",
    "hide_secrets",
    "limiter_keys",
    "redact_url",
    "url_secrets",
]

#: Either client the limiter runs its scripts on.
AsyncRedis: TypeAlias = aioredis.Redis | RedisCluster

#: The URL schemes of a Redis Cluster, and the redis-py scheme each one stands for.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

#: What the limiter runs: its two scripts (EVALSHA, and SCRIPT LOAD when Redis lost them) and
#: the commands they call. An ACL user needs these, on the limiter's keys.
ACL_COMMANDS = (
    "+evalsha",
    "+script|load",
    "+time",
    "+get",
    "+set",
    "+hmget",
    "+hset",
    "+pexpire",
    "+zadd",
    "+zcard",
    "+zremrangebyscore",
)
#: What a Cluster client runs besides: it maps the slots, and learns which arguments are keys.
CLUSTER_ACL_COMMANDS = ("+cluster|slots", "+command")

#: Errors after which a call is tried once more on a fresh connection: a connection a restart
#: broke, and a server that stopped being the primary behind the address the client uses
#: (READONLY after a failover; LOADING, a ConnectionError in redis-py, and MASTERDOWN while the
#: promoted server settles).
_RETRIED = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, MasterDownError)


def bounded_retry() -> Retry:
    """One immediate retry on a fresh connection: redis-py's default backoff outlasts a timeout."""
    return Retry(NoBackoff(), 1, supported_errors=_RETRIED)


def connect(url: str, *, timeout: float) -> AsyncRedis:
    """A client for ``url``, owned by the caller. Raises ValueError for a URL redis-py refuses.

    That includes what redis-py would refuse only when it connects (see `check_client`): a URL
    that can never work fails here, not on every ``acquire()`` as if Redis were down.
    """
    parts = urlsplit(url)
    plain = CLUSTER_SCHEMES.get(parts.scheme.lower())
    if plain is None:
        if parts.scheme.lower() not in ("redis", "rediss", "unix"):
            raise ValueError(
                "the scheme must be redis://, rediss:// or unix:// (one server), or "
                "redis+cluster:// or rediss+cluster:// (a Redis Cluster)"
            )
        client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=bounded_retry()
        )
        check_client(client)
        pool = client.connection_pool
        try:
            # Builds a connection without opening it: redis-py checks its options only here.
            pool.connection_class(**pool.connection_kwargs)
        except (TypeError, RedisError) as exc:
            raise ValueError(f"redis-py refuses its options ({exc})") from None
        return client
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = [_host_port(host) for host in hosts.split(",")]
    first = f"{userinfo}{at}{hosts.split(',')[0]}"
    try:
        cluster = RedisCluster.from_url(
            urlunsplit((plain, first, parts.path, parts.query, "")),
            startup_nodes=[ClusterNode(host, port) for host, port in nodes[1:]],
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=bounded_retry(),
        )
    except RedisClusterException as exc:  # e.g. a database other than 0
        raise ValueError(str(exc)) from None
    check_client(cluster)
    return cluster


def check_client(client: AsyncRedis) -> None:
    """Raise ValueError for a ``protocol`` redis-py would refuse only when it connects.

    Left to redis-py, ``protocol=7`` builds a client whose every call fails with a
    ConnectionError, which reads as Redis being down.
    """
    protocol = _connection_kwargs(client).get("protocol")
    if protocol is not None and str(protocol).strip() not in ("2", "3"):
        raise ValueError(f"protocol must be 2 (RESP2) or 3 (RESP3), not {protocol!r}")


def _host_port(text: str) -> tuple[str, int]:
    parts = urlsplit(f"//{text}")
    if not parts.hostname:
        raise ValueError(f"a cluster node must be host:port, not {text!r}")
    return unquote(parts.hostname), parts.port or 6379


def limiter_keys(key: str, *, cluster: bool) -> list[str]:
    """The limiter's keys: the slot, the 429 pause, the adaptive state, the adaptive grants.

    In a Cluster the names share a hash tag, so they live in one slot (the scripts touch all of
    them at once): the key's own tag if it has one, else the whole key in braces. A key with a
    ``}`` but no tag can't be put in braces; it is refused with ValueError.

    >>> limiter_keys("convoso:acme", cluster=True)[:2]
    ['{convoso:acme}', '{convoso:acme}:pause']
    >>> limiter_keys("convoso:{acme}", cluster=True)[:2]
    ['convoso:{acme}', 'convoso:{acme}:pause']
    """
    base = key
    if cluster and not _hash_tag(key):
        if "}" in key:
            raise ValueError(
                f"key {key!r} has a '}}' but no hash tag, so its keys would fall in different "
                "slots of the Redis Cluster: use a key without braces, or with a hash tag of "
                "its own such as 'convoso:{acme}'"
            )
        base = f"{{{key}}}"
    return [base, f"{base}:pause", f"{base}:adaptive", f"{base}:grants"]


def _hash_tag(key: str) -> str:
    """Redis Cluster's hash tag of ``key``: between the first ``{`` and the next ``}``; or ""."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else ""


def acl_rules(keys: list[str], *, cluster: bool) -> str:
    """The ACL rules a Redis user needs for a limiter with these ``keys``.

    >>> acl_rules(["app", "app:pause"], cluster=False).endswith("~app ~app:*")
    True
    """
    commands = ACL_COMMANDS + (CLUSTER_ACL_COMMANDS if cluster else ())
    base = "".join(f"\\{c}" if c in "*?[]\\" else c for c in keys[0])
    return " ".join([*commands, f"~{base}", f"~{base}:*"])


def url_secrets(url: str) -> tuple[str, ...]:
    """The password forms that could show up in a driver's message about ``url``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found: list[str] = []
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        found.append(userinfo.partition(":")[2] or userinfo)
    for piece in parts.query.split("&"):
        name, _, value = piece.partition("=")
        if unquote(name).lower() == "password":
            found.append(value)
    return _forms(found)


def client_secrets(client: AsyncRedis) -> tuple[str, ...]:
    """The passwords a caller's client holds: its own, and its Sentinels'."""
    found = [_connection_kwargs(client).get("password")]
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            found.append(sentinel.connection_pool.connection_kwargs.get("password"))
    return _forms([password for password in found if isinstance(password, str)])


def _forms(found: list[str]) -> tuple[str, ...]:
    secrets = {form for raw in found if raw for form in (raw, unquote(raw))}
    return tuple(sorted(secrets, key=len, reverse=True))


def describe_client(client: AsyncRedis) -> str:
    """Where a caller's client points, as a URL without its password.

    A Sentinel client is named by its Sentinels and service (``redis+sentinel://``), a Cluster
    client by its nodes (``redis+cluster://``: the startup nodes, or every node once it has
    mapped the cluster); TLS makes the scheme ``rediss``.
    """
    kwargs = _connection_kwargs(client)
    user = kwargs.get("username")
    userinfo = f"{user or ''}:***@" if kwargs.get("password") else (f"{user}@" if user else "")
    connection_class = kwargs.get("connection_class")
    if isinstance(client, RedisCluster):
        scheme = "rediss+cluster" if _is_tls(connection_class) else "redis+cluster"
        nodes = ",".join(f"{node.host}:{node.port}" for node in _startup_nodes(client))
        return f"{scheme}://{userinfo}{nodes}"
    pool = client.connection_pool
    connection_class = pool.connection_class
    if isinstance(pool, SentinelConnectionPool):
        scheme = "rediss+sentinel" if _is_tls(connection_class) else "redis+sentinel"
        sentinels = ",".join(
            f"{s.connection_pool.connection_kwargs.get('host', 'localhost')}:"
            f"{s.connection_pool.connection_kwargs.get('port', 26379)}"
            for s in pool.sentinel_manager.sentinels
        )
        role = "" if pool.is_master else "?role=replica"
        return f"{scheme}://{userinfo}{sentinels}/{pool.service_name}{role}"
    db = kwargs.get("db", 0)
    if _is_class(connection_class, UnixDomainSocketConnection) or "path" in kwargs:
        return f"unix://{userinfo}{kwargs.get('path', '')}?db={db}"
    scheme = "rediss" if _is_tls(connection_class) else "redis"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"{scheme}://{userinfo}{host}:{port}/{db}"


def _connection_kwargs(client: AsyncRedis) -> dict[str, object]:
    if isinstance(client, RedisCluster):
        return dict(client.get_connection_kwargs())
    return dict(client.connection_pool.connection_kwargs)


def _startup_nodes(client: RedisCluster) -> list[ClusterNode]:
    return list(client.nodes_manager.startup_nodes.values())


def _is_tls(connection_class: object) -> bool:
    return _is_class(connection_class, SSLConnection)


def _is_class(value: object, base: type) -> bool:
    return isinstance(value, type) and issubclass(value, base)


@dataclass(frozen=True)
class Failure:
    """A failed call to Redis, in the user's terms.

    ``what`` follows "Redis at URL (rate limiter key K)"; ``advice`` says what to do.
    ``outage`` is True when Redis is down or not ready (a fallback limiter is the remedy), False
    when the setup is wrong (credentials, permissions, the kind of deployment).
    """

    what: str
    advice: str
    outage: bool


@dataclass(frozen=True)
class _Target:
    """What a failure's explanation needs to know of the client that met it."""

    #: Whether the client sends credentials (a password, a username, a credential provider).
    credentials: bool
    #: The database number it selects.
    db: object
    #: Where it connects, for a first-hand look (`_first_answer`): ("tcp", host, port) or
    #: ("unix", path, 0); None when a look can't tell (TLS, a Sentinel, a Cluster).
    address: tuple[str, str, int] | None

    @property
    def place(self) -> str:
        """The address as a user names it: "port 6379" or "the socket /run/redis.sock"."""
        if self.address is None or self.address[0] == "tcp":
            return f"port {self.address[2] if self.address else '?'}"
        return f"the socket {self.address[1]}"


def _target(client: AsyncRedis) -> _Target:
    kwargs = _connection_kwargs(client)
    credentials = any(kwargs.get(name) for name in ("password", "username", "credential_provider"))
    address: tuple[str, str, int] | None = None
    if isinstance(client, aioredis.Redis) and not isinstance(
        client.connection_pool, SentinelConnectionPool
    ):
        connection_class = client.connection_pool.connection_class
        if _is_class(connection_class, UnixDomainSocketConnection) or "path" in kwargs:
            address = ("unix", str(kwargs.get("path", "")), 0)
        elif not _is_tls(connection_class):
            port = kwargs.get("port", 6379)
            address = ("tcp", str(kwargs.get("host", "localhost")), int(str(port)))
    return _Target(credentials=credentials, db=kwargs.get("db", 0), address=address)


#: The first byte of any Redis reply, RESP2 or RESP3.
_RESP_FIRST_BYTES = frozenset(b"+-:$*_,#!=(%~>|")


async def diagnose(
    exc: BaseException,
    client: AsyncRedis,
    *,
    timeout: float,
    acl: str,
    budget: float,
    scrub: tuple[str, ...] = (),
) -> Failure:
    """`explain`, and when that says "unreachable" but something took the connection, a look.

    redis-py meets a server that is not Redis (an HTTP server on the port) as a connection
    closed, which reads as Redis being down. An inline ``PING`` on a connection of its own,
    within ``budget`` seconds, shows what the port really answers.
    """
    target = _target(client)
    failure = explain(exc, client, timeout=timeout, acl=acl, scrub=scrub)
    refused = any(isinstance(error, ConnectionRefusedError) for error in _chain(exc))
    if failure.what.startswith(_UNREACHABLE) and not refused and target.address and budget > 0:
        answer = await _first_answer(target.address, budget)
        if answer and answer[0] not in _RESP_FIRST_BYTES:
            return _not_redis(target, answer.split(b"\n", 1)[0])
    return failure


async def _first_answer(address: tuple[str, str, int], budget: float) -> bytes:
    """What the server at ``address`` answers to an inline PING (b"" if nothing, in time)."""

    async def ask() -> bytes:
        kind, host, port = address
        if kind == "unix":
            reader, writer = await asyncio.open_unix_connection(host)
        else:
            reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return await reader.read(256)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        return await asyncio.wait_for(ask(), budget)
    except (OSError, asyncio.TimeoutError):
        return b""


def _not_redis(target: _Target, line: bytes) -> Failure:
    shown = line.strip().decode("ascii", "backslashreplace")[:60]
    return Failure(
        f"is not Redis: {target.place} answers, but not in the Redis protocol "
        f"(its answer begins {shown!r})",
        "check the host and port in the Redis URL",
        outage=False,
    )


def explain(
    exc: BaseException,
    client: AsyncRedis,
    *,
    timeout: float,
    acl: str,
    scrub: tuple[str, ...] = (),
) -> Failure:
    """What ``exc``, raised by a limiter's call to Redis through ``client``, says about the setup.

    ``acl`` is the rules the limiter's user needs (`acl_rules`); ``scrub`` are secrets to hide.
    The error and its causes are read, most telling kind first: a Cluster client wraps the
    real reason (a refused password, a missing permission) in an error of its own.
    """
    target = _target(client)
    chain = _chain(exc)
    for error in chain:
        if isinstance(error, InvalidResponse):  # bytes no Redis sends
            _, quoted, line = str(error).partition("b'")  # redis-py's parser quotes the bytes
            shown = line.rstrip("'") if quoted else str(error)
            return _not_redis(target, shown.encode("ascii", "backslashreplace"))
    for rule in _rules(timeout, acl, target):
        for error in chain:
            if rule.matches(error):
                what = f"{rule.what} ({_detail(error, scrub)})" if rule.detail else rule.what
                return Failure(what, rule.advice, rule.outage)
    return Failure(f"failed ({_detail(exc, scrub)})", "", outage=True)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, then what caused it, and so on."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


@dataclass(frozen=True)
class _Rule:
    matches: Callable[[BaseException], bool]
    what: str
    advice: str
    outage: bool
    detail: bool = True


#: How an unreachable server's explanation begins.
_UNREACHABLE = "is unreachable"


def _says(error: BaseException, *words: str) -> bool:
    text = str(error).lower()
    return any(word in text for word in words)


def _rules(timeout: float, acl: str, target: _Target) -> list[_Rule]:
    """The kinds of failure, the most telling first."""
    unreachable = "check that Redis is up and reachable"
    return [
        _Rule(
            # Without credentials the refusal is a request for them: NOAUTH, HELLO refused
            # before AUTH (RESP3), or "unauthenticated multibulk length" for a long command.
            lambda e: (
                not target.credentials
                and (
                    isinstance(e, (AuthenticationError, AuthorizationError))
                    or (isinstance(e, ResponseError) and _says(e, "noauth", "authenticat"))
                )
            ),
            "needs a password (AUTH)",
            "put it in the Redis URL (redis://:PASSWORD@host:port/0, or "
            "redis://USER:PASSWORD@host:port/0 for an ACL user) or give your client password=",
            outage=False,
            detail=False,
        ),
        _Rule(
            lambda e: isinstance(e, (AuthenticationError, AuthorizationError)),
            "refused the limiter's credentials",
            "check the username and password in the Redis URL or client",
            outage=False,
        ),
        _Rule(
            lambda e: (
                isinstance(e, NoPermissionError)
                or (isinstance(e, ResponseError) and "user executing the script" in str(e))
            ),
            "does not let this user run the limiter",
            f"give the Redis ACL user these rules: {acl}",
            outage=False,
        ),
        _Rule(
            # Redis before 6, and some servers that speak its protocol, know no HELLO: the
            # handshake of RESP3, which redis-py 8 speaks unless told otherwise.
            lambda e: (
                (isinstance(e, ResponseError) and _says(e, "hello", "noproto"))
                or (isinstance(e, RedisConnectionError) and _says(e, "invalid resp version"))
            ),
            "cannot speak RESP3 (the protocol of Redis 6 and later)",
            "add ?protocol=2 to the Redis URL, or give your client protocol=2",
            outage=False,
        ),
        _Rule(
            lambda e: isinstance(e, ResponseError) and _says(e, "db index"),
            f"has no database {target.db}",
            "use a database number the server has (0 to 15, unless its 'databases' setting "
            "allows more)",
            outage=False,
        ),
        _Rule(
            lambda e: isinstance(e, (ClusterCrossSlotError, MovedError, AskError)),
            "is a Redis Cluster node",
            "connect with a cluster URL (redis+cluster://host:port) or a "
            "redis.asyncio.cluster.RedisCluster client",
            outage=False,
        ),
        _Rule(
            lambda e: (
                isinstance(e, RedisClusterException)
                and "cluster mode is not enabled" in str(e).lower()
            ),
            "is not a Redis Cluster",
            "use a redis:// (or rediss://) URL for a single server",
            outage=False,
        ),
        _Rule(
            lambda e: isinstance(e, ReadOnlyError),
            "is a read-only replica, even on a fresh connection",
            "point the limiter at the primary: an endpoint that follows failovers, a "
            "Sentinel master_for() client, or a cluster URL",
            outage=False,
        ),
        _Rule(
            lambda e: isinstance(e, (BusyLoadingError, MasterDownError)),
            "is not ready yet",
            "it answers once it has loaded its data or reached its primary",
            outage=True,
        ),
        _Rule(
            lambda e: (
                isinstance(e, ssl.SSLError)
                or (isinstance(e, RedisConnectionError) and "[ssl" in str(e).lower())
            ),
            "failed the TLS handshake",
            "check the scheme (rediss:// for TLS) and the CA the client trusts (ssl_ca_certs)",
            outage=False,
        ),
        _Rule(
            lambda e: (
                isinstance(e, RedisTimeoutError)
                or (isinstance(e, TimeoutError) and not isinstance(e, RedisError))
            ),
            f"did not answer within {timeout:g}s",
            unreachable,
            outage=True,
            detail=False,
        ),
        _Rule(
            lambda e: isinstance(e, (RedisConnectionError, OSError)),
            _UNREACHABLE,
            unreachable,
            outage=True,
        ),
        _Rule(
            lambda e: isinstance(e, (RedisClusterException, ClusterError)),
            "could not serve the key's slot",
            "check the cluster's state (CLUSTER INFO) and that a client can reach its nodes",
            outage=True,
        ),
    ]


def _detail(error: BaseException, scrub: tuple[str, ...]) -> str:
    return f"{type(error).__name__}: {hide_secrets(str(error), scrub).rstrip('. ')}"


def hide_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with each of ``secrets`` (`url_secrets`, `client_secrets`) as ``***``.

    Unlike the token's redaction, a short secret is hidden too: a Redis password may be short.
    """
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
