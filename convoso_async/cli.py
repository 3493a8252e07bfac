"""The ``convoso`` command: list campaigns, change their status in bulk, run the demo.

    convoso campaigns list [--active | --inactive] [--json]
    convoso campaigns activate ID... [--from-file F] [--concurrency N] [--rate R]
                                     [--dry-run] [--skip-unchanged] [--json]
    convoso campaigns deactivate ID... (same options)
    convoso schedule apply FILE [--at ISO-TIME] [--dry-run] [--json]
    convoso schedule run FILE
    convoso fake-server [--port P] [--campaigns N] [--latency S] [--rate R]
    convoso demo

The token comes from ``CONVOSO_AUTH_TOKEN`` or ``--token-file`` (never from a
``--token`` flag, which would leak into shell history and ``ps``).

Exit codes: 0 every campaign succeeded; 1 some campaigns failed; 2 bad
arguments or configuration; 3 the request failed as a whole (auth, network).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

import anyio

from .changes import BatchProgress, BatchResult
from .client import AsyncConvoso
from .defaults import ENV_AUTH_TOKEN, ENV_BASE_URL
from .errors import ConfigurationError, ConvosoError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line itself: print it, exit 2."""


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


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: ``--token x`` must never quietly mean ``--token-file x``.

    Sub-commands inherit the class, so this holds at every level.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, for `main` and for the docs."""
    parser = _Parser(
        prog="convoso",
        description="Convoso campaigns from the command line: list, bulk (de)activate, schedule.",
    )
    connection = _Parser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument(
        "--token-file",
        type=Path,
        help=f"file whose first line is the auth token (default: ${ENV_AUTH_TOKEN})",
    )
    group.add_argument("--base-url", help=f"API root (default: ${ENV_BASE_URL} or Convoso's)")
    group.add_argument("--timeout", type=_positive_float, default=30.0, help="seconds per attempt")
    group.add_argument(
        "--max-retries", type=_non_negative_int, default=3, help="retries per request"
    )
    bulk = _Parser(add_help=False)
    options = bulk.add_argument_group("bulk options")
    options.add_argument(
        "--concurrency", type=_positive_int, default=8, help="requests in flight (default 8)"
    )
    options.add_argument("--rate", type=_positive_float, help="at most R requests per second")
    options.add_argument("--dry-run", action="store_true", help="send nothing; print the plan")
    options.add_argument(
        "--skip-unchanged",
        action="store_true",
        help="search first; skip campaigns already in the wanted state",
    )
    output = _Parser(add_help=False)
    output.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    campaigns = commands.add_parser("campaigns", help="list campaigns or change their status")
    actions = campaigns.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[connection, output], help="list every campaign")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--active", action="store_true", help="only active campaigns")
    which.add_argument("--inactive", action="store_true", help="only inactive campaigns")
    for verb in ("activate", "deactivate"):
        change = actions.add_parser(
            verb, parents=[connection, bulk, output], help=f"{verb} campaigns by id"
        )
        change.add_argument("ids", nargs="*", metavar="ID", help="campaign ids")
        change.add_argument(
            "--from-file",
            type=Path,
            metavar="F",
            help="read ids from F, one per line ('-' for stdin; # starts a comment)",
        )

    schedule = commands.add_parser("schedule", help="apply a TOML schedule of campaign windows")
    schedule_actions = schedule.add_subparsers(dest="action", metavar="ACTION", required=True)
    apply_parser = schedule_actions.add_parser(
        "apply",
        parents=[connection, output],
        help="bring campaigns to the schedule's state once (for cron)",
    )
    apply_parser.add_argument("file", type=Path, help="schedule file (TOML)")
    apply_parser.add_argument("--at", help="pretend it is this ISO time (with offset)")
    apply_parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    apply_parser.add_argument("--concurrency", type=_positive_int, default=8)
    apply_parser.add_argument("--rate", type=_positive_float)
    run_parser = schedule_actions.add_parser(
        "run",
        parents=[connection],
        help="keep campaigns on schedule: reconcile now and at every window boundary",
    )
    run_parser.add_argument("file", type=Path, help="schedule file (TOML)")
    run_parser.add_argument("--concurrency", type=_positive_int, default=8)
    run_parser.add_argument("--rate", type=_positive_float)

    # Listed for --help only: `main` hands "fake-server ..." to the fake's own parser.
    commands.add_parser("fake-server", help="run the embedded fake Convoso server on loopback")

    demo = commands.add_parser(
        "demo", help="bulk-toggle thousands of campaigns on a fake server (no account needed)"
    )
    demo.add_argument("--campaigns", type=_positive_int, default=3000)
    demo.add_argument("--latency", type=float, default=0.02, help="server latency, seconds")
    demo.add_argument("--concurrency", type=_positive_int, default=32)
    demo.add_argument("--rate", type=_positive_float, help="client rate limit, requests/s")
    return parser


def read_token(token_file: Path | None) -> str:
    """The auth token: ``--token-file`` first, then ``CONVOSO_AUTH_TOKEN``."""
    if token_file is None:
        token = os.environ.get(ENV_AUTH_TOKEN, "").strip()
        if not token:
            raise UsageError(f"no auth token: set {ENV_AUTH_TOKEN} or pass --token-file FILE")
        return token
    try:
        lines = token_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read token file {str(token_file)!r}: {exc.strerror}") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise UsageError(f"token file {str(token_file)!r} is empty")
    return token


def read_ids(ids: Sequence[str], from_file: Path | None, stdin: TextIO) -> list[str]:
    """Ids from the command line and ``--from-file``, in order, blank lines and comments dropped."""
    collected = [item.strip() for item in ids]
    if from_file is not None:
        if str(from_file) == "-":
            text = stdin.read()
        else:
            try:
                text = from_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot read {str(from_file)!r}: {exc.strerror}") from None
        for line in text.splitlines():
            item = line.split("#", 1)[0].strip()
            if item:
                collected.append(item)
    collected = [item for item in collected if item]
    if not collected:
        raise UsageError("no campaign ids given: pass IDs or --from-file F")
    return collected


def _console(stderr: bool = False) -> Console:
    try:
        from rich.console import Console
    except ImportError:
        raise UsageError(
            "the convoso command needs its extra: pip install 'convoso-async[cli]'"
        ) from None
    return Console(stderr=stderr, highlight=False)


def client_from_args(args: argparse.Namespace) -> AsyncConvoso:
    """The client a command's connection options (and bulk options, if it has them) describe."""
    return AsyncConvoso(
        read_token(args.token_file),
        base_url=args.base_url,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_concurrency=getattr(args, "concurrency", 8),
        rate_limit=getattr(args, "rate", None),
    )


async def _list(args: argparse.Namespace) -> int:
    async with client_from_args(args) as convoso:
        campaigns = await convoso.campaigns.search()
    if args.active:
        campaigns = [c for c in campaigns if c.is_active]
    elif args.inactive:
        campaigns = [c for c in campaigns if not c.is_active]
    if args.json:
        rows = [
            {
                "id": c.id,
                "name": c.name,
                "status": c.status.value,
                "last_call_date": None
                if c.last_call_date is None
                else c.last_call_date.to_datetime().isoformat(),
            }
            for c in campaigns
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"{len(campaigns)} campaigns")
    for column in ("id", "name", "status", "last call"):
        table.add_column(column)
    for c in campaigns:
        last = "" if c.last_call_date is None else str(c.last_call_date.date)
        table.add_row(c.id, c.name, "active" if c.is_active else "inactive", last)
    _console().print(table)
    return EXIT_OK


async def run_with_progress(
    label: str,
    total: int,
    work: Callable[[Callable[[BatchProgress], None] | None], Awaitable[BatchResult]],
    *,
    show: bool,
) -> BatchResult:
    """Run a bulk change with a progress bar on stderr (when ``show``)."""
    if not show or total == 0:
        return await work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=total)

        def advance(counts: BatchProgress) -> None:
            progress.update(task, completed=counts.done)

        return await work(advance)


def result_json(result: BatchResult) -> dict[str, Any]:
    """A bulk result as plain JSON types, for ``--json``."""
    return {
        "ok": result.ok,
        "dry_run": result.dry_run,
        "total": len(result.targets),
        "succeeded": list(result.succeeded),
        "failed": {
            campaign_id: {"error": type(error).__name__, "message": str(error)}
            for campaign_id, error in result.failed.items()
        },
        "skipped": list(result.skipped),
        "planned": [
            {"id": i, "active": result.targets[i], "currently_active": result.current.get(i)}
            for i in result.planned
        ],
        "retries": result.retries,
        "elapsed_seconds": round(result.elapsed, 3),
    }


def print_result(result: BatchResult, *, as_json: bool, title: str) -> None:
    """The end-of-run report: a summary table and every failure with its reason."""
    if as_json:
        print(json.dumps(result_json(result), indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    console = _console()
    table = Table(title=title)
    if result.dry_run:
        for column in ("campaigns", "would send", "would change", "skipped", "failed"):
            table.add_column(column, justify="right")
        changes = sum(1 for i in result.planned if result.current.get(i) != result.targets[i])
        table.add_row(
            str(len(result.targets)),
            str(len(result.planned)),
            str(changes),
            str(len(result.skipped)),
            str(len(result.failed)),
        )
    else:
        for column in ("campaigns", "succeeded", "failed", "skipped", "retries", "seconds"):
            table.add_column(column, justify="right")
        table.add_row(
            str(len(result.targets)),
            str(len(result.succeeded)),
            str(len(result.failed)),
            str(len(result.skipped)),
            str(result.retries),
            f"{result.elapsed:.2f}",
        )
    console.print(table)
    if result.dry_run:
        for campaign_id in result.planned[:50]:
            wanted = "activate" if result.targets[campaign_id] else "deactivate"
            console.print(f"  would {wanted} {campaign_id}")
        if len(result.planned) > 50:
            console.print(f"  ... and {len(result.planned) - 50} more")
    for campaign_id, error in sorted(result.failed.items()):
        console.print(f"[red]failed[/red] {campaign_id}: {type(error).__name__}: {error}")


async def _change(args: argparse.Namespace, stdin: TextIO) -> int:
    ids = read_ids(args.ids, args.from_file, stdin)
    active = args.action == "activate"
    async with client_from_args(args) as convoso:
        result = await run_with_progress(
            f"{args.action} {len(set(ids))} campaigns",
            len(set(ids)),
            lambda on_progress: convoso.campaigns.set_status_many(
                ids,
                active,
                on_progress=on_progress,
                skip_unchanged=args.skip_unchanged,
                dry_run=args.dry_run,
            ),
            show=not args.json and sys.stderr.isatty(),
        )
    print_result(result, as_json=args.json, title=f"{args.action}")
    return EXIT_OK if result.ok else EXIT_FAILURES


def _dispatch(args: argparse.Namespace, stdin: TextIO) -> int:
    if args.command == "demo":
        from .demo import run_demo

        _console()  # fail early, with the install hint, if rich is missing
        return anyio.run(run_demo, args.campaigns, args.latency, args.concurrency, args.rate)
    if args.command == "schedule":
        from .schedule_cli import run_schedule_command

        return run_schedule_command(args)
    _console()
    if args.action == "list":
        return anyio.run(_list, args)
    return anyio.run(_change, args, stdin)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convoso`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fake-server"]:
        from .testing.__main__ import main as fake_main

        return fake_main(argv[1:], prog="convoso fake-server")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args, sys.stdin)
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


def _fail(parser: argparse.ArgumentParser, message: str, code: int) -> int:
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return code


def entry_point() -> NoReturn:
    """``python -m convoso_async.cli`` and the console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
