"""``python -m convoso_async.testing``: run the fake Convoso server until SIGINT/SIGTERM.

Prints ``listening on http://HOST:PORT/v1`` once ready, then its tokens.
``convoso fake-server`` runs the same `main`.

    $ python -m convoso_async.testing --port 0 --ids 111,222,333
    listening on http://127.0.0.1:41523/v1
    token test-token
    try: CONVOSO_BASE_URL=http://127.0.0.1:41523/v1 CONVOSO_AUTH_TOKEN=test-token ...

Exit status: 0 after SIGINT/SIGTERM, 2 for bad arguments or a port it cannot
listen on (in use, say).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from ._fake import FakeConvoso
from ._server import serve_forever
from ._state import reference_campaigns

__all__ = ["build_arg_parser", "main"]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535 (0 picks a free one), not {port}")
    return port


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {count}")
    return count


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"must be seconds >= 0, not {text!r}")
    return seconds


def _latency(text: str) -> float | tuple[float, float]:
    if "," not in text:
        return _seconds(text)
    low_text, _, high_text = text.partition(",")
    low, high = _seconds(low_text), _seconds(high_text)
    if low > high:
        raise argparse.ArgumentTypeError(f"latency range LOW,HIGH needs LOW <= HIGH, not {text!r}")
    return low, high


def _ids(text: str) -> list[str]:
    ids = [item.strip() for item in text.split(",")]
    if not all(ids):
        raise argparse.ArgumentTypeError(f"expected ids separated by commas (111,222): {text!r}")
    if len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"an id is given twice in {text!r}")
    return ids


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of requests per second: {text!r}") from None
    if not (math.isfinite(rate) and rate >= 1):
        raise argparse.ArgumentTypeError(f"must be at least 1 request per second, not {text!r}")
    return rate


def build_arg_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of the fake server (``convoso fake-server`` reuses it)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m convoso_async.testing",
        description=(
            "Run a fake Convoso Campaigns API (POST /v1/campaigns/search and /status) "
            "until SIGINT or SIGTERM. Prints 'listening on URL' when ready."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=0, help="port to bind; 0 picks a free one (default: 0)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--campaigns",
        type=_count,
        default=None,
        metavar="N",
        help="how many campaigns to generate, ids from 1001 (default: 3)",
    )
    which.add_argument(
        "--ids",
        type=_ids,
        metavar="ID,ID,...",
        help="generate one campaign per id given, such as --ids 111,222,333",
    )
    which.add_argument(
        "--reference",
        action="store_true",
        help="serve the API reference's own example campaigns: 111, 222 and 333",
    )
    parser.add_argument(
        "--latency",
        type=_latency,
        default=0.0,
        metavar="S",
        help="seconds added to every answer, or LOW,HIGH for uniform jitter (default: 0)",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=None,
        metavar="R",
        help="accept at most R requests in any 1 s window; others get HTTP 429 (default: no limit)",
    )
    parser.add_argument(
        "--retry-after",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="Retry-After seconds sent with a 429 (default: 1)",
    )
    parser.add_argument(
        "--token",
        action="append",
        metavar="T",
        help=f"a valid auth token; repeat for several (default: {FakeConvoso.TOKEN})",
    )
    parser.add_argument(
        "--readonly-token",
        action="append",
        default=[],
        metavar="T",
        help="a token that may search but not change a status; repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for latency jitter (default: 0)")
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), serve until interrupted, return the exit code."""
    parser = build_arg_parser(prog)
    args = parser.parse_args(argv)
    fake = FakeConvoso(
        campaigns=reference_campaigns() if args.reference else args.campaigns,
        campaign_ids=args.ids,
        tokens=tuple(args.token or (FakeConvoso.TOKEN,)),
        readonly_tokens=tuple(args.readonly_token),
        latency=args.latency,
        rate_limit=args.rate,
        retry_after=args.retry_after,
        seed=args.seed,
    )
    try:
        serve_forever(fake, host=args.host, port=args.port)
    except OSError as exc:
        reason = exc.strerror or exc
        print(
            f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {reason}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
