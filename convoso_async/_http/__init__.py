"""HTTP, by job: the pool and its senders (httpx2 or httpx, and the aiohttp opt-in), which
library's mock is in place (`mocking`), transport errors mapped (`transport_errors`),
pacing (`pacer`), answers decoded (`decoding`), logging (`attempt_log`), and the pipeline."""
