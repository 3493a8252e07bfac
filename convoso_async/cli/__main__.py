"""``python -m convoso_async.cli``: the same as the ``convoso`` command."""

from __future__ import annotations

from ._main import entry_point

entry_point()
