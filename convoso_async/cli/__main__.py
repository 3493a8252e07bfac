"""``python -m convoso_async.cli``: the same as the ``convoso`` command."""

from __future__ import annotations

from .main import entry_point

entry_point()
