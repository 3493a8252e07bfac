"""Whether a mocking tool has patched an HTTP library right now, and why that is asked.

The client sends through its own stock ``httpx2.AsyncClient`` (or aiohttp, with
``transport="aiohttp"``). A test that mocks another library than the one that
sends would not see the client's requests, and they would reach the network
unmocked: the *old* httpx (``with respx.mock:``, ``respx.mock(using="httpx")``,
pytest-httpx's ``httpx_mock``), or httpx2 while the aiohttp opt-in sends
(respx on httpcore2, pytest-httpx2, ``unittest.mock`` on the client's methods),
or aiohttp itself (``aioresponses``). So before each request `Pool` asks
whether a library is patched, and then sends through the patched one.

Detection is by identity, one test per patch point: a `Watch` compares each
watched attribute with the library's genuine one, learnt from the library
itself (a value whose ``__module__`` is another library's is a patch; a
library first seen patched is learnt once the patch is gone). Nothing is
imported here: a library is watched only once something imported it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from types import ModuleType

__all__ = ["Watch", "aiohttp_mocked", "httpx_points"]

#: A patch point: (the class a tool patches, the attribute's name).
Point = tuple[type, str]

_UNKNOWN = object()


def _library_of(value: object) -> str:
    return str(getattr(value, "__module__", "") or "").split(".")[0]


def _genuine(owner: type, name: str) -> object:
    """What ``owner.name`` is when nothing patched it (`_UNKNOWN` if it is patched now)."""
    value = vars(owner).get(name)
    if value is None:
        return None  # inherited: a patch would add it to this class
    if _library_of(value) != owner.__module__.split(".")[0]:
        return _UNKNOWN  # patched before we looked: learnt once the patch is gone
    return value


class Watch:
    """The patch points of one library, each compared with its genuine value."""

    def __init__(self, points: Iterable[Point]) -> None:
        self.points = tuple(points)
        self._originals = [_genuine(owner, name) for owner, name in self.points]

    def mocked(self) -> bool:
        """True while a mocking tool has replaced one of the points."""
        for index, (owner, name) in enumerate(self.points):
            original = self._originals[index]
            if owner.__dict__.get(name) is original:
                continue
            if original is _UNKNOWN:
                # First seen patched: the genuine one is known once the patch is gone.
                learnt = _genuine(owner, name)
                self._originals[index] = learnt
                if learnt is not _UNKNOWN:
                    continue
            return True
        return False


def httpx_points(httpx_module: ModuleType, httpcore_module: ModuleType | None) -> list[Point]:
    """Where mocking tools hook into an httpx family (and its httpcore, once imported).

    respx (httpcore mode patches the pools' ``handle_async_request``, httpx mode
    ``AsyncClient._transport_for_url``), pytest-httpx
    (``AsyncHTTPTransport.handle_async_request``), pytest-httpx2 (respx on
    httpcore2), ``unittest.mock`` users (what ``AsyncClient.stream`` calls).
    """
    client, transport = httpx_module.AsyncClient, httpx_module.AsyncHTTPTransport
    points: list[Point] = [
        (client, "stream"),
        (client, "build_request"),
        (client, "send"),
        (client, "_transport_for_url"),
        (transport, "handle_async_request"),
    ]
    if httpcore_module is not None:  # the old httpx imports it on first use
        points += [
            (httpcore_module.AsyncConnectionPool, "handle_async_request"),
            (httpcore_module.AsyncHTTPConnection, "handle_async_request"),
            (httpcore_module.AsyncHTTPProxy, "handle_async_request"),
        ]
    return points


_aiohttp: Watch | None = None


def aiohttp_mocked() -> bool:
    """True while a mocking tool (aioresponses) has patched aiohttp's ``ClientSession._request``."""
    global _aiohttp
    module = sys.modules.get("aiohttp")
    if module is None:
        return False
    if _aiohttp is None:
        _aiohttp = Watch([(module.ClientSession, "_request")])
    return _aiohttp.mocked()
