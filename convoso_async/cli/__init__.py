"""The ``convoso`` command line.

``_main`` (the parser, and `main`: parse, run, map errors to exit codes),
``_commands`` (what each command does, loaded only when one runs),
``_schedule`` (``convoso schedule``), ``_demo`` (``convoso demo``),
``_output`` (the client from the options, printing) and ``_exits`` (exit codes
and `UsageError`, light enough for ``--help``). Imports go one way: ``_main``
uses ``_commands``, which uses ``_schedule`` and ``_demo``; those three use
``_output``; ``_exits`` imports none of them.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
