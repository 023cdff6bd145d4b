"""docs/presence.md's FastAPI example, run as written under uvicorn."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from _servers import RawHTTPStream, RunningServer, open_stream, serve_in_thread
from sse_channels import PresenceView

DOC = Path(__file__).resolve().parent.parent / "docs" / "presence.md"

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def load_example(name: str) -> types.ModuleType:
    found = re.search(rf"```python\n(# {re.escape(name)}\n.*?)```", DOC.read_text(), re.DOTALL)
    assert found is not None, f"docs/presence.md has no {name} example"
    module = types.ModuleType(name.removesuffix(".py"))
    sys.modules[module.__name__] = module
    exec(compile(found.group(1), f"docs/presence.md:{name}", "exec"), module.__dict__)
    return module


async def members(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/rooms/lobby/members")
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


async def until(http: httpx.AsyncClient, check: Any, timeout: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while not check(found := await members(http)):
            await anyio.sleep(0.02)
    return found


async def connect(server: RunningServer, path: str, user: str) -> RawHTTPStream:
    stream = await open_stream(server.host, server.port, path, headers={"x-user": user})
    assert stream.status == 200
    return stream


async def test_docs_presence_fastapi_example_tabs_count_once_and_the_last_one_leaves() -> None:
    example = load_example("presence_app.py")
    with serve_in_thread(example.app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            tabs = [await connect(server, "/rooms/lobby/events", "alice") for _ in range(2)]
            await until(http, lambda m: m["count"] == 1)
            bob = await connect(server, "/rooms/lobby/events", "bob")
            (snapshot,) = await bob.read_events(1)
            assert snapshot.event == "snapshot"
            view = PresenceView()
            view.apply(snapshot.event, snapshot.data)
            assert "alice" in view.members  # the late reader learns who is there
            found = await until(http, lambda m: m["count"] == 2)
            assert {m: len(metas) for m, metas in found["members"].items()} == {
                "alice": 2,
                "bob": 1,
            }
            await tabs[0].aclose()
            await anyio.sleep(0.3)
            assert (await members(http))["count"] == 2  # one of two tabs: still online
            await tabs[1].aclose()
            with anyio.fail_after(5):
                while "alice" in view.members or "bob" not in view.members:
                    (event,) = await bob.read_events(1)
                    view.apply(event.event, event.data)
            await until(http, lambda m: set(m["members"]) == {"bob"})
            await bob.aclose()
            await until(http, lambda m: m["count"] == 0)


async def test_docs_presence_fastapi_example_joins_with_metadata_inside_the_stream() -> None:
    example = load_example("presence_app.py")
    with serve_in_thread(example.app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            path = "/rooms/lobby/device-events?device=phone"
            carol = await connect(server, path, "carol")
            (snapshot,) = await carol.read_events(1)
            assert snapshot.event == "snapshot"
            found = await until(http, lambda m: m["count"] == 1)
            assert found["members"] == {"carol": [{"device": "phone"}]}
            await carol.aclose()  # the body is cancelled: the `async with` leaves
            await until(http, lambda m: m["count"] == 0)
