"""The command line's exit codes and its one error of its own, light enough for ``--help``."""

from __future__ import annotations

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_FAILURES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130
#: 128 + SIGPIPE: what a shell reports for a process the closed pipe killed.
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A problem with the command line itself: print it, exit 2."""
