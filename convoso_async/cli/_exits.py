"""The command line's exit codes and its one error of its own, light enough for ``--help``."""

from __future__ import annotations

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_FAILURES",
    "EXIT_INTERRUPTED",
    "EXIT_MEANINGS",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "UsageError",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
#: 128 + SIGINT and 128 + SIGTERM, as a shell reports a process these signals stopped.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: 128 + SIGPIPE: what a shell reports for a process the closed pipe killed.
EXIT_BROKEN_PIPE = 141

#: What each code means, in the order ``convoso --help`` lists them.
EXIT_MEANINGS = {
    EXIT_OK: "every campaign succeeded",
    EXIT_FAILURES: "some failed",
    EXIT_USAGE: "bad arguments or configuration",
    EXIT_ERROR: (
        "the request failed as a whole (auth, network; for api, a success: false answer too)"
    ),
    EXIT_INTERRUPTED: (
        "interrupted by Ctrl-C or SIGINT (a bulk change prints its partial result first)"
    ),
    EXIT_TERMINATED: "stopped by SIGTERM (likewise)",
    EXIT_BROKEN_PIPE: "the reader of the output went away (| head)",
}


class UsageError(Exception):
    """A problem with the command line itself: print it, exit 2."""
