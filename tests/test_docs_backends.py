"""docs/backends.md's worked example is a real backend: it passes the public contract suite
as the page shows, and two stores on one hub behave as two processes."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import anyio
import pytest

from sse_channels import ChannelStore
from sse_channels.backends import Backend
from sse_channels.testing import collect

DOC = Path(__file__).resolve().parent.parent / "docs" / "backends.md"


def load_example(name: str) -> types.ModuleType:
    found = re.search(rf"```python\n(# {re.escape(name)}\n.*?)```", DOC.read_text(), re.DOTALL)
    assert found is not None, f"docs/backends.md has no {name} example"
    module = types.ModuleType(name.removesuffix(".py"))
    sys.modules[module.__name__] = module  # the test example imports it by name
    exec(compile(found.group(1), f"docs/backends.md:{name}", "exec"), module.__dict__)
    return module


hub_backend = load_example("hub_backend.py")
# The page's own test class, collected here as it is written there.
TestHubBackend: Any = load_example("test_hub_backend.py").TestHubBackend


def test_docs_hub_backend_satisfies_the_backend_protocol() -> None:
    assert isinstance(hub_backend.HubBackend(hub_backend.Hub()), Backend)


@pytest.mark.anyio
async def test_docs_two_stores_on_one_hub_share_events_and_resume_across_them() -> None:
    hub = hub_backend.Hub()
    async with (
        ChannelStore(hub_backend.HubBackend(hub)) as a,
        ChannelStore(hub_backend.HubBackend(hub)) as b,
    ):
        subscription = b.subscribe("news")
        sent = await a.send("news", "sent on a")
        (got,) = await collect(subscription, 1, timeout=5)
        assert (got.data, got.id) == ("sent on a", sent.id)
        subscription.close()
        later = await b.send("news", "sent on b")
        # a never watched "news": resuming there from the first id, history fills it in.
        async with a.subscribe("news", last_event_id=sent.id) as resumed:
            with anyio.fail_after(5):
                assert [e.data for e in await collect(resumed, 1)] == [later.data]


def test_docs_pattern_matching_of_the_example_treats_only_star_as_special() -> None:
    matches = hub_backend.matches
    assert matches("user:*", "user:1")
    assert matches("*:admin", "team:admin")
    assert matches("a*b*c", "aXbYc")
    assert not matches("a*b*c", "acb")
    assert not matches("user:*", "users")
    assert matches("[x]*", "[x]y")  # no fnmatch classes
