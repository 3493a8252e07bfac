"""Activate or deactivate many campaigns from a trio program, printing each outcome as it lands.

    CONVOSO_AUTH_TOKEN=... python examples/bulk_trio.py --deactivate 111 222 333
    python examples/bulk_trio.py --activate --from-file ids.txt
    python examples/bulk_trio.py --deactivate --fake 1001 1002 9999   # no account needed

The library runs on trio through anyio: nothing here is asyncio. Where the
asyncio example waits for one `BatchResult`, this one streams with
``iter_set_status``: a line per campaign as its request completes (in
completion order, not argument order). Ids come from the command line and/or
a file (one per line, ``#`` comments). ``--fake`` runs against an embedded
fake Convoso with 200 campaigns (ids 1001-1200) on loopback. Exit status: 0
if every campaign succeeded, 1 if any failed or Convoso could not be
reached, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from convoso_async import AsyncConvoso, ConvosoError
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


async def change(convoso: AsyncConvoso, ids: list[str], active: bool) -> dict[str, Exception]:
    """Stream the change, one line per outcome; return the failures."""
    failed: dict[str, Exception] = {}
    done = 0
    wanted = "active" if active else "inactive"
    start = trio.current_time()
    async for outcome in convoso.campaigns.iter_set_status(ids, active):
        done += 1
        if outcome.error is None:
            print(f"[{done}/{len(ids)}] {outcome.campaign_id} is now {wanted}")
        else:
            failed[outcome.campaign_id] = outcome.error
            print(f"[{done}/{len(ids)}] {outcome.campaign_id} failed: {outcome.error}")
    elapsed = trio.current_time() - start
    print(
        f"{done} campaigns: {done - len(failed)} succeeded, {len(failed)} failed in {elapsed:.2f}s"
    )
    return failed


async def run(args: argparse.Namespace) -> int:
    """Make the change (against the fake with ``--fake``) and return the exit code."""
    ids = list(dict.fromkeys(args.ids))  # the library sends a duplicate once; count it once
    try:
        if args.fake:
            fake = FakeConvoso(campaigns=FAKE_CAMPAIGNS)
            async with fake.serve() as url, AsyncConvoso(FakeConvoso.TOKEN, base_url=url) as c:
                failed = await change(c, ids, args.active)
            active = sum(status == "Y" for status in fake.statuses().values())
            print(f"fake Convoso now has {active} of {FAKE_CAMPAIGNS} campaigns active")
        else:
            async with AsyncConvoso() as convoso:
                failed = await change(convoso, ids, args.active)
    except ConvosoError as error:  # e.g. no token: CONVOSO_AUTH_TOKEN unset
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run on trio, return the exit status."""
    return trio.run(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
