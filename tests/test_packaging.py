"""What the package says about itself: version, User-Agent, licence, changelog, URLs."""

from __future__ import annotations

import http.server
import importlib.metadata
import json
import platform
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

import convoso_async
from convoso_async import AsyncConvoso
from convoso_async._http.families import HTTPX2

ROOT = Path(__file__).resolve().parent.parent


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST with an empty campaign list and keeps the request's headers."""

    seen: list[dict[str, str]]

    def do_POST(self) -> None:
        self.seen.append({name.lower(): value for name, value in self.headers.items()})
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"data": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


PYTHON = ".".join(platform.python_version_tuple()[:2])
PREFIX = f"convoso-async/{convoso_async.__version__} python/{PYTHON}"
USER_AGENT = f"{PREFIX} httpx2/{httpx2.__version__}"


def test_the_user_agent_names_the_version_python_and_the_http_library() -> None:
    assert HTTPX2.user_agent == USER_AGENT
    assert importlib.metadata.version("convoso-async") == convoso_async.__version__


@pytest.mark.anyio
async def test_the_client_sends_its_user_agent_on_the_wire(
    anyio_backend: str, recorder: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = recorder
    async with AsyncConvoso("t" * 20, base_url=url) as convoso:
        assert await convoso.campaigns.search() == []
    assert [headers["user-agent"] for headers in seen] == [USER_AGENT]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # on trio, the opt-in is httpx2
async def test_the_aiohttp_opt_in_names_aiohttp_in_its_user_agent(
    anyio_backend: str, recorder: tuple[str, list[dict[str, str]]]
) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    url, seen = recorder
    async with AsyncConvoso("t" * 20, base_url=url, transport="aiohttp") as convoso:
        assert await convoso.campaigns.search() == []
    assert [headers["user-agent"] for headers in seen] == [
        f"{PREFIX} aiohttp/{aiohttp.__version__}"
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("family", [httpx2, httpx], ids=["httpx2", "httpx"])
async def test_a_callers_own_http_client_keeps_its_user_agent(
    anyio_backend: str, recorder: tuple[str, list[dict[str, str]]], family: Any
) -> None:
    url, seen = recorder
    async with (
        family.AsyncClient(headers={"User-Agent": "my-app/2"}) as http,
        AsyncConvoso("t" * 20, base_url=url, http_client=http) as convoso,
    ):
        await convoso.campaigns.search()
    assert [headers["user-agent"] for headers in seen] == ["my-app/2"]


def test_licence_changelog_and_urls_ship_with_the_package() -> None:
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License\n")
    metadata = importlib.metadata.metadata("convoso-async")
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    assert all(re.fullmatch(r"https://\S+", url) for url in urls.values())
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{convoso_async.__version__}]" in changelog
