"""docs/metrics.md's FastAPI and Django examples run as written, under uvicorn, scraped."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _servers import HERE, open_stream, serve_in_subprocess

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def example(name: str) -> str:
    found = re.search(rf"```python\n(# {re.escape(name)}\n.*?)```", DOC.read_text(), re.DOTALL)
    assert found is not None, f"docs/metrics.md has no {name} example"
    return found.group(1)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def environment(directory: Path) -> dict[str, str]:
    path = [str(directory), HERE, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {"PYTHONPATH": os.pathsep.join(path)}
    env["PROMETHEUS_MULTIPROC_DIR"] = ""  # one process: the global registry
    return env


async def test_the_fastapi_example_exposes_metrics_by_namespace(tmp_path: Path) -> None:
    (tmp_path / "fastapi_app.py").write_text(example("fastapi_app.py"))
    with serve_in_subprocess(
        "fastapi_app:app", env=environment(tmp_path), ready_path="/metrics/"
    ) as server:
        stream = await open_stream(server.host, server.port, "/rooms/42/events")
        try:
            await stream.wait_comments(1)
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
                assert (await client.post("/rooms/42", params={"text": "hi"})).status_code == 200
                assert [e.data for e in await stream.read_events(1)] == ["hi"]
                response = await client.get("/metrics", follow_redirects=True)
        finally:
            await stream.aclose()
    found = samples(response.text)
    room = (("channel_namespace", "room"),)
    assert found[("sse_channels_streams_open", room)] == 1
    assert found[("sse_channels_events_sent_total", room)] == 1
    assert found[("sse_channels_events_delivered_total", room)] == 1


async def test_the_django_example_exposes_metrics_beside_its_views(tmp_path: Path) -> None:
    (tmp_path / "django_metrics_app.py").write_text(example("django_metrics_app.py"))
    with serve_in_subprocess(
        "django_metrics_app:application",
        args=("--lifespan", "off"),
        env=environment(tmp_path),
        ready_path="/metrics",
    ) as server:
        stream = await open_stream(server.host, server.port, "/events")
        try:
            await stream.wait_comments(1)
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
                assert (await client.post("/publish", content=b"hi")).status_code == 200
                assert [e.data for e in await stream.read_events(1)] == ["hi"]
                response = await client.get("/metrics")
                assert (await client.get("/nowhere")).status_code == 404  # Django's answer
        finally:
            await stream.aclose()
    found = samples(response.text)
    assert found[("sse_channels_streams_open", ())] == 1
    assert found[("sse_channels_events_sent_total", ())] == 1
    assert found[("sse_channels_events_delivered_total", ())] == 1
