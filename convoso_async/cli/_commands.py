"""What each ``convoso`` command does, once its arguments are parsed (see ``_main``).

Loaded only when a command runs: parsing, ``--help`` and usage errors need none of it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

import anyio

from convoso_async._bulk.changes import BATCH_FATAL, BatchResult
from convoso_async._errors import ConvosoError

from ._exits import (
    EXIT_ERROR,
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    UsageError,
)
from ._output import (
    client_from_args,
    console,
    decode_text,
    plural,
    print_campaigns,
    print_json,
    print_result,
    read_text_file,
    result_json,
    run_with_progress,
    stdout_is_terminal,
)

__all__ = ["dispatch", "read_fields", "read_ids"]


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
            text = read_text_file(from_file, "id file")
        for line in text.splitlines():
            item = line.split("#", 1)[0].strip().lstrip("\ufeff")
            if item:
                collected.append(item)
    collected = [item for item in collected if item]
    if not collected:
        raise UsageError("no campaign ids given: pass IDs or --from-file F")
    return collected


def read_fields(items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as form fields (a repeated key: the last one, as PHP reads it).

    A malformed one is named by its position, not shown: it may be a secret typed by mistake.
    """
    fields: dict[str, str] = {}
    for position, item in enumerate(items, start=1):
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise UsageError(f"field {position} is not KEY=VALUE (such as list_id=5)")
        fields[name] = value
    return fields


async def _api(args: argparse.Namespace) -> int:
    fields = read_fields(args.fields)
    async with client_from_args(args) as convoso:
        try:
            answer = await convoso.post(args.path, fields, idempotent=args.idempotent)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConvosoError):
                raise
            raise UsageError(str(exc)) from None  # a bad path or field: nothing was sent
    print_json(answer, compact=not stdout_is_terminal())
    return EXIT_OK


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
        return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED
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


def dispatch(args: argparse.Namespace, stdin: TextIO) -> int:
    """Run the command ``args`` names (``--from-file -`` reads ``stdin``); its exit code."""
    if args.command == "api":  # JSON only: no rich needed
        return anyio.run(_api, args)
    if not getattr(args, "json", False):
        # Tables, progress bars and the demo need rich; --json needs nothing more. Say so
        # before anything is sent, not when the report is printed.
        console()
    if args.command == "demo":
        from ._demo import run_demo

        return anyio.run(run_demo, args.campaigns, args.latency, args.concurrency, args.rate)
    if args.command == "schedule":
        from ._schedule import run_schedule_command

        return run_schedule_command(args)
    if args.action == "list":
        return anyio.run(_list, args)
    return anyio.run(_change, args, stdin)
