"""Decoding a search answer: bytes -> ``list[Campaign]``, against ``json.loads`` alone.

The answer holds 10,000 campaigns made by the fake server's own generator
(names with a non-ASCII letter, about a third inactive, null and PHP-style
``last_call_date`` values), encoded as the fake server sends it. Contenders:

- ``json.loads`` alone: the floor, no models;
- the client's path: `decode_answer` (``json.loads`` plus the envelope
  checks), then ``structure(data, list[Campaign], path="data")``, as
  ``campaigns.search()`` does;
- msgspec, if installed (a benchmark-only reference point, not a dependency):
  ``msgspec.json.decode`` into typed Structs of the same shape.

Rounds interleave the contenders in rotating order; the table shows the
median of each, and the client path's first (cold) run separately, since the
model layer caches ``LastCallDate`` values across calls.

    python benchmarks/decode.py            # about 5 s
    python benchmarks/decode.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from _common import fmt_ratio, median, print_table, rotations, verdict

from convoso_async._http.decoding import decode_answer
from convoso_async._models import Campaign, structure
from convoso_async.testing import generated_campaigns

SEARCH_PATH = "/campaigns/search"
#: The client's path may take at most this many times ``json.loads`` alone.
TARGET_RATIO = 3.0
_HEADERS = httpx.Headers({"content-type": "application/json"})


def answer_bytes(count: int) -> bytes:
    """A search answer with ``count`` campaigns, encoded as the fake server encodes it."""
    return json.dumps({"data": generated_campaigns(count)}, separators=(",", ":")).encode()


def json_only(body: bytes) -> Any:
    """The floor: JSON text to Python objects, nothing more."""
    return json.loads(body)


def client_path(body: bytes) -> list[Campaign]:
    """What ``campaigns.search()`` does with the answer's bytes."""
    payload = decode_answer(200, _HEADERS, body, path=SEARCH_PATH)
    data = payload.get("data")
    if not isinstance(data, list):
        raise TypeError("the generated answer has no data list")
    return structure(data, list[Campaign], path="data")


def msgspec_decoder() -> Callable[[bytes], Any] | None:
    """msgspec's typed decoder for the same shape, or None if msgspec is not installed."""
    try:
        import msgspec
    except ImportError:
        return None

    # Built with defstruct: class statements here would leave their annotations
    # as strings (this module uses postponed evaluation) that msgspec can't resolve.
    last_call = msgspec.defstruct(
        "LastCall", [("date", str), ("timezone_type", int), ("timezone", str)]
    )
    item = msgspec.defstruct(
        "Item",
        [("id", str), ("name", str), ("status", str), ("last_call_date", last_call | None, None)],
    )
    answer = msgspec.defstruct("Answer", [("data", list[item])])  # type: ignore[valid-type]
    decoder = msgspec.json.Decoder(answer)
    return decoder.decode


def time_once(function: Callable[[bytes], Any], body: bytes) -> float:
    """Seconds one call takes, with garbage from earlier runs collected first."""
    gc.collect()
    started = time.perf_counter()
    function(body)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    """Time every contender in interleaved rounds and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a small, fast smoke run")
    parser.add_argument("--campaigns", type=int, default=10_000, help="campaigns in the answer")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 21; quick 3)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 21)

    body = answer_bytes(args.campaigns)
    contenders: dict[str, Callable[[bytes], Any]] = {
        "json.loads alone": json_only,
        "client path: decode_answer + structure(list[Campaign])": client_path,
    }
    decode_msgspec = msgspec_decoder()
    if decode_msgspec is not None:
        contenders["msgspec.json.decode into Structs (reference)"] = decode_msgspec

    # The client path's first run, before anything is cached, reported on its own.
    cold = time_once(client_path, body)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _, order in rotations(list(contenders), rounds):
        for name in order:
            times[name].append(time_once(contenders[name], body))

    print(
        f"decode: {args.campaigns:,} campaigns, {len(body) / 1e6:.2f} MB of JSON; "
        f"median of {rounds} interleaved rounds; Python {sys.version.split()[0]}\n"
    )
    floor = median(times["json.loads alone"])
    rows: list[list[object]] = [
        [
            name,
            f"{median(values) * 1000:.1f}",
            f"{min(values) * 1000:.1f}",
            fmt_ratio(median(values), floor),
        ]
        for name, values in times.items()
    ]
    rows.append(
        ["client path, first run (cold cache)", f"{cold * 1000:.1f}", "-", fmt_ratio(cold, floor)]
    )
    print_table(["contender", "median ms", "best ms", "vs json.loads"], rows)
    ratio = median(times["client path: decode_answer + structure(list[Campaign])"]) / floor
    print()
    print_table(
        ["target", "measured", "result"],
        [
            [
                f"decode <= {TARGET_RATIO:g}x json.loads alone",
                f"{ratio:.2f}x",
                verdict(ratio <= TARGET_RATIO),
            ]
        ],
    )
    if decode_msgspec is None:
        print("\n(msgspec is not installed: its reference row is skipped)")


if __name__ == "__main__":
    main()
