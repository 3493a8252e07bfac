"""The ``convoso`` command line.

``main`` (commands and their parser), ``schedule`` (``convoso schedule``),
``demo`` (``convoso demo``) and ``output`` (exit codes, the client from the
options, printing) which the three share. Imports go one way: ``main`` uses
``schedule`` and ``demo``, and every one of them uses ``output``.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
