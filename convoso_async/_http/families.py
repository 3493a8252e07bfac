"""The httpx family: httpx2 (the maintained httpx, ours by default) and the old httpx.

The two are the same API in two packages with different classes: a caller's
own client may be either, their exceptions are different classes, and a
mocking tool patches one family only. Everything this library needs to know
about which is which lives here:

- `family_of`: the family of a caller's client (``httpx`` is never imported
  here: a caller holding an ``httpx.AsyncClient`` has imported it already);
- `Family.mocked`: whether a mocking tool (respx in any mode, pytest-httpx,
  pytest-httpx2, ``unittest.mock`` on the client's methods) has patched that
  family right now, one identity test per patch point.

How a family's exceptions map onto this library's is in `transport_errors`.

After ``httpx2.alias_httpx()``, ``import httpx`` is httpx2: one family.
"""

from __future__ import annotations

import sys
from types import ModuleType

import httpcore2
import httpx2

from convoso_async._defaults import USER_AGENT_PREFIX

__all__ = ["HTTPX2", "Family", "family_of", "old_httpx"]


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


class Family:
    """One httpx family: its module, its user agent, the points a mocking tool patches."""

    def __init__(self, httpx_module: ModuleType, httpcore_module: ModuleType | None) -> None:
        self.module = httpx_module
        self.name: str = httpx_module.__name__
        self.version: str = httpx_module.__version__
        #: What the client's own requests say they are: the library, the language, the HTTP library.
        self.user_agent = f"{USER_AGENT_PREFIX} {self.name}/{self.version}"
        # Where mocking tools hook in: respx (httpcore mode patches the pools'
        # handle_async_request, httpx mode AsyncClient._transport_for_url),
        # pytest-httpx (AsyncHTTPTransport.handle_async_request), pytest-httpx2
        # (respx on httpcore2), unittest.mock users (what AsyncClient.stream calls).
        client, transport = httpx_module.AsyncClient, httpx_module.AsyncHTTPTransport
        watched: list[tuple[type, str]] = [
            (client, "stream"),
            (client, "build_request"),
            (client, "send"),
            (client, "_transport_for_url"),
            (transport, "handle_async_request"),
        ]
        self.httpcore = httpcore_module
        if httpcore_module is not None:  # the old httpx imports it on first use
            watched += [
                (httpcore_module.AsyncConnectionPool, "handle_async_request"),
                (httpcore_module.AsyncHTTPConnection, "handle_async_request"),
                (httpcore_module.AsyncHTTPProxy, "handle_async_request"),
            ]
        self.watched = tuple(watched)
        self._originals = [_genuine(owner, name) for owner, name in self.watched]

    def __repr__(self) -> str:
        return f"<Family {self.name} {self.version}>"

    def mocked(self) -> bool:
        """True while a mocking tool has replaced part of this family."""
        for index, (owner, name) in enumerate(self.watched):
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

    def owns(self, client: object) -> bool:
        return isinstance(client, self.module.AsyncClient)


HTTPX2 = Family(httpx2, httpcore2)

_old: Family | None = None


def old_httpx() -> Family | None:
    """The old httpx family, if a caller (or a test tool) imported it; never imports it."""
    global _old
    module = sys.modules.get("httpx")
    if module is None or module is httpx2:  # not imported, or aliased to httpx2
        return None
    httpcore = sys.modules.get("httpcore")
    if _old is None or _old.module is not module or _old.httpcore is not httpcore:
        _old = Family(module, httpcore)
    return _old


def family_of(client: object) -> Family | None:
    """The family ``client`` is an ``AsyncClient`` of, or None."""
    if HTTPX2.owns(client):
        return HTTPX2
    old = old_httpx()
    return old if old is not None and old.owns(client) else None
