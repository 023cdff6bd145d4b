"""docs/clients.md's Python backend runs as written: the module is served, and an event
posted to it reaches a client of its stream."""

from __future__ import annotations

import re
import types
from pathlib import Path

import anyio
import httpx
import pytest

from _servers import serve_in_thread
from sse_channels import Event
from sse_channels.browser import module_bytes
from sse_channels.client import Backoff, Gap
from sse_channels.testing import collect_sse

DOC = Path(__file__).resolve().parent.parent / "docs" / "clients.md"


def load_example(name: str) -> types.ModuleType:
    found = re.search(rf"```python\n(# {re.escape(name)}.*?)```", DOC.read_text(), re.DOTALL)
    assert found is not None, f"docs/clients.md has no {name} example"
    module = types.ModuleType(name.removesuffix(".py"))
    exec(compile(found.group(1), f"docs/clients.md:{name}", "exec"), module.__dict__)
    return module


@pytest.mark.anyio
async def test_docs_sveltekit_backend_serves_the_module_and_streams_posted_news() -> None:
    server_py = load_example("server.py")
    with serve_in_thread(server_py.app) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            module = await client.get("/sse-channels.js")
            assert module.status_code == 200
            assert module.content == module_bytes()
            received: list[Event | Gap] = []
            async with anyio.create_task_group() as group:

                async def read() -> None:
                    received.extend(
                        await collect_sse(server.url + "/events", 1, backoff=Backoff(0.01))
                    )

                group.start_soon(read)
                with anyio.fail_after(10):
                    while server.call(lambda: server_py.store.statistics().subscribers) == 0:
                        await anyio.sleep(0.01)
                posted = await client.post("/api/news", json={"title": "Hello from Python"})
        assert [(e.event, e.data, e.id) for e in received if isinstance(e, Event)] == [
            ("news", '{"title":"Hello from Python"}', posted.json()["id"])
        ]
        await server.arun(server_py.store.aclose)


def test_docs_worker_example_compiles_and_uses_only_public_names() -> None:
    found = re.search(r"```python\n(# worker.py.*?)```", DOC.read_text(), re.DOTALL)
    assert found is not None
    compile(found.group(1), "docs/clients.md:worker.py", "exec")
    imported = re.findall(r"^from (\S+) import (.+)$", found.group(1), re.MULTILINE)
    for module, names in imported:
        if module.startswith("sse_channels"):
            public = __import__(module, fromlist=["__all__"]).__all__
            assert set(names.replace(" ", "").split(",")) <= set(public)
