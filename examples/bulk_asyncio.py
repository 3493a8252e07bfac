"""Activate or deactivate many campaigns at once, from a plain asyncio script.

    CONVOSO_AUTH_TOKEN=... python examples/bulk_asyncio.py --deactivate 111 222 333
    python examples/bulk_asyncio.py --activate --from-file ids.txt --skip-unchanged
    python examples/bulk_asyncio.py --deactivate --fake 1001 1002 9999   # no account needed

Ids come from the command line and/or a file (one per line, ``#`` comments).
``--fake`` runs against an embedded fake Convoso with 200 campaigns (ids
1001-1200) on loopback instead of CONVOSO_BASE_URL. Progress goes to stderr,
the summary and each failure to stdout. Exit status: 0 if every campaign
succeeded, 1 if any failed or Convoso could not be reached, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from convoso_async import AsyncConvoso, BatchProgress, BatchResult, ConvosoError
from convoso_async.testing import FakeConvoso

FAKE_CAMPAIGNS = 200


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; ids from argv and ``--from-file`` are merged (exits 2 on misuse)."""
    parser = argparse.ArgumentParser(description="Set many Convoso campaigns to one state.")
    state = parser.add_mutually_exclusive_group(required=True)
    state.add_argument("--activate", dest="active", action="store_true")
    state.add_argument("--deactivate", dest="active", action="store_false")
    parser.add_argument("ids", nargs="*", metavar="ID", help="campaign ids")
    parser.add_argument("--from-file", metavar="F", help="a file of campaign ids, one per line")
    parser.add_argument("--skip-unchanged", action="store_true", help="search first; skip no-ops")
    parser.add_argument(
        "--fake",
        action="store_true",
        help="run against an embedded fake Convoso (ids 1001-1200) instead of CONVOSO_BASE_URL",
    )
    args = parser.parse_args(argv)
    if args.from_file:
        try:
            with open(args.from_file, encoding="utf-8") as lines:
                ids = [line.split("#", 1)[0].strip() for line in lines]
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"cannot read ids from {args.from_file}: {error}")
        args.ids += [campaign_id for campaign_id in ids if campaign_id]
    if not args.ids:
        parser.error("no campaign ids given (as arguments or with --from-file)")
    return args


def print_progress(progress: BatchProgress) -> None:
    """One line per tenth of the work (and at the end), not one per campaign."""
    step = max(1, progress.total // 10)
    if progress.done % step == 0 or progress.done == progress.total:
        print(
            f"  {progress.done}/{progress.total} done: {progress.succeeded} ok, "
            f"{progress.failed} failed, {progress.skipped} skipped",
            file=sys.stderr,
        )


async def change(convoso: AsyncConvoso, args: argparse.Namespace) -> BatchResult:
    """The bulk change itself: one call, one outcome per campaign."""
    return await convoso.campaigns.set_status_many(
        args.ids, args.active, skip_unchanged=args.skip_unchanged, on_progress=print_progress
    )


async def run(args: argparse.Namespace) -> int:
    """Make the change (against the fake with ``--fake``), report it, and return the exit code."""
    try:
        if args.fake:
            fake = FakeConvoso(campaigns=FAKE_CAMPAIGNS)
            async with fake.serve() as url, AsyncConvoso(FakeConvoso.TOKEN, base_url=url) as c:
                result = await change(c, args)
            active = sum(status == "Y" for status in fake.statuses().values())
            print(f"fake Convoso now has {active} of {FAKE_CAMPAIGNS} campaigns active")
        else:
            async with AsyncConvoso() as convoso:
                result = await change(convoso, args)
    except ConvosoError as error:  # no token, rejected token, Convoso unreachable...
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(result.summary())
    for campaign_id, failure in result.failed.items():
        print(f"failed {campaign_id}: {failure}")
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run on asyncio, return the exit status."""
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
