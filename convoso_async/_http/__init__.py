"""HTTP: the pool and its senders (httpx2 or httpx, and the aiohttp opt-in), and the pipeline."""
