"""The ``convoso`` command: list campaigns, change their status in bulk, run the demo.

    convoso campaigns list [--active | --inactive] [--json]
    convoso campaigns activate ID... [--from-file F] [--concurrency N] [--rate R]
                                     [--dry-run] [--skip-unchanged] [--json]
    convoso campaigns deactivate ID... (same options)
    convoso schedule apply FILE [--at ISO-TIME] [--dry-run] [--json]
    convoso schedule run FILE
    convoso fake-server [--port P] [--campaigns N | --ids 111,222 | --reference] [--latency S]
    convoso demo
    convoso --version

The token comes from ``CONVOSO_AUTH_TOKEN`` or ``--token-file`` (never from a
``--token`` flag, which would leak into shell history and ``ps``).

Exit codes: 0 every campaign succeeded; 1 some campaigns failed; 2 bad
arguments or configuration; 3 the request failed as a whole (auth, network),
or a bulk change was stopped by a refused token or permission; 130 / 143
interrupted by SIGINT / SIGTERM (after printing the partial result); 141 the
reader of stdout went away (``| head``), as for a process killed by SIGPIPE.

Connection options (``--token-file``, ``--base-url``, ``--timeout``,
``--max-retries``) may come before or after the command.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

import anyio

from convoso_async import __version__
from convoso_async._bulk.changes import BATCH_FATAL, BatchResult, error_to_dict
from convoso_async._defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ENV_AUTH_TOKEN,
    ENV_BASE_URL,
)
from convoso_async._errors import ConfigurationError, ConvosoError

from ._output import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    client_from_args,
    console,
    decode_text,
    plural,
    print_campaigns,
    print_json,
    print_result,
    result_json,
    run_with_progress,
)

__all__ = ["main"]

N = TypeVar("N", int, float)


def _number(convert: Callable[[str], N], minimum: N, *, above: bool = False) -> Callable[[str], N]:
    """An argparse type: a finite number at least (or, with ``above``, more than) ``minimum``."""
    bound = f"more than {minimum}" if above else f"at least {minimum}"

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, 1)
_non_negative_int = _number(int, 0)
_positive_float = _number(float, 0.0, above=True)
_non_negative_float = _number(float, 0.0)


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
        type=_positive_float,
        metavar="S",
        default=default(DEFAULT_TIMEOUT),
        help=f"seconds per HTTP attempt (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--max-retries",
        type=_non_negative_int,
        metavar="N",
        default=default(DEFAULT_MAX_RETRIES),
        help=f"retries per request; 0 disables (default {DEFAULT_MAX_RETRIES})",
    )


def _add_pacing_options(parser: argparse.ArgumentParser, concurrency: int) -> None:
    group = parser.add_argument_group("pacing")
    group.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        default=concurrency,
        help=f"status requests in flight at once (default {concurrency})",
    )
    group.add_argument(
        "--rate",
        type=_positive_float,
        metavar="R",
        help="at most R requests per second (default: no limit)",
    )


def _version() -> str:
    import httpx2

    return (
        f"convoso {__version__} (convoso-async; Python {platform.python_version()}, "
        f"httpx2 {httpx2.__version__})"
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, for `main` and for the docs."""
    parser = _Parser(
        prog="convoso",
        description="Convoso campaigns from the command line: list, bulk (de)activate, schedule.",
        epilog=(
            "Exit codes: 0 every campaign succeeded; 1 some failed; 2 bad arguments or "
            "configuration; 3 the request failed as a whole (auth, network); 141 the reader "
            "of the output went away (| head). Output is a table on a terminal, plain "
            "lines in a pipe or file, one JSON document with --json."
        ),
    )
    parser.add_argument("--version", action="version", version=_version())
    _add_connection_options(parser, defaults=True)
    connection = _Parser(add_help=False)
    _add_connection_options(connection, defaults=False)
    output = _Parser(add_help=False)
    output.add_argument(
        "--json", action="store_true", help="one JSON document on stdout, for scripts"
    )

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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

    # Listed for --help only: `main` hands "fake-server ..." to the fake's own parser.
    commands.add_parser(
        "fake-server",
        help="run the embedded fake Convoso server on loopback "
        "(convoso fake-server --help for its options)",
    )

    demo = commands.add_parser(
        "demo", help="bulk-toggle thousands of campaigns on a fake server (no account needed)"
    )
    demo.add_argument(
        "--campaigns",
        type=_positive_int,
        metavar="N",
        default=3000,
        help="campaigns on the fake server (default 3000)",
    )
    demo.add_argument(
        "--latency",
        type=_non_negative_float,
        metavar="S",
        default=0.02,
        help="the fake's mean answer delay in seconds, varied +-50%% (default 0.02)",
    )
    demo.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        default=32,
        help="status requests in flight at once (default 32)",
    )
    demo.add_argument(
        "--rate",
        type=_positive_float,
        metavar="R",
        help="client rate limit, requests per second (default: no limit)",
    )
    return parser


def read_ids(ids: Sequence[str], from_file: Path | None, stdin: TextIO) -> list[str]:
    """Ids from the command line and ``--from-file``, in order, blank lines and comments dropped.

    The file may be UTF-8 (with or without a byte-order mark) or UTF-16/32
    with one, as Excel's "Unicode text" is.
    """
    collected = [item.strip() for item in ids]
    if from_file is not None:
        if str(from_file) == "-":
            raw = getattr(stdin, "buffer", None)
            text = decode_text(raw.read(), "stdin") if raw is not None else stdin.read()
        else:
            try:
                data = from_file.read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {str(from_file)!r}: {exc.strerror}") from None
            text = decode_text(data, repr(str(from_file)))
        for line in text.splitlines():
            item = line.split("#", 1)[0].strip().lstrip("\ufeff")
            if item:
                collected.append(item)
    collected = [item for item in collected if item]
    if not collected:
        raise UsageError("no campaign ids given: pass IDs or --from-file F")
    return collected


async def _list(args: argparse.Namespace) -> int:
    async with client_from_args(args) as convoso:
        campaigns = await convoso.campaigns.search()
    if args.active:
        campaigns = [c for c in campaigns if c.is_active]
    elif args.inactive:
        campaigns = [c for c in campaigns if not c.is_active]
    print_campaigns(campaigns, as_json=args.json)
    return EXIT_OK


async def _change(args: argparse.Namespace, stdin: TextIO) -> int:
    ids = read_ids(args.ids, args.from_file, stdin)
    active = args.action == "activate"
    async with client_from_args(args) as convoso:
        result, signum = await _until_signal(
            lambda on_interrupt: run_with_progress(
                f"{args.action} {plural(len(set(ids)), 'campaign')}",
                len(set(ids)),
                lambda on_progress: convoso.campaigns.set_status_many(
                    ids,
                    active,
                    on_progress=on_progress,
                    skip_unchanged=args.skip_unchanged,
                    dry_run=args.dry_run,
                    on_interrupt=on_interrupt,
                ),
                show=not args.json and sys.stderr.isatty(),
            )
        )
    if isinstance(result.stopped_by, BATCH_FATAL):
        # Every id would get the same answer: one message, not one line per campaign.
        if args.json:
            print_json(result_json(result))
        error = result.stopped_by
        print(
            f"convoso: error: {type(error).__name__}: {error}. Stopped after "
            f"{plural(len(result.failed), 'refused request')}; "
            f"{plural(len(result.not_sent), 'campaign')} not sent",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print_result(result, as_json=args.json, title=f"{args.action}")
    if signum is not None:
        print(
            f"convoso: interrupted by {signal.Signals(signum).name}: "
            f"{plural(len(result.not_sent), 'campaign')} not sent, {len(result.unknown)} in flight "
            "(unknown: may or may not have changed)",
            file=sys.stderr,
        )
        return 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as shells report them
    return EXIT_OK if result.ok else EXIT_FAILURES


async def _until_signal(
    work: Callable[[Callable[[BatchResult], None]], Awaitable[BatchResult]],
) -> tuple[BatchResult, int | None]:
    """Run ``work``; on SIGINT or SIGTERM stop it and return its partial result and the signal.

    ``work`` gets the ``on_interrupt`` callback to pass to the batch, which
    hands over the partial result (ids in flight unknown, the rest not sent).
    """
    partial: list[BatchResult] = []
    caught: list[int] = []
    done: list[BatchResult] = []
    failure: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    caught.append(int(signum))
                    group.cancel_scope.cancel()
                    return

        group.start_soon(watch)
        try:
            done.append(await work(partial.append))
        except Exception as error:  # raised below, not wrapped in the task group's ExceptionGroup
            failure.append(error)
        group.cancel_scope.cancel()
    if failure:
        raise failure[0]
    if done:
        return done[0], None
    return partial[0], caught[0]


def _dispatch(args: argparse.Namespace, stdin: TextIO) -> int:
    if args.command == "demo":
        from ._demo import run_demo

        console()  # fail early, with the install hint, if rich is missing
        return anyio.run(run_demo, args.campaigns, args.latency, args.concurrency, args.rate)
    if args.command == "schedule":
        from ._schedule import run_schedule_command

        return run_schedule_command(args)
    console()
    if args.action == "list":
        return anyio.run(_list, args)
    return anyio.run(_change, args, stdin)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convoso`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fake-server"]:
        from convoso_async.testing.__main__ import main as fake_main

        return fake_main(argv[1:], prog="convoso fake-server")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = _dispatch(args, sys.stdin)
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
        print(f"convoso: error: {error_to_dict(exc)['error']}: {exc}", file=sys.stderr)
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
