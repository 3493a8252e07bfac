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
from ._state import DEFAULT_CAMPAIGNS, reference_campaigns

__all__ = ["build_arg_parser", "main"]

# The command line's defaults, which its help shows: loopback, a free port, answers
# at once, a 429 that asks for one second, the same jitter every run.
_HOST = "127.0.0.1"
_PORT = 0
_LATENCY = 0.0
_RETRY_AFTER = 1.0
_SEED = 0


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
    parser.add_argument("--host", default=_HOST, help=f"address to bind (default: {_HOST})")
    parser.add_argument(
        "--port",
        type=_port,
        default=_PORT,
        help=f"port to bind; 0 picks a free one (default: {_PORT})",
    )
    _add_campaign_options(parser)
    _add_answer_options(parser)
    _add_token_options(parser)
    parser.add_argument(
        "--seed", type=int, default=_SEED, help=f"seed for latency jitter (default: {_SEED})"
    )
    return parser


def _add_campaign_options(parser: argparse.ArgumentParser) -> None:
    """Which campaigns the fake serves: one of a count, chosen ids or the reference's."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--campaigns",
        type=_count,
        default=None,
        metavar="N",
        help=f"how many campaigns to generate, ids from 1001 (default: {DEFAULT_CAMPAIGNS})",
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


def _add_answer_options(parser: argparse.ArgumentParser) -> None:
    """How the fake answers: its delay, its rate limit and the 429's Retry-After."""
    parser.add_argument(
        "--latency",
        type=_latency,
        default=_LATENCY,
        metavar="S",
        help="seconds added to every answer, or LOW,HIGH for uniform jitter "
        f"(default: {_LATENCY:g})",
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
        default=_RETRY_AFTER,
        metavar="S",
        help=f"Retry-After seconds sent with a 429 (default: {_RETRY_AFTER:g})",
    )


def _add_token_options(parser: argparse.ArgumentParser) -> None:
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
