"""What every ``convoso`` command shares: the client from the options, and printing.

The commands (``_commands``, ``_schedule``, ``_demo``) import from here; nothing
here imports them, so the command-line modules form no circle. Exit codes are
``_exits``'s.

Output follows where it goes. On a terminal: tables (rich) and a progress bar.
Anywhere else (a pipe, a file, cron): plain lines, one record per line, never
wrapped, ids in numeric order, so ``grep``, ``cut -f`` and ``wc -l`` work.
``--json`` prints one JSON document, the models' and results' ``to_dict()`` (a bulk
result's ids in the order they were given).
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convoso_async._bulk.changes import BatchProgress, BatchResult, error_to_dict
from convoso_async._client import AsyncConvoso
from convoso_async._defaults import DEFAULT_MAX_CONCURRENCY, ENV_AUTH_TOKEN
from convoso_async._models import Campaign

from ._exits import UsageError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "client_from_args",
    "console",
    "decode_text",
    "id_sort_key",
    "one_line",
    "plural",
    "print_campaigns",
    "print_json",
    "print_result",
    "print_stopped",
    "read_text_file",
    "read_token",
    "result_json",
    "run_with_progress",
    "stdout_is_terminal",
]


def console(stderr: bool = False) -> Console:
    """A rich console, or `UsageError` with the install hint when the ``cli`` extra is missing."""
    try:
        from rich.console import Console
    except ImportError:
        raise UsageError(
            "the command line needs the 'cli' extra: pip install 'convoso-async[cli]'"
        ) from None
    return Console(stderr=stderr, highlight=False)


def read_token(token_file: Path | None) -> str:
    """The auth token: ``--token-file`` first, then ``CONVOSO_AUTH_TOKEN``.

    The file is read as id files are (`read_text_file`): a byte-order mark is not part of
    the token, and a file in no encoding it knows is a usage error, not a traceback.
    """
    if token_file is None:
        # A variable set from a file with a byte-order mark ($(cat token.txt)) carries it.
        token = os.environ.get(ENV_AUTH_TOKEN, "").strip().lstrip("\ufeff")
        if not token:
            raise UsageError(f"no auth token: set {ENV_AUTH_TOKEN} or pass --token-file FILE")
        return token
    lines = read_text_file(token_file, "token file").splitlines()
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
        max_concurrency=getattr(args, "concurrency", DEFAULT_MAX_CONCURRENCY),
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


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (tables) rather than a pipe or file (plain lines)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def plural(count: int, word: str) -> str:
    """``"1 campaign"``, ``"3 campaigns"``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def id_sort_key(campaign_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order ("2" before "10"), then any others as text."""
    return (0, int(campaign_id), "") if campaign_id.isdigit() else (1, 0, campaign_id)


def one_line(text: str) -> str:
    """``text`` on one line: a record per line must stay a record per line."""
    return " ".join(text.split())


_BOMS = (
    # UTF-32 first: its little-endian mark begins with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_text_file(path: Path, what: str) -> str:
    """A text file the user gave (``what``: "token file", "id file"), decoded by `decode_text`.

    A file that can't be read or decoded is a `UsageError` naming it and the line, never
    quoting its content (a token file's is a secret).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    return decode_text(data, f"{what} {str(path)!r}")


def decode_text(data: bytes, name: str) -> str:
    """Bytes of a text file: UTF-8, or whatever its byte-order mark says (Excel's UTF-16)."""
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        shown = encoding.removesuffix("-sig").upper()
        raise UsageError(
            f"{name} line {line} is not {shown} text; save it as UTF-8 (or UTF-16)"
        ) from None


def print_json(document: object, *, compact: bool = False) -> None:
    """One JSON document on stdout: indented, or on one line (``compact``).

    Text is written as it is when stdout's encoding holds it, else as JSON's ``\\u00f3``
    escapes: the same document for a parser, whatever the terminal or pipe.
    """
    layout: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 2}
    text = json.dumps(document, ensure_ascii=False, **layout)
    if not _stdout_holds(text):
        text = json.dumps(document, ensure_ascii=True, **layout)
    print(text)


def _stdout_holds(text: str) -> bool:
    """Whether stdout's encoding can write ``text`` as it is."""
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def print_campaigns(campaigns: list[Campaign], *, as_json: bool) -> None:
    """The campaign list: JSON, a table on a terminal, or one tab-separated line each."""
    if as_json:
        print_json([c.to_dict() for c in campaigns])
        return
    if not stdout_is_terminal():
        for c in campaigns:
            last = "" if c.last_call_date is None else str(c.last_call_date)
            print(f"{c.id}\t{one_line(c.name)}\t{c.status.label}\t{last}")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=plural(len(campaigns), "campaign"))
    for column in ("id", "name", "status", "last call"):
        table.add_column(column)
    for c in campaigns:
        last = "" if c.last_call_date is None else str(c.last_call_date)
        # Text, not markup: a name such as "Sales [West]" is shown as it is.
        table.add_row(Text(c.id), Text(c.name), c.status.label, last)
    console().print(table)


def result_json(result: BatchResult) -> dict[str, Any]:
    """A bulk result as plain JSON types, for ``--json``: `BatchResult.to_dict`, ids in input order.

    The result holds the ids in the order their requests ended, which concurrency makes
    differ from run to run; the document lists them in the order they were given, so the same
    outcome prints the same document (to ``diff`` two runs, or to read beside the id file).
    """
    document = result.to_dict()
    position = {campaign_id: index for index, campaign_id in enumerate(result.targets)}
    for key in ("succeeded", "skipped", "unknown"):
        document[key] = sorted(document[key], key=position.__getitem__)
    for key in ("failed", "not_sent"):
        errors = document[key]
        document[key] = {i: errors[i] for i in sorted(errors, key=position.__getitem__)}
    return document


def _counts(document: dict[str, Any], *, dry_run: bool) -> str:
    """``"2 succeeded, 1 failed, 0 skipped"``: every bucket of ids the result has."""
    counts = []
    for key, value in document.items():
        if key in ("planned", "stopped_by") or not isinstance(value, (list, dict)):
            continue
        if dry_run and key in ("succeeded", "not_sent", "unknown"):  # nothing is sent
            continue
        counts.append(f"{len(value)} {key.replace('_', ' ')}")
    return ", ".join(counts)


def _print_lines(result: BatchResult, title: str) -> None:
    """The report for pipes, files and cron: a summary line, then one line per id."""
    document = result.to_dict()
    total = plural(document["total"], "campaign")
    if result.dry_run:
        planned = document["planned"]
        changes = sum(1 for item in planned if item["currently_active"] != item["active"])
        print(
            f"{title} (dry run): {total}: {len(planned)} would be sent ({changes} would change), "
            f"{_counts(document, dry_run=True)}"
        )
        for item in planned:
            print(f"would {'activate' if item['active'] else 'deactivate'} {item['id']}")
    else:
        retries = f"{document['retries']} {'retry' if document['retries'] == 1 else 'retries'}"
        print(
            f"{title}: {total}: {_counts(document, dry_run=False)}, {retries}, "
            f"{document['elapsed_seconds']:.2f}s"
        )
    for campaign_id in sorted(document["failed"], key=id_sort_key):
        failure = document["failed"][campaign_id]
        print(f"failed {campaign_id}: {failure['error']}: {one_line(failure['message'])}")
    for campaign_id in sorted(document.get("not_sent", {}), key=id_sort_key):
        reason = document["not_sent"][campaign_id]
        print(f"not sent {campaign_id}: {reason['error']}: {one_line(reason['message'])}")
    for campaign_id in sorted(document.get("unknown", ()), key=id_sort_key):
        print(
            f"unknown {campaign_id}: in flight when the batch stopped; may or may not have changed"
        )


def print_result(result: BatchResult, *, as_json: bool, title: str) -> None:
    """The end-of-run report: a summary table and every failure with its reason."""
    if as_json:
        print_json(result_json(result))
        return
    if not stdout_is_terminal():
        _print_lines(result, title)
        return
    from rich.markup import escape
    from rich.table import Table

    out = console()
    table = Table(title=f"{title}: {plural(len(result.targets), 'campaign')}")
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
    for campaign_id in sorted(result.failed, key=id_sort_key):
        failure = error_to_dict(result.failed[campaign_id])
        out.print(
            f"[red]failed[/red] {campaign_id}: {failure['error']}: {escape(failure['message'])}",
            soft_wrap=True,
        )
    print_stopped(result, out)


def print_stopped(result: BatchResult, out: Console) -> None:
    """The ids a stopped batch never sent (one line per reason) and those left unknown."""
    from rich.markup import escape

    causes: dict[tuple[str, str], list[Exception]] = {}
    for error in result.not_sent.values():
        # Errors of one cause differ only by campaign (and a countdown): say each cause once.
        key = (error_to_dict(error)["error"], str(getattr(error, "reason", "")))
        causes.setdefault(key, []).append(error)
    for (name, _), errors in causes.items():
        first = errors[0]
        out.print(
            f"[yellow]not sent[/yellow] {plural(len(errors), 'campaign')} "
            f"({name}: {escape(str(getattr(first, 'message', first)))})",
            soft_wrap=True,
        )
    if result.unknown:
        ordered = sorted(result.unknown, key=id_sort_key)
        shown = ", ".join(ordered[:50])
        more = f" and {len(ordered) - 50} more" if len(ordered) > 50 else ""
        out.print(
            f"[yellow]unknown[/yellow] {plural(len(ordered), 'campaign')} were in flight when the "
            f"batch stopped and may or may not have changed: {shown}{more}",
            soft_wrap=True,
        )
