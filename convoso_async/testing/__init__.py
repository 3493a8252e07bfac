"""A stateful, embeddable fake of Convoso's Campaigns API, for tests and benchmarks.

`FakeConvoso` holds campaigns, tokens (full and read-only), latency, a
server-side rate limit, scripted faults (`Fault`) and any other endpoint a
test adds (`FakeConvoso.add_endpoint`), and logs every request as a
`RecordedRequest`, never with its token. It answers in-process through
`FakeConvoso.transport` (for httpx2, or httpx with ``family="httpx"``), or
over HTTP/1.1 on loopback through `FakeConvoso.serve` (async),
`FakeConvoso.serve_in_thread` (sync) or `serve_forever` (blocking; also
``python -m convoso_async.testing``), on asyncio or trio. All front ends share
one handler core, so they behave alike. For example::

    fake = FakeConvoso(campaigns=3)
    fake.add_fault(Fault("status", status=503, on_requests={1}))
    async with httpx2.AsyncClient(transport=fake.transport(), base_url="https://fake/v1") as http:
        form = {"auth_token": fake.TOKEN, "campaign_id": "1001", "status": "false"}
        await http.post("/campaigns/status", data=form)  # HTTP 503, from the fault
        await http.post("/campaigns/status", data=form)  # {"success": true}
    assert fake.campaign_status("1001") == "N"
"""

from ._fake import FakeConvoso
from ._server import serve_forever
from ._state import (
    REFERENCE_CAMPAIGNS,
    Fault,
    FaultKind,
    RecordedRequest,
    generated_campaigns,
    most_in_window,
    reference_campaigns,
)

__all__ = [
    "REFERENCE_CAMPAIGNS",
    "FakeConvoso",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "generated_campaigns",
    "most_in_window",
    "reference_campaigns",
    "serve_forever",
]
