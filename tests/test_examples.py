"""The examples run, so they cannot rot.

The FastAPI app is driven through ``httpx.ASGITransport`` with its lifespan
run by hand (ASGITransport sends no lifespan events), its one client talking
to the fake Convoso on a real loopback port. The bulk scripts run as
programs, exactly as a reader would start them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from convoso_async import AsyncConvoso, ConfigurationError
from convoso_async.testing import FakeConvoso, Fault

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Upper bound on one script run; a run takes about a second.
SCRIPT_TIMEOUT = 60.0


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` by path: ``examples`` is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before running, so pydantic and FastAPI resolve the
    # module's string annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fastapi_app = load_example("fastapi_app")
create_app: Callable[[Callable[[], AsyncConvoso] | None], FastAPI] = fastapi_app.create_app


class AppUnderTest:
    """The app's HTTP client, and every `AsyncConvoso` its factory made."""

    def __init__(self, http: httpx.AsyncClient, made: list[AsyncConvoso]) -> None:
        self.http = http
        self.made = made


@asynccontextmanager
async def running_app(
    fake: FakeConvoso, *, token: str = FakeConvoso.TOKEN, **options: Any
) -> AsyncIterator[AppUnderTest]:
    """The app, started (lifespan entered) against ``fake`` served on loopback."""
    made: list[AsyncConvoso] = []
    async with fake.serve() as url:

        def factory() -> AsyncConvoso:
            client = AsyncConvoso(token, base_url=url, **options)
            made.append(client)
            return client

        app = create_app(factory)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://app.test") as http,
        ):
            yield AppUnderTest(http, made)


def active_ids(fake: FakeConvoso) -> set[str]:
    return {cid for cid, status in fake.statuses().items() if status == "Y"}


# --- the FastAPI app -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_list_returns_every_campaign_of_the_fake() -> None:
    fake = FakeConvoso(campaigns=12)
    async with running_app(fake) as app:
        response = await app.http.get("/campaigns")
    assert response.status_code == 200
    listed = response.json()
    assert {c["id"]: c["active"] for c in listed} == {
        cid: status == "Y" for cid, status in fake.statuses().items()
    }
    assert all(isinstance(c["name"], str) and c["name"] for c in listed)
    # Of 12 generated campaigns only the seventh (1007) has no last call.
    assert {c["id"] for c in listed if c["last_call_date"] is None} == {"1007"}
    assert listed[0]["last_call_date"]["date"] == "2026-03-03"
    assert listed[0]["status"] == "active"


@pytest.mark.asyncio
async def test_list_filters_by_state() -> None:
    fake = FakeConvoso(campaigns=12)
    async with running_app(fake) as app:
        only_active = (await app.http.get("/campaigns", params={"active": "true"})).json()
        only_inactive = (await app.http.get("/campaigns", params={"active": "false"})).json()
        nonsense = await app.http.get("/campaigns", params={"active": "maybe"})
    assert {c["id"] for c in only_active} == active_ids(fake)
    assert {c["id"] for c in only_inactive} == set(fake.statuses()) - active_ids(fake)
    assert only_active
    assert only_inactive
    assert nonsense.status_code == 422


@pytest.mark.asyncio
async def test_bulk_deactivate_changes_the_fake_and_answers_200() -> None:
    fake = FakeConvoso(campaigns=30)
    before = fake.statuses()
    chosen = sorted(active_ids(fake))[:10]
    async with running_app(fake) as app:
        response = await app.http.post(
            "/campaigns/bulk-status", json={"campaign_ids": chosen, "active": False}
        )
    assert response.status_code == 200
    body = response.json()
    assert sorted(body["succeeded"]) == chosen
    assert body["failed"] == {}
    assert body["skipped"] == []
    assert body["summary"].startswith("10 campaigns: 10 succeeded, 0 failed")
    assert fake.statuses() == {**before, **dict.fromkeys(chosen, "N")}


@pytest.mark.asyncio
async def test_unknown_ids_answer_207_listing_each_failure() -> None:
    fake = FakeConvoso(campaigns=5)
    async with running_app(fake) as app:
        response = await app.http.post(
            "/campaigns/bulk-status",
            json={"campaign_ids": ["1003", "9999", "8888"], "active": True},
        )
    assert response.status_code == 207
    body = response.json()
    assert body["succeeded"] == ["1003"]
    assert set(body["failed"]) == {"9999", "8888"}
    assert body["failed"]["9999"]["error"] == "CampaignNotFoundError"
    assert "'9999' does not exist" in body["failed"]["9999"]["message"]
    assert fake.campaign_status("1003") == "Y"


@pytest.mark.asyncio
async def test_skip_unchanged_and_dry_run_pass_through() -> None:
    fake = FakeConvoso(campaigns=6)  # 1003 and 1006 are inactive
    async with running_app(fake) as app:
        dry = await app.http.post(
            "/campaigns/bulk-status",
            json={"campaign_ids": ["1001", "1003"], "active": False, "dry_run": True},
        )
        assert fake.statuses()["1001"] == "Y"
        skipping = await app.http.post(
            "/campaigns/bulk-status",
            json={"campaign_ids": ["1001", "1003"], "active": False, "skip_unchanged": True},
        )
    assert dry.status_code == 200
    assert dry.json()["dry_run"] is True
    assert [p["id"] for p in dry.json()["planned"]] == ["1001", "1003"]
    assert skipping.status_code == 200
    assert skipping.json()["succeeded"] == ["1001"]
    assert skipping.json()["skipped"] == ["1003"]
    assert [r.path for r in fake.requests if r.path.endswith("/status")] == ["/campaigns/status"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        {"campaign_ids": ["1001"], "active": "false"},
        {"campaign_ids": ["1001"], "active": 0},
        {"campaign_ids": ["1001"], "active": None},
        {"campaign_ids": ["1001"]},
        {"campaign_ids": [], "active": False},
        {"campaign_ids": "1001", "active": False},
        {"campaign_ids": [1001], "active": False},
        {"campaign_ids": [{"id": "1001"}], "active": False},
        {"campaign_ids": ["1001", None], "active": False},
        {"campaign_ids": ["  "], "active": False},
        {"campaign_ids": ["1001"], "active": False, "dry_run": "yes"},
        {"campaign_ids": ["1001"], "active": False, "skip_unchaged": True},
    ],
)
async def test_an_invalid_body_is_422_before_any_request(body: dict[str, Any]) -> None:
    fake = FakeConvoso(campaigns=3)
    before = fake.statuses()
    async with running_app(fake) as app:
        response = await app.http.post("/campaigns/bulk-status", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert fake.requests == []
    assert fake.statuses() == before


@pytest.mark.asyncio
async def test_one_client_serves_every_request_and_is_closed_at_shutdown() -> None:
    fake = FakeConvoso(campaigns=4)
    async with running_app(fake) as app:
        for _ in range(3):
            assert (await app.http.get("/campaigns")).status_code == 200
        await app.http.post(
            "/campaigns/bulk-status", json={"campaign_ids": ["1001"], "active": True}
        )
        assert len(app.made) == 1
        client = app.made[0]
        await client.campaigns.search()  # open while the app runs
    seen = len(fake.requests)
    assert seen == 5
    with pytest.raises(ConfigurationError, match="closed"):
        await client.campaigns.search()
    assert len(fake.requests) == seen


@pytest.mark.asyncio
async def test_a_rejected_token_is_a_502_that_never_shows_the_token() -> None:
    secret = "wrong-SECRET-7c1d9e"
    fake = FakeConvoso(campaigns=3)
    async with running_app(fake, token=secret) as app:
        response = await app.http.get("/campaigns")
    assert response.status_code == 502
    assert response.json()["error"] == "AuthenticationError"
    assert "token was rejected" in response.json()["message"]
    assert secret not in response.text
    assert [r.token_ok for r in fake.requests] == [False]


@pytest.mark.asyncio
async def test_convoso_failing_is_a_502_for_lists_and_preflight_searches() -> None:
    fake = FakeConvoso(campaigns=3)
    fake.add_fault(Fault("status", status=503, path="/campaigns/search"))
    async with running_app(fake, max_retries=0) as app:
        listing = await app.http.get("/campaigns")
        bulk = await app.http.post(
            "/campaigns/bulk-status",
            json={"campaign_ids": ["1001"], "active": False, "skip_unchanged": True},
        )
    assert (listing.status_code, listing.json()["error"]) == (502, "ServerError")
    assert (bulk.status_code, bulk.json()["error"]) == (502, "ServerError")
    assert fake.campaign_status("1001") == "Y"


@pytest.mark.asyncio
async def test_the_default_client_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeConvoso(campaigns=3)
    async with fake.serve() as url:
        monkeypatch.setenv("CONVOSO_AUTH_TOKEN", FakeConvoso.TOKEN)
        monkeypatch.setenv("CONVOSO_BASE_URL", url)
        monkeypatch.setenv("CONVOSO_RATE_LIMIT", "50")
        app = create_app(None)
        async with app.router.lifespan_context(app):
            convoso = app.state.convoso
            assert isinstance(convoso, AsyncConvoso)
            assert convoso.base_url == url
            assert convoso.rate_limiter is not None
            assert len(await convoso.campaigns.search()) == 3

        monkeypatch.setenv("CONVOSO_RATE_LIMIT", "fast")
        with pytest.raises(ConfigurationError, match="CONVOSO_RATE_LIMIT"):
            async with app.router.lifespan_context(app):
                pass


@pytest.mark.asyncio
async def test_with_tracing_each_request_span_holds_the_librarys_spans() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from convoso_async import _telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fake = FakeConvoso(campaigns=4)
    with _telemetry.use_providers(provider, None):  # the global provider, in a real app
        async with fake.serve() as url:
            app = fastapi_app.create_app(
                lambda: AsyncConvoso(fake.TOKEN, base_url=url), tracer_provider=provider
            )
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://app.test") as http,
            ):
                response = await http.post(
                    "/campaigns/bulk-status",
                    json={"campaign_ids": ["1001", "1002"], "active": False},
                )
    assert response.status_code == 200
    spans = {s.context.span_id: s for s in exporter.get_finished_spans()}
    names = {s.name: s for s in spans.values()}
    request = names["POST /campaigns/bulk-status"]
    bulk = names["campaigns.set_status_many"]
    assert bulk.parent is not None
    assert bulk.parent.span_id == request.context.span_id
    assert (request.attributes or {})["http.response.status_code"] == 200
    statuses = [s for s in spans.values() if s.name == "campaigns.status"]
    assert len(statuses) == 2
    assert all(s.parent is not None and s.parent.span_id == bulk.context.span_id for s in statuses)
    assert len([s for s in spans.values() if s.name == "POST"]) == 2


# --- the bulk scripts ------------------------------------------------------------------------


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` as a reader would, with no Convoso settings in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVOSO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path])
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )


#: Campaigns active in the scripts' fake (200 generated campaigns) before any change.
ACTIVE_AT_START = len(active_ids(FakeConvoso(campaigns=200)))


def test_bulk_asyncio_deactivates_campaigns_on_the_fake() -> None:
    done = run_script("bulk_asyncio.py", "--deactivate", "--fake", "1001", "1002", "1004")
    assert done.returncode == 0, done.stderr
    assert "3 campaigns: 3 succeeded, 0 failed, 0 skipped" in done.stdout
    assert f"now has {ACTIVE_AT_START - 3} of 200 campaigns active" in done.stdout
    assert "3/3 done: 3 ok, 0 failed" in done.stderr
    assert "failed 1" not in done.stdout


def test_bulk_asyncio_reads_a_file_and_exits_1_listing_failures(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# campaigns to switch on\n1003\n\n9999  # gone\n1006\n", encoding="utf-8")
    done = run_script("bulk_asyncio.py", "--activate", "--fake", "--from-file", str(ids))
    assert done.returncode == 1, done.stderr
    assert "3 campaigns: 2 succeeded, 1 failed" in done.stdout
    assert "failed 9999: campaign '9999' does not exist" in done.stdout
    assert f"now has {ACTIVE_AT_START + 2} of 200 campaigns active" in done.stdout


def test_bulk_asyncio_skip_unchanged_sends_only_changes() -> None:
    done = run_script("bulk_asyncio.py", "--activate", "--fake", "--skip-unchanged", "1001", "1003")
    assert done.returncode == 0, done.stderr
    assert "2 campaigns: 1 succeeded, 0 failed, 1 skipped" in done.stdout


@pytest.mark.parametrize("script", ["bulk_asyncio.py", "bulk_trio.py"])
@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--fake"], "--activate --deactivate"),
        (["--activate", "--fake"], "no campaign ids"),
        (["--activate", "--fake", "--from-file", "/nonexistent/ids.txt"], "cannot read ids"),
    ],
)
def test_scripts_exit_2_on_bad_usage(script: str, args: list[str], complaint: str) -> None:
    done = run_script(script, *args)
    assert done.returncode == 2
    assert complaint in done.stderr


@pytest.mark.parametrize("script", ["bulk_asyncio.py", "bulk_trio.py"])
def test_scripts_without_a_token_exit_1_naming_the_variable(script: str) -> None:
    done = run_script(script, "--activate", "1001")
    assert done.returncode == 1
    assert "CONVOSO_AUTH_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


def test_bulk_trio_streams_each_outcome_and_exits_1_on_a_failure() -> None:
    done = run_script("bulk_trio.py", "--activate", "--fake", "1003", "9999", "1006", "1003")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    outcomes = [line for line in lines if line.startswith("[")]
    assert sorted(line.split("] ")[1] for line in outcomes) == [
        "1003 is now active",
        "1006 is now active",
        "9999 failed: campaign '9999' does not exist (Convoso code 6026)",
    ]
    assert [line.split("]")[0] for line in outcomes] == ["[1/3", "[2/3", "[3/3"]
    assert "3 campaigns: 2 succeeded, 1 failed" in done.stdout
    assert f"now has {ACTIVE_AT_START + 2} of 200 campaigns active" in done.stdout


def test_bulk_trio_exits_0_when_every_campaign_succeeds() -> None:
    done = run_script("bulk_trio.py", "--deactivate", "--fake", "1001", "1002")
    assert done.returncode == 0, done.stderr
    assert "2 campaigns: 2 succeeded, 0 failed" in done.stdout
    assert f"now has {ACTIVE_AT_START - 2} of 200 campaigns active" in done.stdout
