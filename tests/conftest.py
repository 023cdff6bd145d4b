from __future__ import annotations

import pytest

#: The real-server fixtures (``server_kind``, ``serve``), for every test module.
pytest_plugins = ["_servers"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on both asyncio and trio."""
    return str(request.param)
