"""The httpx family: httpx2 (the maintained httpx, ours by default) and the old httpx.

The two are the same API in two packages with different classes: a caller's
own client may be either, their exceptions are different classes, and a
mocking tool patches one family only. Everything this library needs to know
about which is which lives here:

- `family_of`: the family of a caller's client (``httpx`` is never imported
  here: a caller holding an ``httpx.AsyncClient`` has imported it already);
- `Family.mocked`: whether a mocking tool has patched that family right now
  (how, and why it is asked: `mocking`).

How a family's exceptions map onto this library's is in `transport_errors`.

After ``httpx2.alias_httpx()``, ``import httpx`` is httpx2: one family.
"""

from __future__ import annotations

import sys
from types import ModuleType

import httpcore2
import httpx2

from convoso_async._defaults import USER_AGENT_PREFIX

from .mocking import Watch, httpx_points

__all__ = ["HTTPX2", "Family", "family_of", "old_httpx"]


class Family:
    """One httpx family: its module, its user agent, whether a mocking tool patched it."""

    def __init__(self, httpx_module: ModuleType, httpcore_module: ModuleType | None) -> None:
        self.module = httpx_module
        self.name: str = httpx_module.__name__
        self.version: str = httpx_module.__version__
        #: What the client's own requests say they are: the library, the language, the HTTP library.
        self.user_agent = f"{USER_AGENT_PREFIX} {self.name}/{self.version}"
        self.httpcore = httpcore_module
        self.watch = Watch(httpx_points(httpx_module, httpcore_module))
        #: The patch points watched (see `mocking.httpx_points`).
        self.watched = self.watch.points

    def __repr__(self) -> str:
        return f"<Family {self.name} {self.version}>"

    def mocked(self) -> bool:
        """True while a mocking tool has replaced part of this family."""
        return self.watch.mocked()

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
