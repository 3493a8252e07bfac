"""The fake Convoso server in its own process, reporting when each request arrived.

``python -m convoso_async.testing`` keeps its request log in its own process,
where a benchmark can't read it. This script serves the same `FakeConvoso`
and, when stopped with SIGTERM or SIGINT, writes the server-side arrival times
(``time.monotonic()``, as the fake records them) of every status request to
``--dump`` as JSON, with the HTTP status each got::

    python benchmarks/_server.py --campaigns 4000 --dump /tmp/arrivals.json
    listening on http://127.0.0.1:41523/v1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import serve_until_signalled

from convoso_async.testing import FakeConvoso

STATUS_PATH = "/campaigns/status"


def main() -> int:
    """Serve until SIGTERM/SIGINT, then dump the arrival log."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--campaigns", type=int, default=3, help="campaigns, ids from 1001")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to answers")
    parser.add_argument("--dump", type=Path, required=True, help="where to write the log")
    args = parser.parse_args()

    fake = FakeConvoso(campaigns=args.campaigns, latency=args.latency)
    serve_until_signalled(fake, port=args.port)
    arrivals = [
        {"time": record.time, "status": record.status}
        for record in fake.requests
        if record.path == STATUS_PATH
    ]
    args.dump.write_text(json.dumps(arrivals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
