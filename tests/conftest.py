from __future__ import annotations

import pytest
from hypothesis import settings

# Properties check behaviour, not speed (benchmarks do that): a loaded machine must not fail
# one with hypothesis's default 200 ms deadline per example.
settings.register_profile("sse-channels", deadline=None)
settings.load_profile("sse-channels")

#: The real-server fixtures (``server_kind``, ``serve``), for every test module.
pytest_plugins = ["_servers"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on both asyncio and trio."""
    return str(request.param)
