"""What every ``convoso`` command shares: exit codes, the client from the options, printing.

The commands (`main`, `schedule`, `demo`) import from here; nothing here imports
them, so the command-line modules form no circle.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convoso_async.changes import BatchProgress, BatchResult
from convoso_async.client import AsyncConvoso
from convoso_async.defaults import ENV_AUTH_TOKEN

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILURES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "client_from_args",
    "console",
    "print_result",
    "print_stopped",
    "read_token",
    "result_json",
    "run_with_progress",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line itself: print it, exit 2."""


def console(stderr: bool = False) -> Console:
    """A rich console, or `UsageError` with the install hint when the ``cli`` extra is missing."""
    try:
        from rich.console import Console
    except ImportError:
        raise UsageError(
            "the convoso command needs its extra: pip install 'convoso-async[cli]'"
        ) from None
    return Console(stderr=stderr, highlight=False)


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
        console=console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=total)

        def advance(counts: BatchProgress) -> None:
            progress.update(task, completed=counts.done)

        return await work(advance)


def result_json(result: BatchResult) -> dict[str, Any]:
    """A bulk result as plain JSON types, for ``--json``: every bucket, each id in one."""
    return result.to_dict()


def print_result(result: BatchResult, *, as_json: bool, title: str) -> None:
    """The end-of-run report: a summary table and every failure with its reason."""
    if as_json:
        print(json.dumps(result_json(result), indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    out = console()
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
        columns = ("campaigns", "succeeded", "failed", "skipped", "not sent", "unknown")
        for column in (*columns, "retries", "seconds"):
            table.add_column(column, justify="right")
        table.add_row(
            str(len(result.targets)),
            str(len(result.succeeded)),
            str(len(result.failed)),
            str(len(result.skipped)),
            str(len(result.not_sent)),
            str(len(result.unknown)),
            str(result.retries),
            f"{result.elapsed:.2f}",
        )
    out.print(table)
    if result.dry_run:
        for campaign_id in result.planned[:50]:
            wanted = "activate" if result.targets[campaign_id] else "deactivate"
            out.print(f"  would {wanted} {campaign_id}")
        if len(result.planned) > 50:
            out.print(f"  ... and {len(result.planned) - 50} more")
    for campaign_id, error in sorted(result.failed.items()):
        out.print(f"[red]failed[/red] {campaign_id}: {type(error).__name__}: {error}")
    print_stopped(result, out)


def print_stopped(result: BatchResult, out: Console) -> None:
    """The ids a stopped batch never sent (one line per reason) and those left unknown."""
    causes: dict[tuple[str, str], list[Exception]] = {}
    for error in result.not_sent.values():
        # Errors of one cause differ only by campaign (and a countdown): say each cause once.
        key = (type(error).__name__, str(getattr(error, "reason", "")))
        causes.setdefault(key, []).append(error)
    for (name, _), errors in causes.items():
        first = errors[0]
        out.print(
            f"[yellow]not sent[/yellow] {len(errors)} campaigns "
            f"({name}: {getattr(first, 'message', first)})"
        )
    if result.unknown:
        shown = ", ".join(sorted(result.unknown)[:50])
        more = f" and {len(result.unknown) - 50} more" if len(result.unknown) > 50 else ""
        out.print(
            f"[yellow]unknown[/yellow] {len(result.unknown)} campaigns were in flight when the "
            f"batch stopped and may or may not have changed: {shown}{more}"
        )
