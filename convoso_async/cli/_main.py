"""The ``convoso`` command: list campaigns, change their status in bulk, call any endpoint.

    convoso campaigns list [--active | --inactive] [--json]
    convoso campaigns activate ID... [--from-file F] [--concurrency N] [--rate R]
                                     [--dry-run] [--skip-unchanged] [--json]
    convoso campaigns deactivate ID... (same options)
    convoso schedule apply FILE [--at ISO-TIME] [--dry-run] [--json]
    convoso schedule run FILE
    convoso api PATH [KEY=VALUE ...] [--idempotent]
    convoso fake-server [--port P] [--campaigns N | --ids 111,222 | --reference] [--latency S]
    convoso demo
    convoso --version

The token comes from ``CONVOSO_AUTH_TOKEN`` or ``--token-file`` (never from a
``--token`` flag, which would leak into shell history and ``ps``).

Exit codes: 0 every campaign succeeded (``api``: Convoso answered); 1 some
campaigns failed; 2 bad arguments or configuration; 3 the request failed as a
whole (auth, network, a ``success: false`` answer),
or a bulk change was stopped by a refused token or permission; 130 / 143
interrupted by SIGINT / SIGTERM (after printing the partial result); 141 the
reader of stdout went away (``| head``), as for a process killed by SIGPIPE.

Connection options (``--token-file``, ``--base-url``, ``--timeout``,
``--max-retries``) may come before or after the command.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from convoso_async._checks import check_concurrency, check_count, check_number, check_retries
from convoso_async._defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    DEMO_CAMPAIGNS,
    DEMO_CONCURRENCY,
    DEMO_LATENCY,
    ENV_AUTH_TOKEN,
    ENV_BASE_URL,
    MAX_RATE,
)
from convoso_async._errors import ConfigurationError, ConvosoError
from convoso_async._version import __version__

from ._exits import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MEANINGS,
    EXIT_USAGE,
    UsageError,
)

__all__ = ["main"]


def _option(check: Callable[[str, object], Any], name: str, convert: Callable[[str], Any]) -> Any:
    """An argparse type checked as the library checks its option: the same range and words."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        try:
            return check(name, value)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


_timeout = _option(lambda name, value: check_number(name, value), "timeout", float)
_max_retries = _option(lambda _, value: check_retries(value), "max_retries", int)
_concurrency = _option(lambda _, value: check_concurrency(value), "max_concurrency", int)
_rate = _option(
    lambda name, value: check_number(name, value, maximum=MAX_RATE, unit="requests"),
    "rate_limit",
    float,
)
_campaigns = _option(lambda name, value: check_count(name, value, minimum=1), "campaigns", int)
_latency = _option(lambda name, value: check_number(name, value, above=False), "latency", float)


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: ``--token x`` must never quietly mean ``--token-file x``.

    Sub-commands inherit the class, so this holds at every level.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _add_connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The connection options, on the top-level parser and again on each command.

    Given before the command (``convoso --base-url U campaigns list``) or after
    it, they mean the same. A command's copies default to "not given"
    (``SUPPRESS``), so they never overwrite a value given before the command.
    """

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        default=default(None),
        help=f"file whose first line is the auth token (default: ${ENV_AUTH_TOKEN})",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=default(None),
        help=f"API root, e.g. {DEFAULT_BASE_URL} (default: ${ENV_BASE_URL} or that)",
    )
    group.add_argument(
        "--timeout",
        type=_timeout,
        metavar="S",
        default=default(DEFAULT_TIMEOUT),
        help=f"seconds per HTTP attempt (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--max-retries",
        type=_max_retries,
        metavar="N",
        default=default(DEFAULT_MAX_RETRIES),
        help=f"retries per request; 0 disables (default {DEFAULT_MAX_RETRIES})",
    )


def _add_pacing_options(parser: argparse.ArgumentParser, concurrency: int) -> None:
    group = parser.add_argument_group("pacing")
    group.add_argument(
        "--concurrency",
        type=_concurrency,
        metavar="N",
        default=concurrency,
        help=f"status requests in flight at once (default {concurrency})",
    )
    group.add_argument(
        "--rate",
        type=_rate,
        metavar="R",
        help="at most R requests per second (default: no limit)",
    )


class _Version(argparse.Action):
    """``--version``, which names the HTTP library's version: imported only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        import httpx2

        print(
            f"convoso {__version__} (convoso-async; Python {platform.python_version()}, "
            f"httpx2 {httpx2.__version__})"
        )
        parser.exit()


_DESCRIPTION = (
    "Convoso campaigns from the command line: list, bulk (de)activate, schedule; "
    "and any other endpoint (convoso api)."
)
_EPILOG = (
    "Exit codes: "
    + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_MEANINGS.items())
    + ". Output is a table on a terminal, plain lines in a pipe or file, one JSON "
    "document with --json."
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (`main` parses with it; the tests walk it)."""
    parser = _Parser(prog="convoso", description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument("--version", action=_Version)
    _add_connection_options(parser, defaults=True)
    connection = _Parser(add_help=False)
    _add_connection_options(connection, defaults=False)
    output = _Parser(add_help=False)
    output.add_argument(
        "--json", action="store_true", help="one JSON document on stdout, for scripts"
    )

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_campaigns_command(commands, connection, output)
    _add_schedule_command(commands, connection, output)
    _add_api_command(commands, connection)
    # Listed for --help only: `main` hands "fake-server ..." to the fake's own parser.
    commands.add_parser(
        "fake-server",
        help="run the embedded fake Convoso server on loopback "
        "(convoso fake-server --help for its options)",
    )
    _add_demo_command(commands)
    return parser


# The commands' parsers, added in the order --help lists them. ``connection`` and
# ``output`` are the parents that give a command the connection options and --json.


def _add_campaigns_command(
    commands: argparse._SubParsersAction[_Parser],
    connection: _Parser,
    output: _Parser,
) -> None:
    campaigns = commands.add_parser("campaigns", help="list campaigns or change their status")
    actions = campaigns.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[connection, output], help="list every campaign")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--active", action="store_true", help="only active campaigns")
    which.add_argument("--inactive", action="store_true", help="only inactive campaigns")
    for verb in ("activate", "deactivate"):
        change = actions.add_parser(
            verb, parents=[connection, output], help=f"{verb} campaigns by id"
        )
        change.add_argument("ids", nargs="*", metavar="ID", help="campaign ids")
        change.add_argument(
            "--from-file",
            type=Path,
            metavar="F",
            help="read ids from F, one per line ('-' for stdin; # starts a comment; "
            "UTF-8, or UTF-16 with a byte-order mark as Excel saves it)",
        )
        _add_pacing_options(change, DEFAULT_MAX_CONCURRENCY)
        change.add_argument(
            "--dry-run", action="store_true", help="send no status change; print the plan"
        )
        change.add_argument(
            "--skip-unchanged",
            action="store_true",
            help="search first; skip campaigns already in the wanted state",
        )


def _add_schedule_command(
    commands: argparse._SubParsersAction[_Parser],
    connection: _Parser,
    output: _Parser,
) -> None:
    schedule = commands.add_parser("schedule", help="apply a TOML schedule of campaign windows")
    schedule_actions = schedule.add_subparsers(dest="action", metavar="ACTION", required=True)
    apply_parser = schedule_actions.add_parser(
        "apply",
        parents=[connection, output],
        help="bring campaigns to the schedule's state once (for cron)",
    )
    apply_parser.add_argument("file", type=Path, help="schedule file (TOML)")
    apply_parser.add_argument(
        "--at",
        metavar="TIME",
        help="act as if it were this ISO time, e.g. 2026-03-09T08:00 (read in the "
        "schedule's zone) or 2026-03-09T08:00-07:00 (default: now)",
    )
    apply_parser.add_argument(
        "--dry-run", action="store_true", help="send no status change; print the plan"
    )
    _add_pacing_options(apply_parser, DEFAULT_MAX_CONCURRENCY)
    run_parser = schedule_actions.add_parser(
        "run",
        parents=[connection],
        help="keep campaigns on schedule: reconcile now and at every window boundary",
    )
    run_parser.add_argument("file", type=Path, help="schedule file (TOML)")
    _add_pacing_options(run_parser, DEFAULT_MAX_CONCURRENCY)


def _add_api_command(commands: argparse._SubParsersAction[_Parser], connection: _Parser) -> None:
    api = commands.add_parser(
        "api",
        parents=[connection],
        help="POST to any Convoso endpoint and print its JSON answer (like gh api)",
        description=(
            "POST to any Convoso endpoint through the client (the token in the body, "
            "retries, the 429 pause) and print the JSON answer: indented on a terminal, "
            "one line otherwise. Exit 3, with the error, when the call fails or Convoso "
            "answers success: false."
        ),
    )
    api.add_argument("path", metavar="PATH", help="the endpoint below the API root: /leads/search")
    api.add_argument(
        "fields",
        nargs="*",
        default=[],  # without a default, argparse counts a "*" positional as required
        metavar="KEY=VALUE",
        help="form fields, e.g. list_id=5 (the token is added from the connection options)",
    )
    api.add_argument(
        "--idempotent",
        action="store_true",
        help="safe to send twice (a search): retry it after timeouts, resets and 5xx too "
        "(by default only what cannot have reached Convoso is retried)",
    )


def _add_demo_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    demo = commands.add_parser(
        "demo", help="bulk-toggle thousands of campaigns on a fake server (no account needed)"
    )
    demo.add_argument(
        "--campaigns",
        type=_campaigns,
        metavar="N",
        default=DEMO_CAMPAIGNS,
        help=f"campaigns on the fake server (default {DEMO_CAMPAIGNS})",
    )
    demo.add_argument(
        "--latency",
        type=_latency,
        metavar="S",
        default=DEMO_LATENCY,
        help=f"the fake's mean answer delay in seconds, varied +-50%% (default {DEMO_LATENCY:g})",
    )
    demo.add_argument(
        "--concurrency",
        type=_concurrency,
        metavar="N",
        default=DEMO_CONCURRENCY,
        help=f"status requests in flight at once (default {DEMO_CONCURRENCY})",
    )
    demo.add_argument(
        "--rate",
        type=_rate,
        metavar="R",
        help="client rate limit, requests per second (default: no limit)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convoso`` command; returns the exit code."""
    with _writable_anywhere():
        return _run(list(sys.argv[1:] if argv is None else argv))


@contextlib.contextmanager
def _writable_anywhere() -> Iterator[None]:
    """While the command runs, stdout and stderr escape what their encoding can't hold.

    A campaign named "Renovación" printed to an ASCII stdout (``PYTHONIOENCODING=ascii``, a C
    locale) or a Windows pipe (cp1252) and "✓" anywhere but UTF-8 would otherwise be a
    UnicodeEncodeError traceback. Such characters are written as ``\\xf3``-style escapes
    (JSON documents use JSON's own escapes instead, see ``print_json``); the streams'
    own setting is restored after, for a caller that runs `main` in its process.
    """
    changed: list[tuple[Any, str]] = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if not isinstance(errors, str) or not hasattr(stream, "reconfigure"):
            continue  # not a text file (replaced by the caller): left as it is
        try:
            stream.reconfigure(errors="backslashreplace")
        except (OSError, ValueError):  # closed, or its reader went away
            continue
        changed.append((stream, errors))
    try:
        yield
    finally:
        for stream, errors in changed:
            with contextlib.suppress(OSError, ValueError):
                stream.reconfigure(errors=errors)


def _run(argv: list[str]) -> int:
    if argv[:1] == ["fake-server"]:
        from convoso_async.testing.__main__ import main as fake_main

        return fake_main(argv[1:], prog="convoso fake-server")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # The commands (and the HTTP stack they need) load only once a command runs:
        # `convoso --help` and a usage error cost next to nothing.
        from ._commands import dispatch

        code = dispatch(args, sys.stdin)
        sys.stdout.flush()  # here, so a closed pipe is caught below, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`convoso campaigns list | head`): stop quietly, as cat does.
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except UsageError as exc:
        return _fail(parser, str(exc), EXIT_USAGE)
    except ConfigurationError as exc:
        return _fail(parser, str(exc), EXIT_USAGE)
    except ConvosoError as exc:
        print(f"convoso: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("convoso: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured)
        pass


def _fail(parser: argparse.ArgumentParser, message: str, code: int) -> int:
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return code


def entry_point() -> NoReturn:
    """``python -m convoso_async.cli``: run `main` and exit with its code."""
    sys.exit(main())
