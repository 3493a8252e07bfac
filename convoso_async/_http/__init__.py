"""HTTP: the connection pool, the aiohttp-backed transport, and the request pipeline."""
